//! `fleetpilot eval policies`: every policy (fleetpilot's, the baselines, the oracle) over
//! every trace, on the same demand and the same spot weather, in the emulator's stepped world
//! (see `eval_emulated`) or the policy crate's minute-level fleet model; a table or JSON, and
//! an SVG plot per trace.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use fleetpilot_policy::policies::{AgentPlanner, Fleetpilot, Hpa, RecipeRule, SpotHedge, StaticPeak};
use fleetpilot_policy::sim::{self, Outcome, Policy, SimConfig, Weather};
use serde_json::{Value, json};

/// Every policy name, in table order.
pub const POLICIES: [&str; 7] = ["fleetpilot", "agent-planner", "recipe-rule", "hpa", "static-peak", "spothedge", "oracle"];

/// The baseline policies, in table order.
pub const BASELINES: [&str; 4] = ["recipe-rule", "hpa", "static-peak", "spothedge"];

/// A policy by its name: `fleetpilot` or a baseline (`None` for the oracle or an unknown
/// name). `peak` is what static provisioning sizes for.
fn policy_named(name: &str, peak: f64, config: &SimConfig) -> Option<Box<dyn Policy>> {
    Some(match name {
        "fleetpilot" => Box::new(Fleetpilot::under(&sim::eval_rules(config))),
        "agent-planner" => Box::new(AgentPlanner::new(&sim::eval_rules(config))),
        "recipe-rule" => Box::new(RecipeRule),
        "hpa" => Box::new(Hpa::default()),
        "static-peak" => Box::new(StaticPeak::new(peak, config.vm_rate, config.sla_utilization)),
        "spothedge" => Box::new(SpotHedge),
        _ => return None,
    })
}

/// Run the policy named over `demand` and `weather` in the policy crate's model, under the
/// evaluation's guardrail rules (5-minute stabilization): static provisioning from its own
/// size (the peak), the others from `initial` (spot, regular). `None` for the oracle or an
/// unknown name.
pub fn run_policy(name: &str, demand: &[f64], weather: &Weather, config: &SimConfig, initial: (u32, u32)) -> Option<Outcome> {
    run_on(Engine::Model, name, demand, weather, config, initial, 0)
}

/// [`run_policy`] on an engine; `seed` seeds the emulator's world.
fn run_on(
    engine: Engine,
    name: &str,
    demand: &[f64],
    weather: &Weather,
    config: &SimConfig,
    initial: (u32, u32),
    seed: u64,
) -> Option<Outcome> {
    let peak = demand.iter().copied().fold(0.0, f64::max);
    let mut policy = policy_named(name, peak, config)?;
    let start = if name == "static-peak" { policy.decide(&first_observation(config)) } else { initial };
    let mut guard = sim::guardrails(sim::eval_rules(config));
    Some(match engine {
        Engine::Model => sim::run(policy.as_mut(), demand, weather, config, start, 5, &mut guard),
        Engine::Emulator => {
            let mut fleet = crate::eval_emulated::EmulatedFleet::new(demand, weather, config, start, seed);
            sim::drive(policy.as_mut(), &mut fleet, demand.len(), config, start, 5, &mut guard)
        }
    })
}

/// Where the policies' targets are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The emulator's world, stepped minute by minute.
    Emulator,
    /// The policy crate's minute-level model.
    Model,
}

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A table per trace.
    Table,
    /// `{"traces":[{"trace":…, "policies":[…]}]}`.
    Json,
}

/// What to run.
#[derive(Debug)]
pub struct EvalOptions {
    pub traces: Vec<PathBuf>,
    pub policies: Vec<String>,
    pub format: Format,
    pub plot: Option<PathBuf>,
    pub seed: u64,
    pub engine: Engine,
}

/// Named series of serving VMs per minute, for the plot.
type Series = Vec<(String, Vec<u32>)>;

