//! The web dashboard at `/`: the fleet (capacity by priority and size against demand,
//! utilization, SLA, evictions, cost), the decisions (every proposal with who asked, the
//! verdict, the plan, the outcome, the agent run and alert behind it), approvals, and the
//! latest eval reports. Live through server-sent events at `/api/events`.
//!
//! Everything the page needs is embedded in the binary (`tools/assets/`): no CDN, no network.
//! It reads through [`FleetService`] like every other client; approving and rejecting go
//! through the same role check and audit as the MCP tools, as the caller `dashboard` with the
//! HTTP role.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use fleetpilot_core::Proposal;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::schema::{
    ApproveProposalInput, ListFleetsInput, ListProposalsInput, ListRunsInput, QueryKqlInput, ReadFleetInput, RejectProposalInput,
};
use crate::service::{FleetService, ToolError};
use crate::{Caller, Role};

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// Settings of the dashboard.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// What the page may do (approve and reject need `approver`).
    pub role: Role,
    /// Where eval reports are (`report.json` of `eval incidents --out`, and `policies/` with
    /// `eval policies --plot`'s report and plots).
    pub evals_dir: PathBuf,
    /// How often live updates are sent.
    pub refresh: Duration,
    /// Ends the live update streams (on shutdown).
    pub cancel: tokio_util::sync::CancellationToken,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            role: Role::Operator,
            evals_dir: PathBuf::from("target/evals"),
            refresh: Duration::from_secs(2),
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }
}

#[derive(Clone)]
struct Dash {
    service: Arc<FleetService>,
    config: Arc<DashboardConfig>,
}

/// The dashboard's routes: `/`, `/assets/*`, `/api/*`, `/evals/*`.
pub fn dashboard_router(service: Arc<FleetService>, config: DashboardConfig) -> axum::Router {
    let state = Dash { service, config: Arc::new(config) };
    axum::Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/assets/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }))
        .route("/assets/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/me", get(me))
        .route("/api/fleets", get(fleets))
        .route("/api/fleets/{resource_group}/{fleet}", get(fleet))
        .route("/api/fleets/{resource_group}/{fleet}/series", get(series))
        .route("/api/proposals", get(proposals))
        .route("/api/proposals/{id}/approve", post(approve))
        .route("/api/proposals/{id}/reject", post(reject))
        .route("/api/runs/{id}", get(run))
        .route("/api/evals", get(evals))
        .route("/evals/{*file}", get(eval_file))
        .route("/api/events", get(events))
        .with_state(state)
}

/// A tool error as an HTTP answer: the status follows the code.
fn error(e: ToolError) -> Response {
    let status = crate::rest::status_of(&e.code);
    (status, axum::Json(json!({"code": e.code, "message": e.message, "violations": e.violations}))).into_response()
}

/// The page's caller: who the authentication middleware let in (anonymous in development,
/// with the HTTP role).
fn caller(dash: &Dash, who: Option<&Caller>) -> Caller {
    match who {
        Some(c) if c.id != "anonymous" => Caller { id: format!("dashboard:{}", c.id), role: c.role },
        Some(c) => Caller { id: "dashboard".into(), role: c.role },
        None => Caller { id: "dashboard".into(), role: dash.config.role },
    }
}

async fn me(State(dash): State<Dash>, who: Option<Extension<Caller>>) -> impl IntoResponse {
    let caller = caller(&dash, who.as_ref().map(|e| &e.0));
    axum::Json(json!({"caller": caller.id, "role": caller.role.as_str(), "can_approve": caller.role >= Role::Approver}))
}

async fn fleets(State(dash): State<Dash>) -> Response {
    match dash.service.list_fleets(ListFleetsInput { resource_group: String::new() }).await {
        Ok(list) => axum::Json(list).into_response(),
        Err(e) => error(e),
    }
}

