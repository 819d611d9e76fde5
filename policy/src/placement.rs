//! Placement across regions: when more than one fleet serves a service (a fleet per region,
//! each behind a load balancer that routes by capacity), the service is sized as one fleet
//! ([`crate::planner::decide`] on the fleets [`combine`]d) and the capacity is then placed
//! fleet by fleet ([`plan_service`]):
//!
//! - **Spot moves away from a region that is evicting.** Where the service's decision
//!   backfills spot that does not serve (evicted and not replaced because the region's pool is
//!   dry, or deallocated) with regular VMs, the backfill becomes spot in fleets whose spot
//!   serves, taken from the undelivered target (which the executor deletes first, so nothing
//!   that serves goes), as far as the fleets' limits allow: SkyPilot's `EAGER_NEXT_REGION` (a
//!   region that preempts tends to preempt again) and SpotHedge's spread over failure
//!   domains, sized by what the load needs (inside the band nothing moves). What no other
//!   fleet can take stays a regular backfill, as a single fleet's would.
//! - **Added spot is spread**: one VM at a time to the fleet with the lowest
//!   `score × (spot VMs + 1)`, where the score is the price per unit of service of the fleet's
//!   best listed size weighted by its eviction band ([`crate::sizes`]): the cheaper and safer
//!   region takes more, and no region takes it all. Removed spot comes from the highest
//!   `score × spot VMs` (the undelivered first).
//! - **Regular stays put**: added regular goes to the fleet with the cheapest regular price per
//!   unit (ties: the fewest regular VMs), removed regular comes from the dearest, never below a
//!   fleet's floor. Regular VMs are not moved between regions: they are not evicted, and a
//!   move would pay two boots for nothing.
//! - Every fleet stays within its own policy's bounds, its `minCapacity`, its step limits and
//!   under its approval threshold, counted as the guardrails count them (VMs added and
//!   removed over both priorities); the guardrails check each fleet's change on its own.
//!
//! Capacity is counted in VMs: the fleets serving one service are expected to list sizes of
//! like capacity. The embedded price table is one region's ([`crate::sizes::PRICES_REGION`]);
//! it prices every fleet's sizes, so regions differ here by their sizes and their evictions.

use fleetpilot_core::{PriceTable, Priority};

use crate::planner::{Band, Decision, FleetView, Limits, Signals, Tier};

/// One fleet serving the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Fleet name.
    pub name: String,
    /// What was read of it.
    pub fleet: FleetView,
    /// Its guardrail policy's limits.
    pub limits: Limits,
}

/// One fleet's new targets.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteTarget {
    /// Index into the sites given.
    pub site: usize,
    /// Spot target.
    pub spot: u32,
    /// Regular target.
    pub regular: u32,
    /// Sizes to list (only ever for the first site, the fleet the decision was made for).
    pub vm_sizes: Option<Vec<String>>,
}

/// What to do with the service.
#[derive(Debug, Clone, PartialEq)]
pub enum ServicePlan {
    /// Leave every fleet as it is.
    Hold(String),
    /// Change these fleets (only those whose targets or sizes change).
    Change {
        /// The new targets.
        targets: Vec<SiteTarget>,
        /// Why, with the numbers.
        why: String,
    },
}

fn sum_opt(mut values: impl Iterator<Item = Option<u32>>) -> Option<u32> {
    values.try_fold(0u32, |acc, v| v.map(|v| acc.saturating_add(v)))
}

fn sum_tier(tiers: impl Iterator<Item = Tier>) -> Tier {
    tiers.fold(Tier::default(), |a, t| Tier {
        capacity: a.capacity + t.capacity,
        running: a.running + t.running,
        creating: a.creating + t.creating,
        min_capacity: a.min_capacity + t.min_capacity,
    })
}

