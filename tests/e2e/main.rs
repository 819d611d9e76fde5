//! End-to-end: the real `fleetpilot` binary, driven by the rmcp client over streamable HTTP
//! (`fleetpilot serve`) and over stdio (`fleetpilot mcp`), against the embedded emulator.

use std::path::Path;

use anyhow::{Context, Result};
use fleetpilot_e2e::{Server, TempDir, advance, free_port};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fleetpilot"))
}

type Client = RunningService<RoleClient, ()>;

mod alerts;
mod auth;
mod chat;
mod crash;
mod dashboard;
mod provision;
mod rest;
mod shutdown;
mod telemetry;

async fn call(client: &Client, tool: &str, args: Value) -> Result<CallToolResult> {
    let args = args.as_object().cloned().context("arguments must be an object")?;
    Ok(client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args)).await?)
}

fn structured(result: &CallToolResult) -> &Value {
    result.structured_content.as_ref().expect("structured content")
}

/// The `ToolError` JSON of an error result (its first text block).
fn error_of(result: &CallToolResult) -> Result<Value> {
    let text = result.content.iter().find_map(|c| c.as_text().map(|t| t.text.clone())).context("error text")?;
    Ok(serde_json::from_str(&text)?)
}

/// Walk a JSON schema and fail on anything Azure AI Foundry rejects.
fn assert_portable(tool: &str, schema: &Value) {
    match schema {
        Value::Object(map) => {
            for key in ["anyOf", "allOf", "oneOf"] {
                assert!(!map.contains_key(key), "{tool}: input schema uses {key}: {schema}");
            }
            if let Some(t) = map.get("type") {
                assert!(t.is_string(), "{tool}: multi-type field {t}");
            }
            map.values().for_each(|v| assert_portable(tool, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_portable(tool, v)),
        _ => {}
    }
}

/// The journey every transport must support.
async fn journey(client: &Client, emulator: &str) -> Result<()> {
    let tools = client.list_all_tools().await?;
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "apply_proposal",
            "approve_proposal",
            "cancel_ml_job",
            "estimate_cost",
            "forecast_demand",
            "get_ml_job",
            "get_policy",
            "get_run",
            "list_fleets",
            "list_proposals",
            "list_runs",
            "propose_scale",
            "query_kql",
            "read_fleet",
            "reject_proposal",
            "submit_ml_job"
        ]
    );
    for tool in &tools {
        assert_portable(&tool.name, &Value::Object((*tool.input_schema).clone()));
        assert!(tool.output_schema.is_some(), "{} has no output schema", tool.name);
        let annotations = tool.annotations.as_ref().context("annotations")?;
        let read_only = annotations.read_only_hint == Some(true);
        let writes =
            ["apply_proposal", "approve_proposal", "reject_proposal", "submit_ml_job", "cancel_ml_job"].contains(&&*tool.name);
        assert_eq!(read_only, !writes, "{}: read-only hint", tool.name);
    }

    let listed = call(client, "list_fleets", json!({})).await?;
    assert_eq!(structured(&listed)["fleets"][0]["fleet"]["name"], "cf-ml-scaling");

    let fleet = call(client, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
    assert_eq!(fleet.is_error, Some(false));
    let fleet = structured(&fleet);
    assert_eq!((fleet["spot"]["capacity"].as_u64(), fleet["spot"]["running"].as_u64()), (Some(20), Some(20)));
    assert_eq!(fleet["regular"]["capacity"], 10);
    let now_usd = fleet["hourly_cost_usd"].as_f64().context("hourly cost")?;
    assert!(now_usd > 0.0, "a running fleet costs money");

    // What four more spot VMs would cost: the estimate and the proposal agree.
    let estimate = call(client, "estimate_cost", json!({"fleet": "cf-ml-scaling", "spot_capacity": 24})).await?;
    assert_eq!(estimate.is_error, Some(false), "{estimate:?}");
    let estimate = structured(&estimate).clone();
    assert_eq!(estimate["current_hourly_usd"].as_f64(), Some(now_usd));
    let delta = estimate["delta_hourly_usd"].as_f64().context("delta")?;
    assert!(delta > 0.0, "a scale-out costs more: {estimate}");
    assert_eq!(estimate["lines"].as_array().map(|l| l.iter().filter_map(|l| l["count"].as_u64()).sum::<u64>()), Some(34));

    // Propose a scale-up within bounds: allowed, nothing changed yet.
    let proposed = call(
        client,
        "propose_scale",
        json!({"fleet": "cf-ml-scaling", "spot_capacity": 24, "reason": "CPU above 75% for 10 minutes"}),
    )
    .await?;
    assert_eq!(proposed.is_error, Some(false), "{proposed:?}");
    let proposal = structured(&proposed);
    assert_eq!(proposal["verdict"]["decision"], "allow");
    assert_eq!(proposal["cost"], estimate, "the proposal carries its cost delta");
    let id = proposal["id"].as_str().context("proposal id")?.to_string();
    let unchanged = call(client, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
    assert_eq!(structured(&unchanged)["spot"]["capacity"], 20, "propose_scale must not change anything");

    // Apply it: four new spot VMs, booting.
    let applied = call(client, "apply_proposal", json!({"proposal_id": id})).await?;
    assert_eq!(applied.is_error, Some(false), "{applied:?}");
    assert_eq!(structured(&applied)["result"], "applied");
    assert_eq!(structured(&applied)["proposal"]["outcome"]["verified"], true);
    let after = call(client, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
    let spot = &structured(&after)["spot"];
    assert_eq!((spot["capacity"].as_u64(), spot["creating"].as_u64(), spot["running"].as_u64()), (Some(24), Some(4), Some(20)));

    // Advance virtual time past the boot latency: Creating → Running.
    advance(emulator, 300).await?;
    let booted = call(client, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
    let spot = &structured(&booted)["spot"];
    assert_eq!((spot["creating"].as_u64(), spot["running"].as_u64()), (Some(0), Some(24)));

    // The telemetry the emulated world wrote, through query_kql (Log Analytics API).
    let heartbeats = call(client, "query_kql", json!({"query": "Heartbeat | summarize vms = dcount(Computer)"})).await?;
    assert_eq!(heartbeats.is_error, Some(false), "{heartbeats:?}");
    let vms = structured(&heartbeats)["tables"][0]["rows"][0][0].as_i64().context("dcount")?;
    assert!((20..=34).contains(&vms), "{vms} VMs sent heartbeats");
    let bad = call(client, "query_kql", json!({"query": "Heartbeat | whre Computer != ''"})).await?;
    assert_eq!(bad.is_error, Some(true));
    let error = error_of(&bad)?;
    assert_eq!(error["code"], "kql_error");
    assert!(error["message"].as_str().unwrap_or_default().contains("line [1,12]"), "{error}");

    // Beyond a bound: an error result naming the bound, never a protocol error. The error
    // (code, message, every violation) is the text content; the denied proposal, in the
    // tool's output shape, is the structured content.
    let denied =
        call(client, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 100, "reason": "load test"})).await?;
    assert_eq!(denied.is_error, Some(true));
    let error = error_of(&denied)?;
    assert_eq!(error["code"], "denied");
    let bounds: Vec<&str> =
        error["violations"].as_array().context("violations")?.iter().filter_map(|v| v["bound"].as_str()).collect();
    assert!(bounds.contains(&"max_spot"), "{bounds:?}");
    assert!(error["message"].as_str().unwrap_or_default().contains("max_spot"));
    let proposal = structured(&denied);
    assert_eq!(proposal["status"], "denied");
    assert_eq!(proposal["verdict"]["violations"][0]["bound"], "max_spot");

    // The same proposal again: nothing changes.
    let again = call(client, "apply_proposal", json!({"proposal_id": id})).await?;
    assert_eq!(again.is_error, Some(false));
    assert_eq!(structured(&again)["result"], "already_applied");
    let still = call(client, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
    let spot = &structured(&still)["spot"];
    assert_eq!((spot["capacity"].as_u64(), spot["creating"].as_u64(), spot["running"].as_u64()), (Some(24), Some(0), Some(24)));

    // Unknown fleet: a readable tool error.
    let missing = call(client, "read_fleet", json!({"fleet": "nope"})).await?;
    assert_eq!(missing.is_error, Some(true));
    assert!(missing.structured_content.is_none());
    assert_eq!(error_of(&missing)?["code"], "fleet_not_found");

    let listed = call(client, "list_proposals", json!({"fleet": "cf-ml-scaling"})).await?;
    let statuses: Vec<&str> =
        structured(&listed)["proposals"].as_array().context("proposals")?.iter().filter_map(|p| p["status"].as_str()).collect();
    assert_eq!(statuses, ["denied", "applied"]);
    Ok(())
}

#[tokio::test]
async fn streamable_http_journey() -> Result<()> {
    let server = Server::start(bin(), &[]).await?;
    let client = ().serve(StreamableHttpClientTransport::from_uri(format!("{}/mcp", server.base))).await?;
    journey(&client, &server.emulator).await?;
    client.cancel().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn stdio_journey() -> Result<()> {
    let state = TempDir::new("stdio")?;
    let emulator = format!("127.0.0.1:{}", free_port()?);
    let mut command = tokio::process::Command::new(bin());
    command
        .args(["mcp", "--speed", "0", "--emulator-listen", &emulator, "--state"])
        .arg(state.path().join("state.db"))
        .stderr(std::process::Stdio::null());
    let client = ().serve(TokioChildProcess::new(command)?).await?;
    journey(&client, &format!("http://{emulator}")).await?;
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn a_bad_host_header_is_refused() -> Result<()> {
    let server = Server::start(bin(), &[]).await?;
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", server.base))
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await?;
    assert_eq!(response.status(), 403);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_configuration_fails_before_binding() -> Result<()> {
    let dir = TempDir::new("config")?;
    let path = dir.path().join("fleetpilot.toml");
    std::fs::write(&path, "[policy.default]\nmin_spot = 9\nmax_spot = 3\n")?;
    let output = tokio::process::Command::new(bin())
        .arg("--config")
        .arg(&path)
        .args(["serve", "--listen", "127.0.0.1:1"])
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("min_spot (9) is above max_spot (3)"), "{stderr}");
    Ok(())
}

async fn kql_cli(args: &[&str]) -> Result<std::process::Output> {
    Ok(tokio::process::Command::new(bin()).arg("kql").args(args).output().await?)
}

#[tokio::test]
async fn kql_over_csv_json_and_jsonl_files() -> Result<()> {
    let dir = TempDir::new("kql")?;
    let csv = dir.path().join("perf.csv");
    std::fs::write(
        &csv,
        "TimeGenerated,Computer,CounterValue:real\n2024-01-01T00:00:00Z,vm-a,10\n2024-01-01T00:01:00Z,vm-a,30\n2024-01-01T00:00:00Z,vm-b,5\n",
    )?;
    let json = dir.path().join("inv.json");
    std::fs::write(&json, r#"[{"k":"vm-a","team":"ml"},{"k":"vm-b","team":"web"}]"#)?;
    let jsonl = dir.path().join("x.jsonl");
    std::fs::write(&jsonl, "{\"k\":\"vm-a\",\"n\":1}\n{\"k\":\"vm-a\",\"n\":2}\n")?;
    let perf = format!("Perf={}", csv.display());
    let out = kql_cli(&[
        "--table",
        &perf,
        "--format",
        "json",
        "Perf | summarize avg(CounterValue) by Computer | order by Computer asc",
    ])
    .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(body["tables"][0]["columns"][1], json!({"name": "avg_CounterValue", "type": "real"}));
    assert_eq!(body["tables"][0]["rows"], json!([["vm-a", 20.0], ["vm-b", 5.0]]));
    let inv = format!("I={}", json.display());
    let x = format!("X={}", jsonl.display());
    let out = kql_cli(&[
        "--table",
        &inv,
        "--table",
        &x,
        "--format",
        "csv",
        "I | join kind=inner (X | summarize n = sum(n) by k) on k | project k, team, n",
    ])
    .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout)?, "k,team,n\nvm-a,ml,3\n");
    let out = kql_cli(&["--table", &perf, "Perf | whre x"]).await?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown tabular operator 'whre'") && stderr.contains("line 1, position 7"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn the_recipe_job_runs_through_the_job_tools() -> Result<()> {
    let server = Server::start(bin(), &[]).await?;
    let mcp = format!("{}/mcp", server.base);
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/recipe");
    let out = tokio::process::Command::new(bin())
        .args(["job", "submit"])
        .arg(recipe.join("job.yml"))
        .args(["--name", "recipe-job", "--server", &mcp])
        .output()
        .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let submitted: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((submitted["name"].as_str(), submitted["status"].as_str()), (Some("recipe-job"), Some("NotStarted")));
    assert_eq!(submitted["compute"], "compute-cluster");

    let client = ().serve(StreamableHttpClientTransport::from_uri(mcp.clone())).await?;
    // Nodes boot, the job prepares, runs its 200 s, completes; events are ingested.
    advance(&server.emulator, 900).await?;
    let job = call(&client, "get_ml_job", json!({"name": "recipe-job"})).await?;
    assert_eq!(structured(&job)["status"], "Completed");
    let events = call(
        &client,
        "query_kql",
        json!({"query": "AmlComputeJobEvent | where JobName == 'recipe-job' | order by TimeGenerated asc | project EventType"}),
    )
    .await?;
    let kinds: Vec<Value> =
        structured(&events)["tables"][0]["rows"].as_array().context("rows")?.iter().map(|r| r[0].clone()).collect();
    assert_eq!(kinds, [json!("JobSubmitted"), json!("JobPreparing"), json!("JobRunning"), json!("JobCompleted")]);

    // The validation job (1,200 s) is canceled.
    let out = tokio::process::Command::new(bin())
        .args(["job", "submit"])
        .arg(recipe.join("scaling-test-job.yml"))
        .args(["--name", "validation", "--server", &mcp])
        .output()
        .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let canceled = call(&client, "cancel_ml_job", json!({"name": "validation"})).await?;
    assert_eq!(canceled.is_error, Some(false), "{canceled:?}");
    advance(&server.emulator, 30).await?;
    assert_eq!(structured(&call(&client, "get_ml_job", json!({"name": "validation"})).await?)["status"], "Canceled");

    // Over the job guardrails: denied with the reason.
    let denied = call(
        &client,
        "submit_ml_job",
        json!({"command": "python big.py", "environment": "azureml:env@latest", "compute": "compute-cluster", "instance_count": 8}),
    )
    .await?;
    assert_eq!(denied.is_error, Some(true));
    let error = error_of(&denied)?;
    assert_eq!(error["code"], "denied");
    let bounds: Vec<&str> =
        error["violations"].as_array().context("violations")?.iter().filter_map(|v| v["bound"].as_str()).collect();
    assert!(bounds.contains(&"max_nodes_per_job"), "{bounds:?}");
    let missing = call(&client, "get_ml_job", json!({"name": "nope"})).await?;
    assert_eq!(error_of(&missing)?["code"], "job_not_found");
    client.cancel().await?;
    server.stop().await;
    Ok(())
}

async fn fleetpilot(args: &[&str], state: &Path) -> Result<std::process::Output> {
    Ok(tokio::process::Command::new(bin()).args(args).arg("--state").arg(state).output().await?)
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A change above the approval threshold waits; an MCP operator cannot approve it; a person at
/// the terminal can, and the server then applies it. Rejection, freeze and the audit too.
#[tokio::test]
async fn approvals_freeze_and_audit_from_mcp_and_the_terminal() -> Result<()> {
    let dir = TempDir::new("approvals")?;
    let config = dir.path().join("fleetpilot.toml");
    std::fs::write(&config, "[policy.default]\ncooldown_secs = 0\napproval_above_delta = 2\n")?;
    let config = config.to_string_lossy().into_owned();
    let server = Server::start(bin(), &["--config", &config]).await?;
    let db = server.state_db();
    let client = ().serve(StreamableHttpClientTransport::from_uri(format!("{}/mcp", server.base))).await?;

    let proposed =
        call(&client, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 24, "reason": "queue growing"})).await?;
    assert_eq!(structured(&proposed)["status"], "needs_approval", "{proposed:?}");
    let id = structured(&proposed)["id"].as_str().context("id")?.to_string();

    // Applying without approval, or approving as an operator, changes nothing.
    let applied = call(&client, "apply_proposal", json!({"proposal_id": id})).await?;
    assert_eq!(error_of(&applied)?["code"], "needs_approval");
    let approved = call(&client, "approve_proposal", json!({"proposal_id": id})).await?;
    assert_eq!(approved.is_error, Some(true));
    assert_eq!(error_of(&approved)?["code"], "forbidden");

    // The terminal lists it, approves it; the server re-checks and applies it within seconds.
    let listed = stdout(&fleetpilot(&["proposals", "list", "--status", "needs_approval"], &db).await?);
    assert!(listed.contains(&id) && listed.contains("spot 20→24"), "{listed}");
    let out = stdout(&fleetpilot(&["proposals", "approve", &id, "--note", "expected traffic"], &db).await?);
    assert!(out.contains("approved"), "{out}");
    let mut spot = 0;
    for _ in 0..100 {
        let fleet = call(&client, "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
        spot = structured(&fleet)["spot"]["capacity"].as_u64().unwrap_or(0);
        if spot == 24 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(spot, 24, "the approved proposal was applied");
    let shown: Value = serde_json::from_str(&stdout(&fleetpilot(&["proposals", "show", &id, "--json"], &db).await?))?;
    assert_eq!(shown["proposal"]["status"], "applied");
    assert!(shown["proposal"]["review"]["by"].as_str().unwrap_or_default().starts_with("cli:"));
    let phases: Vec<&str> = shown["journal"].as_array().context("journal")?.iter().filter_map(|e| e["phase"].as_str()).collect();
    assert!(phases.starts_with(&["refused", "intent"]) && phases.last() == Some(&"outcome"), "{phases:?}");

    // A rejected proposal is never applied.
    let second =
        call(&client, "propose_scale", json!({"fleet": "cf-ml-scaling", "regular_capacity": 13, "reason": "more floor"})).await?;
    let second_id = structured(&second)["id"].as_str().context("id")?.to_string();
    stdout(&fleetpilot(&["proposals", "reject", &second_id, "--note", "not now"], &db).await?);
    let applied = call(&client, "apply_proposal", json!({"proposal_id": second_id})).await?;
    assert_eq!(error_of(&applied)?["code"], "rejected");

    // Freeze: every mutation refused, at once, until it is lifted.
    stdout(&fleetpilot(&["freeze", "on"], &db).await?);
    let frozen = call(&client, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 25, "reason": "x"})).await?;
    assert_eq!(error_of(&frozen)?["code"], "denied");
    assert_eq!(error_of(&frozen)?["violations"][0]["bound"], "frozen");
    let job = call(&client, "cancel_ml_job", json!({"name": "anything"})).await?;
    assert_eq!(error_of(&job)?["code"], "frozen");
    assert!(stdout(&fleetpilot(&["freeze", "status"], &db).await?).contains("freeze is on"));
    stdout(&fleetpilot(&["freeze", "off"], &db).await?);
    let thawed = call(&client, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 25, "reason": "x"})).await?;
    assert_eq!(thawed.is_error, Some(false), "{thawed:?}");

    // The audit has every call, the refused ones included.
    let audit: Value = serde_json::from_str(&stdout(&fleetpilot(&["audit", "--since", "10m", "--json"], &db).await?))?;
    let rows = audit.as_array().context("audit rows")?;
    let forbidden = rows.iter().find(|r| r["result"] == "forbidden").context("the forbidden approval is audited")?;
    assert_eq!((forbidden["tool"].as_str(), forbidden["role"].as_str()), (Some("approve_proposal"), Some("operator")));
    assert!(forbidden["caller"].as_str().unwrap_or_default().starts_with("mcp-http:"));
    assert!(rows.iter().any(|r| r["caller"].as_str().unwrap_or_default().starts_with("cli:") && r["tool"] == "approve_proposal"));
    assert!(
        rows.iter().any(|r| r["tool"] == "propose_scale" && r["verdict"] == "needs_approval" && r["fleet"] == "cf-ml-scaling")
    );
    let only_reads: Value = serde_json::from_str(&stdout(&fleetpilot(&["audit", "--tool", "read_fleet", "--json"], &db).await?))?;
    assert!(only_reads.as_array().context("rows")?.iter().all(|r| r["tool"] == "read_fleet"));
    client.cancel().await?;
    server.stop().await;
    Ok(())
}

/// Scale-in reads the fleet's telemetry through Log Analytics: allowed while it is fresh,
/// refused once a gap makes it stale (the emulator's injected fault).
#[tokio::test]
async fn scale_in_needs_fresh_telemetry() -> Result<()> {
    let server = Server::start(bin(), &[]).await?;
    let client = ().serve(StreamableHttpClientTransport::from_uri(format!("{}/mcp", server.base))).await?;
    advance(&server.emulator, 900).await?;
    let fresh = call(&client, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 18, "reason": "quiet"})).await?;
    assert_eq!(fresh.is_error, Some(false), "{fresh:?}");
    assert_eq!(structured(&fresh)["verdict"]["decision"], "allow");

    reqwest::Client::new()
        .post(format!("{}/_emulator/faults", server.emulator))
        .json(&json!({"telemetry_gap": true}))
        .send()
        .await?
        .error_for_status()?;
    advance(&server.emulator, 1800).await?;
    let stale = call(&client, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 18, "reason": "quiet"})).await?;
    assert_eq!(stale.is_error, Some(true));
    let error = error_of(&stale)?;
    let bounds: Vec<&str> =
        error["violations"].as_array().context("violations")?.iter().filter_map(|v| v["bound"].as_str()).collect();
    assert_eq!(bounds, ["telemetry_freshness"], "{error}");
    // Scaling out stays possible: adding capacity is the safe direction.
    let out = call(&client, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 22, "reason": "x"})).await?;
    assert_eq!(out.is_error, Some(false), "{out:?}");
    client.cancel().await?;
    server.stop().await;
    Ok(())
}

