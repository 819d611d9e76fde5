//! The oracle: with the whole future known — demand and the spot weather — the cheapest way to
//! have enough VMs serving every minute to meet the SLA, under the model of [`crate::sim`].
//!
//! By decomposition: the minute-by-minute need `n(t) = ceil(demand / (rate × SLA
//! utilization))` is split into layers (layer k is needed in the minutes where `n(t) ≥ k`),
//! VMs are interchangeable, and each layer is solved exactly by a dynamic program over the
//! minutes with states off / spot / regular: a VM that starts serving at t was ordered (and
//! billed) `boot` minutes before, and a spot VM can only be ordered while the pool has spot;
//! idle VMs may be kept between needs when that is cheaper than rebooting. Layers that run when
//! the trace starts (`n(0)`, and the regular floor) need no boot.
//!
//! Spot VMs are never evicted here: a spot layer serves on through a storm (no new spot can be
//! ordered while the pool is dry). The model evicts a share of the running spot every minute,
//! and whether those evictions fall on one layer or another depends on how many VMs all the
//! layers run, which no layer-wise program can know. So the oracle is exact when spot is not
//! evicted and a **lower bound** otherwise: no schedule that serves every minute in the model
//! costs less, and `cost_vs_oracle` never flatters a policy.

use crate::sim::{SimConfig, Weather};

const OFF: usize = 0;
const SPOT: usize = 1;
const REG: usize = 2;

/// The oracle's total cost (USD) and its serving VMs per minute, with a minute's need at the
/// model's SLA: `ceil(demand / (rate × SLA utilization))` VMs.
pub fn oracle(demand: &[f64], weather: &Weather, config: &SimConfig) -> (f64, Vec<u32>) {
    let n: Vec<u32> = demand.iter().map(|d| (d / (config.vm_rate * config.sla_utilization)).ceil().max(0.0) as u32).collect();
    oracle_for_needs(&n, weather, config)
}