/// The service as one fleet: tiers and bounds summed (a bound any fleet leaves open is open),
/// the step limits summed, the first fleet's sizes and region.
pub fn combine(sites: &[Site]) -> (FleetView, Limits) {
    let first = sites.first();
    let view = FleetView {
        spot: sum_tier(sites.iter().map(|s| s.fleet.spot)),
        regular: sum_tier(sites.iter().map(|s| s.fleet.regular)),
        vm_sizes: first.map(|s| s.fleet.vm_sizes.clone()).unwrap_or_default(),
        location: first.map(|s| s.fleet.location.clone()).unwrap_or_default(),
    };
    let limits = |f: fn(&Limits) -> Option<u32>| sum_opt(sites.iter().map(|s| f(&s.limits)));
    let floor = |f: fn(&Limits) -> Option<u32>| Some(sites.iter().map(|s| f(&s.limits).unwrap_or(0)).sum());
    let percent = |f: fn(&Limits) -> Option<f64>| sites.iter().filter_map(|s| f(&s.limits)).reduce(f64::min);
    let combined = Limits {
        min_spot: floor(|l| l.min_spot),
        max_spot: limits(|l| l.max_spot),
        min_regular: floor(|l| l.min_regular),
        max_regular: limits(|l| l.max_regular),
        max_step_up: limits(|l| l.max_step_up),
        max_step_down: limits(|l| l.max_step_down),
        max_step_up_percent: percent(|l| l.max_step_up_percent),
        max_step_down_percent: percent(|l| l.max_step_down_percent),
        approval_above_delta: limits(|l| l.approval_above_delta),
        allowed_vm_sizes: first.map(|s| s.limits.allowed_vm_sizes.clone()).unwrap_or_default(),
    };
    (view, combined)
}

/// How far one fleet may move in one change, and its bounds. Counted as the guardrails count:
/// VMs added (over both priorities) against the step up, VMs removed against the step down,
/// and both together against the approval threshold.
#[derive(Debug, Clone, Copy)]
struct Room {
    spot: (u32, u32),
    regular: (u32, u32),
    up: u32,
    down: u32,
    moved: u32,
    from: (u32, u32),
}

impl Room {
    fn of(site: &Site) -> Self {
        let (f, l) = (&site.fleet, &site.limits);
        let (up, down) = l.step_limits(f.spot.capacity + f.regular.capacity);
        let min_spot = l.min_spot.unwrap_or(0).max(f.spot.min_capacity);
        let min_regular = l.min_regular.unwrap_or(0).max(f.regular.min_capacity);
        Self {
            spot: (min_spot, l.max_spot.unwrap_or(u32::MAX).max(min_spot)),
            regular: (min_regular, l.max_regular.unwrap_or(u32::MAX).max(min_regular)),
            up,
            down,
            // The planner acts on its own only under the approval threshold.
            moved: l.without_approval(),
            from: (f.spot.capacity, f.regular.capacity),
        }
    }

    /// (added, removed) at these targets.
    fn change(&self, spot: u32, regular: u32) -> (u32, u32) {
        let grow = |to: u32, from: u32| to.saturating_sub(from);
        (grow(spot, self.from.0) + grow(regular, self.from.1), grow(self.from.0, spot) + grow(self.from.1, regular))
    }

    /// Whether one more VM of a priority (spot when `spot`) may be added.
    fn can_add(&self, spot: u32, regular: u32, is_spot: bool) -> bool {
        let (s, r) = if is_spot { (spot + 1, regular) } else { (spot, regular + 1) };
        let within = if is_spot { s <= self.spot.1 } else { r <= self.regular.1 };
        let (added, removed) = self.change(s, r);
        within && added <= self.up && removed <= self.down && added + removed <= self.moved
    }

    /// Whether one VM of a priority may be removed.
    fn can_remove(&self, spot: u32, regular: u32, is_spot: bool) -> bool {
        let (s, r) = if is_spot { (spot.wrapping_sub(1), regular) } else { (spot, regular.wrapping_sub(1)) };
        let within = if is_spot { spot > self.spot.0 } else { regular > self.regular.0 };
        if !within {
            return false;
        }
        let (added, removed) = self.change(s, r);
        added <= self.up && removed <= self.down && added + removed <= self.moved
    }
}

/// Price per unit of service of a fleet's best listed size: (spot score weighted by its
/// eviction band, regular USD per unit-hour). Unknown sizes price as the worst known.
fn prices_of(prices: &PriceTable, site: &Site) -> (f64, f64) {
    let ranked = crate::sizes::rank(prices, &site.fleet.vm_sizes);
    let spot = ranked.first().map_or(f64::MAX, |r| r.score);
    let regular = site
        .fleet
        .vm_sizes
        .iter()
        .filter_map(|n| prices.get(n))
        .map(|i| i.price(Priority::Regular) / crate::sizes::service_units(i).0)
        .reduce(f64::min)
        .unwrap_or(f64::MAX);
    (spot, regular)
}

