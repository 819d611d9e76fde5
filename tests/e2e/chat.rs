//! `fleetpilot chat` end to end: the real binary, its in-process backend, and a scripted
//! OpenAI-compatible model on loopback; a proposal that needs approval is put to the person
//! and applied through their own connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::State;
use axum::response::IntoResponse;
use fleetpilot_e2e::TempDir;
use serde_json::{Value, json};

use super::bin;

/// Answers each chat completion with the next scripted list of deltas (streamed).
async fn scripted(State(script): State<Arc<Mutex<VecDeque<Vec<Value>>>>>, body: String) -> impl IntoResponse {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(request["stream"], true);
    let deltas = script.lock().unwrap().pop_front().unwrap_or_else(|| vec![json!({"content": "(script exhausted)"})]);
    let mut sse = String::new();
    for delta in deltas {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [{"index": 0, "delta": delta}]});
        sse.push_str(&format!("data: {chunk}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], sse)
}

#[tokio::test]
async fn chat_with_a_model_puts_a_needs_approval_proposal_to_the_person() -> Result<()> {
    let script: VecDeque<Vec<Value>> = vec![
        vec![json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "read_fleet", "arguments": "{\"fleet\":\"cf-ml-scaling\"}"}}]})],
        vec![json!({"tool_calls": [{"index": 0, "id": "c2", "type": "function", "function": {"name": "propose_scale", "arguments": "{\"fleet\":\"cf-ml-scaling\",\"spot_capacity\":24,\"reason\":\"the person asked for 4 more\"}"}}]})],
        vec![json!({"content": "I proposed spot 20→24; it needs your approval."})],
    ]
    .into();
    let app =
        axum::Router::new().route("/v1/chat/completions", axum::routing::post(scripted)).with_state(Arc::new(Mutex::new(script)));
    let addr = fleetpilot_e2e::serve_loopback(app).await?;

    let dir = TempDir::new("chat")?;
    let config = dir.path().join("fleetpilot.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nkind = \"openai\"\nendpoint = \"http://{addr}/v1\"\nmodel = \"m\"\nauth = \"none\"\n\n[policy.default]\ncooldown_secs = 0\napproval_above_delta = 2\n"
        ),
    )?;
    let out = tokio::process::Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["chat", "--message", "Add four spot VMs, please.", "--approve", "--speed", "0", "--state"])
        .arg(dir.path().join("state.db"))
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("→ read_fleet"), "{stdout}");
    assert!(stdout.contains("← propose_scale prop-") && stdout.contains("needs_approval"), "{stdout}");
    assert!(stdout.contains("I proposed spot 20→24; it needs your approval."), "{stdout}");
    assert!(stdout.contains("needs approval. Approve it? yes"), "{stdout}");
    assert!(stdout.contains("applied — spot 24"), "the person's approval applied it: {stdout}");
    // The chat was recorded as a run.
    let runs = tokio::process::Command::new(bin())
        .args(["runs", "list", "--json", "--state"])
        .arg(dir.path().join("state.db"))
        .output()
        .await?;
    let runs: Value = serde_json::from_slice(&runs.stdout)?;
    assert_eq!((runs[0]["kind"].as_str(), runs[0]["model"].as_str()), (Some("chat"), Some("openai:m")), "{runs}");
    Ok(())
}

#[tokio::test]
async fn chat_without_a_model_says_how_to_configure_one_and_uses_the_planner() -> Result<()> {
    let dir = TempDir::new("chat-planner")?;
    let out = tokio::process::Command::new(bin())
        .args(["chat", "--message", "How is the fleet?", "--speed", "0", "--state"])
        .arg(dir.path().join("state.db"))
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .output()
        .await?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("No model endpoint is configured") && stderr.contains("kind = \"azure_openai\""), "{stderr}");
    assert!(stdout.contains("→ read_fleet") && stdout.contains("→ query_kql"), "{stdout}");
    assert!(stdout.contains("Fleet cf-ml-scaling:"), "{stdout}");
    Ok(())
}