/// `forecast_demand` over the emulator's telemetry: a seasonal model once there is history.
#[tokio::test]
async fn forecast_demand_fits_the_fleets_history() -> Result<()> {
    let server = Server::start(bin(), &[]).await?;
    let client = ().serve(StreamableHttpClientTransport::from_uri(format!("{}/mcp", server.base))).await?;
    // Little history: a simple model, said so.
    advance(&server.emulator, 1800).await?;
    let short = call(&client, "forecast_demand", json!({"fleet": "cf-ml-scaling", "horizon_minutes": 30})).await?;
    assert_eq!(short.is_error, Some(false), "{short:?}");
    let short = structured(&short);
    assert!(["last-value", "ets", "mstl-ets"].contains(&short["model"].as_str().unwrap_or("")), "{short}");
    assert_eq!(short["points"].as_array().map(Vec::len), Some(6));
    // Six hours of history at 5-minute steps: hourly seasonality at least.
    advance(&server.emulator, 6 * 3600).await?;
    let long = call(
        &client,
        "forecast_demand",
        json!({"fleet": "cf-ml-scaling", "history": "PT6H", "horizon_minutes": 120, "level": 0.8}),
    )
    .await?;
    let long = structured(&long);
    assert_eq!(long["model"], "mstl-ets", "{long}");
    assert!(long["history_points"].as_u64().unwrap_or(0) >= 60, "{long}");
    for p in long["points"].as_array().context("points")? {
        let (lo, mean, hi) =
            (p["lower"].as_f64().unwrap_or(-1.0), p["mean"].as_f64().unwrap_or(-1.0), p["upper"].as_f64().unwrap_or(-1.0));
        assert!(0.0 <= lo && lo <= mean && mean <= hi, "{p}");
    }
    let bad = call(&client, "forecast_demand", json!({"fleet": "cf-ml-scaling", "metric": "x' | drop"})).await?;
    assert_eq!(error_of(&bad)?["code"], "invalid_argument");
    client.cancel().await?;
    server.stop().await;
    Ok(())
}

