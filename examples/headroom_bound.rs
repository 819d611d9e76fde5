//! How close can a policy that does not know the future come to the oracle? The best policy of
//! a simple family, tuned *with hindsight*: capacity for the highest demand of the last
//! `window` minutes times a headroom factor, re-sized every minute, no guardrails, no
//! stabilization, with the factor chosen as the smallest (in steps of 0.01, up to 4) whose run
//! meets the SLA in at least 99.5 % of minutes on that very trace. It runs in the policy crate's
//! model on the same demand, weather and prices as `fleetpilot eval policies --engine model`.
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
    }
    Ok(())
}
