//! How close can a policy that does not know the future come to the oracle? The best policy of
//! a simple family, tuned *with hindsight*: capacity for the highest demand of the last
//! `window` minutes times a headroom factor, re-sized every minute, no guardrails, no
//! stabilization, with the factor chosen as the smallest (in steps of 0.01, up to 4) whose run
//! meets the SLA in at least 99.5 % of minutes on that very trace. It runs in the policy crate's
//! model on the same demand, weather and prices as `fleetpilot eval policies --engine model`.
//!
//! Then a bound for a far better informed policy: one told, for every minute, the mean demand
//! of the minutes around it (`half` before and `half` after, the future included, the minute
//! itself excluded), whose capacity is any function of that rate — chosen with hindsight on the
//! trace itself, exactly, over 24 rate bands — with no boots, storms, guardrails or regular
//! backfill to pay for: every VM above the regular floor at the spot price. Its cost over the
//! oracle's is a lower bound on `cost_vs_oracle` for every policy whose capacity follows the
//! local rate of demand and meets 99.5 % of minutes.
//!
//! ```sh
//! cargo run --release --example headroom_bound -- ../shared/data/demand/azure_llm_2023_conv.csv
//! ```

use fleetpilot_policy::sim::{self, Observation, Policy};

struct Headroom {
    factor: f64,
    window: usize,
}

impl Policy for Headroom {
    fn name(&self) -> &'static str {
        "headroom"
    }
    fn decide(&mut self, obs: &Observation<'_>) -> (u32, u32) {
        let h = obs.demand_history;
        if h.is_empty() {
            return obs.target;
        }
        let recent = h[h.len().saturating_sub(self.window)..].iter().copied().fold(0.0, f64::max);
        let c = obs.config;
        let total = ((recent * self.factor) / (c.vm_rate * c.sla_utilization)).ceil().max(1.0) as u32;
        (total.saturating_sub(c.min_regular), c.min_regular)
    }
}

/// Bands of the local rate the rate-informed capacity may differ between.
const BANDS: usize = 24;
/// With fewer minutes, each band holds too few for its capacity to be more than that band's
/// own hindsight (and none may be missed): the bound says nothing.
const MIN_MINUTES_FOR_BANDS: usize = 1440;

/// The cheapest cost (USD) of capacity that depends only on each minute's local rate (the mean
/// demand of `half` minutes either side, the minute excluded) and leaves at most `misses`
/// minutes short of `need`: exact over [`BANDS`] equal-count bands of that rate, by a dynamic
/// program over the misses spent in each band. Boots, storms and backfill cost nothing here.
fn rate_informed_cost(demand: &[f64], need: &[u32], half: usize, misses: usize, config: &sim::SimConfig) -> f64 {
    let rate = |t: usize| {
        let around: Vec<f64> =
            (t.saturating_sub(half)..(t + half + 1).min(demand.len())).filter(|u| *u != t).map(|u| demand[u]).collect();
        around.iter().sum::<f64>() / around.len().max(1) as f64
    };
    let mut minutes: Vec<(f64, u32)> = (0..demand.len()).map(|t| (rate(t), need[t])).collect();
    minutes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let floor = config.min_regular.max(1);
    let minute_cost = |vms: u32| {
        (f64::from(config.min_regular) * config.regular_usd_hour
            + f64::from(vms.saturating_sub(config.min_regular)) * config.spot_usd_hour)
            / 60.0
    };
    // best[m]: the cheapest cost of the bands so far with m minutes missed.
    let mut best = vec![0.0; misses + 1];
    for band in minutes.chunks(minutes.len().div_ceil(BANDS).max(1)) {
        let mut needs: Vec<u32> = band.iter().map(|(_, n)| *n).collect();
        needs.sort_unstable();
        let mut next = vec![f64::INFINITY; misses + 1];
        for vms in floor..=needs.last().copied().unwrap_or(0).max(floor) {
            let missed = needs.len() - needs.partition_point(|n| *n <= vms);
            if missed > misses {
                continue;
            }
            let cost = band.len() as f64 * minute_cost(vms);
            for m in 0..=misses - missed {
                next[m + missed] = next[m + missed].min(best[m] + cost);
            }
        }
        best = next;
    }
    best.into_iter().fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: headroom_bound TRACE...");
        std::process::exit(2);
    }
    for path in paths {
        let trace = fleetpilot_emulator::traces::load(std::path::Path::new(&path), &Default::default())?;
        let demand = trace.measured();
        // The evaluation's model, weather and opening fleet.
        let config = sim::eval_config(demand);
        let weather = sim::eval_weather(demand.len(), 7);
        let (oracle, _) = fleetpilot_policy::oracle::oracle(demand, &weather, &config);
        let initial = sim::opening_fleet(demand, &config);
        for window in [1, 3, 10] {
            let found = (0..=300).map(|i| 1.0 + f64::from(i) * 0.01).find_map(|factor| {
                let mut policy = Headroom { factor, window };
                let out = sim::run(&mut policy, demand, &weather, &config, initial, 5, &mut sim::unguarded());
                (out.sla_met_pct >= 99.5).then(|| (factor, out.cost_usd / oracle, out.sla_met_pct))
            });
            match found {
                Some((factor, ratio, sla)) => println!(
                    "{path}: window {window:>2} min, factor {factor:.2}: cost_vs_oracle {ratio:.3}, sla_met_pct {sla:.2}"
                ),
                None => println!("{path}: window {window:>2} min: no factor up to 4 meets the SLA in 99.5 % of minutes"),
            }
        }
        if demand.len() < MIN_MINUTES_FOR_BANDS {
            println!("{path}: under a day of minutes: too few for the rate-informed bound");
            continue;
        }
        let need: Vec<u32> =
            demand.iter().map(|d| (d / (config.vm_rate * config.sla_utilization)).ceil().max(0.0) as u32).collect();
        let misses = demand.len() / 200;
        for half in [1, 2, 5, 30] {
            let cost = rate_informed_cost(demand, &need, half, misses, &config);
            println!(
                "{path}: told the mean demand of {half} minute(s) either side: cost_vs_oracle at least {:.3}",
                cost / oracle
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_informed_cost_spends_its_misses_where_they_save_most() {
        // Spot at $0.1 a VM-minute, no floor; 48 minutes (24 bands of 2) needing 2 VMs, one
        // minute needing 5.
        let config = sim::SimConfig {
            vm_rate: 1.0,
            boot_minutes: 2,
            sla_utilization: 1.0,
            regular_usd_hour: 60.0,
            spot_usd_hour: 6.0,
            min_regular: 0,
            max_total: 100,
        };
        let mut demand = vec![2.0; 48];
        demand[10] = 5.0;
        let need: Vec<u32> = demand.iter().map(|d| *d as u32).collect();
        // No miss allowed: the burst's band of two minutes holds 5 VMs.
        let exact = rate_informed_cost(&demand, &need, 1, 0, &config);
        assert!((exact - (48.0 * 0.2 + 2.0 * 0.3)).abs() < 1e-9, "{exact}");
        // One miss allowed: spent on the burst, 2 VMs throughout.
        let spent = rate_informed_cost(&demand, &need, 1, 1, &config);
        assert!((spent - 48.0 * 0.2).abs() < 1e-9, "{spent}");
    }
}