/// A fleet now: its state, cost, VMs counted by priority and size, and its guardrail policy.
async fn fleet_now(dash: &Dash, resource_group: &str, name: &str) -> Result<Value, ToolError> {
    let view = dash.service.read_fleet(ReadFleetInput { fleet: name.into(), resource_group: resource_group.into() }).await?;
    let mut mix: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for vm in &view.state.vms {
        let state = format!("{:?}", vm.state);
        if matches!(state.as_str(), "Running" | "Creating") {
            *mix.entry(format!("{:?}", vm.priority)).or_default().entry(vm.size.clone()).or_default() += 1;
        }
    }
    let policy = dash.service.config().policies.for_fleet(name);
    Ok(json!({
        "fleet": view.state.fleet,
        "id": view.state.id,
        "spot": view.state.spot,
        "regular": view.state.regular,
        "hourly_cost_usd": view.hourly_cost_usd,
        "vms_by_priority_and_size": mix,
        "vm_count": view.state.vms.len(),
        "bounds": {"min_spot": policy.min_spot, "max_spot": policy.max_spot, "min_regular": policy.min_regular, "max_regular": policy.max_regular,
                   "budget_usd_per_hour": policy.budget_usd_per_hour},
    }))
}

async fn fleet(State(dash): State<Dash>, Path((resource_group, name)): Path<(String, String)>) -> Response {
    match fleet_now(&dash, &resource_group, &name).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(e),
    }
}

#[derive(Debug, Deserialize)]
struct WindowQuery {
    /// Minutes of history (default 60, at most 7 days).
    #[serde(default = "default_window")]
    window: u32,
}

fn default_window() -> u32 {
    60
}

