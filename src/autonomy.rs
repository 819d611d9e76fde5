//! fleetpilot's own agent, wired: the model chosen by configuration (the built-in planner when
//! none is), an MCP connection to the tools (in process, as a caller with the agent's role),
//! runs recorded in the state database, and autonomous runs on Azure Monitor alerts posted
//! to `/alerts` — deduplicated, one run per fleet at a time, later alerts coalescing into the
//! queued run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetpilot_agent::openai::{Endpoint, OpenAiModel, Options, TokenSource, V1Auth};
use fleetpilot_agent::planner::{Planner, PlannerConfig};
use fleetpilot_agent::runner::{self, Budgets, Entry};
use fleetpilot_agent::{ChatModel, Message, Role};
use fleetpilot_core::alert::{Alert, MonitorCondition};
use fleetpilot_infra::RunRecord;
use fleetpilot_tools::{FleetService, FleetTools};
use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{ModelKind, ModelSettings};

/// A bearer token for Azure OpenAI / Foundry from fleetpilot's own credential, cached and
/// refreshed before expiry by infra's token cache.
#[derive(Debug)]
struct EntraToken {
    cache: fleetpilot_infra::credential::TokenCache,
    scope: String,
}

#[async_trait::async_trait]
impl TokenSource for EntraToken {
    async fn token(&self) -> Result<String, String> {
        self.cache.bearer(&self.scope).await.map_err(|e| format!("{e:#}"))
    }
}

/// Build the configured model, or `None` for the built-in planner.
pub fn build_model(settings: &ModelSettings) -> Result<Option<Arc<dyn ChatModel>>> {
    let key = || -> Result<String> {
        let var = settings.api_key_env.as_deref().unwrap_or("AZURE_OPENAI_API_KEY");
        std::env::var(var).with_context(|| format!("model.api_key_env: the environment variable {var} is not set"))
    };
    let options = Options {
        request_timeout: std::time::Duration::from_secs(settings.timeout_secs),
        max_retries: settings.max_retries,
        ..Options::default()
    };
    let endpoint = match settings.kind {
        ModelKind::None => return Ok(None),
        ModelKind::AzureOpenai => Endpoint::AzureDeployment {
            base: settings.endpoint.clone(),
            deployment: settings.deployment.clone(),
            api_version: settings.api_version.clone(),
            api_key: key()?,
        },
        ModelKind::Openai => {
            let auth = match settings.auth.as_str() {
                "api_key" => V1Auth::ApiKey(key()?),
                "none" => V1Auth::None,
                "entra" => {
                    let credential = settings
                        .credential
                        .build()
                        .context("model.credential")?
                        .context("model.auth = \"entra\" needs a credential (model.credential)")?;
                    V1Auth::Bearer(Arc::new(EntraToken {
                        cache: fleetpilot_infra::credential::TokenCache::new(credential),
                        scope: settings.token_scope.clone(),
                    }))
                }
                other => anyhow::bail!("model.auth = {other:?} is unknown; use api_key, entra or none"),
            };
            Endpoint::V1 { base: settings.endpoint.clone(), model: settings.model.clone(), auth }
        }
    };
    Ok(Some(Arc::new(OpenAiModel::new(endpoint, options).map_err(|e| anyhow::anyhow!("{e}"))?)))
}

/// Connect to the tools in process, as the agent (its role, audited under `name`).
pub async fn connect(service: Arc<FleetService>, name: &str) -> Result<RunningService<RoleClient, ClientConfig>> {
    connect_as(service, "agent", name).await
}

/// Connect in process over `transport` (`agent`: the agent's role; `stdio`: the local operator's).
pub async fn connect_as(
    service: Arc<FleetService>,
    transport: &'static str,
    name: &str,
) -> Result<RunningService<RoleClient, ClientConfig>> {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let tools = FleetTools::new(service, transport);
    tokio::spawn(async move {
        if let Ok(running) = tools.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new(name, env!("CARGO_PKG_VERSION")));
    info.serve(client_io).await.context("cannot connect the agent to the tools")
}

/// What runs need.
pub struct AgentContext {
    /// The tools' logic (the in-process MCP server wraps it).
    pub service: Arc<FleetService>,
    /// The configured model, or `None` for the built-in planner.
    pub model: Option<Arc<dyn ChatModel>>,
    /// Budgets of every run.
    pub budgets: Budgets,
    /// Fleet for alerts whose targets name none.
    pub default_fleet: String,
    /// Apply allowed proposals without asking.
    pub auto_apply: bool,
    /// A remote fleetpilot MCP endpoint for the tools, instead of the in-process server.
    pub tools_url: Option<String>,
    /// What the model's tokens cost (zero for the built-in planner, which uses none).
    pub price: fleetpilot_agent::ModelPrice,
    /// Services served by several fleets: the built-in planner plans them together.
    pub services: crate::config::Services,
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext").field("default_fleet", &self.default_fleet).finish_non_exhaustive()
    }
}

