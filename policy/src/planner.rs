//! The built-in agent's decision: from what it read of a fleet, its guardrail policy and its
//! telemetry, the capacity (and the VM sizes) the fleet should have. Deterministic and pure;
//! the agent (`fleetpilot_agent::planner`) gathers the inputs through the tools and proposes
//! what this decides, and the guardrails still have the last word on every proposal.
//!
//! - **Reactive sizing** is target tracking on CPU utilization, with HPA's 10 % tolerance:
//!   outside a dead band around the target it asks for `ceil(VMs × utilization / target)`, where
//!   the VMs are those that produced the averaged utilization.
//! - **The forecast** (its upper bound over the next minutes) leads a scale-out only when it
//!   takes utilization past the band; it never drives a scale-in, and is not consulted below
//!   the band.
//! - **Spot above a regular floor**: scale-out adds spot (regular only past spot's maximum);
//!   scale-in releases regular above its floor first, then spot.
//! - **Regular backfill**: spot that is not serving (evicted and not replaced while the pool is
//!   dry, or deallocated) is backfilled with regular VMs, as far as the load needs — Compute
//!   Fleet never does this itself — and released by the next scale-in once spot serves again.
//! - **No scale-in while demand rises**, whatever CPU says.
//! - **Sizes**: a scale decision also re-lists the fleet's VM sizes when [`crate::sizes::choose`]
//!   says so (fewer than three of the kind, a size the policy does not allow, a wrong order).
//! - Within the policy's bounds, the fleet's own `minCapacity`, the step limits, and under the
//!   approval threshold (the planner acts on its own only where no human must).

use fleetpilot_core::PriceTable;

/// One priority of a fleet, as `read_fleet` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tier {
    /// Target capacity (VMs).
    pub capacity: u32,
    /// VMs running.
    pub running: u32,
    /// VMs booting.
    pub creating: u32,
    /// The fleet's own `minCapacity` (Azure refuses anything below it).
    pub min_capacity: u32,
}

/// What the planner knows of a fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    /// Spot priority.
    pub spot: Tier,
    /// Regular priority.
    pub regular: Tier,
    /// The VM sizes it lists, in order.
    pub vm_sizes: Vec<String>,
    /// Its region (empty: unknown).
    pub location: String,
}

/// The guardrail policy's limits the planner plans within (`None`: no limit).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Smallest spot target.
    pub min_spot: Option<u32>,
    /// Largest spot target.
    pub max_spot: Option<u32>,
    /// Smallest regular target (the floor that covers what must not be evicted).
    pub min_regular: Option<u32>,
    /// Largest regular target.
    pub max_regular: Option<u32>,
    /// Most VMs one change adds.
    pub max_step_up: Option<u32>,
    /// Most VMs one change removes.
    pub max_step_down: Option<u32>,
    /// Most VMs one change adds, as a percentage of the fleet.
    pub max_step_up_percent: Option<f64>,
    /// Most VMs one change removes, as a percentage of the fleet.
    pub max_step_down_percent: Option<f64>,
    /// A change larger than this needs a human's approval.
    pub approval_above_delta: Option<u32>,
    /// VM sizes a fleet may use (empty: any).
    pub allowed_vm_sizes: Vec<String>,
}

impl Limits {
    /// Most VMs one change may add and remove (up, down) on a fleet of `total` VMs, as the
    /// guardrails count them ([`fleetpilot_guardrails::step_limit`]; no limit stated: none).
    pub fn step_limits(&self, total: u32) -> (u32, u32) {
        let limit =
            |absolute: Option<u32>, percent| fleetpilot_guardrails::step_limit(absolute.unwrap_or(u32::MAX), percent, total);
        (limit(self.max_step_up, self.max_step_up_percent), limit(self.max_step_down, self.max_step_down_percent))
    }

    /// Most VMs one change may move without a human's approval (at least one; no threshold:
    /// no limit): the planner acts on its own only within it.
    pub fn without_approval(&self) -> u32 {
        self.approval_above_delta.map_or(u32::MAX, |a| a.max(1))
    }
}

