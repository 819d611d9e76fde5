//! Guardrails: the deterministic checks every scale change must pass before it may be applied.
//!
//! `check` is pure: a target, the observed fleet and the policy in, a [`Verdict`] with *every*
//! violation out. It never fails and never does IO. Nothing a model says can widen a bound,
//! because the bounds come only from the [`Policy`], which comes only from configuration.

mod policy;

pub use policy::{JobPolicy, Policies, Policy, step_limit};

use fleetpilot_core::{Decision, FleetState, PriceTable, Priority, ScaleTarget, Verdict, Violation};
use time::OffsetDateTime;

/// An applied change of a fleet's total target capacity (spot plus regular).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// When it was applied.
    pub at: OffsetDateTime,
    /// Total target capacity before.
    pub from_total: u32,
    /// Total target capacity after.
    pub to_total: u32,
}

impl Change {
    fn is_out(&self) -> bool {
        self.to_total > self.from_total
    }
    fn is_in(&self) -> bool {
        self.to_total < self.from_total
    }
}

/// A total capacity someone recommended for the fleet (a proposal, whatever became of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// When.
    pub at: OffsetDateTime,
    /// Total target capacity recommended.
    pub total: u32,
}

/// The newest telemetry of the fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Telemetry {
    /// Seconds since the newest row was generated.
    pub age_secs: f64,
    /// Average utilization of the running VMs (percent), when known.
    pub utilization_percent: Option<f64>,
}

/// What the check needs beyond the target, the fleet and the policy. Everything time- or
/// history-dependent comes in here, so the check stays a pure function.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Now.
    pub now: OffsetDateTime,
    /// Prices for the budget and approval rules.
    pub prices: &'a PriceTable,
    /// Changes applied to this fleet (at least those of the last hour and window).
    pub changes: &'a [Change],
    /// Totals recommended for this fleet (at least those of the stabilization window).
    pub recommendations: &'a [Recommendation],
    /// The newest telemetry, if any could be read.
    pub telemetry: Option<Telemetry>,
    /// What the fleet has cost so far today (UTC), when known; unknown counts the whole day
    /// at the target's rate.
    pub spent_today_usd: Option<f64>,
}

impl<'a> Context<'a> {
    /// A context with no history and no telemetry (scale-ins are then refused).
    pub fn bare(now: OffsetDateTime, prices: &'a PriceTable) -> Self {
        Self { now, prices, changes: &[], recommendations: &[], telemetry: None, spent_today_usd: None }
    }
}

