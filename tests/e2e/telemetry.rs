//! Observability of fleetpilot itself: spans exported over OTLP/HTTP to a collector (a fake one
//! on loopback that decodes the protobuf as a real one would), the agent's runs, tokens and
//! queue in `/metrics`, and CORS answered only for the configured origins.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::HeaderMap;
use fleetpilot_e2e::{Server, TempDir, free_port};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use super::bin;

const TOKEN: &str = "telemetry-alert-token-0123456789";

/// What the fake collector received: one entry per export request.
#[derive(Default)]
struct Received {
    requests: Vec<(String, ExportTraceServiceRequest)>,
}

impl Received {
    fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for (_, request) in &self.requests {
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| v.value.as_ref())
                    .map(|v| match v {
                        AnyValue::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    spans.extend(scope.spans.iter().map(|s| (service.clone(), s.clone())));
                }
            }
        }
        spans
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| v.value.as_ref()).map(|v| match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

/// A collector on loopback: `POST /v1/traces` with an OTLP protobuf body.
async fn collector() -> Result<(String, Arc<Mutex<Received>>)> {
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        sink.lock().unwrap_or_else(|e| e.into_inner()).requests.push((content_type, request));
                        (axum::http::StatusCode::OK, Bytes::new())
                    }
                    Err(_) => (axum::http::StatusCode::BAD_REQUEST, Bytes::new()),
                }
            }
        }),
    );
    let url = format!("http://{}", fleetpilot_e2e::serve_loopback(app).await?);
    Ok((url, received))
}