fn kql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The fleet's telemetry over a window, one point per bin: demand, served, running VMs,
/// targets by priority, CPU, SLA, p95 latency, cost rate and cumulative cost; its evictions;
/// and its guardrail bounds.
async fn series(
    State(dash): State<Dash>,
    Path((resource_group, name)): Path<(String, String)>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let window = q.window.clamp(5, 7 * 24 * 60);
    // About 120 points whatever the window.
    let step = (window / 120).max(1);
    let now = match fleet_now(&dash, &resource_group, &name).await {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    let id = now["id"].as_str().unwrap_or_default().to_string();
    let metrics = format!(
        "AzureMetrics | where ResourceId =~ {} \
         | where MetricName in ('RequestsArrived', 'RequestsServed', 'RunningVMs', 'SpotCapacity', 'RegularCapacity', 'TotalCost', 'SlaMet', 'Percentage CPU', 'LatencyP95Ms') \
         | summarize value = avg(Average), total = sum(Average) by t = bin(TimeGenerated, {step}m), MetricName \
         | order by t asc",
        kql_string(&id)
    );
    let timespan = format!("PT{window}M");
    let query = |q: String| QueryKqlInput { query: q, timespan: timespan.clone(), workspace: String::new(), max_rows: 10_000 };
    let rows = match dash.service.query_kql(query(metrics)).await {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let mut points: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    if let Some(table) = rows.tables.first() {
        let col = |n: &str| table.columns.iter().position(|c| c.name == n);
        if let (Some(t), Some(m), Some(v), Some(total)) = (col("t"), col("MetricName"), col("value"), col("total")) {
            for row in &table.rows {
                let time = row[t].as_str().unwrap_or_default().to_string();
                let metric = row[m].as_str().unwrap_or_default();
                let value = row[v].as_f64().unwrap_or(0.0);
                let point = points.entry(time.clone()).or_default();
                point.insert("t".into(), json!(time));
                let key = match metric {
                    "RequestsArrived" => "demand",
                    "RequestsServed" => "served",
                    "RunningVMs" => "running_vms",
                    "SpotCapacity" => "spot_target",
                    "RegularCapacity" => "regular_target",
                    "SlaMet" => "sla",
                    "Percentage CPU" => "cpu_percent",
                    "LatencyP95Ms" => "p95_ms",
                    "TotalCost" => {
                        point.insert("cost_usd_per_hour".into(), json!(value * 60.0));
                        point.insert("cost_usd".into(), json!(row[total].as_f64().unwrap_or(0.0)));
                        continue;
                    }
                    _ => continue,
                };
                point.insert(key.into(), json!(value));
            }
        }
    }
    let mut cumulative = 0.0;
    let points: Vec<Value> = points
        .into_values()
        .map(|mut p| {
            cumulative += p.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0);
            p.insert("cumulative_cost_usd".into(), json!(cumulative));
            Value::Object(p)
        })
        .collect();
    let events = format!(
        "ComputeFleetEvents_CL | where Fleet == {} | project t = TimeGenerated, kind = EventType, size = VmSize, message = Message | order by t asc | take 500",
        kql_string(&name)
    );
    let evictions = match dash.service.query_kql(query(events)).await {
        Ok(r) => r.tables.first().map(|table| {
            table
                .rows
                .iter()
                .map(|row| {
                    let obj: serde_json::Map<String, Value> =
                        table.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), v.clone())).collect();
                    Value::Object(obj)
                })
                .collect::<Vec<_>>()
        }),
        // A workspace without the custom table has no events to show.
        Err(_) => None,
    };
    axum::Json(json!({
        "fleet": name,
        "window_minutes": window,
        "step_minutes": step,
        "points": points,
        "events": evictions.unwrap_or_default(),
        "bounds": now["bounds"],
        "now": now,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ProposalQuery {
    #[serde(default)]
    fleet: String,
    #[serde(default)]
    status: String,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    50
}

/// Who asked for a proposal, in words, and the run behind it.
fn origin(p: &Proposal, runs: &[fleetpilot_infra::RunRecord]) -> Value {
    if let Some(run) = runs.iter().find(|r| r.proposals.contains(&p.id)) {
        let alerts: Vec<Value> = run.trigger["alerts"].as_array().cloned().unwrap_or_default();
        let kind = if run.kind == "alert" { "agent run on an alert" } else { "agent run in a chat" };
        return json!({"kind": kind, "run_id": run.id, "run_status": run.status, "model": run.model, "alerts": alerts,
                      "message": run.trigger.get("message")});
    }
    let who = &p.requested_by;
    let kind = if who.starts_with("mcp-") {
        "MCP client"
    } else if who.starts_with("cli") {
        "terminal"
    } else {
        "caller"
    };
    json!({"kind": kind, "caller": who})
}

async fn proposals(State(dash): State<Dash>, Query(q): Query<ProposalQuery>) -> Response {
    let list = match dash.service.list_proposals(ListProposalsInput { fleet: q.fleet.clone(), status: q.status, limit: q.limit })
    {
        Ok(l) => l,
        Err(e) => return error(e),
    };
    let runs = dash.service.list_runs(ListRunsInput { fleet: q.fleet, limit: 200 }).map(|r| r.runs).unwrap_or_default();
    let items: Vec<Value> = list
        .proposals
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["origin"] = origin(p, &runs);
            v
        })
        .collect();
    axum::Json(json!({"proposals": items})).into_response()
}

async fn review(dash: &Dash, who: Option<&Caller>, tool: &'static str, id: String, note: String) -> Response {
    let caller = caller(dash, who);
    let arguments = json!({"proposal_id": id, "note": note});
    let result = match dash.service.admit(&caller, tool) {
        Err(refused) => Err(refused),
        Ok(()) if tool == "approve_proposal" => dash
            .service
            .approve_proposal(ApproveProposalInput { proposal_id: id, note }, &caller.id)
            .await
            .map(|r| serde_json::to_value(r).unwrap_or_default()),
        Ok(()) => dash
            .service
            .reject_proposal(RejectProposalInput { proposal_id: id, note }, &caller.id)
            .map(|p| json!({"result": "rejected", "proposal": p})),
    };
    dash.service.audit_call(&caller, tool, &arguments, &result);
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ReviewBody {
    #[serde(default)]
    note: String,
}

async fn approve(
    State(dash): State<Dash>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: Option<axum::Json<ReviewBody>>,
) -> Response {
    review(&dash, who.as_ref().map(|e| &e.0), "approve_proposal", id, body.map(|b| b.0.note).unwrap_or_default()).await
}

async fn reject(
    State(dash): State<Dash>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: Option<axum::Json<ReviewBody>>,
) -> Response {
    review(&dash, who.as_ref().map(|e| &e.0), "reject_proposal", id, body.map(|b| b.0.note).unwrap_or_default()).await
}

async fn run(State(dash): State<Dash>, Path(id): Path<String>) -> Response {
    match dash.service.get_run(crate::schema::GetRunInput { run_id: id, include_transcript: true }) {
        Ok(run) => axum::Json(run).into_response(),
        Err(e) => error(e),
    }
}

/// The eval reports found: the incident suite's summary, and the policy comparison with its
/// plots.
async fn evals(State(dash): State<Dash>) -> impl IntoResponse {
    let dir = &dash.config.evals_dir;
    let read = |p: PathBuf| std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let incidents = read(dir.join("report.json")).map(|r| {
        json!({"summary": r.get("summary").cloned().unwrap_or(r.clone()), "html": dir.join("report.html").exists().then_some("/evals/report.html")})
    });
    let policies_dir = dir.join("policies");
    let mut plots: Vec<String> = std::fs::read_dir(&policies_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".svg"))
                .map(|n| format!("/evals/policies/{n}"))
                .collect()
        })
        .unwrap_or_default();
    plots.sort();
    let policies = read(policies_dir.join("report.json"));
    axum::Json(json!({"dir": dir, "incidents": incidents, "policies": policies, "plots": plots}))
}