/// Check a requested target against a fleet's policy, its observed state and its history.
///
/// # Guarantees
/// - Pure and deterministic; never fails.
/// - Lists every violated rule; the strictest effect decides (deny over needs_approval).
/// - A target that changes nothing is always allowed (unless the fleet is frozen).
/// - Hard rules (`deny`): freeze; min/max per priority; step limits (absolute and percent);
///   VM sizes and regions; hourly and daily budgets for changes that raise the cost; changes
///   per hour; cooldown; stabilization (scale-in only to the window's highest recommendation,
///   no reversal of direction within the window); telemetry freshness and the anti-flapping
///   check for scale-in. Soft rules (`needs_approval`): delta and cost-increase thresholds.
pub fn check(target: &ScaleTarget, observed: &FleetState, policy: &Policy, ctx: &Context<'_>) -> Verdict {
    let mut violations = Vec::new();
    if policy.frozen {
        violations.push(rule(
            "frozen",
            Decision::Deny,
            "the fleet is frozen: every change is refused until an operator lifts the freeze".into(),
            None,
            None,
        ));
    }
    let mut up = 0i64;
    let mut down = 0i64;
    for priority in Priority::ALL {
        let (requested, min, max) = match priority {
            Priority::Spot => (target.spot_capacity, policy.min_spot, policy.max_spot),
            Priority::Regular => (target.regular_capacity, policy.min_regular, policy.max_regular),
        };
        let Some(requested) = requested else { continue };
        let current = observed.tier(priority).capacity;
        // A bound already broken by the observed state does not block a move towards it.
        if requested > max && requested > current {
            violations.push(deny(
                &format!("max_{priority}"),
                format!("{priority} capacity {requested} is above the policy's maximum of {max}"),
                max,
                requested,
            ));
        }
        if requested < min && requested < current {
            violations.push(deny(
                &format!("min_{priority}"),
                format!("{priority} capacity {requested} is below the policy's minimum of {min}"),
                min,
                requested,
            ));
        }
        // The fleet's own minCapacity cannot be changed and Azure refuses a capacity below it.
        let fleet_min = observed.tier(priority).min_capacity;
        if requested < fleet_min {
            violations.push(deny(
                &format!("fleet_min_{priority}"),
                format!("{priority} capacity {requested} is below the fleet's minCapacity of {fleet_min}, which Azure enforces"),
                fleet_min,
                requested,
            ));
        }
        let delta = i64::from(requested) - i64::from(current);
        if delta > 0 {
            up += delta;
        } else {
            down += -delta;
        }
    }
    let from_total = observed.spot.capacity + observed.regular.capacity;
    let to_total =
        target.spot_capacity.unwrap_or(observed.spot.capacity) + target.regular_capacity.unwrap_or(observed.regular.capacity);
    let sizes_change = !target.sizes_match(&observed.vm_sizes);
    let changes_anything = up > 0 || down > 0 || sizes_change;
    let (max_up, max_down) = policy.step_limits(from_total);
    if up > i64::from(max_up) {
        violations.push(deny(
            "max_step_up",
            format!("the change adds {up} VMs; the policy allows at most {max_up} per change"),
            max_up,
            up as u32,
        ));
    }
    if down > i64::from(max_down) {
        violations.push(deny(
            "max_step_down",
            format!("the change removes {down} VMs; the policy allows at most {max_down} per change"),
            max_down,
            down as u32,
        ));
    }
    if let Some(sizes) = &target.vm_sizes {
        if sizes.is_empty() {
            violations.push(rule("vm_sizes", Decision::Deny, "a fleet needs at least one VM size".into(), None, None));
        }
        for size in sizes {
            let allowed =
                policy.allowed_vm_sizes.is_empty() || policy.allowed_vm_sizes.iter().any(|a| a.eq_ignore_ascii_case(size));
            if !allowed {
                violations.push(rule(
                    "allowed_vm_sizes",
                    Decision::Deny,
                    format!("VM size {size} is not allowed; allowed sizes are {}", policy.allowed_vm_sizes.join(", ")),
                    None,
                    None,
                ));
            }
        }
    }
    if changes_anything
        && !policy.allowed_regions.is_empty()
        && !policy.allowed_regions.iter().any(|r| r.eq_ignore_ascii_case(&observed.location))
    {
        violations.push(rule(
            "allowed_regions",
            Decision::Deny,
            format!(
                "the fleet is in {}; the policy allows changes only in {}",
                observed.location,
                policy.allowed_regions.join(", ")
            ),
            None,
            None,
        ));
    }
    // Money: the target's rate against the rate at the current targets.
    let proposed = fleetpilot_core::cost::estimate(observed, target, ctx.prices).proposed_hourly_usd;
    let as_is = ScaleTarget {
        spot_capacity: Some(observed.spot.capacity),
        regular_capacity: Some(observed.regular.capacity),
        vm_sizes: None,
    };
    let baseline = fleetpilot_core::cost::estimate(observed, &as_is, ctx.prices).proposed_hourly_usd;
    let raises_cost = proposed > baseline + 1e-9;
    if let Some(budget) = policy.budget_usd_per_hour
        && raises_cost
        && proposed > budget
    {
        violations.push(rule(
            "budget_usd_per_hour",
            Decision::Deny,
            format!("at the target the fleet would cost ${proposed:.2}/h; the budget is ${budget:.2}/h"),
            Some(budget),
            Some(proposed),
        ));
    }
    if let Some(budget) = policy.budget_usd_per_day
        && raises_cost
    {
        let seconds_today = f64::from(ctx.now.time().hour()) * 3600.0
            + f64::from(ctx.now.time().minute()) * 60.0
            + f64::from(ctx.now.time().second());
        let hours_left = (86_400.0 - seconds_today) / 3600.0;
        let spent = ctx.spent_today_usd.unwrap_or(proposed * (24.0 - hours_left));
        let projected = spent + proposed * hours_left;
        if projected > budget {
            violations.push(rule(
                "budget_usd_per_day",
                Decision::Deny,
                format!(
                    "spent ${spent:.2} today; at ${proposed:.2}/h for the {hours_left:.1} h left the day would cost ${projected:.2}, above the daily budget of ${budget:.2}"
                ),
                Some(budget),
                Some(projected),
            ));
        }
    }
    if changes_anything {
        rate_and_timing_rules(policy, ctx, from_total, to_total, &mut violations);
    }
    if to_total < from_total {
        let to = (
            target.spot_capacity.unwrap_or(observed.spot.capacity),
            target.regular_capacity.unwrap_or(observed.regular.capacity),
        );
        scale_in_rules(policy, ctx, observed, from_total, to, &mut violations);
    }
    if let Some(limit) = policy.approval_above_delta
        && up + down > i64::from(limit)
    {
        violations.push(rule(
            "approval_above_delta",
            Decision::NeedsApproval,
            format!("the change moves {} VMs; changes above {limit} need a human's approval", up + down),
            Some(f64::from(limit)),
            Some((up + down) as f64),
        ));
    }
    if let Some(limit) = policy.approval_above_cost_increase_usd_per_hour
        && proposed - baseline > limit
    {
        violations.push(rule(
            "approval_above_cost_increase_usd_per_hour",
            Decision::NeedsApproval,
            format!(
                "the change raises the cost by ${:.2}/h; increases above ${limit:.2}/h need a human's approval",
                proposed - baseline
            ),
            Some(limit),
            Some(proposed - baseline),
        ));
    }
    Verdict::from_violations(violations, policy.dry_run)
}