impl From<&fleetpilot_guardrails::Policy> for Limits {
    fn from(p: &fleetpilot_guardrails::Policy) -> Self {
        Self {
            min_spot: Some(p.min_spot),
            max_spot: Some(p.max_spot),
            min_regular: Some(p.min_regular),
            max_regular: Some(p.max_regular),
            max_step_up: Some(p.max_step_up),
            max_step_down: Some(p.max_step_down),
            max_step_up_percent: p.max_step_up_percent,
            max_step_down_percent: p.max_step_down_percent,
            approval_above_delta: p.approval_above_delta,
            allowed_vm_sizes: p.allowed_vm_sizes.clone(),
        }
    }
}

/// `to` moved towards `from` until the change adds at most `up` and removes at most `down` VMs,
/// counted over both priorities as the guardrails count them. Regular goes first either way: an
/// added regular VM serves where spot may not (a backfill), a removed one saves the most.
pub fn within_steps(from: (u32, u32), to: (u32, u32), up: u32, down: u32) -> (u32, u32) {
    let (mut up, mut down) = (up, down);
    let mut step = |from: u32, to: u32| {
        if to > from {
            let add = (to - from).min(up);
            up -= add;
            from + add
        } else {
            let remove = (from - to).min(down);
            down -= remove;
            from - remove
        }
    };
    let regular = step(from.1, to.1);
    (step(from.0, to.0), regular)
}

/// The utilization band the fleet is kept in (percent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Utilization the fleet is sized for.
    pub target: f64,
    /// Scale out above this.
    pub scale_out_above: f64,
    /// Scale in below this.
    pub scale_in_below: f64,
}

impl Default for Band {
    /// 60 % target, act above 70 % and below 40 %.
    fn default() -> Self {
        Self { target: 60.0, scale_out_above: 70.0, scale_in_below: 40.0 }
    }
}

/// What the telemetry says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// Average CPU utilization of the fleet's VMs over the last minutes (percent).
    pub cpu: Option<f64>,
    /// The forecast's upper bound on demand over the next minutes relative to demand now.
    pub growth: Option<f64>,
    /// Whether demand is rising now (the last 5 minutes' arrivals above the 10 before).
    pub rising: bool,
    /// How many VMs ran, on average, over the window `cpu` was averaged on: the load is CPU
    /// times *those* VMs (after a change, the VMs running now did not produce that average).
    pub window_vms: Option<f64>,
    /// VMs the demand's reactive bound needs over the boot lead time ([`demand_need`]), when
    /// per-minute arrivals were read.
    pub demand_need: Option<u32>,
}

/// Utilization the demand bound is served at: the bound carries the headroom for bursts, the
/// rest is margin for the estimate of what a VM serves.
pub const DEMAND_UTILIZATION: f64 = 0.9;

/// VMs needed to serve the reactive upper bound of demand over the next `boot_minutes + 1`
/// minutes ([`crate::policies::reactive_bound`] on per-minute `arrivals`, the 98th percentile
/// of the rises the last four hours showed), when one VM serves `per_vm_rate` requests a
/// minute at full utilization. `None` without enough to go on (fewer than 10 minutes, or no
/// rate).
pub fn demand_need(arrivals: &[f64], per_vm_rate: f64, boot_minutes: usize) -> Option<u32> {
    if arrivals.len() < 10 || !per_vm_rate.is_finite() || per_vm_rate <= 0.0 {
        return None;
    }
    use crate::policies::{BOUND_QUANTILE, ERROR_WINDOW_MINUTES, LEVEL_MINUTES, reactive_bound};
    let bound = reactive_bound(arrivals, boot_minutes + 1, LEVEL_MINUTES, ERROR_WINDOW_MINUTES, BOUND_QUANTILE);
    Some((bound / (per_vm_rate * DEMAND_UTILIZATION)).ceil().max(0.0) as u32)
}