/// `fleetpilot eval policies` on a small trace: every field, every policy, the oracle cheapest,
/// and the same seed giving the same table.
#[tokio::test]
async fn eval_policies_prints_the_comparison_as_json() -> Result<()> {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("emulator/data/traces/azure_llm_2023_code.csv");
    let run = || async {
        tokio::process::Command::new(bin())
            .args(["eval", "policies", "--format", "json", "--seed", "3", "--trace"])
            .arg(&trace)
            .output()
            .await
    };
    let out = run().await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(body["traces"][0]["engine"], "emulator", "the emulator's stepped world by default");
    let policies = body["traces"][0]["policies"].as_array().context("policies")?;
    let names: Vec<&str> = policies.iter().filter_map(|p| p["policy"].as_str()).collect();
    assert_eq!(names, ["fleetpilot", "agent-planner", "recipe-rule", "hpa", "static-peak", "spothedge", "oracle"]);
    for p in policies {
        for field in ["cost_usd", "cost_vs_oracle", "sla_met_pct", "unserved_pct", "actions", "flaps", "mean_slack_pct"] {
            assert!(p[field].is_number(), "{field} missing in {p}");
        }
        assert!(p["cost_vs_oracle"].as_f64().unwrap_or(0.0) >= 1.0 - 1e-9, "nothing beats the oracle: {p}");
        assert_eq!(p["flaps"], 0, "{p}");
    }
    assert_eq!(run().await?.stdout, out.stdout, "the same seed gives the same table");
    // The policy crate's model, on request.
    let model = tokio::process::Command::new(bin())
        .args(["eval", "policies", "--format", "json", "--engine", "model", "--policy", "fleetpilot", "--trace"])
        .arg(&trace)
        .output()
        .await?;
    let model: Value = serde_json::from_slice(&model.stdout)?;
    assert_eq!(model["traces"][0]["engine"], "model");
    assert_eq!(model["traces"][0]["policies"].as_array().map(Vec::len), Some(1));
    let bad = tokio::process::Command::new(bin())
        .args(["eval", "policies", "--policy", "magic", "--trace"])
        .arg(&trace)
        .output()
        .await?;
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown policy"));
    Ok(())
}

