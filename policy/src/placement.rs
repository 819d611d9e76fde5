//! Placement across regions: when more than one fleet serves a service (a fleet per region,
//! each behind a load balancer that routes by capacity), the service is sized as one fleet
//! ([`crate::planner::decide`] on the fleets [`combine`]d) and the capacity is then placed
//! fleet by fleet ([`plan_service`]):
//!
//! - **Spot moves away from a region that is evicting.** Spot that a fleet does not deliver
//!   (evicted and not replaced because the region's pool is dry, or deallocated) is re-homed
//!   to fleets whose spot serves, as far as their limits allow: SkyPilot's `EAGER_NEXT_REGION`
//!   (a region that preempts tends to preempt again) and SpotHedge's spread over failure
//!   domains. What no other fleet can take stays where it is, waiting for the pool, and the
//!   service's decision backfills it with regular VMs as a single fleet's would.
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
//!   under its approval threshold; the guardrails check each fleet's change on its own.
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

/// How far one fleet may move in one change, and its bounds.
#[derive(Debug, Clone, Copy)]
struct Room {
    spot: (u32, u32),
    regular: (u32, u32),
    up: u32,
    down: u32,
}

impl Room {
    fn of(site: &Site) -> Self {
        let (f, l) = (&site.fleet, &site.limits);
        let total = f.spot.capacity + f.regular.capacity;
        let step = |absolute: Option<u32>, percent: Option<f64>| {
            let mut limit = absolute.unwrap_or(u32::MAX);
            if let Some(pc) = percent {
                limit = limit.min(((f64::from(total) * pc / 100.0).floor() as u32).max(1));
            }
            l.approval_above_delta.map_or(limit, |a| limit.min(a.max(1)))
        };
        let min_spot = l.min_spot.unwrap_or(0).max(f.spot.min_capacity);
        let min_regular = l.min_regular.unwrap_or(0).max(f.regular.min_capacity);
        Self {
            spot: (min_spot, l.max_spot.unwrap_or(u32::MAX).max(min_spot)),
            regular: (min_regular, l.max_regular.unwrap_or(u32::MAX).max(min_regular)),
            up: step(l.max_step_up, l.max_step_up_percent),
            down: step(l.max_step_down, l.max_step_down_percent),
        }
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
        .map(|i| i.price(Priority::Regular) / f64::from(if i.gpus > 0 { i.gpus } else { i.vcpus }.max(1)))
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
    let rooms: Vec<Room> = sites.iter().map(Room::of).collect();
    let scores: Vec<(f64, f64)> = sites.iter().map(|s| prices_of(prices, s)).collect();
    let mut spot: Vec<u32> = sites.iter().map(|s| s.fleet.spot.capacity).collect();
    let mut regular: Vec<u32> = sites.iter().map(|s| s.fleet.regular.capacity).collect();
    // Spot that serves or boots; spot moved in counts (it boots), as in the decision below.
    let mut delivering: Vec<u32> = sites.iter().map(|s| s.fleet.spot.running + s.fleet.spot.creating).collect();
    // A fleet is short while it has spot that does not serve; only fleets that deliver all
    // their spot (as read) take spot from others or new spot before the rest.
    let healthy: Vec<bool> = sites.iter().enumerate().map(|(i, s)| s.fleet.spot.capacity <= delivering[i]).collect();
    let short = |i: usize, spot: &[u32], delivering: &[u32]| !healthy[i] && spot[i] > delivering[i];
    let up_left = |i: usize, spot: &[u32], regular: &[u32]| {
        let (s0, r0) = (sites[i].fleet.spot.capacity, sites[i].fleet.regular.capacity);
        rooms[i].up.saturating_sub((spot[i] + regular[i]).saturating_sub(s0 + r0))
    };
    let down_left = |i: usize, spot: &[u32], regular: &[u32]| {
        let (s0, r0) = (sites[i].fleet.spot.capacity, sites[i].fleet.regular.capacity);
        rooms[i].down.saturating_sub((s0 + r0).saturating_sub(spot[i] + regular[i]))
    };

    // 1. Re-home spot that a fleet does not deliver to fleets whose spot serves.
    let mut moved = Vec::new();
    for from in 0..sites.len() {
        while short(from, &spot, &delivering) && spot[from] > rooms[from].spot.0 && down_left(from, &spot, &regular) > 0 {
            let to = (0..sites.len())
                .filter(|&j| j != from && healthy[j])
                .filter(|&j| spot[j] < rooms[j].spot.1 && up_left(j, &spot, &regular) > 0)
                .min_by(|&a, &b| {
                    (scores[a].0 * f64::from(spot[a] + 1)).total_cmp(&(scores[b].0 * f64::from(spot[b] + 1))).then(a.cmp(&b))
                });
            let Some(to) = to else { break };
            spot[from] -= 1;
            spot[to] += 1;
            delivering[to] += 1;
            moved.push((from, to));
        }
    }
    let mut why = Vec::new();
    for from in 0..sites.len() {
        for to in 0..sites.len() {
            let n = moved.iter().filter(|m| **m == (from, to)).count();
            if n > 0 {
                why.push(format!(
                    "{} of {}'s spot VMs are not serving ({}): moving {n} spot to {} ({})",
                    sites[from].fleet.spot.capacity.saturating_sub(delivering[from]),
                    sites[from].name,
                    where_of(&sites[from]),
                    sites[to].name,
                    where_of(&sites[to])
                ));
            }
        }
    }

    // 2. The service's decision, on the fleets as they will be (moved spot boots: it counts as
    // delivering, so the decision does not also backfill it with regular VMs).
    let adjusted: Vec<Site> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            let gained = spot[i].saturating_sub(s.fleet.spot.capacity);
            s.fleet.spot.capacity = spot[i];
            s.fleet.spot.creating += gained;
            s
        })
        .collect();
    let (view, limits) = combine(&adjusted);
    let decision = crate::planner::decide(&view, &limits, signals, band, prices);
    let mut vm_sizes = None;
    match decision {
        Decision::Hold(reason) if moved.is_empty() => return ServicePlan::Hold(reason),
        Decision::Hold(reason) => why.push(format!("otherwise {reason}")),
        Decision::Scale { spot: want_spot, regular: want_regular, vm_sizes: sizes, why: reason } => {
            vm_sizes = sizes;
            why.push(reason);
            // 3. Regular: added where it is cheapest, removed where it is dearest.
            let mut delta = i64::from(want_regular) - regular.iter().map(|&r| i64::from(r)).sum::<i64>();
            while delta != 0 {
                let pick = if delta > 0 {
                    (0..sites.len())
                        .filter(|&i| regular[i] < rooms[i].regular.1 && up_left(i, &spot, &regular) > 0)
                        .min_by(|&a, &b| scores[a].1.total_cmp(&scores[b].1).then(regular[a].cmp(&regular[b])).then(a.cmp(&b)))
                } else {
                    (0..sites.len())
                        .filter(|&i| regular[i] > rooms[i].regular.0 && down_left(i, &spot, &regular) > 0)
                        .max_by(|&a, &b| scores[a].1.total_cmp(&scores[b].1).then(regular[a].cmp(&regular[b])).then(b.cmp(&a)))
                };
                let Some(i) = pick else { break };
                if delta > 0 {
                    regular[i] += 1;
                    delta -= 1;
                } else {
                    regular[i] -= 1;
                    delta += 1;
                }
            }
            // 4. Spot: spread by score; removed from the undelivered first, then the dearest.
            let mut delta = i64::from(want_spot) - spot.iter().map(|&s| i64::from(s)).sum::<i64>();
            while delta != 0 {
                let weight = |i: usize, n: u32| scores[i].0 * f64::from(n);
                let pick = if delta > 0 {
                    let open = |i: &usize| spot[*i] < rooms[*i].spot.1 && up_left(*i, &spot, &regular) > 0;
                    // Fleets that deliver their spot first; a fleet that is short only when no other can.
                    (0..sites.len())
                        .filter(|i| open(i) && healthy[*i])
                        .min_by(|&a, &b| weight(a, spot[a] + 1).total_cmp(&weight(b, spot[b] + 1)).then(a.cmp(&b)))
                        .or_else(|| (0..sites.len()).find(open))
                } else {
                    let open = |i: &usize| spot[*i] > rooms[*i].spot.0 && down_left(*i, &spot, &regular) > 0;
                    (0..sites.len())
                        .filter(|i| open(i) && short(*i, &spot, &delivering))
                        .max_by_key(|&i| (spot[i] - delivering[i], i))
                        .or_else(|| {
                            (0..sites.len())
                                .filter(open)
                                .max_by(|&a, &b| weight(a, spot[a]).total_cmp(&weight(b, spot[b])).then(b.cmp(&a)))
                        })
                };
                let Some(i) = pick else { break };
                if delta > 0 {
                    spot[i] += 1;
                    delta -= 1;
                } else {
                    spot[i] -= 1;
                    delta += 1;
                }
            }
        }
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
    let placed: Vec<String> = targets
        .iter()
        .map(|t| {
            let s = &sites[t.site];
            format!("{} spot {}→{}, regular {}→{}", s.name, s.fleet.spot.capacity, t.spot, s.fleet.regular.capacity, t.regular)
        })
        .collect();
    why.push(format!("placed over {} fleets: {}", sites.len(), placed.join("; ")));
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
        let p = plan(&sites, cpu(55.0));
        let ServicePlan::Change { ref why, .. } = p else { panic!("{p:?}") };
        // The step limits (8 per fleet) bound the move; no regular backfill for what moved.
        assert_eq!(targets(&p), vec![(0, 12, 2), (1, 18, 1)]);
        assert!(why.contains("moving 8 spot to west (westus2)"), "{why}");
        // Under more load than the moved spot covers, the service scales out on top of the move.
        let t = targets(&plan(&sites, cpu(95.0)));
        let total: u32 = t.iter().map(|x| x.1 + x.2).sum();
        assert!(total > 33, "{t:?}");
        assert_eq!(t.iter().find(|x| x.0 == 1).map(|x| x.1), Some(18), "{t:?}");
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
                    let before = s.fleet.spot.capacity + s.fleet.regular.capacity;
                    let after = t.spot + t.regular;
                    proptest::prop_assert!(after.abs_diff(before) <= step, "{t:?} from {before}");
                    proptest::prop_assert!(t.spot <= 40 && t.regular <= 20 && t.regular >= 1, "{t:?}");
                }
            }
        }
    }
}