/// A model that reads the fleet once per run, then answers; every turn reports its tokens.
async fn reader_model(body: String) -> impl IntoResponse {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let after_tool = request["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["role"] == "tool");
    let delta = if after_tool {
        json!({"content": "The fleet covers demand; no change."})
    } else {
        json!({"tool_calls": [{"index": 0, "id": "r1", "type": "function", "function": {"name": "read_fleet", "arguments": "{\"fleet\":\"cf-ml-scaling\"}"}}]})
    };
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [{"index": 0, "delta": delta}]});
    let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 2000, "completion_tokens": 100, "total_tokens": 2100}});
    ([("content-type", "text/event-stream")], format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n"))
}

/// `eval incidents --model openai` against an OpenAI-compatible endpoint on loopback: the
/// agent's runs go to the model, its tokens are counted and priced at the configured rates,
/// the transcripts are recorded, and replaying them scores the same.
#[tokio::test]
async fn eval_incidents_with_a_model_endpoint_counts_tokens_and_their_cost() -> Result<()> {
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(reader_model));
    let addr = fleetpilot_e2e::serve_loopback(app).await?;
    let dir = TempDir::new("eval-openai")?;
    let suite = dir.path().join("suite");
    std::fs::create_dir_all(&suite)?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("evals/incidents/no-fault-07.json"), suite.join("no-fault-07.json"))?;
    let config = dir.path().join("fleetpilot.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nkind = \"openai\"\nendpoint = \"http://{addr}/v1\"\nmodel = \"m\"\nauth = \"none\"\n\
             usd_per_million_prompt_tokens = 2.5\nusd_per_million_completion_tokens = 10.0\n"
        ),
    )?;
    let out_dir = dir.path().join("out");
    let run = |model: String, out: std::path::PathBuf| {
        tokio::process::Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args(["eval", "incidents", "--k", "1", "--format", "json", "--model", &model, "--dir"])
            .arg(&suite)
            .arg("--out")
            .arg(out)
            .output()
    };
    let out = run("openai".into(), out_dir.clone()).await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout)?;
    let incident = &body["incidents"][0];
    assert_eq!(incident["pass_1"].as_f64(), Some(1.0), "{incident}");
    let tokens = incident["tokens"].as_f64().unwrap_or(0.0);
    // Each run: two turns of 2,000 prompt and 100 completion tokens.
    assert!(tokens >= 4200.0 && tokens % 4200.0 == 0.0, "{incident}");
    let runs = tokens / 4200.0;
    let expected = runs * (4000.0 * 2.5 + 200.0 * 10.0) / 1e6;
    let cost = incident["model_cost_usd"].as_f64().unwrap_or(0.0);
    assert!((cost - expected).abs() < 1e-6, "{cost} USD for {runs} runs, expected {expected}");
    assert!(body["summary"]["model_cost_usd"].as_f64().unwrap_or(0.0) > 0.0);
    let transcripts = out_dir.join("transcripts").join("no-fault-07");
    let recorded = std::fs::read_to_string(transcripts.join("0-0.jsonl"))?;
    assert!(recorded.contains("\"prompt_tokens\":2000") && recorded.contains("read_fleet"), "{recorded}");
    // Replayed, the same decisions score the same (the endpoint is not needed).
    let replayed = run(format!("replay:{}", out_dir.join("transcripts").display()), dir.path().join("replay-out")).await?;
    assert!(replayed.status.success(), "{}", String::from_utf8_lossy(&replayed.stderr));
    let again: Value = serde_json::from_slice(&replayed.stdout)?;
    assert_eq!(again["incidents"][0]["pass_1"], incident["pass_1"]);
    assert_eq!(again["incidents"][0]["tool_calls"], incident["tool_calls"]);
    assert_eq!(again["incidents"][0]["tokens"], incident["tokens"], "a replay reports the recorded tokens");
    Ok(())
}