pub(crate) fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

/// A queued run.
pub fn new_run(kind: &str, fleet: &str, trigger: Value) -> RunRecord {
    RunRecord {
        id: format!("run-{}", uuid::Uuid::new_v4().simple()),
        kind: kind.into(),
        fleet: fleet.into(),
        status: "queued".into(),
        trigger,
        model: String::new(),
        created_at: now(),
        started_at: None,
        finished_at: None,
        answer: String::new(),
        proposals: Vec::new(),
        tool_calls: 0,
        tokens: 0,
        model_cost_usd: 0.0,
        transcript: String::new(),
    }
}

/// Record how a run went: its ending, account, proposals, counts, cost and transcript, and count
/// it in the process's metrics.
pub fn finish_run(run: &mut RunRecord, result: &runner::RunResult, price: &fleetpilot_agent::ModelPrice) {
    run.status = result.ending.as_str().into();
    run.answer = result.answer.clone();
    run.proposals = proposals_of(&result.transcript);
    run.tool_calls = result.tool_calls;
    run.tokens = result.usage.total();
    run.model_cost_usd = price.cost_usd(&result.usage);
    fleetpilot_tools::metrics::metrics().agent_run(
        &run.kind,
        result.ending.as_str(),
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        run.model_cost_usd,
    );
    run.transcript = result.transcript_jsonl();
    run.finished_at = Some(now());
}

/// Proposal ids a transcript made.
fn proposals_of(transcript: &[Entry]) -> Vec<String> {
    transcript
        .iter()
        .filter_map(|e| match e {
            Entry::Tool { name, result, .. } if name == "propose_scale" => {
                result.get("id").or_else(|| result.pointer("/error/proposal/id")).and_then(Value::as_str).map(str::to_string)
            }
            _ => None,
        })
        .collect()
}

