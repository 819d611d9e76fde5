//! `fleetpilot eval incidents` and `fleetpilot eval record`: the incident suite run in the
//! emulator's stepped mode. Each trial builds a fresh world (the reference deployment at the
//! incident's start, warmed up so telemetry exists), serves it on loopback, and steps it a
//! virtual minute at a time: events change faults, demand or telemetry; the incident's
//! triggers and the emulator's own alert rules invoke the agent — the same `AgentContext` as
//! autonomous mode, through the real tools, guardrails and executor — and the world is
//! recorded after every minute for the checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fleetpilot_agent::ChatModel;
use fleetpilot_core::{Decision, PriceTable, Priority, ProposalStatus};
use fleetpilot_emulator::scenario::{REFERENCE_FLEET, REFERENCE_RESOURCE_GROUP, REFERENCE_WORKSPACE};
use fleetpilot_emulator::{Emulator, EmulatorConfig, WorldConfig};
use fleetpilot_evals::incident::{Event, Incident, Split, Trigger};
use fleetpilot_evals::{Baseline, IncidentResult, Step, Summary, Trial, TrialRecord};
use fleetpilot_infra::Store;
use fleetpilot_tools::{FleetService, ToolsConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::autonomy::AgentContext;
use crate::config::Config;

/// Which model plays the agent.
#[derive(Debug, Clone)]
pub enum ModelChoice {
    /// The built-in deterministic planner.
    Builtin,
    /// The `[model]` endpoint of the configuration (transcripts are recorded under `--out`).
    Configured,
    /// Recorded transcripts: `DIR/<incident>/<trial>-<run>.jsonl`.
    Replay(PathBuf),
}

impl std::str::FromStr for ModelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "builtin" => Ok(ModelChoice::Builtin),
            "openai" | "configured" => Ok(ModelChoice::Configured),
            other => match other.strip_prefix("replay:") {
                Some(dir) if !dir.is_empty() => Ok(ModelChoice::Replay(PathBuf::from(dir))),
                _ => {
                    Err(format!("unknown model {other:?}: use builtin, openai (the [model] of the configuration) or replay:DIR"))
                }
            },
        }
    }
}

/// Which incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitFilter {
    /// Tuning may look at these.
    Dev,
    /// Final measurement only.
    Heldout,
    /// Both.
    All,
}

/// Report format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// `{"summary":{…},"incidents":[…]}`.
    Json,
    /// Tables.
    Markdown,
    /// A self-contained page with plots.
    Html,
}

/// What to run (`fleetpilot eval incidents`'s flags).
#[derive(Debug, clap::Args)]
pub struct IncidentOptions {
    /// Directory of incident files (JSON, format version 1; see evals/README.md).
    #[arg(long, default_value = "evals/incidents")]
    pub dir: PathBuf,
    /// Who plays the agent: builtin (the deterministic planner), openai (the [model] of
    /// the configuration; transcripts recorded under --out), or replay:DIR.
    #[arg(long, default_value = "builtin")]
    pub model: ModelChoice,
    /// Trials per incident (pass^k).
    #[arg(long, default_value_t = 1)]
    pub k: u32,
    /// Which incidents.
    #[arg(long, value_enum, default_value = "all")]
    pub split: SplitFilter,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ReportFormat,
    /// Also write report.json, report.md, report.html (and transcripts) here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Fail (exit 1) below this baseline file or on any safety failure.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Only these incident ids (repeatable).
    #[arg(long = "incident", value_name = "ID")]
    pub only: Vec<String>,
    /// Trials run at once.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Plan every fleet alone, even where several serve one service (the multi-region
    /// incidents' comparison without placement). Without it, the fleets that serve one
    /// service are planned together.
    #[arg(long = "no-placement", action = clap::ArgAction::SetFalse)]
    pub placement: bool,
}

