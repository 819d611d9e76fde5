//! `fleetpilot provision` end to end against a running `fleetpilot emulator`: the recipe's
//! whole stack planned, applied, re-planned, destroyed; applies interrupted by a kill, by
//! throttling and by failed long-running operations converge when re-run; the provisioned
//! alert rules notify fleetpilot's `/alerts` through the provisioned action group; and the
//! emulator refuses what Azure refuses.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use fleetpilot_e2e::{StandaloneEmulator, TempDir, advance};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::bin;

const TOKEN: &str = "provision-token-0123456789abcdef";
const SUB: &str = "00000000-0000-4000-8000-000000000001";
const RG: &str = "rg-ml-adaptive-scaling";

/// A config file whose stack calls `public_url` back.
fn config(dir: &TempDir, public_url: &str, extra: &str) -> Result<std::path::PathBuf> {
    let path = dir.path().join(format!("fleetpilot-{}.toml", extra.len()));
    std::fs::write(&path, format!("[alerts]\ntoken = \"{TOKEN}\"\n\n[stack]\npublic_url = \"{public_url}\"\n{extra}"))?;
    Ok(path)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn provision(config: &Path, emulator: &str, args: &[&str]) -> Result<Run> {
    let output = tokio::process::Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("provision")
        .args(args)
        .args(["--arm-endpoint", emulator])
        .env_remove("FLEETPILOT_ALERTS_TOKEN")
        .env_remove("FLEETPILOT_ARM_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .await?;
    Ok(Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Output with the emulator's port, which changes from run to run, taken out.
fn normalized(text: &str, emulator: &str) -> String {
    text.replace(emulator, "http://[emulator]")
}

async fn arm(method: reqwest::Method, url: String, body: Option<Value>) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Apply again: it succeeds, and then nothing is left to do.
async fn rerun_converges(cfg: &Path, url: &str) -> Result<()> {
    let rerun = provision(cfg, url, &["apply", "--yes"]).await?;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let converged = provision(cfg, url, &["plan", "--detailed-exitcode"]).await?;
    assert_eq!(converged.code, 0, "{}", converged.stdout);
    Ok(())
}

async fn faults(emulator: &str, body: Value) -> Result<()> {
    reqwest::Client::new().post(format!("{emulator}/_emulator/faults")).json(&body).send().await?.error_for_status()?;
    Ok(())
}

#[tokio::test]
async fn plan_apply_plan_destroy_plan_round_trip() -> Result<()> {
    let emulator = StandaloneEmulator::start(bin(), "empty").await?;
    let dir = TempDir::new("provision")?;
    let cfg = config(&dir, "https://fleetpilot.example.com", "")?;
    let url = &emulator.url;

    let first = provision(&cfg, url, &["plan", "--color", "never"]).await?;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(!first.stdout.contains(TOKEN), "the token leaked into the plan");
    insta::assert_snapshot!("plan_of_an_empty_subscription", normalized(&first.stdout, url));

    let json_plan = provision(&cfg, url, &["plan", "--format", "json"]).await?;
    let parsed: Value = serde_json::from_str(&json_plan.stdout).context("plan --format json is JSON")?;
    let changes = parsed["changes"].as_array().context("changes")?;
    assert_eq!(changes.len(), 19);
    for c in changes {
        assert_eq!(c["action"], "create", "{c}");
        assert!(c["id"].is_string() && c["type"].is_string() && c["properties"].is_array(), "{c}");
    }
    assert!(!json_plan.stdout.contains(TOKEN), "the token leaked into the JSON plan");

    let early = provision(&cfg, url, &["plan", "--what-if"]).await?;
    assert_eq!(early.code, 0);
    assert!(early.stderr.contains("ARM what-if skipped"), "{}", early.stderr);

    let detailed = provision(&cfg, url, &["plan", "--detailed-exitcode"]).await?;
    assert_eq!(detailed.code, 2, "changes pending: exit 2");

    let apply = provision(&cfg, url, &["apply", "--yes"]).await?;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(apply.stderr.contains("19 added, 0 changed, 0 destroyed"), "{}", apply.stderr);
    assert!(!apply.stderr.contains(TOKEN) && !apply.stdout.contains(TOKEN), "the token leaked into apply's output");

    let again = provision(&cfg, url, &["plan", "--color", "never", "--detailed-exitcode"]).await?;
    assert_eq!(again.code, 0, "a converged stack plans to nothing: {}", again.stdout);
    insta::assert_snapshot!("plan_of_a_converged_stack", normalized(&again.stdout, url));
    let reapply = provision(&cfg, url, &["apply", "--yes"]).await?;
    assert_eq!(reapply.code, 0);
    assert!(reapply.stdout.contains("No changes."), "{}", reapply.stdout);

    // The secret is in the key vault, readable by id but never by value.
    let (status, secret) = arm(
        reqwest::Method::GET,
        format!("{url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-ml-scaling/secrets/fleetpilot-alerts-token?api-version=2023-07-01"),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert!(secret["properties"].get("value").is_none(), "{secret}");
    assert!(secret["properties"]["secretUri"].is_string());
    // So is Application Insights' connection string, a key Azure made: copied into the vault,
    // shown nowhere.
    let (_, insights) = arm(
        reqwest::Method::GET,
        format!("{url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Insights/components/ai-mlw-adaptive-scaling?api-version=2020-02-02"),
        None,
    )
    .await?;
    let connection = insights["properties"]["ConnectionString"].as_str().context("connection string")?.to_string();
    let (status, _) = arm(
        reqwest::Method::GET,
        format!("{url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-ml-scaling/secrets/appinsights-connection-string?api-version=2023-07-01"),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let json_after = provision(&cfg, url, &["plan", "--format", "json", "--what-if"]).await?;
    let what_if: Value = serde_json::from_str(&json_after.stdout)?;
    let arm_changes = what_if["what_if"]["properties"]["changes"].as_array().context("what-if changes")?;
    assert_eq!(arm_changes.len(), 17, "every resource in the group: {what_if}");
    assert!(arm_changes.iter().all(|c| c["changeType"] == "NoChange"), "ARM agrees nothing changes: {what_if}");
    for text in [&apply.stdout, &apply.stderr, &again.stdout, &json_after.stdout] {
        assert!(!text.contains(&connection) && !text.contains(TOKEN), "a secret leaked: {text}");
    }

    // fleetpilot's own scaling changes the fleet's capacities: that is not drift.
    let fleet = format!(
        "{url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureFleet/fleets/cf-ml-scaling?api-version=2024-11-01"
    );
    let patched = reqwest::Client::new()
        .patch(fleet.clone())
        .json(&json!({"properties": {"spotPriorityProfile": {"capacity": 12}, "regularPriorityProfile": {"capacity": 4}}}))
        .send()
        .await?;
    assert!(patched.status().is_success(), "{}", patched.status());
    // The emulator finishes an operation when it is polled, as a client would.
    let operation = ["azure-asyncoperation", "location"].iter().find_map(|h| patched.headers().get(*h)?.to_str().ok());
    if let Some(operation) = operation {
        reqwest::get(operation).await?.error_for_status()?;
    }
    let after_scaling = provision(&cfg, url, &["plan", "--detailed-exitcode"]).await?;
    assert_eq!(after_scaling.code, 0, "{}", after_scaling.stdout);
    // ARM's what-if knows nothing of capacities left to their owner: it says what a template
    // deployment would do, which is to put them back.
    let arm_view = provision(&cfg, url, &["plan", "--what-if", "--color", "never"]).await?;
    assert!(arm_view.stdout.contains("properties.spotPriorityProfile.capacity = 12 -> 20"), "{}", arm_view.stdout);

    // A changed setting is an in-place update of exactly that property, and applying it
    // leaves the scaled capacities alone.
    let bigger = config(
        &dir,
        "https://fleetpilot.example.com",
        "[stack.compute]\nmax_nodes = 20\n[stack.fleet]\nspot_min_capacity = 3\n",
    )?;
    let update = provision(&bigger, url, &["plan", "--color", "never"]).await?;
    insta::assert_snapshot!("plan_of_a_changed_setting", normalized(&update.stdout, url));
    let applied = provision(&bigger, url, &["apply", "--yes"]).await?;
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(applied.stderr.contains("0 added, 2 changed, 0 destroyed"), "{}", applied.stderr);
    let (_, found) = arm(reqwest::Method::GET, fleet, None).await?;
    assert_eq!(found["properties"]["spotPriorityProfile"]["capacity"], 12, "{found}");
    assert_eq!(found["properties"]["spotPriorityProfile"]["minCapacity"], 3, "{found}");

    // Destroy asks unless told, and then removes everything, dependents first.
    let refused = provision(&bigger, url, &["destroy"]).await?;
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    let destroy = provision(&bigger, url, &["destroy", "--yes", "--color", "never"]).await?;
    assert_eq!(destroy.code, 0, "{}\n{}", destroy.stdout, destroy.stderr);
    insta::assert_snapshot!("destroy_plan", normalized(&destroy.stdout, url));
    assert!(destroy.stderr.contains("19 destroyed"), "{}", destroy.stderr);
    let (status, _) =
        arm(reqwest::Method::GET, format!("{url}/subscriptions/{SUB}/resourceGroups/{RG}?api-version=2025-04-01"), None).await?;
    assert_eq!(status, 404);

    let last = provision(&cfg, url, &["plan", "--color", "never"]).await?;
    assert_eq!(last.stdout, first.stdout, "after destroy, the plan is the first one again");
    Ok(())
}

/// The stack converges after `apply` was killed mid-way, whatever it had done by then.
#[tokio::test]
async fn an_apply_killed_mid_way_converges_when_run_again() -> Result<()> {
    let emulator = StandaloneEmulator::start(bin(), "empty").await?;
    let dir = TempDir::new("provision-kill")?;
    let cfg = config(&dir, "https://fleetpilot.example.com", "")?;
    let url = &emulator.url;
    // Slow every ARM answer so that the kill lands with work in flight.
    faults(url, json!({"latency_ms": 60})).await?;
    let mut child = tokio::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["provision", "apply", "--yes", "--parallelism", "2", "--arm-endpoint", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // Kill as soon as the first change is done (on a loaded machine, a fixed wait may end before any is).
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with('✓') {
                return Ok(());
            }
        }
        anyhow::bail!("apply ended before any change was done")
    })
    .await
    .context("no change done within 60 s")??;
    child.kill().await?;
    let partial = provision(&cfg, url, &["plan", "--format", "json"]).await?;
    let parsed: Value = serde_json::from_str(&partial.stdout)?;
    let pending = parsed["changes"].as_array().context("changes")?.iter().filter(|c| c["action"] != "no-op").count();
    let done = 19 - pending;
    assert!(done > 0 && pending > 0, "the kill should land mid-way: {done} done, {pending} pending");

    faults(url, json!({})).await?;
    rerun_converges(&cfg, url).await
}

/// Throttling is retried; a failed long-running operation fails its resource (and skips what
/// depends on it) without stopping the rest; the re-run converges.
#[tokio::test]
async fn throttling_and_failed_operations_converge_when_run_again() -> Result<()> {
    let emulator = StandaloneEmulator::start(bin(), "empty").await?;
    let dir = TempDir::new("provision-faults")?;
    let cfg = config(&dir, "https://fleetpilot.example.com", "")?;
    let url = &emulator.url;

    faults(url, json!({"throttle_requests": 3, "throttle_retry_after_secs": 1, "only_writes": true, "lro": "fail"})).await?;
    let failed = provision(&cfg, url, &["apply", "--yes"]).await?;
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.stderr.contains("Apply failed"), "{}", failed.stderr);
    assert!(failed.stderr.contains("skipped"), "dependents of failures are skipped: {}", failed.stderr);
    assert!(failed.stderr.contains("Run it again"), "{}", failed.stderr);
    let (_, left) = arm(reqwest::Method::GET, format!("{url}/_emulator/faults"), None).await?;
    assert_eq!(left["throttle_requests"], 0, "the 429s were met and retried");
    let plan = provision(&cfg, url, &["plan", "--color", "never"]).await?;
    assert!(plan.stdout.contains("provisioning is Failed"), "{}", plan.stdout);

    faults(url, json!({"throttle_requests": 2, "throttle_retry_after_secs": 1})).await?;
    rerun_converges(&cfg, url).await
}

/// The provisioned metric alert rules, through the provisioned action group, notify a running
/// fleetpilot's `/alerts` with its token, in the common alert schema, and start agent runs.
#[tokio::test]
async fn provisioned_alert_rules_notify_fleetpilot() -> Result<()> {
    let emulator = StandaloneEmulator::start(bin(), "empty").await?;
    let url = &emulator.url;
    let dir = TempDir::new("provision-alerts")?;
    // fleetpilot itself, against the same emulator as its Azure.
    let port = fleetpilot_e2e::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let serve_cfg = dir.path().join("serve.toml");
    std::fs::write(
        &serve_cfg,
        format!(
            "[alerts]\ntoken = \"{TOKEN}\"\nfollow_up_secs = 0\n\n[azure]\nendpoint = \"{url}\"\nsubscription_id = \"{SUB}\"\n\
             credential = \"none\"\nresource_group = \"{RG}\"\nml_workspace = \"mlw-adaptive-scaling\"\n\
             log_analytics_endpoint = \"{url}\"\nlog_analytics_workspace = \"{}\"\n\n[stack]\npublic_url = \"{base}\"\n",
            fleetpilot_emulator_workspace()
        ),
    )?;
    let _serve = tokio::process::Command::new(bin())
        .arg("--config")
        .arg(&serve_cfg)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state")
        .arg(dir.path().join("state.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    fleetpilot_e2e::wait_healthy(&base).await?;

    let apply = provision(&serve_cfg, url, &["apply", "--yes"]).await?;
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let (_, alerts) = arm(reqwest::Method::GET, format!("{url}/_emulator/alerts"), None).await?;
    let rules = alerts["rules"].as_array().context("rules")?;
    assert_eq!(rules.len(), 2, "both provisioned rules are evaluated: {alerts}");
    // Spot VMs are still booting: spot utilization is under 40 % when the rule first runs.
    advance(url, 60).await?;
    let mut runs = Value::Null;
    for _ in 0..100 {
        let output = tokio::process::Command::new(bin())
            .arg("--config")
            .arg(&serve_cfg)
            .args(["runs", "list", "--json", "--state"])
            .arg(dir.path().join("state.db"))
            .output()
            .await?;
        runs = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if runs.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = runs.as_array().context("runs list --json is an array")?;
    assert!(!runs.is_empty(), "no agent run was started by the provisioned alert");
    let text = serde_json::to_string(runs)?;
    assert!(text.contains("scaling-efficiency-alert"), "{text}");
    Ok(())
}

fn fleetpilot_emulator_workspace() -> String {
    fleetpilot_emulator::logs::LogConfig::default().workspace_id
}

/// Azure's refusals, as the emulator serves them: references to what does not exist, a
/// project before its hub, a secret outside a vault, a workbook not named by a GUID.
#[tokio::test]
async fn the_emulator_refuses_what_azure_refuses() -> Result<()> {
    let emulator = StandaloneEmulator::start(bin(), "empty").await?;
    let url = &emulator.url;
    let rg = format!("{url}/subscriptions/{SUB}/resourceGroups/{RG}");
    let (status, _) =
        arm(reqwest::Method::PUT, format!("{rg}?api-version=2025-04-01"), Some(json!({"location": "eastus"}))).await?;
    assert_eq!(status, 201);
    let ml = |name: &str| format!("{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}?api-version=2026-07-01");
    let hub_id = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/hub");
    let project = json!({"location": "eastus", "kind": "Project", "properties": {"hubResourceId": hub_id}});
    let (status, body) = arm(reqwest::Method::PUT, ml("project"), Some(project.clone())).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("ValidationError")), "{body}");
    let (status, _) = arm(reqwest::Method::PUT, ml("hub"), Some(json!({"location": "eastus", "kind": "Hub"}))).await?;
    assert_eq!(status, 201);
    let (status, body) = arm(reqwest::Method::PUT, ml("project"), Some(project)).await?;
    assert_eq!(status, 201, "{body}");

    let insights = json!({"location": "eastus", "kind": "web", "properties": {"Application_Type": "web",
        "WorkspaceResourceId": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.OperationalInsights/workspaces/nope")}});
    let (status, body) = arm(
        reqwest::Method::PUT,
        format!("{rg}/providers/Microsoft.Insights/components/ai?api-version=2020-02-02"),
        Some(insights),
    )
    .await?;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidResourceReference")), "{body}");

    let (status, body) = arm(
        reqwest::Method::PUT,
        format!("{rg}/providers/Microsoft.KeyVault/vaults/nope/secrets/s?api-version=2023-07-01"),
        Some(json!({"properties": {"value": "x"}})),
    )
    .await?;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("ParentResourceNotFound")), "{body}");

    let (status, body) = arm(
        reqwest::Method::PUT,
        format!("{rg}/providers/Microsoft.Storage/storageAccounts/st?api-version=2023-05-01"),
        Some(json!({"location": "eastus", "kind": "StorageV2"})),
    )
    .await?;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidRequestContent")), "sku is required: {body}");

    let (status, body) = arm(
        reqwest::Method::PUT,
        format!("{rg}/providers/Microsoft.Insights/workbooks/not-a-guid?api-version=2022-04-01"),
        Some(json!({"location": "eastus", "kind": "shared", "properties": {"displayName": "d", "category": "workbook", "serializedData": "{}"}})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");

    let (status, body) =
        arm(reqwest::Method::GET, format!("{rg}/providers/Microsoft.Storage/storageAccounts/st?api-version=1999-01-01"), None)
            .await?;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("NoRegisteredProviderFound")), "{body}");
    Ok(())
}