async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    for _ in 0..300 {
        if let Some(v) = check() {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

async fn rest(base: &str, tool: &str, args: Value) -> Result<Value> {
    let response = reqwest::Client::new().post(format!("{base}/api/v1/tools/{tool}")).json(&args).send().await?;
    anyhow::ensure!(response.status().is_success(), "{tool}: {}", response.status());
    Ok(response.json().await?)
}

#[tokio::test]
async fn spans_go_to_the_otlp_collector_and_runs_to_metrics() -> Result<()> {
    let (collector_url, received) = collector().await?;
    let dir = TempDir::new("telemetry")?;
    let config = dir.path().join("fleetpilot.toml");
    std::fs::write(&config, format!("[alerts]\ntoken = \"{TOKEN}\"\nfollow_up_secs = 0\n"))?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--speed", "0", "--otlp-endpoint", &collector_url])
        .arg("--state")
        .arg(dir.path().join("state.db"))
        .env("RUST_LOG", "warn")
        .env("OTEL_SERVICE_NAME", "fleetpilot-e2e")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let health = fleetpilot_e2e::wait_healthy(&base).await?;

    // A tool call over REST: its span is exported by the batch exporter while serve runs,
    // although the log level (warn) would hide it from the log.
    rest(&base, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
    let read = until("the read_fleet span", || {
        let r = received.lock().unwrap_or_else(|e| e.into_inner());
        r.spans().into_iter().find(|(_, s)| s.name == "tool.call" && attribute(s, "tool").as_deref() == Some("read_fleet"))
    })
    .await?;
    assert_eq!(read.0, "fleetpilot-e2e", "the service is named by OTEL_SERVICE_NAME");
    assert_eq!(attribute(&read.1, "outcome").as_deref(), Some("ok"));
    assert_eq!(attribute(&read.1, "transport").as_deref(), Some("rest"));
    assert!(read.1.end_time_unix_nano > read.1.start_time_unix_nano);
    {
        let r = received.lock().unwrap_or_else(|e| e.into_inner());
        assert!(r.requests.iter().all(|(ct, _)| ct == "application/x-protobuf"), "OTLP/HTTP protobuf");
    }

    // Alerts: agent runs with their turns and tool calls, counted in /metrics. Azure is slowed
    // down so that the first run is still going when the second alert arrives and queues.
    let emulator = health["emulator"].as_str().context("emulator")?.to_string();
    let faults = async |body: Value| -> Result<()> {
        reqwest::Client::new().post(format!("{emulator}/_emulator/faults")).json(&body).send().await?.error_for_status()?;
        Ok(())
    };
    let metrics = async || -> Result<String> { Ok(reqwest::get(format!("{base}/metrics")).await?.text().await?) };
    let wait_for = async |line: &str| -> Result<String> {
        for _ in 0..300 {
            let text = metrics().await?;
            if text.lines().any(|l| l == line) {
                return Ok(text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("/metrics never showed {line:?}")
    };
    faults(json!({"latency_ms": 400})).await?;
    let post = async |id: &str| -> Result<Value> {
        let alert = super::alerts::fired(id, "2026-01-01T00:00:00Z", "CPU above 75%")?;
        let posted = reqwest::Client::new().post(format!("{base}/alerts?token={TOKEN}")).json(&alert).send().await?;
        anyhow::ensure!(posted.status() == 202, "{}", posted.status());
        Ok(posted.json().await?)
    };
    assert_eq!(post("t1").await?["status"], "started");
    wait_for("fleetpilot_agent_runs{state=\"running\"} 1").await?;
    assert_eq!(post("t2").await?["status"], "queued");
    wait_for("fleetpilot_agent_runs{state=\"queued\"} 1").await?;
    faults(json!({})).await?;
    wait_for("fleetpilot_agent_runs_ended_total{kind=\"alert\",ending=\"answered\"} 2").await?;
    // A run is counted as ended a moment before its slot is freed: wait for the gauge too.
    let text = wait_for("fleetpilot_agent_runs{state=\"running\"} 0").await?;
    for line in [
        "fleetpilot_agent_runs{state=\"running\"} 0",
        "fleetpilot_agent_runs{state=\"queued\"} 0",
        "fleetpilot_model_tokens_total{kind=\"prompt\"} 0",
        "fleetpilot_model_cost_usd_total 0.0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
    }
    assert!(text.contains("fleetpilot_tool_calls_total{tool=\"read_fleet\",outcome=\"ok\"}"), "{text}");

    // A last call just before SIGTERM: the spans still buffered are flushed on the way out.
    rest(&base, "get_policy", json!({"fleet": "cf-ml-scaling"})).await?;
    let pid = child.id().context("pid")?;
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.context("serve did not exit")??;
    assert!(exit.success(), "{exit:?}");
    let spans = received.lock().unwrap_or_else(|e| e.into_inner()).spans();
    let named = |name: &str| spans.iter().filter(|(_, s)| s.name == name).map(|(_, s)| s.clone()).collect::<Vec<_>>();
    assert!(
        named("tool.call").iter().any(|s| attribute(s, "tool").as_deref() == Some("get_policy")),
        "the span of the call just before shutdown was flushed"
    );
    let runs = named("agent.run");
    assert_eq!(runs.len(), 2, "two agent runs");
    let run = &runs[0];
    assert_eq!(attribute(run, "ending").as_deref(), Some("answered"));
    assert!(attribute(run, "tool_calls").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0);
    let run_ids: Vec<&Vec<u8>> = runs.iter().map(|r| &r.span_id).collect();
    let turns = named("agent.turn");
    assert!(!turns.is_empty() && turns.iter().all(|t| run_ids.contains(&&t.parent_span_id)), "turns are children of runs");
    assert!(turns.iter().any(|t| t.parent_span_id == run.span_id && t.trace_id == run.trace_id));
    let agent_calls = named("agent.tool_call");
    assert!(agent_calls.iter().any(|c| attribute(c, "tool").as_deref() == Some("read_fleet")));
    assert!(agent_calls.iter().all(|c| run_ids.contains(&&c.parent_span_id)), "the agent's tool calls are children of its runs");
    // The agent's calls reach the tools in process, as a caller with the agent's role.
    assert!(named("tool.call").iter().any(|s| attribute(s, "caller").is_some_and(|c| c.starts_with("mcp-"))));
    Ok(())
}

#[tokio::test]
async fn cors_is_off_unless_configured_and_then_only_for_those_origins() -> Result<()> {
    let preflight = async |base: &str, origin: &str| -> Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{base}/api/v1/tools/read_fleet"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await?)
    };
    // A tool call from the allowed origin's page, with a key or without.
    let cross_origin_call = async |base: &str, key: Option<&str>| -> Result<reqwest::Response> {
        let mut request = reqwest::Client::new()
            .post(format!("{base}/api/v1/tools/get_policy"))
            .header("origin", "https://ai.azure.com")
            .json(&json!({"fleet": "cf-ml-scaling"}));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        Ok(request.send().await?)
    };
    // Off by default: no CORS headers, whatever the origin.
    let server = Server::start(bin(), &[]).await?;
    let response = preflight(&server.base, "https://ai.azure.com").await?;
    assert!(response.headers().get("access-control-allow-origin").is_none(), "{:?}", response.headers());
    server.stop().await;

    let dir = TempDir::new("cors")?;
    let config = dir.path().join("fleetpilot.toml");
    std::fs::write(&config, "[server]\ncors_allowed_origins = [\"https://ai.azure.com\"]\n")?;
    let config = config.display().to_string();
    let server = Server::start(bin(), &["--config", &config]).await?;
    let allowed = preflight(&server.base, "https://ai.azure.com").await?;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let h = allowed.headers();
    assert_eq!(h.get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://ai.azure.com"));
    let headers = h.get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(headers.contains("authorization") && headers.contains("mcp-session-id"), "{headers}");
    assert!(h.get("access-control-allow-credentials").is_none(), "no cookies across origins");
    let other = preflight(&server.base, "https://evil.example").await?;
    assert!(other.headers().get("access-control-allow-origin").is_none(), "{:?}", other.headers());
    // A real cross-origin call from the allowed origin carries the header on its answer.
    let call = cross_origin_call(&server.base, None).await?;
    assert!(call.status().is_success(), "{}", call.status());
    assert_eq!(call.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://ai.azure.com"));
    server.stop().await;

    // With authentication on, the preflight (which carries no credential) is still answered,
    // and a refusal carries the CORS headers so that the page can read the 401.
    let key = "cors-test-key-0123456789";
    let digest = fleetpilot_tools::auth::key_digest(key);
    let authed = dir.path().join("authed.toml");
    std::fs::write(
        &authed,
        format!(
            "[server]\ncors_allowed_origins = [\"https://ai.azure.com\"]\n\n[[auth.api_keys]]\nname = \"t\"\nsha256 = \"{digest}\"\nrole = \"operator\"\n"
        ),
    )?;
    let authed = authed.display().to_string();
    let server = Server::start(bin(), &["--config", &authed]).await?;
    let allowed = preflight(&server.base, "https://ai.azure.com").await?;
    assert!(allowed.status().is_success(), "preflight with auth on: {}", allowed.status());
    let refused = cross_origin_call(&server.base, None).await?;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://ai.azure.com"));
    let ok = cross_origin_call(&server.base, Some(key)).await?;
    assert!(ok.status().is_success(), "{}", ok.status());
    server.stop().await;

    // A pattern is not an origin: refused at start, with the reason.
    std::fs::write(dir.path().join("bad.toml"), "[server]\ncors_allowed_origins = [\"https://*.azure.com\"]\n")?;
    let out = tokio::process::Command::new(bin())
        .arg("--config")
        .arg(dir.path().join("bad.toml"))
        .args(["serve", "--listen", "127.0.0.1:1"])
        .output()
        .await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an origin"), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