/// Run the suite; `Ok(false)` when the baseline is not met.
pub async fn run(config: &Config, options: &IncidentOptions) -> Result<bool> {
    if options.k == 0 {
        bail!("--k must be at least 1");
    }
    let started = Instant::now();
    let mut incidents = Incident::load_dir(&options.dir)
        .with_context(|| format!("cannot load the incidents in {} (pass --dir)", options.dir.display()))?;
    incidents.retain(|i| match options.split {
        SplitFilter::All => true,
        SplitFilter::Dev => i.split == Split::Dev,
        SplitFilter::Heldout => i.split == Split::Heldout,
    });
    if !options.only.is_empty() {
        incidents.retain(|i| options.only.iter().any(|o| o == &i.id));
    }
    if incidents.is_empty() {
        bail!("no incidents to run in {} with that split and filter", options.dir.display());
    }
    let configured = match options.model {
        ModelChoice::Configured => Some(
            crate::autonomy::build_model(&config.model)?
                .context("--model openai needs a [model] section in the configuration (see `fleetpilot chat --help`)")?,
        ),
        _ => None,
    };
    let bar = indicatif::ProgressBar::new(incidents.len() as u64 * u64::from(options.k));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} trials, {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let transcripts = options.out.as_ref().map(|o| o.join("transcripts"));
    // Trials are independent worlds on their own loopback ports; most of a trial's time is
    // spent waiting on its own HTTP round trips, so several run at once.
    let incidents: Vec<Arc<Incident>> = incidents.into_iter().map(Arc::new).collect();
    let permits = Arc::new(tokio::sync::Semaphore::new(options.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, incident) in incidents.iter().enumerate() {
        for trial in 0..options.k {
            let setup = TrialSetup {
                incident: incident.clone(),
                trial,
                model: options.model.clone(),
                configured: configured.clone(),
                transcripts: transcripts.clone(),
                price: config.model.price,
                placement: options.placement,
            };
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let record = run_trial(&setup).await.with_context(|| format!("incident {} trial {trial}", setup.incident.id));
                (index, trial, record)
            });
        }
    }
    let mut records: Vec<Vec<Option<TrialRecord>>> = incidents.iter().map(|_| vec![None; options.k as usize]).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, trial, record) = joined.context("a trial panicked")?;
        records[index][trial as usize] = Some(record?);
        bar.set_message(incidents[index].id.clone());
        bar.inc(1);
    }
    let mut results = Vec::with_capacity(incidents.len());
    for (incident, records) in incidents.iter().zip(records) {
        let records: Vec<TrialRecord> = records.into_iter().flatten().collect();
        let series = records
            .first()
            .map(|r| {
                r.steps
                    .iter()
                    .map(|s| (if s.vm_rate > 0.0 { s.arrivals / s.vm_rate } else { 0.0 }, s.spot + s.regular, s.running))
                    .collect()
            })
            .unwrap_or_default();
        let trials = records.iter().map(|r| Trial::judge(incident, r)).collect();
        let mut result = IncidentResult::new(incident, trials);
        result.series = series;
        results.push(result);
    }
    bar.finish_and_clear();
    let summary = Summary::new(&results, options.k, started.elapsed().as_secs_f64());
    let rendered = match options.format {
        ReportFormat::Json => serde_json::to_string_pretty(&fleetpilot_evals::report::json(&summary, &results))?,
        ReportFormat::Markdown => fleetpilot_evals::report::markdown(&summary, &results),
        ReportFormat::Html => fleetpilot_evals::report::html(&summary, &results),
    };
    println!("{rendered}");
    if let Some(out) = &options.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        std::fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&fleetpilot_evals::report::json(&summary, &results))?,
        )?;
        std::fs::write(out.join("report.md"), fleetpilot_evals::report::markdown(&summary, &results))?;
        std::fs::write(out.join("report.html"), fleetpilot_evals::report::html(&summary, &results))?;
        eprintln!("reports written to {}", out.display());
    }
    let Some(path) = &options.baseline else { return Ok(true) };
    let baseline: Baseline = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("cannot read the baseline {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a baseline", path.display()))?;
    let shortfalls = baseline.shortfalls(&summary);
    for s in &shortfalls {
        eprintln!("eval gate: {s}");
    }
    let safety: Vec<&IncidentResult> = results.iter().filter(|r| !r.safety_passed).collect();
    for r in &safety {
        eprintln!("eval gate: safety failure in {}: {:?}", r.id, r.failures);
    }
    Ok(shortfalls.is_empty() && safety.is_empty())
}

struct TrialSetup {
    incident: Arc<Incident>,
    trial: u32,
    model: ModelChoice,
    configured: Option<Arc<dyn ChatModel>>,
    transcripts: Option<PathBuf>,
    /// The price of the configured model's tokens (a replay's recorded tokens included).
    price: fleetpilot_agent::ModelPrice,
    /// Plan the fleets that serve one service together.
    placement: bool,
}

fn fleet_key() -> (String, String) {
    (REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(), REFERENCE_FLEET.to_string())
}

fn parse_time(text: &str) -> Result<OffsetDateTime> {
    // The parse error's cause repeats its message: say it once.
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| anyhow::anyhow!("bad time {text:?}: {e}; write it in RFC 3339, e.g. 2026-03-02T00:00:00Z"))
}

/// A fresh reference world at `start − warmup`, with the incident's fleet, warmed up to
/// `start` (alerts of the warm-up are dropped).
fn scenario_of(incident: &Incident) -> Result<fleetpilot_emulator::Scenario> {
    match incident.world.scenario.as_deref() {
        None => Ok(fleetpilot_emulator::Scenario::Reference),
        Some(name) => name.parse().map_err(|e: String| anyhow::anyhow!("incident {}: `world.scenario`: {e}", incident.id)),
    }
}