/// A file of the eval reports: `report.html` or a plot, nothing outside the directory.
async fn eval_file(State(dash): State<Dash>, Path(file): Path<String>) -> Response {
    let allowed = |part: &str| !part.is_empty() && part != ".." && part != "." && !part.contains('\\');
    if !file.split('/').all(allowed) || file.split('/').count() > 2 {
        return StatusCode::NOT_FOUND.into_response();
    }
    let content_type = match file.rsplit('.').next() {
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match std::fs::read(dash.config.evals_dir.join(&file)) {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Live updates: every refresh, each fleet as it is now (`fleet` events), and a `proposals`
/// event whenever the proposals or their statuses changed.
async fn events(State(dash): State<Dash>) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((dash, String::new(), true), |(dash, last, first)| async move {
        if !first {
            tokio::select! {
                () = tokio::time::sleep(dash.config.refresh) => {}
                // Shutting down: the stream ends so that the connection can close.
                () = dash.config.cancel.cancelled() => return None,
            }
        }
        let mut events = Vec::new();
        if let Ok(list) = dash.service.list_fleets(ListFleetsInput { resource_group: String::new() }).await {
            for f in &list.fleets {
                if let Ok(now) = fleet_now(&dash, &f.fleet.resource_group, &f.fleet.name).await {
                    events.push(Event::default().event("fleet").data(now.to_string()));
                }
            }
        }
        let signature = dash
            .service
            .list_proposals(ListProposalsInput { fleet: String::new(), status: String::new(), limit: 50 })
            .map(|l| l.proposals.iter().map(|p| format!("{}:{}", p.id, p.status.as_str())).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let mut last = last;
        if signature != last {
            events.push(Event::default().event("proposals").data(json!({"changed": true}).to_string()));
            last = signature;
        }
        Some((futures::stream::iter(events.into_iter().map(Ok)), (dash, last, false)))
    });
    use futures::StreamExt;
    Sse::new(stream.flatten()).keep_alive(KeepAlive::default())
}
