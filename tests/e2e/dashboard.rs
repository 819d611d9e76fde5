//! The dashboard's HTTP side: the page and its assets are served by fleetpilot itself with
//! nothing from another host; its API shows the fleet's telemetry, the decisions with who
//! asked, and the eval reports; live updates stream; approving needs the approver role and
//! applies the change; eval files cannot be read outside their directory. (The page itself is
//! driven in Chromium by `tests/dashboard/dashboard.cjs`, from `.ci/run`.)

use std::time::Duration;

use anyhow::{Context, Result};
use fleetpilot_e2e::{Server, TempDir, advance};
use serde_json::{Value, json};

use super::bin;

async fn get(base: &str, path: &str) -> Result<(u16, String)> {
    let response = reqwest::get(format!("{base}{path}")).await?;
    Ok((response.status().as_u16(), response.text().await?))
}

async fn get_json(base: &str, path: &str) -> Result<Value> {
    let (status, text) = get(base, path).await?;
    anyhow::ensure!(status == 200, "{path}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

async fn mcp(base: &str, tool: &str, arguments: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
    let response: Value = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    response["result"]["structuredContent"].as_object().cloned().map(Value::Object).context(format!("{tool}: {response}"))
}

fn config(dir: &TempDir, role: &str) -> Result<String> {
    let path = dir.path().join(format!("{role}.toml"));
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp_role = \"{role}\"\n\n[alerts]\nfollow_up_secs = 0\n\n[policy.default]\ncooldown_secs = 0\nstabilization_secs = 0\napproval_above_delta = 4\n\n[dashboard]\nrefresh_secs = 0.2\nevals_dir = {:?}\n",
            dir.path().join("evals").display().to_string()
        ),
    )?;
    Ok(path.display().to_string())
}

