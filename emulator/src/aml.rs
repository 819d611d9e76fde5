//! Azure Machine Learning, emulated per `Microsoft.MachineLearningServices`: workspaces
//! (kinds `Default`, `Hub`, `Project`), `AmlCompute` clusters whose nodes come and go with
//! the jobs, and command jobs that queue for nodes, run for their duration and complete.
//!
//! A job's duration comes, in order, from its `FLEETPILOT_DURATION_SECONDS` environment
//! variable, from the recipe-style arguments `--samples N --features F --complexity C`
//! (N·F·C / 50,000 seconds), or from the real Philly job runtime distribution (shipped as
//! quantiles). `limits.timeout` ends a longer job as `Failed`.

use std::collections::BTreeMap;

use rand::RngExt;
use time::OffsetDateTime;

/// Philly runtimes in seconds, quantiles 0 %, 1 %, …, 100 % (see the file's header).
const PHILLY_QUANTILES: &str = include_str!("../data/philly_runtime_quantiles.txt");

/// A job's status, as Azure ML names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    NotStarted,
    Queued,
    Preparing,
    Running,
    CancelRequested,
    Completed,
    Failed,
    Canceled,
}

impl JobStatus {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::NotStarted => "NotStarted",
            JobStatus::Queued => "Queued",
            JobStatus::Preparing => "Preparing",
            JobStatus::Running => "Running",
            JobStatus::CancelRequested => "CancelRequested",
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Canceled => "Canceled",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled)
    }
}

/// A node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Preparing,
    Idle,
    Running,
}

/// One node of a cluster.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node id.
    pub id: String,
    /// State.
    pub state: NodeState,
    /// When it entered the state.
    pub since: OffsetDateTime,
    /// When a preparing node is ready.
    pub ready_at: OffsetDateTime,
    /// The job it runs.
    pub job: Option<String>,
}

/// An `AmlCompute` cluster.
#[derive(Debug, Clone)]
pub struct Compute {
    pub name: String,
    pub location: String,
    pub vm_size: String,
    /// `Dedicated` or `LowPriority`.
    pub vm_priority: String,
    pub min_nodes: u32,
    pub max_nodes: u32,
    /// Idle time before a node beyond the minimum is released, seconds.
    pub idle_before_scale_down: u64,
    pub nodes: Vec<Node>,
    pub next_node: u64,
}

/// A command job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub display_name: String,
    pub experiment_name: String,
    pub command: String,
    pub environment_id: String,
    pub code_id: Option<String>,
    pub compute: String,
    pub instance_count: u32,
    pub inputs: serde_json::Value,
    pub environment_variables: serde_json::Map<String, serde_json::Value>,
    pub tags: serde_json::Map<String, serde_json::Value>,
    pub timeout_secs: Option<u64>,
    pub status: JobStatus,
    pub created: OffsetDateTime,
    /// When the current stage ends (preparing, running).
    pub stage_ends: Option<OffsetDateTime>,
    pub duration_secs: u64,
}

/// A workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub name: String,
    pub resource_group: String,
    pub location: String,
    /// `Default`, `Hub` or `Project`.
    pub kind: String,
    /// For projects: the hub's ARM id.
    pub hub_id: Option<String>,
    pub friendly_name: String,
    /// Other properties of the last PUT (storage account, key vault, …), echoed as sent.
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// Tags.
    pub tags: serde_json::Map<String, serde_json::Value>,
    pub computes: BTreeMap<String, Compute>,
    pub jobs: BTreeMap<String, Job>,
}

/// Something a cluster or a job did, for the telemetry tables.
#[derive(Debug, Clone)]
pub enum MlEvent {
    /// A job changed status.
    Job { workspace: String, resource_group: String, job: String, experiment: String, cluster: String, status: JobStatus },
    /// A cluster was resized.
    Cluster {
        workspace: String,
        resource_group: String,
        cluster: String,
        vm_size: String,
        vm_priority: String,
        current: u32,
        target: u32,
    },
}