/// Run the policies named (all when empty) over one demand series.
pub fn evaluate(name: &str, demand: &[f64], policies: &[String], seed: u64, engine: Engine) -> Result<(Value, Series)> {
    if demand.is_empty() {
        bail!("trace {name} has no minutes");
    }
    let config = sim::eval_config(demand);
    let weather = sim::eval_weather(demand.len(), seed);
    let want = |p: &str| policies.is_empty() || policies.iter().any(|q| q == p);
    let (oracle_cost, oracle_serving) = match engine {
        Engine::Model => fleetpilot_policy::oracle::oracle(demand, &weather, &config),
        Engine::Emulator => {
            let needs: Vec<u32> = demand.iter().map(|d| crate::eval_emulated::need(*d, &config)).collect();
            fleetpilot_policy::oracle::oracle_for_needs(&needs, &weather, &config)
        }
    };
    let initial = sim::opening_fleet(demand, &config);
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for policy_name in POLICIES {
        if !want(policy_name) || policy_name == "oracle" {
            continue;
        }
        let Some(outcome) = run_on(engine, policy_name, demand, &weather, &config, initial, seed) else { continue };
        series.push((policy_name.to_string(), outcome.serving.clone()));
        rows.push(json!({
            "policy": policy_name,
            "cost_usd": outcome.cost_usd,
            "cost_vs_oracle": round3(outcome.cost_usd / oracle_cost.max(1e-9)),
            "sla_met_pct": round3(outcome.sla_met_pct),
            "unserved_pct": round3(outcome.unserved_pct),
            "actions": outcome.actions,
            "flaps": outcome.flaps,
            "mean_slack_pct": round3(outcome.mean_slack_pct),
            "denied": outcome.denied,
        }));
    }
    if want("oracle") {
        let changes = oracle_serving.windows(2).filter(|w| w[0] != w[1]).count();
        let slack: Vec<f64> = demand
            .iter()
            .zip(&oracle_serving)
            .filter(|(_, s)| **s > 0)
            .map(|(d, s)| (1.0 - d / (f64::from(*s) * config.vm_rate)).max(0.0))
            .collect();
        rows.push(json!({
            "policy": "oracle",
            "cost_usd": oracle_cost,
            "cost_vs_oracle": 1.0,
            "sla_met_pct": 100.0,
            "unserved_pct": 0.0,
            "actions": changes,
            "flaps": 0,
            "mean_slack_pct": round3(100.0 * slack.iter().sum::<f64>() / slack.len().max(1) as f64),
            "denied": 0,
        }));
        series.push(("oracle".into(), oracle_serving));
    }
    let needed: Vec<u32> = demand.iter().map(|d| (d / config.vm_rate).ceil() as u32).collect();
    series.insert(0, ("demand (VMs at 100 %)".into(), needed));
    let storms = weather.available.iter().filter(|a| !**a).count();
    let engine = match engine {
        Engine::Emulator => "emulator",
        Engine::Model => "model",
    };
    Ok((json!({"trace": name, "engine": engine, "minutes": demand.len(), "storm_minutes": storms, "policies": rows}), series))
}