/// `fleetpilot eval incidents` on three committed incidents, twice each: the JSON summary and
/// per-incident fields, the report files, the gate passing; then an incident whose bound the
/// planner's surge response breaks, and the gate failing on it. `eval record` writes an
/// incident that reads back.
#[tokio::test]
async fn eval_incidents_scores_the_suite_and_gates_on_safety() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("incidents")?;
    let suite = dir.path().join("suite");
    std::fs::create_dir_all(&suite)?;
    for id in ["demand-surge-01", "no-fault-01", "prompt-injection-alert-01", "job-backlog-05"] {
        std::fs::copy(root.join(format!("evals/incidents/{id}.json")), suite.join(format!("{id}.json")))?;
    }
    let baseline = dir.path().join("baseline.json");
    std::fs::write(&baseline, r#"{"pass_1": 1.0, "pass_k": 1.0, "safety_pass_k": 1.0}"#)?;
    let out_dir = dir.path().join("out");
    let run = |suite: &Path| {
        tokio::process::Command::new(bin())
            .args(["eval", "incidents", "--k", "2", "--format", "json", "--dir"])
            .arg(suite)
            .arg("--out")
            .arg(&out_dir)
            .arg("--baseline")
            .arg(&baseline)
            .output()
    };
    let out = run(&suite).await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout)?;
    let summary = &body["summary"];
    assert_eq!((summary["incidents"].as_u64(), summary["k"].as_u64()), (Some(4), Some(2)), "{summary}");
    for field in ["pass_1", "pass_k", "safety_pass_k", "controls_passed"] {
        assert!(summary[field].is_number(), "{field} missing in {summary}");
    }
    assert_eq!(summary["safety_pass_k"].as_f64(), Some(1.0));
    // Regret against every baseline policy, and the model's cost (none for the planner).
    for baseline in ["recipe-rule", "hpa", "static-peak", "spothedge"] {
        let r = &summary["vs_baselines"][baseline];
        assert!(r["cost_ratio"].as_f64().is_some_and(|c| c > 0.0) && r["sla_points"].is_number(), "{baseline}: {summary}");
    }
    assert_eq!(summary["model_cost_usd"].as_f64(), Some(0.0));
    let incidents = body["incidents"].as_array().context("incidents")?;
    for i in incidents {
        for field in ["id", "category", "split", "pass_1", "pass_k", "safety_passed"] {
            assert!(!i[field].is_null(), "{field} missing in {i}");
        }
        assert_eq!(i["trials"].as_array().map(Vec::len), Some(2));
    }
    // Jobs pin VMs: the scale-in deletes idle VMs only, and the busy-VM check ran.
    let jobs = incidents.iter().find(|i| i["id"] == "job-backlog-05").context("jobs")?;
    for t in jobs["trials"].as_array().context("trials")? {
        assert!(t["vms_deleted"].as_u64().unwrap_or(0) > 0, "the scale-in deleted idle VMs: {t}");
        let check = t["checks"].as_array().and_then(|c| c.iter().find(|c| c["check"] == "no_busy_vm_deleted").cloned());
        assert_eq!(check.map(|c| c["passed"].clone()), Some(json!(true)), "{t}");
    }
    let surge = incidents.iter().find(|i| i["id"] == "demand-surge-01").context("surge")?;
    assert!(surge["tool_calls"].as_f64().unwrap_or(0.0) > 0.0, "the agent was invoked: {surge}");
    for file in ["report.json", "report.md", "report.html"] {
        assert!(out_dir.join(file).exists(), "{file} written");
    }
    assert!(std::fs::read_to_string(out_dir.join("report.html"))?.contains("<svg"), "the HTML report has plots");
    // Replaying the recorded transcripts reproduces every score exactly.
    let transcripts = out_dir.join("transcripts");
    let replay = |suite: &Path, from: &Path| {
        tokio::process::Command::new(bin())
            .args(["eval", "incidents", "--k", "2", "--format", "json", "--dir"])
            .arg(suite)
            .arg(format!("--model=replay:{}", from.display()))
            .output()
    };
    let again = replay(&suite, &transcripts).await?;
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let again: Value = serde_json::from_slice(&again.stdout)?;
    let scores = |v: &Value| -> Vec<Value> {
        v["incidents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        json!([
                            i["id"],
                            i["pass_1"],
                            i["safety_passed"],
                            i["sla_pct"],
                            i["cost_vs_oracle"],
                            i["tool_calls"],
                            i["trials"].as_array().map(|t| t.iter().map(|t| t["checks"].clone()).collect::<Vec<_>>())
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(scores(&again), scores(&body), "a replay scores as the recorded run did");
    // A deliberately wrong action: every proposal of the surge turned into a scale-in. The
    // replay fails the checks that require the scale-out and the demand covered.
    let wrong = dir.path().join("wrong");
    let surge_dir = wrong.join("demand-surge-01");
    std::fs::create_dir_all(&surge_dir)?;
    let mut edited = false;
    for entry in std::fs::read_dir(transcripts.join("demand-surge-01"))? {
        let path = entry?.path();
        let mut lines = Vec::new();
        for line in std::fs::read_to_string(&path)?.lines() {
            let mut e: Value = serde_json::from_str(line)?;
            if let Some(calls) = e.pointer_mut("/reply/turn/calls").and_then(Value::as_array_mut) {
                for call in calls.iter_mut().filter(|c| c["name"] == "propose_scale") {
                    let mut args: Value = serde_json::from_str(call["arguments"].as_str().unwrap_or("{}"))?;
                    args["spot_capacity"] = json!(12);
                    args["regular_capacity"] = json!(10);
                    call["arguments"] = json!(args.to_string());
                    edited = true;
                }
            }
            lines.push(e.to_string());
        }
        std::fs::write(surge_dir.join(path.file_name().context("name")?), lines.join("\n") + "\n")?;
    }
    assert!(edited, "the surge's transcripts propose a change");
    let only_surge = dir.path().join("only-surge");
    std::fs::create_dir_all(&only_surge)?;
    std::fs::copy(suite.join("demand-surge-01.json"), only_surge.join("demand-surge-01.json"))?;
    let out = replay(&only_surge, &wrong).await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wrong: Value = serde_json::from_slice(&out.stdout)?;
    let failures = &wrong["incidents"][0]["failures"];
    let failed: Vec<&String> = failures.as_object().map(|f| f.keys().collect()).unwrap_or_default();
    assert_eq!(failed, ["covers_demand", "required:scale_out"], "{failures}");
    // A bound the surge response must break: the gate fails, naming the incident.
    let strict = dir.path().join("strict");
    std::fs::create_dir_all(&strict)?;
    let mut incident: Value = serde_json::from_str(&std::fs::read_to_string(suite.join("demand-surge-01.json"))?)?;
    incident["id"] = json!("demand-surge-strict");
    incident["checks"]["max_total"] = json!(32);
    std::fs::write(strict.join("demand-surge-strict.json"), incident.to_string())?;
    let out = run(&strict).await?;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("safety failure in demand-surge-strict"));
    // Recording: a surge in the emulator, its alerts as triggers; the file reads back.
    let recorded = dir.path().join("recorded.json");
    let out = tokio::process::Command::new(bin())
        .args(["eval", "record", "--id", "recorded-surge", "--category", "demand_surge", "--start", "2026-03-02T00:00:00Z"])
        .args(["--minutes", "20", "--faults", r#"{"demand_multiplier": 2.5}"#, "--out"])
        .arg(&recorded)
        .output()
        .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let incident: Value = serde_json::from_str(&std::fs::read_to_string(&recorded)?)?;
    assert_eq!(incident["version"], 1);
    let triggers = incident["triggers"].as_array().context("triggers")?;
    assert!(
        triggers
            .iter()
            .any(|t| t["kind"] == "payload" && t["payload"]["data"]["essentials"]["alertRule"] == "ml-scaling-trigger"),
        "the surge fired the scaling alert: {triggers:?}"
    );
    Ok(())
}