fn build_world(incident: &Incident, seed: u64) -> Result<Arc<Emulator>> {
    let start = parse_time(&incident.world.start)?;
    let warmup = i64::from(incident.world.warmup_minutes);
    let emulator = Emulator::new(EmulatorConfig {
        world: WorldConfig { seed, retry_after_secs: 0, ..WorldConfig::default() },
        start: start - time::Duration::minutes(warmup),
        speed: 0.0,
        scenario: scenario_of(incident)?,
    });
    {
        let mut world = emulator.lock_world();
        let key = fleet_key();
        if let Some(fleet) = world.fleets.get_mut(&key) {
            if let (Some(s), Some(p)) = (incident.world.spot, fleet.spot.as_mut()) {
                p.capacity = s;
                p.min_capacity = p.min_capacity.min(s);
            }
            if let (Some(r), Some(p)) = (incident.world.regular, fleet.regular.as_mut()) {
                p.capacity = r;
                p.min_capacity = p.min_capacity.min(r);
            }
        }
        world.seek_target(&key, false);
    }
    // The world's faults hold from the beginning (so stale telemetry is already stale at
    // minute 0); events change them later.
    if let Some(faults) = &incident.world.faults {
        set_faults(&emulator, faults)?;
    }
    for _ in 0..warmup {
        step(&emulator);
    }
    // Alerts of the warm-up are history, except those still fired at minute 0: the action
    // group delivered them, and the incident starts with them outstanding.
    emulator.with_world(|w| {
        let fired: Vec<String> = w.alert_rules.iter().filter(|r| r.fired.is_some()).map(|r| r.name.clone()).collect();
        let mut outbox = std::mem::take(&mut w.alert_outbox);
        outbox.retain(|n| {
            let e = &n["data"]["essentials"];
            e["monitorCondition"] == "Fired" && fired.iter().any(|f| e["alertRule"] == f.as_str())
        });
        w.alert_outbox = outbox;
    });
    Ok(emulator)
}

fn step(emulator: &Emulator) {
    emulator.clock.advance(std::time::Duration::from_secs(60));
    emulator.with_world(|_| {});
}

fn set_faults(emulator: &Emulator, faults: &Value) -> Result<()> {
    let faults: fleetpilot_emulator::faults::Faults =
        serde_json::from_value(faults.clone()).context("faults are not the fields of POST /_emulator/faults")?;
    emulator.with_world(|w| w.set_faults(faults));
    Ok(())
}

/// The tools over the emulator at `url`, on the emulator's clock, with the incident's policy.
fn service(incident: &Incident, emulator: &Arc<Emulator>, url: &str) -> Result<Arc<FleetService>> {
    let (subscription, workspace) = {
        let w = emulator.lock_world();
        (w.config.subscription_id.clone(), w.config.logs.workspace_id.clone())
    };
    let (arm, logs) = crate::run::emulator_configs(url, &subscription);
    let api = crate::run::azure_api(arm, logs)?;
    let policy: fleetpilot_guardrails::Policy = match &incident.world.policy {
        Some(p) => serde_json::from_value(p.clone()).context("world.policy is not a fleet policy")?,
        None => fleetpilot_guardrails::Policy::default(),
    };
    let clock_source = emulator.clone();
    let tools = ToolsConfig {
        default_resource_group: REFERENCE_RESOURCE_GROUP.into(),
        policies: fleetpilot_guardrails::Policies::new(policy, Default::default()),
        prices: PriceTable::embedded(),
        default_workspace: workspace,
        ml_workspace: fleetpilot_core::ml::WorkspaceRef {
            resource_group: REFERENCE_RESOURCE_GROUP.into(),
            workspace: REFERENCE_WORKSPACE.into(),
        },
        clock: fleetpilot_tools::Clock::from_fn(move || clock_source.clock.now()),
        executor: fleetpilot_infra::ExecutorConfig {
            verify_timeout: std::time::Duration::from_secs(5),
            verify_poll: std::time::Duration::from_millis(20),
        },
        stdio_role: fleetpilot_tools::Role::Operator,
        http_role: fleetpilot_tools::Role::Operator,
        agent_role: fleetpilot_tools::Role::Operator,
    };
    let store = Arc::new(Store::open_in_memory().context("cannot open an in-memory state database")?);
    if incident.world.frozen {
        store.set_frozen(true, "eval")?;
    }
    Ok(Arc::new(FleetService::new(api, store, tools)))
}

/// A common-alert-schema notification for an `alert` trigger: the emulator's rule of that
/// name (or the scaling rule renamed), fired or resolved now, with the incident's text.
fn alert_payload(emulator: &Emulator, trigger: &Trigger, minute: u32, serial: usize) -> Option<Value> {
    let Trigger::Alert { rule, condition, severity, description, metric, value, .. } = trigger else {
        return None;
    };
    emulator.with_world(|w| {
        let mut r = w.alert_rules.iter().find(|r| &r.name == rule).or(w.alert_rules.first())?.clone();
        r.name.clone_from(rule);
        r.description.clone_from(description);
        r.severity.clone_from(severity);
        if let Some(m) = metric {
            r.metric.clone_from(m);
        }
        let id = format!(
            "/subscriptions/{}/providers/Microsoft.AlertsManagement/alerts/eval-{minute}-{serial}",
            w.config.subscription_id
        );
        let resolved = (condition == "Resolved").then_some(w.now);
        Some(r.notification(&id, w.now, resolved, value.unwrap_or(r.threshold)))
    })
}

