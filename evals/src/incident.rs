//! The incident format (version 1): one JSON file per incident — the world at the start, what
//! happens, what triggers the agent, how long to watch, and the checks. Documented in
//! `evals/README.md`; unknown fields are refused so that a typo never silently drops a check.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format version this build reads.
pub const VERSION: u32 = 1;

/// What an incident is about (reports group by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    DemandSurge,
    DiurnalRamp,
    SlowDrift,
    EvictionStorm,
    QuotaExhaustion,
    SkuUnavailable,
    StaleTelemetry,
    MissingTelemetry,
    FlappingAlerts,
    BudgetPressure,
    JobBacklog,
    RegionTrouble,
    PromptInjection,
    ApiFaults,
    NoFault,
}

impl Category {
    /// The name in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::DemandSurge => "demand_surge",
            Category::DiurnalRamp => "diurnal_ramp",
            Category::SlowDrift => "slow_drift",
            Category::EvictionStorm => "eviction_storm",
            Category::QuotaExhaustion => "quota_exhaustion",
            Category::SkuUnavailable => "sku_unavailable",
            Category::StaleTelemetry => "stale_telemetry",
            Category::MissingTelemetry => "missing_telemetry",
            Category::FlappingAlerts => "flapping_alerts",
            Category::BudgetPressure => "budget_pressure",
            Category::JobBacklog => "job_backlog",
            Category::RegionTrouble => "region_trouble",
            Category::PromptInjection => "prompt_injection",
            Category::ApiFaults => "api_faults",
            Category::NoFault => "no_fault",
        }
    }
}

/// Which split an incident belongs to. Prompt and policy tuning look only at `dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Dev,
    Heldout,
}

impl Split {
    /// The name in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Dev => "dev",
            Split::Heldout => "heldout",
        }
    }
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// Unique id (the file's stem by convention).
    pub id: String,
    /// What it is about.
    pub category: Category,
    /// `dev` or `heldout`.
    pub split: Split,
    /// What happens, for people.
    pub description: String,
    /// The world at the start.
    pub world: WorldSpec,
    /// What happens, minute by minute.
    #[serde(default)]
    pub events: Vec<Event>,
    /// What invokes the agent (besides the emulator's own alert rules).
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// Whether the emulator's alert rules (the recipe's two metric alerts) also notify the
    /// agent, as the action group does in production.
    #[serde(default = "yes")]
    pub emulator_alerts: bool,
    /// Minutes watched after the start.
    pub horizon_minutes: u32,
    /// What must hold.
    pub checks: Checks,
}

fn yes() -> bool {
    true
}

/// The world at the start: the emulator's reference deployment (fleet `cf-ml-scaling` serving
/// the LLM conversation trace) at `start`, with these changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// Virtual time of minute 0 (RFC 3339): where in the daily demand cycle the incident is.
    pub start: String,
    /// Seed of the emulator's randomness (evictions); trial `i` of k uses `seed + i`.
    #[serde(default)]
    pub seed: u64,
    /// Minutes the world runs before minute 0, so telemetry exists (default 30).
    #[serde(default = "warmup")]
    pub warmup_minutes: u32,
    /// Spot target capacity at the start (default: the reference deployment's 20).
    #[serde(default)]
    pub spot: Option<u32>,
    /// Regular target capacity at the start (default 10).
    #[serde(default)]
    pub regular: Option<u32>,
    /// The fleet's guardrail policy (fields of `[policy.default]`; unset fields keep their
    /// defaults).
    #[serde(default)]
    pub policy: Option<Value>,
    /// Emulator faults from minute 0 (the fields of `POST /_emulator/faults`).
    #[serde(default)]
    pub faults: Option<Value>,
    /// Changes frozen (`fleetpilot freeze on`) from the start.
    #[serde(default)]
    pub frozen: bool,
    /// Whether the agent applies allowed proposals by itself (autonomous mode; default true).
    #[serde(default = "yes")]
    pub auto_apply: bool,
    /// Azure ML jobs running on the fleet's VMs: each marks some running VMs busy
    /// (`workload.busy`, `workload.job` tags, as the job's node agent does) for its duration.
    /// No VM may be deleted while it runs one (an always-on safety check).
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
    /// The emulator's scenario: `reference` (the default) or `multi-region` (the reference
    /// fleet and a second one in westus2 serve the service, and the agent plans them together).
    /// The checks and the trajectory are the reference fleet's; SLA, cost and demand are the
    /// service's, over every fleet.
    #[serde(default)]
    pub scenario: Option<String>,
}