/// A capacity decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Leave the fleet as it is.
    Hold(String),
    /// Move to these capacities (and, when `vm_sizes` is set, list these sizes).
    Scale {
        /// Spot target.
        spot: u32,
        /// Regular target.
        regular: u32,
        /// Sizes to list, best first; `None` keeps the fleet's.
        vm_sizes: Option<Vec<String>>,
        /// Why, with the numbers.
        why: String,
    },
}

/// Decide. See the module's documentation for the rules.
pub fn decide(fleet: &FleetView, limits: &Limits, signals: &Signals, band: &Band, prices: &PriceTable) -> Decision {
    let decision = decide_capacity(fleet, limits, signals, band);
    // The price table is one region's: sizes are judged only for fleets there (or unknown).
    let priced_here = fleet.location.is_empty() || fleet.location.eq_ignore_ascii_case(crate::sizes::PRICES_REGION);
    match decision {
        Decision::Scale { spot, regular, why, .. } => {
            match crate::sizes::choose(prices, &fleet.vm_sizes, &limits.allowed_vm_sizes).filter(|_| priced_here) {
                Some(choice) => Decision::Scale {
                    spot,
                    regular,
                    vm_sizes: Some(choice.sizes.clone()),
                    why: format!("{why}; listing sizes {} ({})", choice.sizes.join(", "), choice.why),
                },
                None => Decision::Scale { spot, regular, vm_sizes: None, why },
            }
        }
        hold => hold,
    }
}