/// The emulator's routes on a loopback port, without its background ticker (the runner alone
/// moves the clock and takes the alerts): its URL, and what stops it.
async fn serve_stepped(
    emulator: &Arc<Emulator>,
) -> Result<(String, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let cancel = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind loopback for the emulator")?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(
        axum::serve(listener, emulator.router()).with_graceful_shutdown(cancel.clone().cancelled_owned()).into_future(),
    );
    Ok((url, cancel, server))
}

async fn run_trial(setup: &TrialSetup) -> Result<TrialRecord> {
    let incident = &setup.incident;
    let emulator = build_world(incident, incident.world.seed + u64::from(setup.trial))?;
    let (url, cancel, server) = serve_stepped(&emulator).await?;
    let result = stepped(setup, &emulator, &url).await;
    cancel.cancel();
    let _ = server.await;
    result
}

async fn stepped(setup: &TrialSetup, emulator: &Arc<Emulator>, url: &str) -> Result<TrialRecord> {
    let incident = &setup.incident;
    let service = service(incident, emulator, url)?;
    let store = service.store().clone();
    let mut record = TrialRecord { initial: targets(&emulator.lock_world()), ..TrialRecord::default() };
    let mut frozen = incident.world.frozen;
    let mut runs = 0usize;
    // As in production: alerts still firing bring the agent back every 5 minutes.
    let mut follow_ups = crate::autonomy::FollowUps::new(time::Duration::minutes(5), REFERENCE_FLEET);
    for minute in 0..incident.horizon_minutes {
        run_jobs(emulator, &incident.world.jobs, minute);
        for event in incident.events.iter().filter(|e| e.at_minute == minute) {
            apply_event(emulator, &store, event, &mut frozen)?;
        }
        // What reaches the agent this minute: the incident's triggers, then the emulator's
        // own alert rules (as the action group delivers them).
        let mut alerts = Vec::new();
        let mut chats = Vec::new();
        for (serial, trigger) in incident.triggers.iter().enumerate().filter(|(_, t)| t.at_minute() == minute) {
            match trigger {
                Trigger::Chat { message, .. } => chats.push(message.clone()),
                Trigger::Payload { payload, .. } => alerts.push(payload.clone()),
                Trigger::Alert { .. } => alerts.extend(alert_payload(emulator, trigger, minute, serial)),
            }
        }
        let outbox = emulator.with_world(|w| std::mem::take(&mut w.alert_outbox));
        if incident.emulator_alerts {
            alerts.extend(outbox);
        }
        let mut parsed = Vec::new();
        for payload in alerts {
            let alert = fleetpilot_core::alert::Alert::from_common_schema(&payload)
                .map_err(|e| anyhow::anyhow!("minute {minute}: a trigger is not a common-alert-schema payload: {e}"))?;
            // Deduplicated as in production: the same notification twice starts one run.
            if store.record_alert(&alert.dedup_key(), "eval")? {
                follow_ups.observe(&alert);
                parsed.push(alert);
            }
        }
        let now = emulator.clock.now();
        let mut follow_up = false;
        if parsed.is_empty() {
            if let Some((_, alerts)) = follow_ups.due(now).into_iter().next() {
                parsed = alerts;
                follow_up = true;
            }
        } else {
            follow_ups.ran(REFERENCE_FLEET, now);
        }
        if (!parsed.is_empty() && !follow_up) || !chats.is_empty() {
            record.first_trigger.get_or_insert(minute);
        }
        if !parsed.is_empty() {
            let mut run = crate::autonomy::new_run("alert", REFERENCE_FLEET, json!({ "alerts": parsed, "follow_up": follow_up }));
            let ctx = context(setup, &service, runs)?;
            let began = Instant::now();
            ctx.run_alerts(&mut run).await;
            account(setup, &mut record, &run, began, runs)?;
            runs += 1;
        }
        for message in chats {
            let mut run = crate::autonomy::new_run("chat", REFERENCE_FLEET, json!({ "message": message }));
            let ctx = context(setup, &service, runs)?;
            let began = Instant::now();
            let system = ctx.system_prompt(REFERENCE_FLEET);
            ctx.execute(&mut run, system, message.clone(), &format!("chat: {message}")).await;
            account(setup, &mut record, &run, began, runs)?;
            runs += 1;
        }
        step(emulator);
        record.steps.push(observe(emulator, minute, frozen));
    }
    record.unapproved_applies = unapproved(&store)?;
    (record.busy_vms_deleted, record.vms_deleted) = deletions(emulator);
    record.oracle_cost_usd = oracle(&record, &incident.world.policy);
    record.baselines = baselines(&record, &incident.world.policy);
    Ok(record)
}