fn first_observation(config: &SimConfig) -> sim::Observation<'_> {
    sim::Observation {
        t: 0,
        demand_history: &[],
        running: (0, 0),
        booting: (0, 0),
        target: (0, 0),
        evicted: 0,
        spot_available: true,
        config,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An SVG line chart: one line per series, downsampled to at most 1,500 points.
fn svg(title: &str, series: &Series) -> String {
    let (w, h, pad) = (1200.0, 420.0, 40.0);
    let n = series.iter().map(|(_, s)| s.len()).max().unwrap_or(1).max(2);
    let max = series.iter().flat_map(|(_, s)| s.iter()).copied().max().unwrap_or(1).max(1) as f64;
    let every = n.div_ceil(1500).max(1);
    let colours = ["#999999", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#000000"];
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{pad}" y="20">{}</text>"#,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    for (i, (name, s)) in series.iter().enumerate() {
        let points: Vec<String> = s
            .iter()
            .enumerate()
            .step_by(every)
            .map(|(t, v)| {
                format!(
                    "{:.1},{:.1}",
                    pad + (w - 2.0 * pad) * t as f64 / (n - 1) as f64,
                    h - pad - (h - 2.0 * pad) * f64::from(*v) / max
                )
            })
            .collect();
        let colour = colours[i % colours.len()];
        out.push_str(&format!(r#"<polyline fill="none" stroke="{colour}" stroke-width="1" points="{}"/>"#, points.join(" ")));
        out.push_str(&format!(r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#, w - 260.0, 40.0 + 16.0 * i as f64));
    }
    out.push_str(&format!(r#"<text x="{pad}" y="{}">minutes 0–{n}; VMs 0–{max:.0}</text></svg>"#, h - 10.0));
    out
}

/// `fleetpilot eval policies`.
pub fn run(options: &EvalOptions) -> Result<()> {
    for p in &options.policies {
        if !POLICIES.contains(&p.as_str()) {
            bail!("unknown policy {p:?}; use {}", POLICIES.join(", "));
        }
    }
    if options.traces.is_empty() {
        bail!("give at least one --trace FILE (e.g. ../shared/data/demand/alibaba_genai_2024_diffusion_per_minute.csv)");
    }
    let mut traces = Vec::new();
    let mut plotted: Vec<std::path::PathBuf> = Vec::new();
    for path in &options.traces {
        let trace = fleetpilot_emulator::traces::load(path, &Default::default())
            .with_context(|| format!("cannot read trace {}", path.display()))?;
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        // A minute bucket the recording covers only in part is not a measurement of demand.
        let demand = trace.measured();
        let (result, series) = evaluate(&name, demand, &options.policies, options.seed, options.engine)?;
        if let Some(dir) = &options.plot {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            // Traces of the same file name (from different folders) get a plot each.
            let stem = name.trim_end_matches(".gz").trim_end_matches(".csv");
            let mut file = dir.join(format!("{stem}.svg"));
            for n in 2.. {
                if !plotted.contains(&file) {
                    break;
                }
                file = dir.join(format!("{stem}-{n}.svg"));
            }
            plotted.push(file.clone());
            std::fs::write(&file, svg(&format!("{name}: serving VMs per policy (seed {})", options.seed), &series))?;
        }
        traces.push(result);
    }
    if let Some(dir) = &options.plot {
        // The report beside its plots, where the dashboard finds it.
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&json!({"traces": traces}))?)?;
    }
    match options.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json!({"traces": traces}))?),
        Format::Table => {
            for t in &traces {
                println!(
                    "{} ({} minutes, {} storm minutes, {})",
                    t["trace"].as_str().unwrap_or(""),
                    t["minutes"],
                    t["storm_minutes"],
                    t["engine"].as_str().unwrap_or("")
                );
                println!(
                    "  {:<13} {:>10} {:>14} {:>11} {:>12} {:>7} {:>5} {:>14} {:>6}",
                    "policy",
                    "cost_usd",
                    "cost_vs_oracle",
                    "sla_met_pct",
                    "unserved_pct",
                    "actions",
                    "flaps",
                    "mean_slack_pct",
                    "denied"
                );
                for p in t["policies"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<13} {:>10.2} {:>14.3} {:>11.2} {:>12.3} {:>7} {:>5} {:>14.1} {:>6}",
                        p["policy"].as_str().unwrap_or(""),
                        p["cost_usd"].as_f64().unwrap_or(0.0),
                        p["cost_vs_oracle"].as_f64().unwrap_or(0.0),
                        p["sla_met_pct"].as_f64().unwrap_or(0.0),
                        p["unserved_pct"].as_f64().unwrap_or(0.0),
                        p["actions"].as_u64().unwrap_or(0),
                        p["flaps"].as_u64().unwrap_or(0),
                        p["mean_slack_pct"].as_f64().unwrap_or(0.0),
                        p["denied"].as_u64().unwrap_or(0)
                    );
                }
            }
        }
    }
    Ok(())
}
