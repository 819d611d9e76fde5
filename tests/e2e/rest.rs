//! The REST surface and its OpenAPI document: every tool at `/api/v1/tools/{name}`, the same
//! answers as over MCP, statuses that follow the tool errors; the document lists every tool
//! with schemas whose references all resolve.

use anyhow::{Context, Result};
use fleetpilot_e2e::Server;
use serde_json::Value;

use super::bin;

async fn post(base: &str, tool: &str, body: &str) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/tools/{tool}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn the_tools_answer_over_rest_as_the_openapi_document_says() -> Result<()> {
    let server = Server::start(bin(), &[]).await?;
    let base = &server.base;
    let doc: Value = reqwest::get(format!("{base}/openapi.json")).await?.json().await?;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().context("paths")?;
    assert_eq!(paths.len(), 16, "{:?}", paths.keys().collect::<Vec<_>>());
    let op = &paths["/api/v1/tools/propose_scale"]["post"];
    assert_eq!(op["operationId"], "propose_scale");
    assert!(op["requestBody"]["content"]["application/json"]["schema"]["properties"]["fleet"].is_object(), "{op}");

    let (status, fleet) = post(base, "read_fleet", r#"{"fleet": "cf-ml-scaling"}"#).await?;
    assert_eq!(status, 200);
    assert_eq!(fleet["fleet"]["name"], "cf-ml-scaling");
    assert!(fleet["spot"]["capacity"].is_number(), "{fleet}");

    let (status, denied) =
        post(base, "propose_scale", r#"{"fleet": "cf-ml-scaling", "spot_capacity": 500, "reason": "too much"}"#).await?;
    assert_eq!(status, 409, "{denied}");
    assert_eq!(denied["code"], "denied");
    assert!(denied["violations"].as_array().is_some_and(|v| v.len() >= 2), "every violation: {denied}");

    assert_eq!(post(base, "no_such_tool", "{}").await?.0, 404);
    assert_eq!(post(base, "read_fleet", "[1, 2]").await?.0, 400);
    assert_eq!(post(base, "read_fleet", r#"{"fleet": 3}"#).await?.0, 400);
    let (status, missing) = post(base, "read_fleet", r#"{"fleet": "nope"}"#).await?;
    assert_eq!(status, 404, "{missing}");
    // What schemathesis found: bad input reported as an Azure failure (502), now a 4xx.
    assert_eq!(post(base, "cancel_ml_job", r#"{"name": ""}"#).await?.0, 400);
    assert_eq!(post(base, "get_ml_job", r#"{"name": "a/b"}"#).await?.0, 400);
    assert_eq!(post(base, "query_kql", r#"{"query": "Heartbeat | take 1", "workspace": "no-such-workspace"}"#).await?.0, 404);

    // The metrics count the calls and the verdict.
    let metrics = reqwest::get(format!("{base}/metrics")).await?.text().await?;
    assert!(metrics.contains(r#"fleetpilot_tool_calls_total{tool="propose_scale",outcome="denied"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"fleetpilot_verdicts_total{decision="deny"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"fleetpilot_tool_calls_total{tool="read_fleet",outcome="ok"}"#), "{metrics}");
    assert!(metrics.contains("fleetpilot_clock_seconds "), "{metrics}");

    // The audit says it came over REST.
    let audit = std::process::Command::new(bin())
        .args(["audit", "--since", "1d", "--json", "--state"])
        .arg(server.state_db())
        .output()?;
    let audit: Value = serde_json::from_slice(&audit.stdout)?;
    assert!(audit.as_array().context("rows")?.iter().any(|r| r["caller"] == "rest" && r["tool"] == "propose_scale"), "{audit}");
    server.stop().await;
    Ok(())
}