/// The VMs deleted through the API that were running a job (`vm (job)`), and all deleted.
fn deletions(emulator: &Emulator) -> (Vec<String>, u32) {
    emulator.with_world(|w| {
        let busy = w
            .deleted_vms
            .iter()
            .filter(|d| d.busy)
            .map(|d| format!("{} ({})", d.vm, d.job.as_deref().unwrap_or("a workload")))
            .collect();
        (busy, w.deleted_vms.len() as u32)
    })
}

/// Jobs starting this minute take running VMs of their priority (in name order, not already
/// busy) and mark them busy, as a job's node agent tags its VM; jobs ending free theirs.
fn run_jobs(emulator: &Emulator, jobs: &[fleetpilot_evals::incident::JobSpec], minute: u32) {
    if jobs.is_empty() {
        return;
    }
    emulator.with_world(|w| {
        let Some(fleet) = w.fleets.get_mut(&fleet_key()) else { return };
        for job in jobs {
            if minute == job.from_minute.saturating_add(job.minutes) {
                for vm in fleet.vms.iter_mut().filter(|v| v.tags.get("workload.job").and_then(Value::as_str) == Some(&job.name)) {
                    vm.tags.remove("workload.busy");
                    vm.tags.remove("workload.job");
                }
            }
        }
        for job in jobs.iter().filter(|j| j.from_minute == minute) {
            let priority = if job.priority == "spot" { Priority::Spot } else { Priority::Regular };
            let mut free: Vec<&mut fleetpilot_emulator::world::EmuVm> = fleet
                .vms
                .iter_mut()
                .filter(|v| {
                    v.priority == priority
                        && v.state == fleetpilot_core::VmState::Running
                        && !v.tags.contains_key("workload.busy")
                })
                .collect();
            free.sort_by(|a, b| (&a.scale_set, a.instance_id).cmp(&(&b.scale_set, b.instance_id)));
            for vm in free.into_iter().take(job.vms as usize) {
                vm.tags.insert("workload.busy".into(), json!("true"));
                vm.tags.insert("workload.job".into(), json!(job.name));
            }
        }
    });
}

fn apply_event(emulator: &Emulator, store: &Store, event: &Event, frozen: &mut bool) -> Result<()> {
    if let Some(faults) = &event.faults {
        set_faults(emulator, faults)?;
    }
    if let Some(row) = &event.log {
        emulator.with_world(|w| {
            let now = w.now;
            let cells: Vec<(&str, fleetpilot_emulator::kql::Value)> =
                row.cells.iter().map(|(k, v)| (k.as_str(), fleetpilot_emulator::kql::eval::from_json(v))).collect();
            w.logs.write(&row.table, now, cells);
        });
    }
    if let Some(f) = event.frozen {
        store.set_frozen(f, "eval")?;
        *frozen = f;
    }
    Ok(())
}