/// Seconds of a job, from what it says about itself or the Philly distribution.
pub fn job_duration(command: &str, env: &serde_json::Map<String, serde_json::Value>, draw: f64) -> u64 {
    if let Some(d) =
        env.get("FLEETPILOT_DURATION_SECONDS").and_then(|v| v.as_str().and_then(|s| s.parse::<f64>().ok()).or(v.as_f64()))
    {
        return d.max(1.0) as u64;
    }
    let arg = |flag: &str| -> Option<f64> {
        let mut words = command.split_whitespace();
        while let Some(w) = words.next() {
            if w == flag {
                return words.next()?.parse().ok();
            }
        }
        None
    };
    if let (Some(n), Some(f), Some(c)) = (arg("--samples"), arg("--features"), arg("--complexity")) {
        return (n * f * c / 50_000.0).max(1.0) as u64;
    }
    philly_runtime(draw)
}

/// A runtime from the Philly distribution for a uniform draw in [0, 1).
pub fn philly_runtime(draw: f64) -> u64 {
    let qs: Vec<f64> = PHILLY_QUANTILES.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.trim().parse().ok()).collect();
    if qs.len() < 2 {
        return 600;
    }
    let x = draw.clamp(0.0, 0.999_999) * (qs.len() - 1) as f64;
    let i = x.floor() as usize;
    let v = qs[i] + (qs[i + 1] - qs[i]) * (x - i as f64);
    v.max(1.0) as u64
}

impl Compute {
    fn count(&self, state: NodeState) -> u32 {
        self.nodes.iter().filter(|n| n.state == state).count() as u32
    }
}

/// One tick of Azure ML: nodes boot, queued jobs get nodes (growing the cluster up to its
/// maximum), jobs move through their stages, idle nodes beyond the minimum leave.
pub fn step(
    workspaces: &mut BTreeMap<(String, String), Workspace>,
    now: OffsetDateTime,
    boot: std::time::Duration,
    rng: &mut impl rand::Rng,
) -> Vec<MlEvent> {
    let mut events = Vec::new();
    for ws in workspaces.values_mut() {
        for compute in ws.computes.values_mut() {
            for node in &mut compute.nodes {
                if node.state == NodeState::Preparing && node.ready_at <= now {
                    node.state = NodeState::Idle;
                    node.since = now;
                }
            }
        }
        for job in ws.jobs.values_mut() {
            let before = job.status;
            if before.is_terminal() {
                continue;
            }
            let Some(compute) = ws.computes.get_mut(&job.compute.to_ascii_lowercase()) else {
                if !job.status.is_terminal() {
                    job.status = JobStatus::Failed;
                }
                if job.status != before {
                    events.push(job_event(ws.name.clone(), ws.resource_group.clone(), job));
                }
                continue;
            };
            let release = |compute: &mut Compute, job: &str| {
                for n in compute.nodes.iter_mut().filter(|n| n.job.as_deref() == Some(job)) {
                    n.job = None;
                    n.state = NodeState::Idle;
                    n.since = now;
                }
            };
            match job.status {
                JobStatus::NotStarted => job.status = JobStatus::Queued,
                JobStatus::Queued => {
                    let idle: Vec<usize> =
                        (0..compute.nodes.len()).filter(|&i| compute.nodes[i].state == NodeState::Idle).collect();
                    if idle.len() as u32 >= job.instance_count {
                        for &i in idle.iter().take(job.instance_count as usize) {
                            compute.nodes[i].state = NodeState::Running;
                            compute.nodes[i].job = Some(job.name.clone());
                            compute.nodes[i].since = now;
                        }
                        job.status = JobStatus::Preparing;
                        job.stage_ends = Some(now + time::Duration::seconds(30));
                    } else {
                        // Grow the cluster for what is queued, up to its maximum.
                        let have = compute.nodes.len() as u32;
                        let preparing = compute.count(NodeState::Preparing);
                        let missing = job.instance_count.saturating_sub(idle.len() as u32 + preparing);
                        let add = missing.min(compute.max_nodes.saturating_sub(have));
                        if add > 0 {
                            for _ in 0..add {
                                compute.next_node += 1;
                                let jitter = 0.8 + 0.4 * rng.random::<f64>();
                                compute.nodes.push(Node {
                                    id: format!("tvmps_{:08x}_d", compute.next_node),
                                    state: NodeState::Preparing,
                                    since: now,
                                    ready_at: now + boot.mul_f64(jitter),
                                    job: None,
                                });
                            }
                            events.push(resize_event(&ws.name, &ws.resource_group, compute, have, have + add));
                        }
                    }
                }
                JobStatus::Preparing if job.stage_ends.is_some_and(|t| t <= now) => {
                    job.status = JobStatus::Running;
                    let run = job.timeout_secs.map_or(job.duration_secs, |t| t.min(job.duration_secs));
                    job.stage_ends = Some(now + time::Duration::seconds(run as i64));
                }
                JobStatus::Running if job.stage_ends.is_some_and(|t| t <= now) => {
                    job.status = if job.timeout_secs.is_some_and(|t| t < job.duration_secs) {
                        JobStatus::Failed
                    } else {
                        JobStatus::Completed
                    };
                    release(compute, &job.name);
                }
                JobStatus::CancelRequested => {
                    job.status = JobStatus::Canceled;
                    release(compute, &job.name);
                }
                _ => {}
            }
            if job.status != before {
                events.push(job_event(ws.name.clone(), ws.resource_group.clone(), job));
            }
        }
        for compute in ws.computes.values_mut() {
            let idle_limit = time::Duration::seconds(compute.idle_before_scale_down as i64);
            let before = compute.nodes.len() as u32;
            let min = compute.min_nodes as usize;
            let mut kept = 0;
            let mut removable: Vec<bool> =
                compute.nodes.iter().map(|n| n.state == NodeState::Idle && now - n.since >= idle_limit).collect();
            // Keep the minimum: never remove below min_nodes.
            let active = compute.nodes.len() - removable.iter().filter(|r| **r).count();
            let can_remove = compute.nodes.len().saturating_sub(min.max(active));
            for r in removable.iter_mut() {
                if *r {
                    if kept < can_remove {
                        kept += 1;
                    } else {
                        *r = false;
                    }
                }
            }
            let mut i = 0;
            compute.nodes.retain(|_| {
                let keep = !removable[i];
                i += 1;
                keep
            });
            let after = compute.nodes.len() as u32;
            if after < before {
                events.push(resize_event(&ws.name, &ws.resource_group, compute, before, after));
            }
        }
    }
    events
}

