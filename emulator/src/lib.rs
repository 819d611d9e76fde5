//! The local Azure: the ARM surfaces fleetpilot uses (resource groups, Compute Fleet, the
//! fleet's scale sets and VMs, long-running operations), served over HTTP with the official
//! paths, api-versions and error shapes, over a deterministic simulated world on a virtual
//! clock.
//!
//! It knows `fleetpilot-core` and nothing else of fleetpilot: clients reach it only over HTTP,
//! exactly as they would reach `https://management.azure.com`.

pub mod alerts;
pub mod aml;
pub mod arm;
pub mod clock;
pub mod faults;
pub mod foundry;
pub mod kql;
pub mod logs;
pub mod scenario;
pub mod services;
pub mod traces;
pub mod vm_telemetry;
pub mod wire;
pub mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use fleetpilot_core::PriceTable;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use clock::VirtualClock;
pub use scenario::Scenario;
pub use world::{World, WorldConfig};

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The world's tunables.
    pub world: WorldConfig,
    /// Virtual time at start.
    pub start: OffsetDateTime,
    /// Virtual seconds per real second (0 = paused; time then moves only when advanced).
    pub speed: f64,
    /// What exists at start.
    pub scenario: Scenario,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            world: WorldConfig::default(),
            start: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            speed: 1.0,
            scenario: Scenario::Reference,
        }
    }
}

/// A running emulator: its world and its clock.
#[derive(Debug)]
pub struct Emulator {
    world: Mutex<World>,
    /// The virtual clock.
    pub clock: VirtualClock,
    /// Requests served (ARM and Log Analytics), and the time spent serving them: what a
    /// benchmark subtracts as "Azure's time".
    requests: std::sync::atomic::AtomicU64,
    busy_ns: std::sync::atomic::AtomicU64,
}

impl Emulator {
    /// Build the world of `config.scenario` at `config.start`.
    pub fn new(config: EmulatorConfig) -> Arc<Self> {
        let mut world = World::new(config.world, PriceTable::embedded(), config.start);
        config.scenario.install(&mut world);
        Arc::new(Self {
            world: Mutex::new(world),
            clock: VirtualClock::new(config.start, config.speed),
            requests: Default::default(),
            busy_ns: Default::default(),
        })
    }