#[tokio::test]
async fn the_dashboard_serves_everything_itself_and_shows_the_fleet_and_the_decisions() -> Result<()> {
    let dir = TempDir::new("dashboard")?;
    std::fs::create_dir_all(dir.path().join("evals/policies"))?;
    std::fs::write(dir.path().join("evals/report.json"), r#"{"summary": {"pass_1": 1.0, "incidents": 3}}"#)?;
    std::fs::write(dir.path().join("evals/policies/trace.svg"), "<svg xmlns=\"http://www.w3.org/2000/svg\"/>")?;
    std::fs::write(dir.path().join("secret.txt"), "not for the dashboard")?;
    let server = Server::start(bin(), &["--config", &config(&dir, "approver")?]).await?;
    let base = &server.base;

    // The page and its assets, with nothing fetched from elsewhere.
    let (status, page) = get(base, "/").await?;
    assert_eq!(status, 200);
    for asset in ["/assets/app.js", "/assets/style.css"] {
        let (status, text) = get(base, asset).await?;
        assert_eq!(status, 200, "{asset}");
        for text in [&page, &text] {
            for external in ["https://", "http://", "//cdn", "@import"] {
                let outside = text.match_indices(external).any(|(i, _)| !text[i..].starts_with("http://www.w3.org/2000/svg"));
                assert!(!outside, "{asset} or the page references something outside: {external}");
            }
        }
    }
    assert!(page.contains("<label for=\"fleet\">") && page.contains("<label for=\"window\">"), "controls are labelled");

    // Telemetry once the emulator has moved.
    advance(&server.emulator, 600).await?;
    let fleets = get_json(base, "/api/fleets").await?;
    assert_eq!(fleets["fleets"][0]["fleet"]["name"], "cf-ml-scaling");
    let mut series = Value::Null;
    for _ in 0..50 {
        series = get_json(base, "/api/fleets/rg-ml-adaptive-scaling/cf-ml-scaling/series?window=60").await?;
        if series["points"].as_array().is_some_and(|p| p.len() >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let points = series["points"].as_array().context("points")?;
    assert!(points.len() >= 3, "{series}");
    let full = points.iter().find(|p| p.get("demand").is_some() && p.get("spot_target").is_some()).context("a full point")?;
    for key in [
        "demand",
        "served",
        "running_vms",
        "spot_target",
        "regular_target",
        "cpu_percent",
        "sla",
        "cost_usd_per_hour",
        "cumulative_cost_usd",
    ] {
        assert!(full[key].is_number(), "{key} missing in {full}");
    }
    assert_eq!(series["bounds"]["max_spot"], 40);
    assert!(series["now"]["vms_by_priority_and_size"]["Spot"].is_object(), "{}", series["now"]);

    // A change through MCP is a decision with who asked.
    let proposal =
        mcp(base, "propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 22, "reason": "more headroom"})).await?;
    let id = proposal["id"].as_str().context("proposal id")?.to_string();
    let decisions = get_json(base, "/api/proposals").await?;
    let entry = decisions["proposals"]
        .as_array()
        .context("proposals")?
        .iter()
        .find(|p| p["id"] == id.as_str())
        .context("in the timeline")?;
    assert_eq!(entry["origin"]["kind"], "MCP client");
    assert_eq!(entry["reason"], "more headroom");

    // One over the threshold waits, and the page's approval applies it.
    let big = mcp(base, "propose_scale", json!({"fleet": "cf-ml-scaling", "regular_capacity": 16, "reason": "big"})).await?;
    assert_eq!(big["status"], "needs_approval", "{big}");
    let big_id = big["id"].as_str().context("id")?;
    let response = reqwest::Client::new()
        .post(format!("{base}/api/proposals/{big_id}/approve"))
        .json(&json!({"note": "looks right"}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let approved: Value = response.json().await?;
    assert_eq!(approved["proposal"]["status"], "applied", "{approved}");
    assert_eq!(approved["proposal"]["review"]["by"], "dashboard");
    let fleet = get_json(base, "/api/fleets/rg-ml-adaptive-scaling/cf-ml-scaling").await?;
    assert_eq!(fleet["regular"]["capacity"], 16);

    // Live updates: a fleet event, then the proposals changed.
    let mut stream = reqwest::get(format!("{base}/api/events")).await?;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("event: fleet") && seen.contains("event: proposals")) && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(2), stream.chunk()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(seen.contains("event: fleet") && seen.contains("event: proposals"), "{seen}");

    // Eval reports, and nothing outside their directory.
    let evals = get_json(base, "/api/evals").await?;
    assert_eq!(evals["incidents"]["summary"]["pass_1"], 1.0);
    assert_eq!(evals["plots"], json!(["/evals/policies/trace.svg"]));
    assert_eq!(get(base, "/evals/policies/trace.svg").await?.0, 200);
    for path in ["/evals/../secret.txt", "/evals/%2e%2e/secret.txt", "/evals/policies/../../secret.txt", "/evals/secret.txt"] {
        let (status, text) = get(base, path).await?;
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(!text.contains("not for the dashboard"), "{path} leaked a file");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn approving_in_the_dashboard_needs_the_approver_role() -> Result<()> {
    let dir = TempDir::new("dashboard-operator")?;
    let server = Server::start(bin(), &["--config", &config(&dir, "operator")?]).await?;
    let base = &server.base;
    advance(&server.emulator, 600).await?;
    let me = get_json(base, "/api/me").await?;
    assert_eq!(me["can_approve"], false);
    let big = mcp(base, "propose_scale", json!({"fleet": "cf-ml-scaling", "regular_capacity": 16, "reason": "big"})).await?;
    let id = big["id"].as_str().context("id")?;
    let response = reqwest::Client::new().post(format!("{base}/api/proposals/{id}/approve")).send().await?;
    assert_eq!(response.status().as_u16(), 403);
    let audit = std::process::Command::new(bin())
        .args(["audit", "--since", "1d", "--json", "--state"])
        .arg(server.state_db())
        .output()?;
    let audit: Value = serde_json::from_slice(&audit.stdout)?;
    let refused =
        audit.as_array().context("audit rows")?.iter().any(|r| r["caller"] == "dashboard" && r["result"] == "forbidden");
    assert!(refused, "the refusal is audited: {audit}");
    let fleet = get_json(base, "/api/fleets/rg-ml-adaptive-scaling/cf-ml-scaling").await?;
    assert_eq!(fleet["regular"]["capacity"], 10, "nothing changed");
    server.stop().await;
    Ok(())
}
