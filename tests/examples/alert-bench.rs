//! Alert received → proposal applied, with the built-in planner (no model latency), on the
//! embedded emulator:
//!
//! ```text
//! cargo build --release --bin fleetpilot
//! cargo run --release -p fleetpilot-e2e --example alert-bench -- target/release/fleetpilot [ALERTS]
//! ```
//!
//! Starts `serve` with a policy that lets every run move the fleet by one VM, raises demand
//! (an emulator fault) so CPU is high, posts ALERTS/2 alerts one after another (each run scales
//! out by one; two virtual minutes pass between alerts so new VMs boot), lowers demand, posts
//! ALERTS/2 more (each scales in by one). For each alert it
//! reports the server's own time from receiving the alert to the executor's verified outcome
//! (run created → proposal outcome), and the client's round trip until the run shows finished.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetpilot_e2e::{TempDir, advance, free_port, wait_healthy};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const TOKEN: &str = "bench-alert-token-0123456789";

async fn tool(http: &reqwest::Client, mcp: &str, name: &str, arguments: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
    let response: Value = http
        .post(mcp)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    response.pointer("/result/structuredContent").cloned().with_context(|| format!("{name}: {response}"))
}

fn alert(i: usize) -> Value {
    json!({
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": {
            "alertId": format!("/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/bench-{i}"),
            "alertRule": "ml-scaling-trigger", "severity": "Sev2", "signalType": "Metric", "monitorCondition": "Fired",
            "monitoringService": "Platform", "alertTargetIDs": [], "firedDateTime": format!("2026-01-01T00:00:{:02}.{i:04}Z", i % 60),
            "description": "bench", "essentialsVersion": "1.0", "alertContextVersion": "1.0"
        }, "alertContext": {}}
    })
}

fn ms(a: &str, b: &str) -> Option<f64> {
    let (a, b) = (OffsetDateTime::parse(a, &Rfc3339).ok()?, OffsetDateTime::parse(b, &Rfc3339).ok()?);
    Some((b - a).as_seconds_f64() * 1000.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(args.get(1).context("usage: alert-bench PATH-TO-fleetpilot [ALERTS]")?);
    let alerts: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let dir = TempDir::new("alert-bench")?;
    let config = dir.path().join("fleetpilot.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\ntoken = \"{TOKEN}\"\n[policy]\ncalls_per_caller_per_minute = 1000000\n[policy.default]\nmax_spot = 100\nmax_regular = 60\nmax_step_up = 1\nmax_step_down = 1\ncooldown_secs = 0\nstabilization_secs = 0\nmax_changes_per_hour = 1000000\napproval_above_delta = 1000\n"
        ),
    )?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--speed", "0", "--state"])
        .arg(dir.path().join("state.db"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let health = wait_healthy(&base).await?;
    let emulator = health["emulator"].as_str().context("emulator url")?.to_string();
    let http = reqwest::Client::new();
    let mcp = format!("{base}/mcp");
    // Only this benchmark's alerts.
    http.post(format!("{emulator}/_emulator/alerts/webhook")).json(&json!({"url": ""})).send().await?.error_for_status()?;
    let mut server_ms = Vec::new();
    let mut client_ms = Vec::new();
    let (mut own_ms, mut azure_ms, mut azure_calls) = (Vec::new(), Vec::new(), Vec::new());
    let mut by_tool: std::collections::BTreeMap<String, (f64, u32)> = Default::default();
    for (phase, demand) in [("scale-out", 6.0), ("scale-in", 0.05)] {
        http.post(format!("{emulator}/_emulator/faults"))
            .json(&json!({"demand_multiplier": demand}))
            .send()
            .await?
            .error_for_status()?;
        advance(&emulator, 1200).await?;
        for i in 0..alerts / 2 {
            let n = server_ms.len() + i;
            let before: Value = http.get(format!("{emulator}/_emulator/stats")).send().await?.json().await?;
            let started = Instant::now();
            let ack: Value = http
                .post(format!("{base}/alerts?token={TOKEN}"))
                .json(&alert(n + if phase == "scale-in" { 100_000 } else { 0 }))
                .send()
                .await?
                .json()
                .await?;
            let run_id = ack["run_id"].as_str().with_context(|| format!("{ack}"))?.to_string();
            let run = loop {
                let run = tool(&http, &mcp, "get_run", json!({"run_id": run_id})).await?;
                if !matches!(run["status"].as_str(), Some("queued" | "running")) {
                    break run;
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            };
            client_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let after: Value = http.get(format!("{emulator}/_emulator/stats")).send().await?.json().await?;
            // get_run polls do not reach the emulator; everything it served here was this run's.
            let azure = after["busy_ms"].as_f64().unwrap_or(0.0) - before["busy_ms"].as_f64().unwrap_or(0.0);
            azure_ms.push(azure);
            azure_calls.push(after["requests"].as_f64().unwrap_or(0.0) - before["requests"].as_f64().unwrap_or(0.0));
            let id =
                run["proposals"][0].as_str().with_context(|| format!("{phase}: the run proposed nothing: {}", run["answer"]))?;
            let proposals = tool(&http, &mcp, "list_proposals", json!({"limit": 5})).await?;
            let proposal = proposals["proposals"].as_array().into_iter().flatten().find(|p| p["id"] == id).context("proposal")?;
            if proposal["status"] != "applied" {
                bail!("{phase}: proposal {id} is {}: {}", proposal["status"], run["answer"]);
            }
            let applied = proposal["outcome"]["finished_at"].as_str().context("outcome")?;
            let total = ms(run["created_at"].as_str().context("created")?, applied).context("times")?;
            server_ms.push(total);
            own_ms.push(total - azure);
            let full = tool(&http, &mcp, "get_run", json!({"run_id": run_id, "include_transcript": true})).await?;
            for entry in full["transcript"].as_str().unwrap_or("").lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
                if entry["kind"] == "tool" {
                    let name = entry["name"].as_str().unwrap_or("").to_string();
                    let slot = by_tool.entry(name).or_insert((0.0, 0));
                    slot.0 += entry["took_ms"].as_f64().unwrap_or(0.0);
                    slot.1 += 1;
                }
            }
            // New VMs boot before the next alert (untimed).
            advance(&emulator, 120).await?;
        }
        let fleet = tool(&http, &mcp, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
        println!("after {phase}: spot capacity {}", fleet["spot"]["capacity"]);
    }
    let n = server_ms.len();
    println!(
        "alert received → proposal applied (server, built-in planner, embedded emulator): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {n} alerts",
        pct(&mut server_ms, 0.5),
        pct(&mut server_ms, 0.99),
        pct(&mut server_ms, 1.0)
    );
    println!(
        "  of which fleetpilot's own time (minus the emulator's time serving its {:.0} ARM and Log Analytics calls, p50 {:.1} ms): p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut azure_calls, 0.5),
        pct(&mut azure_ms, 0.5),
        pct(&mut own_ms, 0.5),
        pct(&mut own_ms, 0.99)
    );
    println!(
        "client round trip (POST /alerts → run seen finished, polling every 0.5 ms): p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut client_ms, 0.5),
        pct(&mut client_ms, 0.99)
    );
    let parts: Vec<String> = by_tool.iter().map(|(k, (t, n))| format!("{k} {:.1} ms", t / f64::from(*n))).collect();
    println!("mean time per tool call (parallel calls share a batch's time): {}", parts.join(", "));
    let _ = server.kill().await;
    Ok(())
}