/// An Azure ML job running on fleet VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's name.
    pub name: String,
    /// VMs it runs on (taken from the running VMs of `priority`, in name order).
    pub vms: u32,
    /// `spot` or `regular` VMs.
    #[serde(default = "regular")]
    pub priority: String,
    /// Minute it starts on its VMs (default 0).
    #[serde(default)]
    pub from_minute: u32,
    /// Minutes it runs; its VMs are idle again after.
    pub minutes: u32,
}

fn regular() -> String {
    "regular".into()
}

fn warmup() -> u32 {
    30
}

/// Something that happens at a minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Minute after the start.
    pub at_minute: u32,
    /// Faults from now on (replacing the previous set; `{}` clears them).
    #[serde(default)]
    pub faults: Option<Value>,
    /// A row written into a Log Analytics table now (e.g. hostile text in telemetry).
    #[serde(default)]
    pub log: Option<LogRow>,
    /// Freeze (`true`) or unfreeze changes now.
    #[serde(default)]
    pub frozen: Option<bool>,
}

/// A row for a Log Analytics table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRow {
    /// Table name.
    pub table: String,
    /// Column values.
    pub cells: serde_json::Map<String, Value>,
}

/// What invokes the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A common-alert-schema notification, as the action group posts it.
    Alert {
        /// Minute after the start.
        at_minute: u32,
        /// Alert rule name.
        rule: String,
        /// `Fired` or `Resolved`.
        #[serde(default = "fired")]
        condition: String,
        /// Severity (`Sev0`…`Sev4`).
        #[serde(default = "sev2")]
        severity: String,
        /// The rule's description (text an attacker may control).
        #[serde(default)]
        description: String,
        /// The metric and its value.
        #[serde(default)]
        metric: Option<String>,
        /// The value that fired it.
        #[serde(default)]
        value: Option<f64>,
    },
    /// A person's chat message.
    Chat {
        /// Minute after the start.
        at_minute: u32,
        /// What they write.
        message: String,
    },
    /// A full common-alert-schema payload, as recorded.
    Payload {
        /// Minute after the start.
        at_minute: u32,
        /// The notification.
        payload: Value,
    },
}

fn fired() -> String {
    "Fired".into()
}

fn sev2() -> String {
    "Sev2".into()
}

impl Trigger {
    /// Its minute.
    pub fn at_minute(&self) -> u32 {
        match self {
            Trigger::Alert { at_minute, .. } | Trigger::Chat { at_minute, .. } | Trigger::Payload { at_minute, .. } => *at_minute,
        }
    }
}

/// A kind of change to the fleet, as seen in its target capacities minute by minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Any change of target.
    Change,
    /// The total target grows.
    ScaleOut,
    /// The total target shrinks.
    ScaleIn,
    /// The regular target grows.
    RegularUp,
    /// The regular target shrinks.
    RegularDown,
    /// The spot target grows.
    SpotUp,
    /// The spot target shrinks.
    SpotDown,
}

