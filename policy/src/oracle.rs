//! The oracle: with the whole future known — demand and the spot weather — the cheapest way to
//! have enough VMs serving every minute to meet the SLA, under the model of [`crate::sim`].
//!
//! Exact by decomposition: the minute-by-minute need `n(t) = ceil(demand / (rate × SLA
//! utilization))` is split into layers (layer k is needed in the minutes where `n(t) ≥ k`),
//! VMs are interchangeable, and each layer is solved by a dynamic program over the minutes
//! with states off / spot / regular: a VM that starts serving at t was ordered (and billed)
//! `boot` minutes before; a spot VM cannot serve through a storm (the oracle knows storms
//! evict everything and that the pool is dry), so spot layers switch to regular ahead of one;
//! idle VMs may be kept between needs when that is cheaper than rebooting.

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
    let layers = n.iter().copied().max().unwrap_or(0).max(config.min_regular);
    let price = [0.0, config.spot_usd_hour / 60.0, config.regular_usd_hour / 60.0];
    let boot = config.boot_minutes as f64;
    let calm = |t: usize| {
        weather.available[t] && weather.eviction[t] <= weather.eviction.iter().copied().fold(f64::INFINITY, f64::min) * 1.0001
    };
    let minutes = n.len();
    let mut total = 0.0;
    let mut serving = vec![0u32; minutes];
    for k in 1..=layers {
        // The regular floor's layers are always on, as regular.
        let required = |t: usize| n[t] >= k || k <= config.min_regular;
        let floor_layer = k <= config.min_regular;
        // cost[s]: cheapest cost of minutes 0..=t ending in state s.
        let mut cost = [f64::INFINITY; 3];
        let mut back: Vec<[usize; 3]> = Vec::with_capacity(minutes);
        for t in 0..minutes {
            let mut next = [f64::INFINITY; 3];
            let mut from = [OFF; 3];
            for s in [OFF, SPOT, REG] {
                if s == OFF && required(t) || s == SPOT && (floor_layer || !calm(t)) {
                    continue;
                }
                for p in [OFF, SPOT, REG] {
                    let before = if t == 0 {
                        if p == OFF || (p == REG && floor_layer) || (p == SPOT && n[0] >= k) { 0.0 } else { f64::INFINITY }
                    } else {
                        cost[p]
                    };
                    if !before.is_finite() {
                        continue;
                    }
                    // Starting (or switching to) a type pays its boot minutes first.
                    let start = if s != OFF && s != p && t > 0 { boot * price[s] } else { 0.0 };
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
    fn a_storm_moves_the_layer_to_regular_in_time() {
        // Spot is dry in minutes 3–4: those minutes are served by regular ($1/min), which
        // boots 2 minutes ahead ($2); spot resumes after, rebooting ($0.2).
        let weather = Weather {
            eviction: vec![0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0],
            available: vec![true, true, true, false, false, true, true],
        };
        let (cost, _) = oracle(&[10.0; 7], &weather, &config());
        let expected = 3.0 * 0.1 + (2.0 + 2.0 * 1.0) + (0.2 + 2.0 * 0.1);
        assert!((cost - expected).abs() < 1e-9, "{cost} vs {expected}");
    }

    #[test]
    fn layers_add_up() {
        let (one, _) = oracle(&[10.0; 5], &calm(5), &config());
        let (three, serving) = oracle(&[30.0; 5], &calm(5), &config());
        assert!((three - 3.0 * one).abs() < 1e-9);
        assert_eq!(serving, vec![3; 5]);
    }
}
