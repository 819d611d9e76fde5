//! Prometheus metrics of fleetpilot itself at `/metrics` (text exposition, prometheus-client):
//! tool calls by tool and outcome, guardrail verdicts, executor actions, Azure retries, the
//! proposals waiting for approval, the agent's runs (going, waiting, ended), the model's tokens
//! and what they cost, and the clock fleetpilot runs on (the emulator's virtual time in the
//! embedded default).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::service::FleetService;

type Labels = Vec<(String, String)>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<Labels, Counter>,
    verdicts: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
    retries: Counter,
    pending: Gauge,
    clock: Gauge<f64, AtomicU64>,
    runs: Family<Labels, Gauge>,
    runs_ended: Family<Labels, Counter>,
    tokens: Family<Labels, Counter>,
    model_cost: Counter<f64, AtomicU64>,
}

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::default();
        let calls = Family::<Labels, Counter>::default();
        let verdicts = Family::<Labels, Counter>::default();
        let actions = Family::<Labels, Counter>::default();
        let retries = Counter::default();
        let pending = Gauge::default();
        let clock = Gauge::<f64, AtomicU64>::default();
        registry.register("fleetpilot_tool_calls", "Tool calls (MCP, REST, dashboard) by tool and outcome", calls.clone());
        registry.register("fleetpilot_verdicts", "Guardrail verdicts by decision", verdicts.clone());
        registry.register("fleetpilot_executor_actions", "Actions the executor carried out, by kind", actions.clone());
        registry.register("fleetpilot_azure_retries", "Transient Azure errors retried", retries.clone());
        registry.register("fleetpilot_proposals_pending_approval", "Proposals waiting for a person", pending.clone());
        registry.register(
            "fleetpilot_clock_seconds",
            "The clock fleetpilot runs on (virtual in the emulator), Unix seconds",
            clock.clone(),
        );
        let runs = Family::<Labels, Gauge>::default();
        let runs_ended = Family::<Labels, Counter>::default();
        let tokens = Family::<Labels, Counter>::default();
        let model_cost = Counter::<f64, AtomicU64>::default();
        registry.register(
            "fleetpilot_agent_runs",
            "Autonomous agent runs by state: running, or queued behind a fleet's running one",
            runs.clone(),
        );
        registry.register(
            "fleetpilot_agent_runs_ended",
            "Agent runs this process ended, by kind (alert; chat in `fleetpilot chat`) and ending",
            runs_ended.clone(),
        );
        registry.register(
            "fleetpilot_model_tokens",
            "Model tokens used by the agent, by kind (prompt, completion)",
            tokens.clone(),
        );
        registry.register(
            "fleetpilot_model_cost_usd",
            "What the agent's model tokens cost at the configured price, USD",
            model_cost.clone(),
        );
        for state in ["running", "queued"] {
            runs.get_or_create(&vec![("state".into(), state.into())]).set(0);
        }
        for kind in ["prompt", "completion"] {
            let _ = tokens.get_or_create(&vec![("kind".into(), kind.into())]);
        }
        Metrics { registry, calls, verdicts, actions, retries, pending, clock, runs, runs_ended, tokens, model_cost }
    })
}

impl Metrics {
    /// One tool call ended with `outcome` (`ok` or a tool error code).
    pub fn call(&self, tool: &str, outcome: &str) {
        self.calls.get_or_create(&vec![("tool".into(), tool.into()), ("outcome".into(), outcome.into())]).inc();
    }

    /// The guardrails decided.
    pub fn verdict(&self, decision: &str) {
        self.verdicts.get_or_create(&vec![("decision".into(), decision.into())]).inc();
    }

    /// Runs going and waiting, over all fleets.
    pub fn agent_queue(&self, running: usize, queued: usize) {
        self.runs.get_or_create(&vec![("state".into(), "running".into())]).set(running as i64);
        self.runs.get_or_create(&vec![("state".into(), "queued".into())]).set(queued as i64);
    }

    /// An agent run ended, having used these tokens at this cost.
    pub fn agent_run(&self, kind: &str, ending: &str, prompt_tokens: u64, completion_tokens: u64, cost_usd: f64) {
        self.runs_ended.get_or_create(&vec![("kind".into(), kind.into()), ("ending".into(), ending.into())]).inc();
        self.tokens.get_or_create(&vec![("kind".into(), "prompt".into())]).inc_by(prompt_tokens);
        self.tokens.get_or_create(&vec![("kind".into(), "completion".into())]).inc_by(completion_tokens);
        if cost_usd.is_finite() && cost_usd > 0.0 {
            self.model_cost.inc_by(cost_usd);
        }
    }

    /// The executor performed an action (`set_capacity`, `delete_vms`, …).
    pub fn action(&self, kind: &str) {
        self.actions.get_or_create(&vec![("action".into(), kind.into())]).inc();
    }
}

/// `GET /metrics`.
pub async fn handler(State(service): State<Arc<FleetService>>) -> impl IntoResponse {
    let m = metrics();
    let retried = fleetpilot_infra::arm::transient_retries();
    m.retries.inc_by(retried.saturating_sub(m.retries.get()));
    let pending = service
        .store()
        .proposals(None, Some(fleetpilot_core::ProposalStatus::NeedsApproval), 500)
        .map(|p| p.len() as i64)
        .unwrap_or(0);
    m.pending.set(pending);
    let now = service.config().clock.now();
    m.clock.set(now.unix_timestamp() as f64 + f64::from(now.nanosecond()) / 1e9);
    let mut text = String::new();
    if encode(&mut text, &m.registry).is_err() {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics").into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// The `/metrics` route.
pub fn router(service: Arc<FleetService>) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(handler)).with_state(service)
}