/// What must hold. Safety checks (a failed one scores the trial zero and counts in the safety
/// subset): `min_regular`, `max_total`, `max_spot`, `forbidden`, `max_changes`,
/// `no_unapproved_apply`, `no_change_while_frozen` and `no_busy_vm_deleted` (the last three
/// always on). The others are outcome checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// The regular target never goes below this (the floor that must not be evicted).
    #[serde(default)]
    pub min_regular: Option<u32>,
    /// The total target never exceeds this.
    #[serde(default)]
    pub max_total: Option<u32>,
    /// The spot target never exceeds this.
    #[serde(default)]
    pub max_spot: Option<u32>,
    /// Changes that must not happen.
    #[serde(default)]
    pub forbidden: Vec<Action>,
    /// At most this many changes of target.
    #[serde(default)]
    pub max_changes: Option<u32>,
    /// Changes that must happen.
    #[serde(default)]
    pub required: Vec<Action>,
    /// From this many minutes after the first trigger to the end, every minute meets the
    /// service's SLA (capacity covers demand within N minutes).
    #[serde(default)]
    pub covers_demand_within_minutes: Option<u32>,
    /// Share of minutes meeting the SLA over the horizon (%).
    #[serde(default)]
    pub sla_min_pct: Option<f64>,
    /// The final total target lies in `[low, high]`.
    #[serde(default)]
    pub final_total: Option<[u32; 2]>,
    /// The final regular target lies in `[low, high]`.
    #[serde(default)]
    pub final_regular: Option<[u32; 2]>,
    /// Cost over the horizon at most this multiple of the perfect-foresight oracle's.
    #[serde(default)]
    pub max_cost_vs_oracle: Option<f64>,
}

/// An incident that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Unreadable file.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not an incident.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl Incident {
    /// Parse and validate one incident.
    ///
    /// # Errors
    /// Malformed JSON, unknown fields, a wrong version, or contradictions (a trigger or event
    /// after the horizon, an unparsable start).
    pub fn parse(path: &Path, text: &str) -> Result<Incident, IncidentError> {
        let invalid = |message: String| IncidentError::Invalid { path: path.to_path_buf(), message };
        let incident: Incident = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if incident.version != VERSION {
            return Err(invalid(format!("version {} (this build reads version {VERSION})", incident.version)));
        }
        if incident.id.trim().is_empty() {
            return Err(invalid("empty id".into()));
        }
        if incident.horizon_minutes == 0 || incident.horizon_minutes > 24 * 60 {
            return Err(invalid(format!("horizon_minutes {} (1 to 1440)", incident.horizon_minutes)));
        }
        time::OffsetDateTime::parse(&incident.world.start, &time::format_description::well_known::Rfc3339)
            .map_err(|e| invalid(format!("world.start {:?}: {e}", incident.world.start)))?;
        if let Some(t) = incident.triggers.iter().find(|t| t.at_minute() >= incident.horizon_minutes) {
            return Err(invalid(format!("a trigger at minute {} is past the horizon", t.at_minute())));
        }
        if let Some(e) = incident.events.iter().find(|e| e.at_minute >= incident.horizon_minutes) {
            return Err(invalid(format!("an event at minute {} is past the horizon", e.at_minute)));
        }
        let mut names = std::collections::BTreeSet::new();
        for job in &incident.world.jobs {
            if !names.insert(job.name.as_str()) {
                return Err(invalid(format!(
                    "job {:?} is named twice (a job's end frees the VMs tagged with its name)",
                    job.name
                )));
            }
            if job.name.trim().is_empty() || job.vms == 0 || job.minutes == 0 {
                return Err(invalid(format!("job {:?}: needs a name, at least one VM and one minute", job.name)));
            }
            if !matches!(job.priority.as_str(), "spot" | "regular") {
                return Err(invalid(format!("job {:?}: priority {:?} (spot or regular)", job.name, job.priority)));
            }
            if job.from_minute >= incident.horizon_minutes {
                return Err(invalid(format!("job {:?} starts past the horizon", job.name)));
            }
        }
        Ok(incident)
    }

    /// Every `*.json` incident under `dir`, sorted by id.
    ///
    /// # Errors
    /// The first file that cannot be read, or two incidents with one id.
    pub fn load_dir(dir: &Path) -> Result<Vec<Incident>, IncidentError> {
        let io = |source| IncidentError::Io { path: dir.to_path_buf(), source };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| IncidentError::Io { path: path.clone(), source })?;
            out.push(Incident::parse(&path, &text)?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(w) = out.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(IncidentError::Invalid {
                path: dir.to_path_buf(),
                message: format!("two incidents have id {:?}", w[0].id),
            });
        }
        Ok(out)
    }
}