/// Changes per hour, cooldown, and no reversal of direction within the stabilization window.
fn rate_and_timing_rules(policy: &Policy, ctx: &Context<'_>, from_total: u32, to_total: u32, out: &mut Vec<Violation>) {
    let age = |c: &Change| (ctx.now - c.at).as_seconds_f64();
    let last_hour = ctx.changes.iter().filter(|c| (0.0..3600.0).contains(&age(c))).count() as u32;
    if last_hour >= policy.max_changes_per_hour {
        out.push(rule(
            "max_changes_per_hour",
            Decision::Deny,
            format!(
                "{last_hour} changes were applied to this fleet in the last hour; the policy allows {}",
                policy.max_changes_per_hour
            ),
            Some(f64::from(policy.max_changes_per_hour)),
            Some(f64::from(last_hour + 1)),
        ));
    }
    if let Some(last) = ctx.changes.iter().filter(|c| age(c) >= 0.0).map(age).reduce(f64::min)
        && last < policy.cooldown_secs as f64
    {
        out.push(rule(
            "cooldown",
            Decision::Deny,
            format!("the last change was {last:.0} s ago; the policy waits {} s after each change", policy.cooldown_secs),
            Some(policy.cooldown_secs as f64),
            Some(last),
        ));
    }
    let window = policy.stabilization_secs as f64;
    let in_window = |c: &&Change| (0.0..window).contains(&age(c));
    if to_total > from_total && ctx.changes.iter().filter(in_window).any(Change::is_in) {
        out.push(rule(
            "stabilization",
            Decision::Deny,
            format!(
                "the fleet scaled in less than {window:.0} s ago; a scale-out now would flap (the anti-flapping check should have kept that scale-in from happening)"
            ),
            Some(window),
            None,
        ));
    }
    if to_total < from_total && ctx.changes.iter().filter(in_window).any(Change::is_out) {
        out.push(rule(
            "stabilization",
            Decision::Deny,
            format!("the fleet scaled out less than {window:.0} s ago; scale-in waits for the stabilization window"),
            Some(window),
            None,
        ));
    }
}