fn resize_event(workspace: &str, resource_group: &str, compute: &Compute, current: u32, target: u32) -> MlEvent {
    MlEvent::Cluster {
        workspace: workspace.to_string(),
        resource_group: resource_group.to_string(),
        cluster: compute.name.clone(),
        vm_size: compute.vm_size.clone(),
        vm_priority: compute.vm_priority.clone(),
        current,
        target,
    }
}

fn job_event(workspace: String, resource_group: String, job: &Job) -> MlEvent {
    MlEvent::Job {
        workspace,
        resource_group,
        job: job.name.clone(),
        experiment: job.experiment_name.clone(),
        cluster: job.compute.clone(),
        status: job.status,
    }
}

/// `nodeStateCounts` and the counts the API reports.
pub fn node_counts(c: &Compute) -> (u32, u32, u32) {
    (c.count(NodeState::Idle), c.count(NodeState::Running), c.count(NodeState::Preparing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_job_first() {
        let mut env = serde_json::Map::new();
        assert_eq!(job_duration("python train_model.py --samples 50000 --features 100 --complexity 2", &env, 0.5), 200);
        assert_eq!(job_duration("python train_model.py --samples 100000 --features 200 --complexity 3", &env, 0.5), 1200);
        env.insert("FLEETPILOT_DURATION_SECONDS".into(), serde_json::json!("45"));
        assert_eq!(job_duration("python x.py", &env, 0.5), 45);
    }

    #[test]
    fn philly_runtimes_follow_the_published_quantiles() {
        // README: median 1,186 s, p90 12,860 s.
        assert_eq!(philly_runtime(0.5), 1186);
        let p90 = philly_runtime(0.9);
        assert!((12_000..13_500).contains(&p90), "{p90}");
        assert!(philly_runtime(0.0) >= 1);
    }
}