/// Decide for the service and place its capacity on its fleets. The first site is the fleet
/// the run is for (its sizes are the ones re-listed); `signals` are the service's (CPU
/// averaged over all its VMs, their arrivals summed).
pub fn plan_service(sites: &[Site], signals: &Signals, band: &Band, prices: &PriceTable) -> ServicePlan {
    if sites.is_empty() {
        return ServicePlan::Hold("no fleet serves the service".into());
    }
    let (view, limits) = combine(sites);
    let (mut want_spot, mut want_regular, vm_sizes, reason) = match crate::planner::decide(&view, &limits, signals, band, prices)
    {
        Decision::Hold(reason) => return ServicePlan::Hold(reason),
        Decision::Scale { spot, regular, vm_sizes, why } => (spot, regular, vm_sizes, why),
    };
    let rooms: Vec<Room> = sites.iter().map(Room::of).collect();
    let scores: Vec<(f64, f64)> = sites.iter().map(|s| prices_of(prices, s)).collect();
    let mut spot: Vec<u32> = sites.iter().map(|s| s.fleet.spot.capacity).collect();
    let mut regular: Vec<u32> = sites.iter().map(|s| s.fleet.regular.capacity).collect();
    // Spot that serves or boots; a fleet is short while its target has spot that does not.
    let mut delivering: Vec<u32> = sites.iter().map(|s| s.fleet.spot.running + s.fleet.spot.creating).collect();
    // Fleets that deliver all their spot, in a region where no fleet is short of it (a fleet
    // without spot in a storm's region draws on the same dry pool).
    let short_regions: Vec<&str> = sites
        .iter()
        .enumerate()
        .filter(|(i, s)| s.fleet.spot.capacity > delivering[*i] && !s.fleet.location.is_empty())
        .map(|(_, s)| s.fleet.location.as_str())
        .collect();
    let healthy: Vec<bool> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.fleet.spot.capacity <= delivering[i] && !short_regions.iter().any(|r| r.eq_ignore_ascii_case(&s.fleet.location))
        })
        .collect();
    let mut why = Vec::new();

    // 1. A regular backfill for spot that does not serve becomes spot where spot serves: each
    // VM of it is spot added to the fleet that delivers with the lowest score × (spot + 1),
    // taken from the target of the fleet with the most undelivered spot (which the executor
    // deletes first, so nothing that serves goes).
    let mut backfill = want_regular.saturating_sub(view.regular.capacity);
    let mut moved: Vec<(usize, Option<usize>)> = Vec::new();
    if view.spot.capacity > view.spot.running + view.spot.creating {
        while backfill > 0 {
            let to = (0..sites.len()).filter(|&j| healthy[j] && rooms[j].can_add(spot[j], regular[j], true)).min_by(|&a, &b| {
                (scores[a].0 * f64::from(spot[a] + 1)).total_cmp(&(scores[b].0 * f64::from(spot[b] + 1))).then(a.cmp(&b))
            });
            let Some(to) = to else { break };
            let from = (0..sites.len())
                .filter(|&i| i != to && spot[i] > delivering[i] && rooms[i].can_remove(spot[i], regular[i], true))
                .max_by_key(|&i| (spot[i] - delivering[i], std::cmp::Reverse(i)));
            // What moves in boots: it counts as delivering, as it does in the decision.
            spot[to] += 1;
            delivering[to] += 1;
            match from {
                Some(from) => spot[from] -= 1,
                None => want_spot += 1,
            }
            moved.push((to, from));
            backfill -= 1;
            want_regular -= 1;
        }
    }
    for to in 0..sites.len() {
        let n = moved.iter().filter(|m| m.0 == to).count();
        if n == 0 {
            continue;
        }
        let sources: Vec<String> = (0..sites.len())
            .filter_map(|from| {
                let k = moved.iter().filter(|m| **m == (to, Some(from))).count();
                (k > 0).then(|| format!("{k} from {} ({})", sites[from].name, where_of(&sites[from])))
            })
            .collect();
        let sources = if sources.is_empty() { String::new() } else { format!(", taken {}", sources.join(" and ")) };
        why.push(format!(
            "instead of regular VMs, {n} spot in {} ({}), whose spot serves{sources}",
            sites[to].name,
            where_of(&sites[to])
        ));
    }
    why.insert(0, reason);

    // 2. Regular: added where it is cheapest, removed where it is dearest.
    let mut delta = i64::from(want_regular) - regular.iter().map(|&r| i64::from(r)).sum::<i64>();
    while delta != 0 {
        let pick = if delta > 0 {
            (0..sites.len())
                .filter(|&i| rooms[i].can_add(spot[i], regular[i], false))
                .min_by(|&a, &b| scores[a].1.total_cmp(&scores[b].1).then(regular[a].cmp(&regular[b])).then(a.cmp(&b)))
        } else {
            (0..sites.len())
                .filter(|&i| rooms[i].can_remove(spot[i], regular[i], false))
                .max_by(|&a, &b| scores[a].1.total_cmp(&scores[b].1).then(regular[a].cmp(&regular[b])).then(b.cmp(&a)))
        };
        let Some(i) = pick else { break };
        regular[i] = if delta > 0 { regular[i] + 1 } else { regular[i] - 1 };
        delta -= delta.signum();
    }
    // 3. Spot: added to fleets that deliver first, spread by score; removed from the
    // undelivered first, then where it weighs most.
    let mut delta = i64::from(want_spot) - spot.iter().map(|&s| i64::from(s)).sum::<i64>();
    let weight = |i: usize, n: u32| scores[i].0 * f64::from(n);
    while delta != 0 {
        let pick = if delta > 0 {
            let open = |i: &usize| rooms[*i].can_add(spot[*i], regular[*i], true);
            (0..sites.len())
                .filter(|i| open(i) && healthy[*i])
                .min_by(|&a, &b| weight(a, spot[a] + 1).total_cmp(&weight(b, spot[b] + 1)).then(a.cmp(&b)))
                .or_else(|| (0..sites.len()).find(open))
        } else {
            let open = |i: &usize| rooms[*i].can_remove(spot[*i], regular[*i], true);
            (0..sites.len())
                .filter(|i| open(i) && spot[*i] > delivering[*i])
                .max_by_key(|&i| (spot[i] - delivering[i], i))
                .or_else(|| {
                    (0..sites.len())
                        .filter(open)
                        .max_by(|&a, &b| weight(a, spot[a]).total_cmp(&weight(b, spot[b])).then(b.cmp(&a)))
                })
        };
        let Some(i) = pick else { break };
        spot[i] = if delta > 0 { spot[i] + 1 } else { spot[i] - 1 };
        delta -= delta.signum();
    }
    let targets: Vec<SiteTarget> = (0..sites.len())
        .filter_map(|i| {
            let sizes = if i == 0 { vm_sizes.clone() } else { None };
            let same = spot[i] == sites[i].fleet.spot.capacity && regular[i] == sites[i].fleet.regular.capacity;
            (!same || sizes.is_some()).then(|| SiteTarget { site: i, spot: spot[i], regular: regular[i], vm_sizes: sizes })
        })
        .collect();
    if targets.is_empty() {
        return ServicePlan::Hold(format!("{}; but the fleets' limits leave no room to move", why.join("; ")));
    }
    if sites.len() > 1 {
        let placed: Vec<String> = targets
            .iter()
            .map(|t| {
                let s = &sites[t.site];
                format!(
                    "{} spot {}→{}, regular {}→{}",
                    s.name, s.fleet.spot.capacity, t.spot, s.fleet.regular.capacity, t.regular
                )
            })
            .collect();
        why.push(format!("placed over {} fleets: {}", sites.len(), placed.join("; ")));
    }
    ServicePlan::Change { targets, why: why.join("; ") }
}