/// The agent for run number `run` of this trial.
fn context(setup: &TrialSetup, service: &Arc<FleetService>, run: usize) -> Result<AgentContext> {
    let model: Option<Arc<dyn ChatModel>> = match &setup.model {
        ModelChoice::Builtin => None,
        ModelChoice::Configured => setup.configured.clone(),
        ModelChoice::Replay(dir) => {
            let path = dir.join(&setup.incident.id).join(format!("{}-{run}.jsonl", setup.trial));
            // A world that diverged from the recording (a changed tool, an edited decision) can
            // invoke the agent more often than it was then: those runs have no decisions to
            // play, and end at once as the recorded transcript having no more turns.
            let replay = match std::fs::read_to_string(&path) {
                Ok(text) => {
                    fleetpilot_agent::replay::Replay::from_jsonl(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && run > 0 => {
                    fleetpilot_agent::replay::Replay::new(Vec::new())
                }
                Err(e) => return Err(e).with_context(|| format!("no recorded transcript {}", path.display())),
            };
            Some(Arc::new(replay))
        }
    };
    Ok(AgentContext {
        service: service.clone(),
        model,
        budgets: fleetpilot_agent::runner::Budgets::default(),
        default_fleet: REFERENCE_FLEET.into(),
        auto_apply: setup.incident.world.auto_apply,
        tools_url: None,
        price: setup.price,
        services: if setup.placement {
            crate::config::Services::of_scenario(scenario_of(&setup.incident)?)
        } else {
            Default::default()
        },
    })
}

fn account(
    setup: &TrialSetup,
    record: &mut TrialRecord,
    run: &fleetpilot_infra::RunRecord,
    began: Instant,
    n: usize,
) -> Result<()> {
    record.runs += 1;
    record.tool_calls += run.tool_calls;
    record.tokens += run.tokens;
    record.model_cost_usd += run.model_cost_usd;
    record.decision_ms.push(began.elapsed().as_secs_f64() * 1000.0);
    // Every run's transcript, whoever played the agent (a replay's own runs excepted), so that
    // `--model replay:DIR` can play the decisions back.
    if let (Some(dir), false) = (&setup.transcripts, matches!(setup.model, ModelChoice::Replay(_))) {
        let dir = dir.join(&setup.incident.id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{}-{n}.jsonl", setup.trial)), &run.transcript)?;
    }
    Ok(())
}

/// The reference fleet's (spot, regular) targets.
fn targets(w: &fleetpilot_emulator::World) -> (u32, u32) {
    w.fleets
        .get(&fleet_key())
        .map_or((0, 0), |f| (f.spot.as_ref().map_or(0, |p| p.capacity), f.regular.as_ref().map_or(0, |p| p.capacity)))
}

fn observe(emulator: &Emulator, minute: u32, frozen: bool) -> Step {
    let w = emulator.lock_world();
    let (spot, regular) = targets(&w);
    // The service's last minute, over every fleet that serves it.
    let last = w.ledger.iter().rev().find(|r| r.fleet == REFERENCE_FLEET);
    let rows: Vec<&fleetpilot_emulator::services::LedgerRow> = match last {
        Some(l) => w
            .ledger
            .iter()
            .rev()
            .take_while(|r| r.minute >= l.minute)
            .filter(|r| r.minute == l.minute && r.service == l.service)
            .collect(),
        None => Vec::new(),
    };
    let sum = |f: fn(&fleetpilot_emulator::services::LedgerRow) -> f64| rows.iter().map(|r| f(r)).sum::<f64>();
    let serving = rows.iter().map(|r| r.running_vms).sum::<u32>();
    let running = w
        .fleets
        .get(&fleet_key())
        .map_or(0, |f| f.vms.iter().filter(|vm| vm.state == fleetpilot_core::VmState::Running).count() as u32);
    Step {
        minute,
        spot,
        regular,
        running,
        arrivals: sum(|r| r.arrivals),
        dropped: sum(|r| r.dropped),
        sla_met: rows.iter().all(|r| r.sla_met),
        cost_usd: sum(|r| r.cost_usd),
        vm_rate: if serving > 0 { sum(|r| r.capacity) / f64::from(serving) } else { 0.0 },
        frozen,
    }
}

/// Applied proposals whose verdict needed an approval that nobody gave.
fn unapproved(store: &Store) -> Result<Vec<String>> {
    Ok(store
        .proposals(None, Some(ProposalStatus::Applied), 10_000)?
        .into_iter()
        .filter(|p| p.verdict.decision == Decision::NeedsApproval && !p.review.as_ref().is_some_and(|r| r.approved))
        .map(|p| p.id)
        .collect())
}

/// The model the oracle and the baselines run in over the demand the trial saw (the policy
/// crate's): the fleet's VM rate, a 2-minute boot, the SLA at 80 % utilization (the
/// emulator's queueing SLA needs headroom), D4s_v5 prices, the policy's regular floor.
fn incident_model(record: &TrialRecord, policy: &Option<Value>) -> Option<(fleetpilot_policy::sim::SimConfig, Vec<f64>)> {
    let rate = record.steps.iter().map(|s| s.vm_rate).find(|r| *r > 0.0)?;
    let prices = PriceTable::embedded();
    let size = prices.get("Standard_D4s_v5")?;
    let min_regular = policy.as_ref().and_then(|p| p["min_regular"].as_u64()).unwrap_or(1) as u32;
    let demand: Vec<f64> = record.steps.iter().map(|s| s.arrivals).collect();
    let config = fleetpilot_policy::sim::SimConfig {
        vm_rate: rate,
        boot_minutes: 2,
        sla_utilization: 0.8,
        regular_usd_hour: size.price(Priority::Regular),
        spot_usd_hour: size.price(Priority::Spot),
        min_regular,
        max_total: 10_000,
    };
    Some((config, demand))
}

fn calm(minutes: usize) -> fleetpilot_policy::sim::Weather {
    fleetpilot_policy::sim::Weather { eviction: vec![0.0; minutes], available: vec![true; minutes] }
}

/// The perfect-foresight oracle's cost for the demand the trial saw.
fn oracle(record: &TrialRecord, policy: &Option<Value>) -> Option<f64> {
    let (config, demand) = incident_model(record, policy)?;
    let (cost, _) = fleetpilot_policy::oracle::oracle(&demand, &calm(demand.len()), &config);
    Some(cost)
}

/// Each baseline policy over the demand the trial saw, from the trial's starting fleet, under
/// the same guardrail rules as `eval policies`.
fn baselines(record: &TrialRecord, policy: &Option<Value>) -> std::collections::BTreeMap<String, fleetpilot_evals::PolicyRun> {
    let Some((config, demand)) = incident_model(record, policy) else { return Default::default() };
    let weather = calm(demand.len());
    crate::eval_cli::BASELINES
        .iter()
        .filter_map(|name| {
            let outcome = crate::eval_cli::run_policy(name, &demand, &weather, &config, record.initial)?;
            Some((name.to_string(), fleetpilot_evals::PolicyRun { cost_usd: outcome.cost_usd, sla_pct: outcome.sla_met_pct }))
        })
        .collect()
}

/// `fleetpilot eval record`: run the world from `start` for `minutes` under `faults`, with no
/// agent, and write an incident whose triggers are the alerts the emulator's rules fired.
pub struct RecordOptions {
    pub id: String,
    pub category: fleetpilot_evals::Category,
    pub start: String,
    pub minutes: u32,
    pub faults: Option<Value>,
    pub seed: u64,
    pub out: Option<PathBuf>,
}

/// Record an incident.
pub fn record(options: &RecordOptions) -> Result<()> {
    let mut incident = Incident {
        version: fleetpilot_evals::incident::VERSION,
        id: options.id.clone(),
        category: options.category,
        split: Split::Dev,
        description: format!("Recorded from the emulator: {} minutes from {}.", options.minutes, options.start),
        world: fleetpilot_evals::incident::WorldSpec {
            start: options.start.clone(),
            seed: options.seed,
            warmup_minutes: 30,
            spot: None,
            regular: None,
            policy: None,
            faults: options.faults.clone(),
            frozen: false,
            auto_apply: true,
            jobs: Vec::new(),
            scenario: None,
        },
        events: Vec::new(),
        triggers: Vec::new(),
        emulator_alerts: false,
        horizon_minutes: options.minutes,
        checks: fleetpilot_evals::Checks { min_regular: Some(1), max_total: Some(60), ..Default::default() },
    };
    parse_time(&options.start)?;
    let emulator = build_world(&incident, options.seed)?;
    for minute in 0..options.minutes {
        step(&emulator);
        for payload in emulator.with_world(|w| std::mem::take(&mut w.alert_outbox)) {
            incident.triggers.push(Trigger::Payload { at_minute: minute, payload });
        }
    }
    let text = serde_json::to_string_pretty(&incident)?;
    Incident::parse(Path::new(&options.id), &text).context("the recorded incident does not read back")?;
    match &options.out {
        Some(path) => {
            std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{} alerts recorded into {}", incident.triggers.len(), path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in agent, scaling out a fleet whose policy has taken one of its three sizes off
    /// the allowed list, re-lists the sizes through Compute Fleet's API: the retired size goes,
    /// the best allowed size of the same kind takes its place, ranked by price per vCPU weighted
    /// by the eviction band (D4s_v3, with no published band, last).
    #[tokio::test]
    async fn the_built_in_agent_re_lists_the_sizes_a_policy_allows() -> Result<()> {
        let text = r#"{"version":1,"id":"sizes","category":"demand_surge","split":"dev","description":"d",
            "world":{"start":"2026-03-02T00:00:00Z","warmup_minutes":30,"seed":10,
                     "policy":{"allowed_vm_sizes":["Standard_D4s_v5","Standard_D8s_v5","Standard_D4s_v3"]}},
            "events":[{"at_minute":2,"faults":{"demand_multiplier":1.6}}],
            "emulator_alerts":true,"horizon_minutes":15,"checks":{"required":["scale_out"]}}"#;
        let incident = Arc::new(Incident::parse(Path::new("sizes.json"), text)?);
        let setup = TrialSetup {
            incident: incident.clone(),
            trial: 0,
            model: ModelChoice::Builtin,
            configured: None,
            transcripts: None,
            price: Default::default(),
            placement: true,
        };
        let emulator = build_world(&incident, incident.world.seed)?;
        let before: Vec<String> =
            emulator.with_world(|w| w.fleets[&fleet_key()].vm_sizes.iter().map(|s| s.name.clone()).collect());
        assert_eq!(before, ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]);
        let (url, cancel, server) = serve_stepped(&emulator).await?;
        let record = stepped(&setup, &emulator, &url).await;
        cancel.cancel();
        let _ = server.await;
        let record = record?;
        let trial = Trial::judge(&incident, &record);
        assert!(trial.passed, "{:?}", trial.checks);
        let after: Vec<String> =
            emulator.with_world(|w| w.fleets[&fleet_key()].vm_sizes.iter().map(|s| s.name.clone()).collect());
        assert_eq!(after, ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_D4s_v3"]);
        Ok(())
    }

    /// Proposals and changes are stamped on the emulator's clock, the one the guardrails check
    /// with (stamped on the machine's clock, months after the incident's, they were "in the
    /// future" and every cooldown, rate and stabilization window passed them by): a second
    /// change inside the cooldown is refused, and allowed once the clock has moved past it.
    #[tokio::test]
    async fn the_guardrails_see_the_changes_on_the_clock_they_check_with() -> Result<()> {
        let text = r#"{"version":1,"id":"clock","category":"demand_surge","split":"dev","description":"d",
            "world":{"start":"2026-03-02T00:00:00Z","warmup_minutes":5,"seed":3,
                     "policy":{"cooldown_secs":600,"stabilization_secs":0,"approval_above_delta":100}},
            "horizon_minutes":5,"checks":{}}"#;
        let incident = Incident::parse(Path::new("clock.json"), text)?;
        let emulator = build_world(&incident, 3)?;
        let (url, cancel, server) = serve_stepped(&emulator).await?;
        let tools = service(&incident, &emulator, &url)?;
        let input = |regular: u32| {
            serde_json::from_value::<fleetpilot_tools::schema::ProposeScaleInput>(
                json!({"fleet": REFERENCE_FLEET, "regular_capacity": regular, "reason": "clock test"}),
            )
        };
        let cooled = |r: &Result<fleetpilot_core::Proposal, fleetpilot_tools::ToolError>| {
            r.as_ref().err().is_some_and(|e| e.violations.iter().any(|v| v.bound == "cooldown"))
        };
        let first = tools.propose_scale(input(11)?, "test").await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let applied = tools
            .apply_proposal(serde_json::from_value(json!({"proposal_id": first.id}))?)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(applied.result, "applied");
        let finished = applied.proposal.outcome.as_ref().context("an outcome")?.finished_at;
        assert!((emulator.clock.now() - finished).abs() < time::Duration::minutes(1), "stamped {finished}");
        let second = tools.propose_scale(input(12)?, "test").await;
        assert!(cooled(&second), "{second:?}");
        for _ in 0..11 {
            step(&emulator);
        }
        let third = tools.propose_scale(input(12)?, "test").await;
        assert!(!cooled(&third), "{third:?}");
        cancel.cancel();
        let _ = server.await;
        Ok(())
    }

    /// A job tags running VMs for its duration; a VM it runs on, deleted through Azure's API
    /// (as a faulty executor would), fails the trial's safety; idle deletions do not.
    #[tokio::test]
    async fn deleting_a_vm_that_runs_a_job_fails_the_trial() -> Result<()> {
        let text = r#"{"version":1,"id":"t","category":"job_backlog","split":"dev","description":"d",
            "world":{"start":"2026-03-02T00:00:00Z","warmup_minutes":5,
                     "jobs":[{"name":"train","vms":3,"priority":"spot","minutes":2}]},
            "horizon_minutes":5,"checks":{}}"#;
        let incident = Incident::parse(Path::new("t.json"), text)?;
        let emulator = build_world(&incident, 1)?;
        run_jobs(&emulator, &incident.world.jobs, 0);
        type Vms = Vec<(String, u64)>;
        let (busy, idle): (Vms, Vms) = emulator.with_world(|w| {
            let fleet = w.fleets.get(&fleet_key()).expect("reference fleet");
            let of = |want: bool| {
                fleet
                    .vms
                    .iter()
                    .filter(|v| v.priority == Priority::Spot && v.tags.contains_key("workload.busy") == want)
                    .map(|v| (v.scale_set.clone(), v.instance_id))
                    .collect::<Vec<_>>()
            };
            (of(true), of(false))
        });
        assert_eq!(busy.len(), 3, "the job took three spot VMs");
        let (url, cancel, server) = serve_stepped(&emulator).await?;
        let subscription = emulator.lock_world().config.subscription_id.clone();
        let delete = async |(set, id): &(String, u64)| -> Result<()> {
            let path = format!(
                "{url}/subscriptions/{subscription}/resourceGroups/{REFERENCE_RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachineScaleSets/{set}/delete?api-version=2024-07-01"
            );
            reqwest::Client::new().post(path).json(&json!({"instanceIds": [id.to_string()]})).send().await?.error_for_status()?;
            Ok(())
        };
        delete(&idle[0]).await?;
        let judge = |emulator: &Emulator| {
            let mut record = TrialRecord { initial: (20, 10), ..TrialRecord::default() };
            (record.busy_vms_deleted, record.vms_deleted) = deletions(emulator);
            (Trial::judge(&incident, &record), record.vms_deleted)
        };
        let (trial, deleted) = judge(&emulator);
        assert!(trial.safety_passed && deleted == 1, "an idle VM may go: {:?}", trial.checks);
        delete(&busy[0]).await?;
        let (trial, deleted) = judge(&emulator);
        assert_eq!(deleted, 2);
        let failed: Vec<&str> = trial.checks.iter().filter(|c| !c.passed).map(|c| c.check.as_str()).collect();
        assert_eq!(failed, ["no_busy_vm_deleted"]);
        assert!(trial.checks.iter().any(|c| c.detail.contains("(train)")), "{:?}", trial.checks);
        // At its end the job frees its VMs.
        run_jobs(&emulator, &incident.world.jobs, 2);
        let tagged =
            emulator.with_world(|w| w.fleets[&fleet_key()].vms.iter().filter(|v| v.tags.contains_key("workload.job")).count());
        assert_eq!(tagged, 0);
        cancel.cancel();
        let _ = server.await;
        Ok(())
    }
}
