//! Guardrails: the deterministic checks every scale change must pass before it may be applied.
//!
//! `check` is pure: a target, the observed fleet and the policy in, a [`Verdict`] with *every*
//! violation out. It never fails and never does IO. Nothing a model says can widen a bound,
//! because the bounds come only from the [`Policy`], which comes only from configuration.

mod policy;

pub use policy::{JobPolicy, Policies, Policy};

use fleetpilot_core::{Decision, FleetState, Priority, ScaleTarget, Verdict, Violation};

/// Check a requested target against a fleet's policy and its observed state.
///
/// # Guarantees
/// - Pure and deterministic.
/// - Lists every violated bound; the strictest effect decides.
/// - A target outside `[min, max]` for a priority, a step larger than allowed, or a VM size not
///   allowed is `deny`; a change larger than `approval_above_delta` is `needs_approval`.
pub fn check(target: &ScaleTarget, observed: &FleetState, policy: &Policy) -> Verdict {
    let mut violations = Vec::new();
    let mut up = 0i64;
    let mut down = 0i64;
    for priority in Priority::ALL {
        let (requested, min, max) = match priority {
            Priority::Spot => (target.spot_capacity, policy.min_spot, policy.max_spot),
            Priority::Regular => (target.regular_capacity, policy.min_regular, policy.max_regular),
        };
        let Some(requested) = requested else { continue };
        if requested > max {
            violations.push(deny(
                &format!("max_{priority}"),
                format!("{priority} capacity {requested} is above the policy's maximum of {max}"),
                max,
                requested,
            ));
        }
        if requested < min {
            violations.push(deny(
                &format!("min_{priority}"),
                format!("{priority} capacity {requested} is below the policy's minimum of {min}"),
                min,
                requested,
            ));
        }
        let delta = i64::from(requested) - i64::from(observed.tier(priority).capacity);
        if delta > 0 {
            up += delta;
        } else {
            down += -delta;
        }
    }
    if up > i64::from(policy.max_step_up) {
        violations.push(deny(
            "max_step_up",
            format!("the change adds {up} VMs; the policy allows at most {} per change", policy.max_step_up),
            policy.max_step_up,
            up as u32,
        ));
    }
    if down > i64::from(policy.max_step_down) {
        violations.push(deny(
            "max_step_down",
            format!("the change removes {down} VMs; the policy allows at most {} per change", policy.max_step_down),
            policy.max_step_down,
            down as u32,
        ));
    }
    if let Some(sizes) = &target.vm_sizes {
        if sizes.is_empty() {
            violations.push(Violation {
                bound: "vm_sizes".into(),
                effect: Decision::Deny,
                message: "a fleet needs at least one VM size".into(),
                limit: None,
                requested: None,
            });
        }
        for size in sizes {
            let allowed =
                policy.allowed_vm_sizes.is_empty() || policy.allowed_vm_sizes.iter().any(|a| a.eq_ignore_ascii_case(size));
            if !allowed {
                violations.push(Violation {
                    bound: "allowed_vm_sizes".into(),
                    effect: Decision::Deny,
                    message: format!("VM size {size} is not allowed; allowed sizes are {}", policy.allowed_vm_sizes.join(", ")),
                    limit: None,
                    requested: None,
                });
            }
        }
    }
    if let Some(limit) = policy.approval_above_delta
        && up + down > i64::from(limit)
    {
        violations.push(Violation {
            bound: "approval_above_delta".into(),
            effect: Decision::NeedsApproval,
            message: format!("the change moves {} VMs; changes above {limit} need a human's approval", up + down),
            limit: Some(f64::from(limit)),
            requested: Some((up + down) as f64),
        });
    }
    Verdict::from_violations(violations, policy.dry_run)
}

/// Check an ML job against the job policy, the compute it targets and the jobs already there.
///
/// # Guarantees
/// Pure; lists every violation: too many active jobs on the compute, more nodes than the
/// policy or the cluster allows, a node-hour cost above the budget.
pub fn check_job(
    spec: &fleetpilot_core::ml::MlJobSpec,
    compute: &fleetpilot_core::ml::MlCompute,
    jobs: &[fleetpilot_core::ml::MlJob],
    node_usd_per_hour: f64,
    policy: &JobPolicy,
) -> Verdict {
    let mut violations = Vec::new();
    let active = jobs
        .iter()
        .filter(|j| j.compute.eq_ignore_ascii_case(&compute.name))
        .filter(|j| !matches!(j.status.as_str(), "Completed" | "Failed" | "Canceled"))
        .count() as u32;
    if active >= policy.max_concurrent_jobs_per_compute {
        violations.push(deny(
            "max_concurrent_jobs_per_compute",
            format!(
                "compute {} already has {active} active jobs; the policy allows {}",
                compute.name, policy.max_concurrent_jobs_per_compute
            ),
            policy.max_concurrent_jobs_per_compute,
            active + 1,
        ));
    }
    let nodes = spec.instance_count.max(1);
    if nodes > policy.max_nodes_per_job {
        violations.push(deny(
            "max_nodes_per_job",
            format!("the job asks for {nodes} nodes; the policy allows {} per job", policy.max_nodes_per_job),
            policy.max_nodes_per_job,
            nodes,
        ));
    }
    if nodes > compute.max_nodes {
        violations.push(deny(
            "compute_max_nodes",
            format!("the job asks for {nodes} nodes; compute {} has at most {}", compute.name, compute.max_nodes),
            compute.max_nodes,
            nodes,
        ));
    }
    let cost = f64::from(nodes) * node_usd_per_hour;
    if cost > policy.max_job_usd_per_hour {
        violations.push(Violation {
            bound: "max_job_usd_per_hour".into(),
            effect: Decision::Deny,
            message: format!(
                "the job's nodes cost ${cost:.2}/h; the budget allows ${:.2}/h per job",
                policy.max_job_usd_per_hour
            ),
            limit: Some(policy.max_job_usd_per_hour),
            requested: Some(cost),
        });
    }
    Verdict::from_violations(violations, false)
}

fn deny(bound: &str, message: String, limit: u32, requested: u32) -> Violation {
    Violation {
        bound: bound.to_string(),
        effect: Decision::Deny,
        message,
        limit: Some(f64::from(limit)),
        requested: Some(f64::from(requested)),
    }
}

#[cfg(test)]
mod tests;