    /// Lock the world (without advancing it).
    pub fn lock_world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock would be a bug in the world's code; the state is
        // still the best there is, so keep serving it.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bring the world up to the clock's time and run `f` on it.
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let now = self.clock.now();
        let mut world = self.lock_world();
        world.advance_to(now);
        f(&mut world)
    }

    /// The HTTP surface: ARM paths at the root, `/healthz`, and `/_emulator/*` controls.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/_emulator/clock", get(clock_get).post(clock_post))
            .route("/_emulator/events", get(events))
            .route("/_emulator/ledger", get(ledger))
            .route("/_emulator/faults", get(faults_get).post(faults_post))
            .route("/_emulator/alerts", get(alerts_get))
            .route("/_emulator/alerts/webhook", axum::routing::post(alerts_webhook))
            .route("/v1/workspaces/{workspace}/query", get(la_get).post(la_post))
            .route("/_emulator/stats", get(stats))
            .route("/api/projects/{project}/agents", get(foundry::list))
            .route("/api/projects/{project}/agents/{name}", get(foundry::get).delete(foundry::delete))
            .route("/api/projects/{project}/agents/{name}/versions", axum::routing::post(foundry::create_version))
            .fallback(arm_fallback)
            .layer(axum::middleware::from_fn_with_state(self.clone(), time_requests))
            .with_state(self.clone())
    }

    /// Serve on `listener` until `cancel` fires. The world is also stepped in the background,
    /// so that it moves even when nobody asks.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, cancel: CancellationToken) -> std::io::Result<()> {
        let ticker = tokio::spawn(self.clone().tick_until(cancel.child_token()));
        let router = self.router();
        let result = axum::serve(listener, router).with_graceful_shutdown(cancel.cancelled_owned()).await;
        ticker.abort();
        result
    }

    /// Step the world in the background until cancelled.
    pub async fn tick_until(self: Arc<Self>, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(Duration::from_millis(250));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = interval.tick() => {
                    let outbox = self.with_world(|w| {
                        let outbox = std::mem::take(&mut w.alert_outbox);
                        outbox.into_iter().map(|n| { let hooks = w.webhooks_for(&n); (n, hooks) }).collect::<Vec<_>>()
                    });
                    for (notification, hooks) in outbox {
                        for hook in &hooks {
                            // The action group's webhook: delivered once, failures logged.
                            match http.post(hook).json(&notification).send().await {
                                Ok(r) if r.status().is_success() => {}
                                Ok(r) => tracing::warn!(status = r.status().as_u16(), "alert webhook refused a notification"),
                                Err(e) => tracing::warn!(error = %e, "alert webhook unreachable"),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Bind `addr` and serve the emulator there; returns the bound address and the task.
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn(
    emulator: Arc<Emulator>,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(emulator.serve(listener, cancel));
    Ok((bound, task))
}

async fn arm_fallback(
    State(emulator): State<Arc<Emulator>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    arm::handle(emulator, method, uri, headers, body).await
}

/// Body of `POST /v1/workspaces/{id}/query` (the spec's `queryBody`).
#[derive(Debug, Deserialize)]
struct QueryBody {
    query: String,
    #[serde(default)]
    timespan: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    workspaces: Option<Vec<String>>,
}

/// Query string of `GET /v1/workspaces/{id}/query`.
#[derive(Debug, Deserialize)]
struct QueryParams {
    query: Option<String>,
    timespan: Option<String>,
}

fn la_error(status: axum::http::StatusCode, code: &str, message: &str) -> axum::response::Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn la_post(
    State(emulator): State<Arc<Emulator>>,
    axum::extract::Path(workspace): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let body: QueryBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return la_error(
                axum::http::StatusCode::BAD_REQUEST,
                "BadArgumentError",
                &format!("The request body is not a valid query body: {e}"),
            );
        }
    };
    la_query(emulator, &workspace, body.query, body.timespan, &headers).await
}

async fn la_get(
    State(emulator): State<Arc<Emulator>>,
    axum::extract::Path(workspace): axum::extract::Path<String>,
    axum::extract::Query(params): axum::extract::Query<QueryParams>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let Some(query) = params.query else {
        return la_error(axum::http::StatusCode::BAD_REQUEST, "BadArgumentError", "The 'query' parameter is required.");
    };
    la_query(emulator, &workspace, query, params.timespan, &headers).await
}

/// Run a query against the workspace, as the Log Analytics query API does.
async fn la_query(
    emulator: Arc<Emulator>,
    workspace: &str,
    query: String,
    timespan: Option<String>,
    headers: &axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let config = emulator.lock_world().logs.config.clone();
    if !workspace.eq_ignore_ascii_case(&config.workspace_id) {
        return la_error(
            StatusCode::NOT_FOUND,
            "WorkspaceNotFoundError",
            &format!("The workspace '{workspace}' could not be found."),
        );
    }
    if query.len() > config.max_query_len {
        return la_error(
            StatusCode::BAD_REQUEST,
            "BadArgumentError",
            &format!("The query is {} characters long; the limit is {}.", query.len(), config.max_query_len),
        );
    }
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let include_render = prefer.contains("include-render=true");
    let include_statistics = prefer.contains("include-statistics=true");
    let wait = prefer
        .split([',', ';'])
        .find_map(|p| p.trim().strip_prefix("wait=").and_then(|w| w.parse::<u64>().ok()))
        .map_or(config.timeout, |s| Duration::from_secs(s.min(600)));
    let (snapshot, now) = emulator.with_world(|w| {
        let now = logs::ticks(w.now);
        let window = timespan.as_deref().and_then(|t| logs::parse_timespan_param(t, now));
        (w.logs.snapshot(window), now)
    });
    if timespan.as_deref().is_some_and(|t| logs::parse_timespan_param(t, now).is_none()) {
        return la_error(StatusCode::BAD_REQUEST, "BadArgumentError", "The 'timespan' is not an ISO-8601 duration or interval.");
    }
    let started = std::time::Instant::now();
    let options = kql::Options { now, max_query_len: config.max_query_len, deadline: Some(started + wait) };
    let (max_rows, max_bytes) = (config.max_rows, config.max_bytes);
    let result = tokio::task::spawn_blocking(move || kql::run(&query, &snapshot, &options)).await;
    match result {
        Ok(Ok(table)) => {
            let mut body = kql::response::query_results(&table, max_rows, max_bytes, include_render);
            if include_statistics {
                body["statistics"] = json!({"query": {"executionTime": started.elapsed().as_secs_f64(), "resourceUsage": {}}});
            }
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Ok(Err(e)) if e.kind == kql::ErrorKind::Limit && e.message.contains("time limit") => {
            la_error(StatusCode::GATEWAY_TIMEOUT, "GatewayTimeout", "The query ran past its time limit.")
        }
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, axum::Json(kql::response::error_json(&e))).into_response(),
        Err(e) => la_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", &e.to_string()),
    }
}

/// Count every request but the emulator's own controls, and the time spent serving it.
async fn time_requests(
    State(emulator): State<Arc<Emulator>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let control = request.uri().path().starts_with("/_emulator") || request.uri().path() == "/healthz";
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if !control {
        use std::sync::atomic::Ordering;
        emulator.requests.fetch_add(1, Ordering::Relaxed);
        emulator.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    response
}

/// `GET /_emulator/stats`: requests served and the time spent serving them.
async fn stats(State(emulator): State<Arc<Emulator>>) -> impl IntoResponse {
    use std::sync::atomic::Ordering;
    axum::Json(json!({
        "requests": emulator.requests.load(Ordering::Relaxed),
        "busy_ms": emulator.busy_ns.load(Ordering::Relaxed) as f64 / 1e6,
    }))
}

async fn alerts_get(State(emulator): State<Arc<Emulator>>) -> impl IntoResponse {
    let world = emulator.lock_world();
    axum::Json(json!({"webhooks": world.alert_webhooks, "rules": world.alert_rules, "sent": world.alerts_sent}))
}

/// Body of `POST /_emulator/alerts/webhook`: the action group's webhook.
#[derive(Debug, Deserialize)]
struct Webhook {
    url: String,
}

/// `POST /_emulator/alerts/webhook`: where the action group sends notifications (replaces;
/// an empty URL removes it).
async fn alerts_webhook(State(emulator): State<Arc<Emulator>>, axum::Json(hook): axum::Json<Webhook>) -> impl IntoResponse {
    let mut world = emulator.lock_world();
    world.alert_webhooks = if hook.url.is_empty() { Vec::new() } else { vec![hook.url] };
    axum::http::StatusCode::NO_CONTENT
}

async fn faults_get(State(emulator): State<Arc<Emulator>>) -> impl IntoResponse {
    axum::Json(emulator.lock_world().faults.clone())
}

/// `POST /_emulator/faults`: replace the faults in force (fields left out are off).
async fn faults_post(State(emulator): State<Arc<Emulator>>, axum::Json(faults): axum::Json<faults::Faults>) -> impl IntoResponse {
    let mut world = emulator.lock_world();
    world.set_faults(faults);
    axum::Json(world.faults.clone())
}

async fn healthz(State(emulator): State<Arc<Emulator>>) -> impl IntoResponse {
    let now = emulator.clock.now();
    axum::Json(json!({"status": "ok", "virtualTime": wire::rfc3339(now)}))
}

fn clock_json(emulator: &Emulator) -> serde_json::Value {
    let now = emulator.with_world(|w| w.now);
    json!({"now": wire::rfc3339(emulator.clock.now()), "simulatedUntil": wire::rfc3339(now), "speed": emulator.clock.speed()})
}

async fn clock_get(State(emulator): State<Arc<Emulator>>) -> impl IntoResponse {
    axum::Json(clock_json(&emulator))
}

/// Body of `POST /_emulator/clock`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockChange {
    /// Move virtual time forward by this many seconds.
    #[serde(default)]
    advance_seconds: u64,
    /// New speed factor.
    speed: Option<f64>,
}

async fn clock_post(State(emulator): State<Arc<Emulator>>, axum::Json(change): axum::Json<ClockChange>) -> impl IntoResponse {
    if let Some(speed) = change.speed {
        emulator.clock.set_speed(speed);
    }
    if change.advance_seconds > 0 {
        emulator.clock.advance(Duration::from_secs(change.advance_seconds));
    }
    axum::Json(clock_json(&emulator))
}

/// Query of `GET /_emulator/ledger`.
#[derive(Debug, Deserialize)]
struct LedgerQuery {
    service: Option<String>,
    #[serde(default)]
    last: Option<usize>,
}

async fn ledger(
    State(emulator): State<Arc<Emulator>>,
    axum::extract::Query(q): axum::extract::Query<LedgerQuery>,
) -> impl IntoResponse {
    let rows: Vec<services::LedgerRow> = emulator.with_world(|w| {
        let matching: Vec<&services::LedgerRow> =
            w.ledger.iter().filter(|r| q.service.as_deref().is_none_or(|s| r.service == s)).collect();
        let skip = q.last.map_or(0, |n| matching.len().saturating_sub(n));
        matching.into_iter().skip(skip).cloned().collect()
    });
    axum::Json(json!({ "value": rows }))
}

async fn events(State(emulator): State<Arc<Emulator>>) -> impl IntoResponse {
    let events: Vec<serde_json::Value> = emulator.with_world(|w| {
        w.events
            .iter()
            .map(|e| json!({"time": wire::rfc3339(e.at), "fleet": e.fleet, "kind": e.kind, "vmSize": e.size, "message": e.message}))
            .collect()
    });
    axum::Json(json!({ "value": events }))
}