fn where_of(site: &Site) -> &str {
    if site.fleet.location.is_empty() { "region unknown" } else { &site.fleet.location }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [&str; 3] = ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"];

    fn site(name: &str, location: &str, spot: u32, regular: u32) -> Site {
        Site {
            name: name.into(),
            fleet: FleetView {
                spot: Tier { capacity: spot, running: spot, ..Tier::default() },
                regular: Tier { capacity: regular, running: regular, min_capacity: 1, ..Tier::default() },
                vm_sizes: SIZES.iter().map(|s| s.to_string()).collect(),
                location: location.into(),
            },
            limits: Limits {
                max_spot: Some(40),
                max_regular: Some(20),
                min_regular: Some(1),
                max_step_up: Some(10),
                max_step_down: Some(10),
                approval_above_delta: Some(8),
                ..Limits::default()
            },
        }
    }

    fn cpu(c: f64) -> Signals {
        Signals { cpu: Some(c), ..Signals::default() }
    }

    fn plan(sites: &[Site], signals: Signals) -> ServicePlan {
        plan_service(sites, &signals, &Band::default(), &PriceTable::embedded())
    }

    fn targets(p: &ServicePlan) -> Vec<(usize, u32, u32)> {
        match p {
            ServicePlan::Change { targets, .. } => targets.iter().map(|t| (t.site, t.spot, t.regular)).collect(),
            ServicePlan::Hold(why) => panic!("held: {why}"),
        }
    }

    #[test]
    fn the_service_is_sized_as_one_fleet_and_added_spot_is_spread() {
        // 20 + 10 spot and 2 + 1 regular at 80 % want 33 × 80 / 60 = 44: +11, but each fleet
        // may add 8 at most (its approval threshold), the combined decision 16.
        let sites = [site("east", "eastus", 20, 2), site("west", "westus2", 10, 1)];
        let t = targets(&plan(&sites, cpu(80.0)));
        let added: u32 = t.iter().map(|(i, s, r)| s + r - sites[*i].fleet.spot.capacity - sites[*i].fleet.regular.capacity).sum();
        assert_eq!(added, 11);
        // Same prices, same bands: the smaller fleet takes the spot, up to its approval threshold.
        assert_eq!(t, vec![(0, 23, 2), (1, 18, 1)]);
        // Inside the band: hold.
        assert!(matches!(plan(&sites, cpu(55.0)), ServicePlan::Hold(_)));
    }

    #[test]
    fn spot_that_a_region_does_not_deliver_moves_to_a_region_that_does() {
        // An eviction storm in eastus: 12 of its 20 spot VMs are gone and not replaced.
        let mut east = site("east", "eastus", 20, 2);
        east.fleet.spot.running = 8;
        let sites = [east, site("west", "westus2", 10, 1)];
        // 21 VMs serve at 80 %: 28 would bring it to 60 %. One fleet would backfill 7 regular
        // VMs; here they are spot in west, taken from east's undelivered target.
        let p = plan(&sites, cpu(80.0));
        let ServicePlan::Change { ref why, .. } = p else { panic!("{p:?}") };
        assert_eq!(targets(&p), vec![(0, 13, 2), (1, 17, 1)]);
        assert!(
            why.contains("instead of regular VMs, 7 spot in west (westus2), whose spot serves, taken 7 from east (eastus)"),
            "{why}"
        );
        // The move is sized by the load: inside the band nothing moves.
        assert!(matches!(plan(&sites, cpu(55.0)), ServicePlan::Hold(_)));
        // Under more load than the move covers, the service also scales out.
        let t = targets(&plan(&sites, cpu(95.0)));
        let total: u32 = t.iter().map(|x| x.1 + x.2).sum();
        assert!(total > 33, "{t:?}");
    }

    #[test]
    fn without_a_region_to_go_to_a_storm_is_backfilled_like_one_fleet() {
        let mut east = site("east", "eastus", 20, 2);
        east.fleet.spot.running = 8;
        let mut west = site("west", "westus2", 10, 1);
        west.fleet.spot.running = 4;
        let p = plan(&[east.clone(), west], cpu(80.0));
        let t = targets(&p);
        assert!(t.iter().all(|x| x.1 == [20, 10][x.0]), "no spot moves between two short fleets: {t:?}");
        let ServicePlan::Change { why, .. } = p else { unreachable!() };
        assert!(why.contains("backfilling"), "{why}");
        // One fleet alone is planned exactly as the single-fleet planner plans it.
        let one = plan(std::slice::from_ref(&east), cpu(80.0));
        let single = crate::planner::decide(&east.fleet, &east.limits, &cpu(80.0), &Band::default(), &PriceTable::embedded());
        let Decision::Scale { spot, regular, .. } = single else { panic!("{single:?}") };
        assert_eq!(targets(&one), vec![(0, spot, regular)]);
    }

    #[test]
    fn scale_in_takes_regular_above_the_floors_then_the_dearest_spot() {
        let sites = [site("east", "eastus", 20, 6), site("west", "westus2", 10, 1)];
        let t = targets(&plan(&sites, cpu(20.0)));
        // 37 at 20 % want 13: east gives up to 8 (its step), west up to 8; regular first.
        let (east, west) = (t.iter().find(|x| x.0 == 0).unwrap(), t.iter().find(|x| x.0 == 1).unwrap());
        assert_eq!(east.2, 1, "east's regular goes to its floor: {t:?}");
        assert_eq!(west.2, 1, "west's regular is at its floor: {t:?}");
        assert!(east.1 + east.2 >= 18 && west.1 + west.2 >= 3, "no fleet past its step: {t:?}");
        assert!(east.1 < 20 && west.1 < 10, "spot is cut where it is most: {t:?}");
    }

    #[test]
    fn a_fleet_in_the_storms_region_takes_no_spot_from_it() {
        // A second fleet in eastus, with no spot of its own, draws on the same dry pool: the
        // backfill stays regular.
        let mut east = site("east", "eastus", 20, 2);
        east.fleet.spot.running = 8;
        let p = plan(&[east, site("east-2", "EastUS", 0, 2)], cpu(80.0));
        let ServicePlan::Change { ref why, ref targets } = p else { panic!("{p:?}") };
        assert!(!why.contains("instead of regular VMs") && why.contains("backfilling"), "{why}");
        assert!(targets.iter().all(|t| t.spot == [20, 0][t.site]), "{targets:?}");
    }

    #[test]
    fn the_cheaper_region_takes_more_spot() {
        // West lists a size with no published band (scored as the riskiest): east takes more.
        let east = site("east", "eastus", 10, 1);
        let mut west = site("west", "westus2", 10, 1);
        west.fleet.vm_sizes = vec!["Standard_D4s_v3".into()];
        let t = targets(&plan(&[east, west], cpu(90.0)));
        let spot = |i| t.iter().find(|x| x.0 == i).map_or(10, |x| x.1);
        assert!(spot(0) > spot(1), "{t:?}");
    }

    #[test]
    fn combine_sums_the_fleets_and_leaves_open_what_any_leaves_open() {
        let mut west = site("west", "westus2", 10, 1);
        west.limits.max_spot = None;
        let (view, limits) = combine(&[site("east", "eastus", 20, 2), west]);
        assert_eq!((view.spot.capacity, view.regular.capacity, view.regular.min_capacity), (30, 3, 2));
        assert_eq!((limits.max_spot, limits.max_regular, limits.approval_above_delta), (None, Some(40), Some(16)));
        assert_eq!(view.location, "eastus");
    }

    proptest::proptest! {
        #[test]
        fn every_fleet_stays_within_its_own_limits(
            a in (0u32..40, 1u32..20, 0u32..40), b in (0u32..40, 1u32..20, 0u32..40), c in 0.0f64..100.0, step in 1u32..12
        ) {
            let mut sites = [site("east", "eastus", a.0, a.1), site("west", "westus2", b.0, b.1)];
            sites[0].fleet.spot.running = a.2.min(a.0);
            sites[1].fleet.spot.running = b.2.min(b.0);
            for s in &mut sites {
                s.limits.max_step_up = Some(step);
                s.limits.max_step_down = Some(step);
            }
            if let ServicePlan::Change { targets, .. } = plan(&sites, cpu(c)) {
                for t in targets {
                    let s = &sites[t.site];
                    // As the guardrails count: added and removed over both priorities.
                    let (ds, dr) = (i64::from(t.spot) - i64::from(s.fleet.spot.capacity), i64::from(t.regular) - i64::from(s.fleet.regular.capacity));
                    let added = ds.max(0) + dr.max(0);
                    let removed = (-ds).max(0) + (-dr).max(0);
                    proptest::prop_assert!(added <= i64::from(step) && removed <= i64::from(step), "{t:?} from {:?}", s.fleet);
                    proptest::prop_assert!(added + removed <= 8, "under the approval threshold: {t:?}");
                    proptest::prop_assert!(t.spot <= 40 && t.regular <= 20 && t.regular >= 1, "{t:?}");
                }
            }
        }
    }
}