fn decide_capacity(fleet: &FleetView, limits: &Limits, signals: &Signals, band_of: &Band) -> Decision {
    let (spot, regular) = (fleet.spot.capacity, fleet.regular.capacity);
    let serving = fleet.spot.running + fleet.regular.running;
    let total = spot + regular;
    let Some(cpu) = signals.cpu.filter(|c| c.is_finite()) else {
        return Decision::Hold("no recent CPU telemetry for the fleet, so no basis for a change".into());
    };
    let band = format!("{:.0}–{:.0} %", band_of.scale_in_below, band_of.scale_out_above);
    let base = match signals.window_vms.filter(|v| v.is_finite() && *v > 0.0) {
        Some(v) => v,
        None => f64::from(if serving > 0 { serving } else { total.max(1) }),
    };
    // HPA's 10 % tolerance: within it of the target, the VMs there are what is needed (CPU is
    // averaged over minutes and lags every change; acting on a hair above target overshoots).
    let ratio = cpu / band_of.target;
    let reactive = if (ratio - 1.0).abs() <= 0.1 { base.round() as u32 } else { (base * ratio).ceil() as u32 };
    // What the forecast's upper bound would need at the target utilization (growth only).
    let growth = signals.growth;
    let predicted = growth.filter(|g| g.is_finite() && *g > 1.0).map(|g| (base * cpu * g / band_of.target).ceil() as u32);
    // Spot the fleet is not delivering: evicted and not replaced (the pool is dry), or
    // deallocated. Compute Fleet does not backfill with regular VMs; the planner does.
    let delivering = fleet.spot.running + fleet.spot.creating;
    let shortfall = spot.saturating_sub(delivering);
    let max_regular_policy = limits.max_regular.unwrap_or(u32::MAX);
    // Backfill only what the load needs: the missing spot VMs, no more than the serving VMs
    // fall short of the target utilization (a backfill already in place is counted as serving).
    // VMs still booting will serve in a minute or two: they count.
    let booting = fleet.spot.creating + fleet.regular.creating;
    let needed = reactive.saturating_sub(serving + booting);
    // A need larger than the missing spot is a scale-out (below), not a backfill.
    // The guardrails' step limits, a percentage of the fleet included, and the approval
    // threshold: a larger change would be refused whole or wait for a human.
    let (step_up, step_down) = limits.step_limits(total);
    let (step_up, step_down) = (step_up.min(limits.without_approval()), step_down.min(limits.without_approval()));
    if shortfall > 0
        && needed > 0
        && needed <= shortfall
        && cpu >= band_of.scale_in_below
        && regular < max_regular_policy
        && step_up > 0
    {
        let add = shortfall.min(needed).min(step_up).min(max_regular_policy - regular);
        return Decision::Scale {
            spot,
            regular: regular + add,
            vm_sizes: None,
            why: format!(
                "{shortfall} of the fleet's {spot} spot VMs are not serving (evicted and not replaced, or deallocated) while CPU is {cpu:.1} %; backfilling with {add} regular VMs (regular {regular}→{}) until spot returns",
                regular + add
            ),
        };
    }
    // The forecast leads a scale-out only when its upper bound takes CPU past the band: inside
    // the band, the noise of an upper bound must not grow the fleet on every look.
    let predicted = predicted.filter(|_| growth.is_some_and(|g| cpu * g > band_of.scale_out_above));
    let demand = signals.demand_need;
    let in_band = (band_of.scale_in_below..=band_of.scale_out_above).contains(&cpu);
    if in_band && predicted.is_none_or(|p| p <= total) && demand.is_none_or(|d| d <= total) {
        return Decision::Hold(format!("CPU is {cpu:.1} % on {serving} running VMs, inside the {band} band"));
    }
    // The policy's minimum, and the fleet's own minCapacity (Azure refuses anything below it).
    let (min_spot, max_spot) = (limits.min_spot.unwrap_or(0).max(fleet.spot.min_capacity), limits.max_spot.unwrap_or(u32::MAX));
    let (min_regular, max_regular) = (limits.min_regular.unwrap_or(0).max(fleet.regular.min_capacity), max_regular_policy);
    for (priority, min, max, fleet_min) in
        [("spot", min_spot, max_spot, fleet.spot.min_capacity), ("regular", min_regular, max_regular, fleet.regular.min_capacity)]
    {
        if min > max {
            return Decision::Hold(format!(
                "no {priority} target satisfies both the fleet and the policy: its minimum is {min} (the fleet's minCapacity is {fleet_min}) and the policy's maximum is {max}; raise max_{priority} or lower the fleet's minCapacity"
            ));
        }
    }
    // The forecast only adds capacity ahead of demand: below the band it is not consulted
    // (a forecast trained on yesterday's level must not hold a fleet up after demand fell).
    // Spot VMs that count towards capacity but serve nothing (deallocated) are added back.
    // The demand bound covers the bursts the last hours showed: capacity goes up to it, and a
    // scale-in never goes below it.
    let wanted = if cpu < band_of.scale_in_below {
        reactive.max(demand.unwrap_or(0))
    } else {
        reactive.max(predicted.unwrap_or(0)).max(demand.unwrap_or(0)) + shortfall
    };
    if wanted >= total && cpu < band_of.scale_in_below {
        return Decision::Hold(format!("CPU is {cpu:.1} % on {serving} running VMs, but the fleet is at its floor"));
    }
    if wanted < total && cpu >= band_of.scale_in_below {
        // Above the band with VMs booting: they will serve; a cut now would undo them. A
        // scale-in happens only below the band.
        return Decision::Hold(format!(
            "CPU is {cpu:.1} % on {serving} running VMs and {booting} booting: the targets cover the load once they serve, and a scale-in waits for CPU below the {band} band"
        ));
    }
    if wanted < total && signals.rising {
        return Decision::Hold(format!(
            "CPU is {cpu:.1} % on {serving} running VMs, below the {band} band, but demand is rising: no scale-in while it climbs"
        ));
    }
    let (lo, hi) = (min_spot.saturating_add(min_regular), max_spot.saturating_add(max_regular));
    let mut target_total = wanted.clamp(lo, hi);
    if target_total > total {
        target_total = target_total.min(total.saturating_add(step_up));
    } else {
        target_total = target_total.max(total.saturating_sub(step_down));
    }
    if target_total == total {
        if wanted == total {
            // What the CPU of the window asks for is what the fleet already has (it grew, or
            // shrank, within the window the CPU was averaged over).
            return Decision::Hold(format!(
                "CPU averaged {cpu:.1} % over the last minutes with {base:.0} VMs serving on average; the fleet's {total} VMs bring it to the {:.0} % target",
                band_of.target
            ));
        }
        return Decision::Hold(format!(
            "CPU is {cpu:.1} % on {serving} running VMs, but the fleet is at the bound of what the policy allows ({total} VMs)"
        ));
    }
    // Scale-out adds spot (regular only past spot's maximum); scale-in releases regular above
    // its floor first (it costs several times spot: this is also how a backfill is released
    // once spot serves again), then spot.
    let (new_spot, new_regular) = if target_total > total {
        let new_spot = (target_total.saturating_sub(regular)).clamp(min_spot, max_spot);
        (new_spot, target_total.saturating_sub(new_spot).clamp(min_regular, max_regular))
    } else if shortfall > 0 {
        // Spot is short: the cut goes to spot first (the executor deletes the VMs that serve
        // nothing — deallocated, then booting — first), and the regular VMs that serve stay.
        let cut = total - target_total;
        let new_spot = spot.saturating_sub(cut).clamp(min_spot, max_spot);
        let left = cut.saturating_sub(spot - new_spot.min(spot));
        (new_spot, regular.saturating_sub(left).clamp(min_regular, max_regular))
    } else {
        let cut = total - target_total;
        let new_regular = regular.saturating_sub(cut).clamp(min_regular, max_regular);
        let left = cut.saturating_sub(regular - new_regular.min(regular));
        (spot.saturating_sub(left).clamp(min_spot, max_spot), new_regular)
    };
    // Towards a bound the fleet already breaks, or between priorities, the change per priority
    // can exceed the step limits the total kept to: the guardrails would refuse it whole.
    let (new_spot, new_regular) = within_steps((spot, regular), (new_spot, new_regular), step_up, step_down);
    let direction = if target_total > total { "out" } else { "in" };
    let mut forecast = match (predicted, growth) {
        (Some(p), Some(g)) if p > reactive && cpu >= band_of.scale_in_below => {
            format!("; demand is forecast to grow up to {:.0} % in the next minutes, which needs {p} VMs", (g - 1.0) * 100.0)
        }
        _ => String::new(),
    };
    if let Some(d) = demand.filter(|d| *d > reactive) {
        forecast.push_str(&format!("; the bursts of the last hours (98th percentile over the boot lead time) need {d} VMs"));
    }
    let why = format!(
        "CPU averaged {cpu:.1} % over the last minutes on {serving} running VMs (target {:.0} %, band {band}); {reactive} VMs would bring it to the target{forecast}; scaling {direction} from {total} to {} VMs (spot {spot}→{new_spot}, regular {regular}→{new_regular}) within the policy's bounds and step limits",
        band_of.target,
        new_spot + new_regular
    );
    if new_spot == spot && new_regular == regular {
        return Decision::Hold(format!("CPU is {cpu:.1} %, but the policy's bounds leave no room to move"));
    }
    Decision::Scale { spot: new_spot, regular: new_regular, vm_sizes: None, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(sizes: &[&str]) -> FleetView {
        FleetView {
            spot: Tier { capacity: 20, running: 20, ..Tier::default() },
            regular: Tier { capacity: 10, running: 10, ..Tier::default() },
            vm_sizes: sizes.iter().map(|s| s.to_string()).collect(),
            location: "eastus".into(),
        }
    }

    fn limits() -> Limits {
        Limits { max_step_up: Some(10), max_step_down: Some(10), approval_above_delta: Some(8), ..Limits::default() }
    }

    fn cpu(c: f64) -> Signals {
        Signals { cpu: Some(c), ..Signals::default() }
    }

    #[test]
    fn a_scale_decision_also_diversifies_a_fleet_on_one_size() {
        let prices = PriceTable::embedded();
        let d = decide(&fleet(&["Standard_D4s_v5"]), &limits(), &cpu(90.0), &Band::default(), &prices);
        let Decision::Scale { spot, regular, vm_sizes, why } = d else { panic!("{d:?}") };
        assert_eq!((spot, regular), (28, 10));
        assert_eq!(vm_sizes.unwrap(), ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]);
        assert!(why.contains("listing sizes") && why.contains("eviction band"), "{why}");
        // A well-listed fleet keeps its sizes; a hold changes nothing.
        let listed = ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"];
        let d = decide(&fleet(&listed), &limits(), &cpu(90.0), &Band::default(), &prices);
        assert!(matches!(d, Decision::Scale { vm_sizes: None, .. }), "{d:?}");
        let d = decide(&fleet(&["Standard_D4s_v5"]), &limits(), &cpu(60.0), &Band::default(), &prices);
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
        // A fleet in another region: the eastus prices are no basis for its sizes.
        let mut west = fleet(&["Standard_D4s_v5"]);
        west.location = "westeurope".into();
        let d = decide(&west, &limits(), &cpu(90.0), &Band::default(), &prices);
        assert!(matches!(d, Decision::Scale { vm_sizes: None, .. }), "{d:?}");
        // CPU that is not a number is no telemetry.
        let d = decide(&west, &limits(), &cpu(f64::NAN), &Band::default(), &prices);
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
    }

    #[test]
    fn the_demand_bound_scales_out_ahead_of_bursts_and_holds_a_scale_in_up() {
        let prices = PriceTable::embedded();
        let listed = ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"];
        // Demand at 1,000 a minute with a burst to 2,000 every 20 minutes; a VM serves 100.
        let arrivals: Vec<f64> = (0..240).map(|t| if t % 20 == 0 { 2_000.0 } else { 1_000.0 }).collect();
        let need = demand_need(&arrivals, 100.0, 2).expect("enough history");
        assert_eq!(need, 23, "the burst (2,000) at 90 %");
        assert_eq!(demand_need(&arrivals[..5], 100.0, 2), None, "too little history");
        assert_eq!(demand_need(&arrivals, 0.0, 2), None, "no rate");
        // 30 VMs at 55 % CPU (in band) hold; with the bound needing 35 they scale out.
        let with = |d: Option<u32>, cpu: f64| Signals { cpu: Some(cpu), demand_need: d, ..Signals::default() };
        let f = fleet(&listed);
        assert!(matches!(decide(&f, &limits(), &with(None, 55.0), &Band::default(), &prices), Decision::Hold(_)));
        let d = decide(&f, &limits(), &with(Some(35), 55.0), &Band::default(), &prices);
        let Decision::Scale { spot, regular, why, .. } = d else { panic!("{d:?}") };
        assert_eq!((spot, regular), (25, 10));
        assert!(why.contains("bursts of the last hours"), "{why}");
        // Low CPU between bursts: the scale-in stops at the bound.
        let d = decide(&f, &limits(), &with(Some(27), 20.0), &Band::default(), &prices);
        let Decision::Scale { spot, regular, .. } = d else { panic!("{d:?}") };
        assert_eq!(spot + regular, 27, "not the 10 that CPU alone would ask for");
    }

    #[test]
    fn a_policy_that_states_no_limits_is_no_limit() {
        // What the agent has when get_policy failed: every limit open.
        let f = fleet(&["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]);
        let d = decide(&f, &Limits::default(), &cpu(90.0), &Band::default(), &PriceTable::embedded());
        let Decision::Scale { spot, regular, .. } = d else { panic!("{d:?}") };
        assert_eq!((spot, regular), (35, 10), "30 VMs at 90 % want 45 at 60 %");
    }

    #[test]
    fn no_scale_in_above_the_band_while_vms_boot() {
        let prices = PriceTable::embedded();
        // 30 VMs, 12 of them booting; the 18 serving run at 80 %: 24 would do, but the cut
        // would undo what boots.
        let mut f = fleet(&["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]);
        (f.spot.running, f.spot.creating) = (8, 12);
        let d = decide(&f, &limits(), &cpu(80.0), &Band::default(), &prices);
        assert!(matches!(d, Decision::Hold(ref why) if why.contains("12 booting")), "{d:?}");
    }

    #[test]
    fn a_fleet_that_already_grew_to_what_the_window_asks_for_is_held_for_that_reason() {
        let prices = PriceTable::embedded();
        // 30 VMs on average over the window at 76 % want 38 at 60 %: the fleet has 38 now.
        let mut f = fleet(&["Standard_D4s_v5"]);
        (f.spot.capacity, f.spot.running) = (28, 28);
        let signals = Signals { cpu: Some(76.0), window_vms: Some(30.0), ..Signals::default() };
        let d = decide(&f, &limits(), &signals, &Band::default(), &prices);
        assert!(matches!(d, Decision::Hold(ref why) if why.contains("bring it to the 60 % target")), "{d:?}");
    }

    #[test]
    fn a_fleet_minimum_above_the_policy_maximum_is_held_with_the_reason() {
        let prices = PriceTable::embedded();
        let mut f = fleet(&["Standard_D4s_v5"]);
        f.spot.min_capacity = 50;
        let limits = Limits { max_spot: Some(40), ..limits() };
        let d = decide(&f, &limits, &cpu(90.0), &Band::default(), &prices);
        assert!(matches!(d, Decision::Hold(ref why) if why.contains("minCapacity is 50") && why.contains("max_spot")), "{d:?}");
    }

    #[test]
    fn a_fleet_above_a_bound_moves_towards_it_within_the_step_limits() {
        let prices = PriceTable::embedded();
        // 20 spot over a maximum of 10, 2 regular, CPU at 90 %: spot must come down and regular
        // grow, but by no more than the guardrails allow in one change.
        let mut f = fleet(&["Standard_D4s_v5"]);
        f.regular = Tier { capacity: 2, running: 2, ..Tier::default() };
        let limits = Limits {
            max_spot: Some(10),
            max_regular: Some(100),
            max_step_up: Some(5),
            max_step_down: Some(5),
            ..Limits::default()
        };
        let d = decide(&f, &limits, &cpu(90.0), &Band::default(), &prices);
        let Decision::Scale { spot, regular, .. } = d else { panic!("{d:?}") };
        assert!(20 - spot <= 5 && regular - 2 <= 5 && spot < 20, "({spot}, {regular})");
    }

    #[test]
    fn a_backfill_is_sized_by_the_load_and_the_guardrail_policy_limits_it() {
        let prices = PriceTable::embedded();
        let mut f = fleet(&["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]);
        f.spot.running = 8;
        let policy = fleetpilot_guardrails::Policy { max_regular: 12, ..fleetpilot_guardrails::Policy::default() };
        let d = decide(&f, &Limits::from(&policy), &cpu(80.0), &Band::default(), &prices);
        let Decision::Scale { spot, regular, why, .. } = d else { panic!("{d:?}") };
        assert_eq!(spot, 20, "the spot target is kept for when the pool returns");
        assert_eq!(regular, 12, "the policy's max_regular bounds the backfill");
        assert!(why.contains("backfilling"), "{why}");
        // The load alone would backfill 6 (18 serving at 80 % want 24 at 60 %); a percentage
        // step limit bounds it too: 10 % of a 30-VM fleet is 3 VMs.
        let roomy = fleetpilot_guardrails::Policy { max_regular: 100, ..fleetpilot_guardrails::Policy::default() };
        let d = decide(&f, &Limits::from(&roomy), &cpu(80.0), &Band::default(), &prices);
        assert!(matches!(d, Decision::Scale { regular: 16, .. }), "{d:?}");
        let percent = fleetpilot_guardrails::Policy { max_step_up_percent: Some(10.0), ..roomy };
        let d = decide(&f, &Limits::from(&percent), &cpu(80.0), &Band::default(), &prices);
        assert!(matches!(d, Decision::Scale { regular: 13, .. }), "within the guardrails' percentage step: {d:?}");
    }
}