/// The oracle for a given need per minute (VMs serving), e.g. from another SLA model.
pub fn oracle_for_needs(n: &[u32], weather: &Weather, config: &SimConfig) -> (f64, Vec<u32>) {
    let minutes = n.len();
    if minutes == 0 {
        return (0.0, Vec::new());
    }
    let layers = n.iter().copied().max().unwrap_or(0).max(config.min_regular);
    let price = [0.0, config.spot_usd_hour / 60.0, config.regular_usd_hour / 60.0];
    let boot = config.boot_minutes;
    // A spot VM serving first at t was ordered at t − boot (before the trace: as at its start).
    let orderable = |t: usize| weather.available.get(t.saturating_sub(boot)).copied().unwrap_or(true);
    let mut total = 0.0;
    let mut serving = vec![0u32; minutes];
    for k in 1..=layers {
        // The regular floor's layers are always on, as regular.
        let required = |t: usize| n[t] >= k || k <= config.min_regular;
        let floor_layer = k <= config.min_regular;
        // What runs before the first minute: the floor, and the layers minute 0 needs.
        let initial = |s: usize| s == OFF || (s == REG && floor_layer) || (s == SPOT && !floor_layer && n[0] >= k);
        // cost[s]: cheapest cost of minutes 0..=t ending in state s.
        let mut cost = [f64::INFINITY; 3];
        let mut back: Vec<[usize; 3]> = Vec::with_capacity(minutes);
        for t in 0..minutes {
            let mut next = [f64::INFINITY; 3];
            let mut from = [OFF; 3];
            for s in [OFF, SPOT, REG] {
                if s == OFF && required(t) || s == SPOT && floor_layer {
                    continue;
                }
                for p in [OFF, SPOT, REG] {
                    let before = if t == 0 { if initial(p) { 0.0 } else { f64::INFINITY } } else { cost[p] };
                    if !before.is_finite() || s == SPOT && p != SPOT && !orderable(t) {
                        continue;
                    }
                    // Starting (or switching to) a type pays its boot minutes first.
                    let start = if s != OFF && s != p { boot as f64 * price[s] } else { 0.0 };
                    let c = before + start + price[s];
                    if c < next[s] {
                        next[s] = c;
                        from[s] = p;
                    }
                }
            }
            cost = next;
            back.push(from);
        }
        let (mut s, best) =
            [OFF, SPOT, REG].iter().map(|s| (*s, cost[*s])).min_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((OFF, 0.0));
        total += best;
        for t in (0..minutes).rev() {
            if s != OFF {
                serving[t] += 1;
            }
            s = back[t][s];
        }
    }
    ((total * 100.0).round() / 100.0, serving)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SimConfig {
        SimConfig {
            vm_rate: 10.0,
            boot_minutes: 2,
            sla_utilization: 1.0,
            regular_usd_hour: 60.0,
            spot_usd_hour: 6.0,
            min_regular: 0,
            max_total: 100,
        }
    }

    fn calm(minutes: usize) -> Weather {
        Weather { eviction: vec![0.0; minutes], available: vec![true; minutes] }
    }

    #[test]
    fn one_vm_for_the_whole_trace_on_spot() {
        // One VM needed for 10 minutes, spot at $0.1/min: 10 × 0.1 (it runs from the start).
        let (cost, serving) = oracle(&[10.0; 10], &calm(10), &config());
        assert!((cost - 1.0).abs() < 1e-9, "{cost}");
        assert_eq!(serving, vec![1; 10]);
    }

    #[test]
    fn a_short_gap_is_bridged_and_a_long_one_is_not() {
        // Need, 1-minute gap, need: keeping the VM (0.1) beats rebooting (2 × 0.1 + 0.1).
        let (bridged, _) = oracle(&[10.0, 10.0, 0.0, 10.0], &calm(4), &config());
        assert!((bridged - 0.4).abs() < 1e-9, "{bridged}");
        // A 5-minute gap: release and reboot (2 boot minutes) beats 5 idle minutes.
        let d = [10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0];
        let (released, serving) = oracle(&d, &calm(7), &config());
        assert!((released - (0.1 + 0.2 + 0.1)).abs() < 1e-9, "{released}");
        assert_eq!(serving, vec![1, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn spot_serves_through_a_storm_but_is_not_ordered_while_the_pool_is_dry() {
        // The pool is dry in minutes 3–4: the spot VM running serves on (evictions are not
        // charged: the oracle is a lower bound there).
        let storm = Weather {
            eviction: vec![0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0],
            available: vec![true, true, true, false, false, true, true],
        };
        let (cost, serving) = oracle(&[10.0; 7], &storm, &config());
        assert!((cost - 0.7).abs() < 1e-9, "{cost}");
        assert_eq!(serving, vec![1; 7]);
        // Needed from minute 5 only, with the pool dry in minutes 1–3: a spot VM serving at 5
        // would have been ordered at 3. Ordered at 0 it serves from 2, idle until 5: 0.2 boot
        // and 5 minutes, cheaper than regular from 5 (2 boot and 2 minutes at $1).
        let dry = Weather { eviction: vec![0.0; 7], available: vec![true, false, false, false, true, true, true] };
        let (cost, serving) = oracle(&[0.0, 0.0, 0.0, 0.0, 0.0, 10.0, 10.0], &dry, &config());
        assert!((cost - 0.7).abs() < 1e-9, "{cost}");
        assert_eq!(serving, vec![0, 0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_layer_not_running_at_the_start_boots_and_an_empty_trace_costs_nothing() {
        // Needed in minute 1 only: ordered before the trace, 2 boot minutes billed, 1 serving.
        let (cost, _) = oracle(&[0.0, 10.0], &calm(2), &config());
        assert!((cost - 0.3).abs() < 1e-9, "{cost}");
        let floor = SimConfig { min_regular: 1, ..config() };
        assert_eq!(oracle(&[], &calm(0), &floor), (0.0, Vec::new()));
    }

    #[test]
    fn layers_add_up() {
        let (one, _) = oracle(&[10.0; 5], &calm(5), &config());
        let (three, serving) = oracle(&[30.0; 5], &calm(5), &config());
        assert!((three - 3.0 * one).abs() < 1e-9);
        assert_eq!(serving, vec![3; 5]);
    }
}