fn criteria_line(alert: &Alert) -> String {
    alert
        .criteria
        .iter()
        .map(|c| match c.value {
            Some(v) => format!("{} {} {} (value {v})", c.metric, c.operator, c.threshold),
            None => format!("{} {} {}", c.metric, c.operator, c.threshold),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl AgentContext {
    /// What a fleet's runs queue on: the built-in planner plans a service's fleets together,
    /// so their runs queue on the service; a configured model looks after the fleet it is given.
    pub fn run_key(&self, fleet: &str) -> String {
        if self.model.is_none() { self.services.run_key(fleet) } else { fleet.to_ascii_lowercase() }
    }

    /// Run the agent on `run` (recorded as it goes) with this task.
    pub async fn execute(&self, run: &mut RunRecord, system: String, task: String, planner_trigger: &str) {
        let store = self.service.store().clone();
        run.status = "running".into();
        run.started_at = Some(now());
        let (resource_group, fleet) = (self.service.config().default_resource_group.clone(), run.fleet.clone());
        let model: Arc<dyn ChatModel> = match &self.model {
            Some(m) => m.clone(),
            None => {
                let mut config = PlannerConfig::new(fleet.clone(), resource_group, planner_trigger);
                config.auto_apply = self.auto_apply;
                config.siblings = self.services.siblings_of(&fleet);
                Arc::new(Planner::new(config))
            }
        };
        run.model = model.name();
        let _ = store.save_run(run);
        let name = format!("agent-{}", run.id);
        // In process by default; a remote fleetpilot when configured (same tools, its own audit).
        let connected: Result<(rmcp::service::Peer<RoleClient>, Box<dyn std::any::Any + Send>)> = match &self.tools_url {
            None => connect(self.service.clone(), &name)
                .await
                .map(|c| (c.peer().clone(), Box::new(c) as Box<dyn std::any::Any + Send>)),
            Some(url) => {
                let info =
                    ClientConfig::new(ClientCapabilities::default(), Implementation::new(&name, env!("CARGO_PKG_VERSION")));
                info.serve(rmcp::transport::StreamableHttpClientTransport::from_uri(url.clone()))
                    .await
                    .with_context(|| format!("cannot reach the agent's tools at {url}"))
                    .map(|c| (c.peer().clone(), Box::new(c) as Box<dyn std::any::Any + Send>))
            }
        };
        let (peer, _connection) = match connected {
            Ok(c) => c,
            Err(e) => {
                run.status = "tools_failed".into();
                run.answer = format!("{e:#}");
                run.finished_at = Some(now());
                fleetpilot_tools::metrics::metrics().agent_run(&run.kind, "tools_failed", 0, 0, 0.0);
                let _ = store.save_run(run);
                return;
            }
        };
        let tools = runner::tool_specs(&peer).await.unwrap_or_default();
        let conversation = vec![Message::text(Role::System, system), Message::text(Role::User, task)];
        let result = runner::run(model.as_ref(), &peer, &tools, conversation, self.budgets, &|_| {}).await;
        finish_run(run, &result, &self.price);
        if let Err(e) = store.save_run(run) {
            tracing::error!(error = %e, run = %run.id, "cannot record the run");
        }
        tracing::info!(run = %run.id, fleet = %run.fleet, status = %run.status, proposals = ?run.proposals, "agent run finished");
    }

    /// Run the agent on an alert run: every alert of its trigger, quoted, in one task.
    pub async fn run_alerts(&self, run: &mut RunRecord) {
        let alerts: Vec<Alert> = serde_json::from_value(run.trigger["alerts"].clone()).unwrap_or_default();
        let trigger = alerts.iter().map(|a| format!("{} {:?}", a.rule, a.condition)).collect::<Vec<_>>().join(", ");
        let system = self.system_prompt(&run.fleet);
        let task = self.alert_task(&run.fleet, &alerts);
        self.execute(run, system, task, &format!("alert {trigger}")).await;
    }

    pub(crate) fn system_prompt(&self, fleet: &str) -> String {
        let apply_rule = if self.auto_apply {
            "the verdict is allow (an allowed proposal may be applied at once)"
        } else {
            "a person asks you to (never on your own)"
        };
        fleetpilot_prompts::system(&fleetpilot_prompts::SystemInputs {
            fleet,
            resource_group: &self.service.config().default_resource_group,
            apply_rule,
        })
        .unwrap_or_default()
    }

    /// The task of an alert run: every coalesced alert, quoted.
    fn alert_task(&self, fleet: &str, alerts: &[Alert]) -> String {
        alerts
            .iter()
            .map(|a| {
                fleetpilot_prompts::alert(&fleetpilot_prompts::AlertInputs {
                    fleet,
                    rule: &a.rule,
                    condition: match a.condition {
                        MonitorCondition::Fired => "Fired",
                        MonitorCondition::Resolved => "Resolved",
                    },
                    fired_at: &a.fired_at,
                    severity: &a.severity,
                    signal_type: &a.signal_type,
                    targets: &a.target_ids.join(", "),
                    criteria: &criteria_line(a),
                    description: &a.description,
                })
                .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// The fleet an alert concerns: the Compute Fleet among its targets, else `default`.
fn fleet_of(alert: &Alert, default: &str) -> String {
    alert.fleet_target().map_or_else(|| default.to_string(), |f| f.name)
}

/// Alerts still firing, and when the agent last looked at each fleet. An Azure Monitor metric
/// alert is stateful: it notifies once when it fires and once when it resolves. A scale-out
/// bounded by the guardrails' step may need several steps, so while an alert stays fired the
/// agent is invoked again every `every` with it, until it resolves.
#[derive(Debug)]
pub struct FollowUps {
    every: time::Duration,
    default_fleet: String,
    firing: HashMap<String, Alert>,
    last_run: HashMap<String, OffsetDateTime>,
}

impl FollowUps {
    /// Follow up every `every`; alerts that name no fleet concern `default_fleet`.
    pub fn new(every: time::Duration, default_fleet: &str) -> Self {
        Self { every, default_fleet: default_fleet.into(), firing: HashMap::new(), last_run: HashMap::new() }
    }

    /// A notification arrived (fired alerts are remembered, resolved ones forgotten).
    pub fn observe(&mut self, alert: &Alert) {
        match alert.condition {
            MonitorCondition::Fired => {
                self.firing.insert(alert.alert_id.clone(), alert.clone());
            }
            MonitorCondition::Resolved => {
                self.firing.remove(&alert.alert_id);
            }
        }
    }

    /// The agent looked at `fleet` at `at`.
    pub fn ran(&mut self, fleet: &str, at: OffsetDateTime) {
        self.last_run.insert(fleet.to_ascii_lowercase(), at);
    }

    /// Fleets whose alerts are still firing and that nobody has looked at for `every`, with
    /// those alerts; each is marked as looked at now.
    pub fn due(&mut self, now: OffsetDateTime) -> Vec<(String, Vec<Alert>)> {
        let mut by_fleet: std::collections::BTreeMap<String, Vec<Alert>> = std::collections::BTreeMap::new();
        for alert in self.firing.values() {
            by_fleet.entry(fleet_of(alert, &self.default_fleet).to_ascii_lowercase()).or_default().push(alert.clone());
        }
        let due: Vec<(String, Vec<Alert>)> = by_fleet
            .into_iter()
            .filter(|(fleet, _)| self.last_run.get(fleet).is_none_or(|at| now - *at >= self.every))
            .map(|(fleet, mut alerts)| {
                alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
                (fleet, alerts)
            })
            .collect();
        for (fleet, _) in &due {
            self.last_run.insert(fleet.clone(), now);
        }
        due
    }
}

/// One fleet's queue: a run going, and at most one waiting (later alerts join it).
#[derive(Debug, Default)]
struct Slot {
    running: bool,
    queued: Option<String>,
}

/// Put the runs going and waiting, over all fleets, in the metrics.
fn publish_depth(slots: &HashMap<String, Slot>) {
    let running = slots.values().filter(|s| s.running).count();
    let queued = slots.values().filter(|s| s.queued.is_some()).count();
    fleetpilot_tools::metrics::metrics().agent_queue(running, queued);
}

/// Autonomous mode: alerts in, runs out.
#[derive(Debug)]
pub struct Autonomy {
    ctx: Arc<AgentContext>,
    token: String,
    slots: Mutex<HashMap<String, Slot>>,
    follow_ups: Mutex<FollowUps>,
}

/// What became of a posted alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ack {
    /// `started`, `queued`, `coalesced` or `duplicate`.
    pub status: &'static str,
    /// The run that handles it.
    pub run_id: String,
    /// The fleet.
    pub fleet: String,
}

impl Autonomy {
    /// Autonomous mode over `ctx`, accepting alerts that carry `token`.
    pub fn new(ctx: Arc<AgentContext>, token: String, follow_up: time::Duration) -> Arc<Self> {
        let follow_ups = Mutex::new(FollowUps::new(follow_up, &ctx.default_fleet));
        Arc::new(Self { ctx, token, slots: Mutex::new(HashMap::new()), follow_ups })
    }

    /// Invoke the agent again on alerts still firing, every follow-up interval, until
    /// `cancel` fires.
    pub async fn follow_up_until(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(15));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let now = self.ctx.service.config().clock.now();
                    let due = self.follow_ups.lock().unwrap_or_else(|e| e.into_inner()).due(now);
                    for (fleet, alerts) in due {
                        tracing::info!(fleet = %fleet, alerts = alerts.len(), "alerts still firing: the agent looks again");
                        let run = new_run("alert", &fleet, json!({ "alerts": alerts, "follow_up": true }));
                        if let Err(e) = self.enqueue(fleet, run) {
                            tracing::error!(error = %e, "cannot queue a follow-up run");
                        }
                    }
                }
            }
        }
    }

    /// Take an alert: deduplicate, coalesce or queue, and start a run when the fleet is free.
    ///
    /// # Errors
    /// State database failures.
    pub fn submit(self: &Arc<Self>, alert: Alert) -> Result<Ack> {
        let fleet = fleet_of(&alert, &self.ctx.default_fleet);
        let key = self.ctx.run_key(&fleet);
        let store = self.ctx.service.store().clone();
        let queued = self.slots.lock().unwrap_or_else(|e| e.into_inner()).get(&key).and_then(|s| s.queued.clone());
        // Coalesce into the queued run, if there is one.
        if let Some(queued) = queued {
            if !store.record_alert(&alert.dedup_key(), &queued)? {
                return Ok(Ack { status: "duplicate", run_id: queued, fleet });
            }
            self.follow_ups.lock().unwrap_or_else(|e| e.into_inner()).observe(&alert);
            if let Some(mut run) = store.run(&queued)? {
                if let Some(alerts) = run.trigger["alerts"].as_array_mut() {
                    alerts.push(serde_json::to_value(&alert)?);
                }
                store.save_run(&run)?;
            }
            return Ok(Ack { status: "coalesced", run_id: queued, fleet });
        }
        let run = new_run("alert", &fleet, json!({ "alerts": [alert] }));
        if !store.record_alert(&alert.dedup_key(), &run.id)? {
            return Ok(Ack { status: "duplicate", run_id: String::new(), fleet });
        }
        self.follow_ups.lock().unwrap_or_else(|e| e.into_inner()).observe(&alert);
        self.enqueue(fleet, run)
    }

    /// Queue a run for its fleet, starting it when the fleet is free.
    fn enqueue(self: &Arc<Self>, fleet: String, run: RunRecord) -> Result<Ack> {
        let key = self.ctx.run_key(&fleet);
        let store = self.ctx.service.store().clone();
        let run_id = run.id.clone();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(key.clone()).or_default();
        if slot.running {
            if let Some(queued) = slot.queued.clone() {
                // A run is already waiting: it will look at the fleet anyway.
                return Ok(Ack { status: "coalesced", run_id: queued, fleet });
            }
            store.save_run(&run)?;
            slot.queued = Some(run_id.clone());
            publish_depth(&slots);
            return Ok(Ack { status: "queued", run_id, fleet });
        }
        store.save_run(&run)?;
        slot.running = true;
        publish_depth(&slots);
        drop(slots);
        let this = self.clone();
        let first = run_id.clone();
        tokio::spawn(async move { this.work(key, first).await });
        Ok(Ack { status: "started", run_id, fleet })
    }

    /// Run the fleet's runs one after another until its queue is empty.
    async fn work(self: Arc<Self>, key: String, mut run_id: String) {
        let store = self.ctx.service.store().clone();
        loop {
            if let Ok(Some(mut run)) = store.run(&run_id) {
                let now = self.ctx.service.config().clock.now();
                // The run looks at its fleet, and at the fleets it plans with it.
                let mut looked_at = vec![run.fleet.clone()];
                if self.ctx.model.is_none() {
                    looked_at.extend(self.ctx.services.siblings_of(&run.fleet));
                }
                {
                    let mut follow_ups = self.follow_ups.lock().unwrap_or_else(|e| e.into_inner());
                    for fleet in &looked_at {
                        follow_ups.ran(fleet, now);
                    }
                }
                self.ctx.run_alerts(&mut run).await;
            }
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(key.clone()).or_default();
            let next = slot.queued.take();
            if next.is_none() {
                slot.running = false;
            }
            publish_depth(&slots);
            match next {
                Some(next) => run_id = next,
                None => return,
            }
        }
    }

    fn authorised(&self, query: &HashMap<String, String>, headers: &HeaderMap) -> bool {
        let given = query
            .get("token")
            .cloned()
            .or_else(|| headers.get("x-fleetpilot-alert-token").and_then(|v| v.to_str().ok()).map(str::to_string))
            .unwrap_or_default();
        // Constant time in the token's length.
        given.len() == self.token.len() && given.bytes().zip(self.token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// `POST /alerts`: Azure Monitor's common alert schema, from an action group's webhook.
pub async fn alerts_endpoint(
    State(autonomy): State<Arc<Autonomy>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let reply = |status: StatusCode, body: Value| (status, axum::Json(body)).into_response();
    if !autonomy.authorised(&query, &headers) {
        tracing::warn!("alert refused: missing or wrong token");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "unauthorized", "message": "missing or wrong alert token (?token= or X-Fleetpilot-Alert-Token)"}}),
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": {"code": "invalid_json", "message": format!("the body is not JSON: {e}")}}),
            );
        }
    };
    let alert = match Alert::from_common_schema(&value) {
        Ok(a) => a,
        Err(reason) => return reply(StatusCode::BAD_REQUEST, json!({"error": {"code": "invalid_alert", "message": reason}})),
    };
    match autonomy.submit(alert) {
        Ok(ack) if ack.status == "duplicate" => reply(StatusCode::OK, json!(ack)),
        Ok(ack) => reply(StatusCode::ACCEPTED, json!(ack)),
        Err(e) => {
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": {"code": "state_error", "message": format!("{e:#}")}}))
        }
    }
}
