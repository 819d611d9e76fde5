//! Prometheus metrics of fleetpilot itself at `/metrics` (text exposition, prometheus-client):
//! tool calls by tool and outcome, guardrail verdicts, executor actions, Azure retries, the
//! proposals waiting for approval, and the clock fleetpilot runs on (the emulator's virtual
//! time in the embedded default).

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
        Metrics { registry, calls, verdicts, actions, retries, pending, clock }
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