/// Scale-in only on the window's highest recommendation, with fresh telemetry, and only when
/// the smaller fleet would not scale out again at once.
fn scale_in_rules(
    policy: &Policy,
    ctx: &Context<'_>,
    observed: &FleetState,
    from_total: u32,
    (to_spot, to_regular): (u32, u32),
    out: &mut Vec<Violation>,
) {
    let to_total = to_spot + to_regular;
    let window = policy.stabilization_secs as f64;
    let highest =
        ctx.recommendations.iter().filter(|r| (0.0..window).contains(&(ctx.now - r.at).as_seconds_f64())).map(|r| r.total).max();
    if let Some(highest) = highest
        && highest > to_total
    {
        out.push(rule(
            "stabilization",
            Decision::Deny,
            format!(
                "a total of {highest} VMs was recommended within the last {window:.0} s; scale-in goes no lower than the window's highest recommendation"
            ),
            Some(f64::from(highest)),
            Some(f64::from(to_total)),
        ));
    }
    match ctx.telemetry {
        None => out.push(rule(
            "telemetry_freshness",
            Decision::Deny,
            "no telemetry could be read for the fleet; scale-in needs fresh telemetry".into(),
            Some(policy.max_telemetry_age_secs as f64),
            None,
        )),
        Some(t) if t.age_secs > policy.max_telemetry_age_secs as f64 => out.push(rule(
            "telemetry_freshness",
            Decision::Deny,
            format!(
                "the newest telemetry is {:.0} s old; scale-in needs telemetry newer than {} s",
                t.age_secs, policy.max_telemetry_age_secs
            ),
            Some(policy.max_telemetry_age_secs as f64),
            Some(t.age_secs),
        )),
        Some(t) => {
            // Azure Monitor's check: the load now, spread over the VMs that will serve after
            // the scale-in. The executor deletes a priority's VMs that serve nothing —
            // deallocated, then booting — before any that serves, so a cut within them leaves
            // every serving VM of that priority serving.
            let serving = observed.spot.running + observed.regular.running;
            let base = if serving > 0 { serving } else { from_total };
            let serving_after = if serving > 0 {
                let after = |tier: &fleetpilot_core::PriorityState, to: u32| {
                    let not_serving = tier.capacity.saturating_sub(tier.running);
                    tier.running.saturating_sub(tier.capacity.saturating_sub(to).saturating_sub(not_serving)).min(to)
                };
                after(&observed.spot, to_spot) + after(&observed.regular, to_regular)
            } else {
                to_total
            };
            if let Some(util) = t.utilization_percent
                && to_total > 0
            {
                let projected =
                    if serving_after == 0 { f64::INFINITY } else { util * f64::from(base) / f64::from(serving_after) };
                if projected >= policy.scale_out_utilization_percent {
                    out.push(rule(
                        "anti_flapping",
                        Decision::Deny,
                        format!(
                            "utilization is {util:.0} % on {base} serving VMs; on the {serving_after} left serving it would be {projected:.0} %, at or above the scale-out threshold of {:.0} %",
                            policy.scale_out_utilization_percent
                        ),
                        Some(policy.scale_out_utilization_percent),
                        Some(projected),
                    ));
                }
            } else if to_total == 0 && t.utilization_percent.is_some_and(|u| u > 0.0) {
                out.push(rule(
                    "anti_flapping",
                    Decision::Deny,
                    "the fleet is serving load; scaling it to zero would scale it out again at once".into(),
                    Some(policy.scale_out_utilization_percent),
                    None,
                ));
            }
        }
    }
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

fn rule(bound: &str, effect: Decision, message: String, limit: Option<f64>, requested: Option<f64>) -> Violation {
    Violation { bound: bound.to_string(), effect, message, limit, requested }
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
