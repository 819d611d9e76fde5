//! The OpenAI-compatible path end to end: real async-openai over real HTTP to a scripted
//! chat-completions server on loopback, and the loop calling a real MCP server (in process,
//! over a duplex pipe) for the tool calls.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fleetpilot_agent::openai::{Endpoint, OpenAiModel, Options, TokenSource, V1Auth};
use fleetpilot_agent::runner::{self, Budgets, Ending, Entry};
use fleetpilot_agent::{Message, Role};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ServiceExt, tool, tool_handler, tool_router};
use serde_json::{Value, json};

// ---------- a small MCP server with two tools ----------

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct FleetArgs {
    fleet: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ProposeArgs {
    fleet: String,
    spot_capacity: u32,
}

#[derive(Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
    calls: Arc<Mutex<Vec<String>>>,
}

#[tool_router]
impl Tools {
    #[tool(description = "Read a fleet.")]
    async fn read_fleet(&self, Parameters(a): Parameters<FleetArgs>) -> Result<CallToolResult, rmcp::ErrorData> {
        self.calls.lock().unwrap().push(format!("read_fleet {}", a.fleet));
        Ok(CallToolResult::structured(json!({"fleet": a.fleet, "spot": {"capacity": 20}})))
    }

    #[tool(description = "Propose a scale change.")]
    async fn propose_scale(&self, Parameters(a): Parameters<ProposeArgs>) -> Result<CallToolResult, rmcp::ErrorData> {
        self.calls.lock().unwrap().push(format!("propose_scale {} {}", a.fleet, a.spot_capacity));
        if a.spot_capacity > 40 {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                json!({"code": "denied", "message": "max_spot is 40"}).to_string(),
            )]));
        }
        Ok(CallToolResult::structured(json!({"id": "prop-1", "verdict": {"decision": "allow"}})))
    }
}

#[tool_handler(router = self.tool_router)]
impl rmcp::ServerHandler for Tools {}

async fn tools() -> (rmcp::service::RunningService<rmcp::RoleClient, ()>, Arc<Mutex<Vec<String>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = Tools { tool_router: Tools::tool_router(), calls: calls.clone() };
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    (().serve(client_io).await.unwrap(), calls)
}

// ---------- a scripted chat-completions server ----------

enum Scripted {
    /// Answer with this HTTP status and an error body.
    Status(u16),
    /// Stream these chunks (the `delta`s of choice 0), then usage, then [DONE].
    Chunks(Vec<Value>, u64),
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Scripted>>,
    seen: Mutex<Vec<(String, String, HeaderMap, Value)>>,
}

async fn completions(State(script): State<Arc<Script>>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    script.seen.lock().unwrap().push((uri.path().to_string(), uri.query().unwrap_or("").to_string(), headers, body));
    let next = script.replies.lock().unwrap().pop_front();
    match next {
        None => (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response(),
        Some(Scripted::Status(code)) => (
            StatusCode::from_u16(code).unwrap(),
            [("content-type", "application/json")],
            json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}}).to_string(),
        )
            .into_response(),
        Some(Scripted::Chunks(deltas, tokens)) => {
            let mut sse = String::new();
            for delta in deltas {
                let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
                sse.push_str(&format!("data: {chunk}\n\n"));
            }
            let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [],
                "usage": {"prompt_tokens": tokens / 2, "completion_tokens": tokens - tokens / 2, "total_tokens": tokens}});
            sse.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
            ([("content-type", "text/event-stream")], sse).into_response()
        }
    }
}

async fn azure(
    State(script): State<Arc<Script>>,
    Path(_deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    completions(State(script), uri, headers, body).await
}

async fn serve(script: Vec<Scripted>) -> (String, Arc<Script>) {
    let script = Arc::new(Script { replies: Mutex::new(script.into()), seen: Mutex::default() });
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .route("/openai/deployments/{deployment}/chat/completions", axum::routing::post(azure))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), script)
}

fn call(index: u32, id: &str, name: &str, args: &str) -> Value {
    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": args}}]})
}

fn options() -> Options {
    Options { min_backoff: Duration::from_millis(10), max_retries: 3, ..Options::default() }
}

fn conversation() -> Vec<Message> {
    vec![Message::text(Role::System, "You scale fleets."), Message::text(Role::User, "CPU is high on cf-ml-scaling.")]
}

#[derive(Debug)]
struct FixedToken(Mutex<u32>);

#[async_trait::async_trait]
impl TokenSource for FixedToken {
    async fn token(&self) -> Result<String, String> {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        Ok(format!("entra-token-{n}"))
    }
}

#[tokio::test]
async fn azure_deployment_parallel_calls_a_malformed_call_and_a_429() {
    let script = vec![
        Scripted::Status(429),
        // Two calls in parallel, the second one's arguments streamed in two pieces.
        Scripted::Chunks(
            vec![
                json!({"role": "assistant", "content": "Looking first. "}),
                call(0, "c1", "read_fleet", "{\"fleet\": \"cf-ml-scaling\"}"),
                call(1, "c2", "propose_scale", "{\"fleet\": \"cf-ml-scaling\", "),
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"spot_capacity\": 24}"}}]}),
            ],
            100,
        ),
        // A malformed call, an unknown tool, and arguments the schema rejects.
        Scripted::Chunks(
            vec![
                call(0, "c3", "propose_scale", "{not json"),
                call(1, "c4", "delete_everything", "{}"),
                call(2, "c5", "propose_scale", "{\"fleet\": \"cf-ml-scaling\"}"),
            ],
            100,
        ),
        Scripted::Chunks(vec![json!({"content": "Proposed prop-1: "}), json!({"content": "spot 20→24."})], 50),
    ];
    let (base, seen) = serve(script).await;
    let model = OpenAiModel::new(
        Endpoint::AzureDeployment {
            base: base.clone(),
            deployment: "gpt-4o".into(),
            api_version: "2024-10-21".into(),
            api_key: "azure-key".into(),
        },
        options(),
    )
    .unwrap();
    let (client, calls) = tools().await;
    let specs = runner::tool_specs(client.peer()).await.unwrap();
    let streamed = Mutex::new(String::new());
    let result = runner::run(&model, client.peer(), &specs, conversation(), Budgets::default(), &|e| {
        if let runner::Event::Text(t) = e {
            streamed.lock().unwrap().push_str(t);
        }
    })
    .await;
    assert_eq!(result.ending, Ending::Answered, "{}", result.answer);
    assert_eq!(result.answer, "Proposed prop-1: spot 20→24.");
    assert!(streamed.lock().unwrap().ends_with("Proposed prop-1: spot 20→24."), "answers are streamed");
    assert_eq!(*calls.lock().unwrap(), ["read_fleet cf-ml-scaling", "propose_scale cf-ml-scaling 24"]);
    assert_eq!((result.tool_calls, result.usage.total()), (5, 250));

    // Errors the model can correct, in the transcript and in what it was sent next.
    let errors: Vec<(String, String)> = result
        .transcript
        .iter()
        .filter_map(|e| match e {
            Entry::Tool { id, is_error: true, result, .. } => {
                assert!(!result["error"]["message"].as_str().unwrap_or("").is_empty(), "{result}");
                Some((id.clone(), result["error"]["code"].as_str().unwrap_or("").to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [("c3".into(), "invalid_arguments".into()), ("c4".into(), "unknown_tool".into()), ("c5".into(), "tool_error".into())]
    );

    // On the wire: Azure's deployment path, api-version, api-key header; the retried request is the same.
    let seen = seen.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one 429, then three turns");
    for (path, query, headers, body) in seen.iter() {
        assert_eq!(path, "/openai/deployments/gpt-4o/chat/completions");
        assert_eq!(query, "api-version=2024-10-21");
        assert_eq!(headers.get("api-key").unwrap(), "azure-key");
        assert!(headers.get("authorization").is_none());
        assert_eq!(body["stream"], true);
        let names: Vec<&str> =
            body["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["propose_scale", "read_fleet"].iter().copied().filter(|n| names.contains(n)).collect::<Vec<_>>());
        assert!(
            body["tools"][0]["function"]["parameters"]["properties"].is_object(),
            "the MCP input schema is the tool's parameters"
        );
    }
    assert_eq!(seen[0].3, seen[1].3, "a 429 is retried with the same request");
    let third = &seen[2].3["messages"];
    let tool_messages: Vec<&Value> = third.as_array().unwrap().iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_messages.len(), 2);
    assert_eq!(tool_messages[0]["tool_call_id"], "c1");
    let assistant = third.as_array().unwrap().iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(assistant["tool_calls"][1]["function"]["arguments"], "{\"fleet\": \"cf-ml-scaling\", \"spot_capacity\": 24}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn v1_bearer_tokens_and_a_token_budget_reached_mid_run() {
    let script = vec![
        Scripted::Chunks(vec![call(0, "c1", "read_fleet", "{\"fleet\": \"f\"}")], 600),
        Scripted::Chunks(vec![call(0, "c2", "propose_scale", "{\"fleet\": \"f\", \"spot_capacity\": 30}")], 600),
        Scripted::Chunks(vec![json!({"content": "never reached"})], 10),
    ];
    let (base, seen) = serve(script).await;
    let source = Arc::new(FixedToken(Mutex::new(0)));
    let model = OpenAiModel::new(
        Endpoint::V1 { base: format!("{base}/v1"), model: "gpt-4.1".into(), auth: V1Auth::Bearer(source) },
        options(),
    )
    .unwrap();
    let (client, calls) = tools().await;
    let specs = runner::tool_specs(client.peer()).await.unwrap();
    let budgets = Budgets { max_tokens: 1000, ..Budgets::default() };
    let result = runner::run(&model, client.peer(), &specs, conversation(), budgets, &|_| {}).await;
    assert_eq!(result.ending, Ending::BudgetExhausted);
    assert!(result.answer.contains("tokens: 1200 used of 1000"), "{}", result.answer);
    assert_eq!(*calls.lock().unwrap(), ["read_fleet f"], "the turn past the budget calls nothing");
    let seen = seen.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (i, (path, query, headers, body)) in seen.iter().enumerate() {
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(query, "", "v1 takes no api-version");
        assert_eq!(headers.get("authorization").unwrap().to_str().unwrap(), format!("Bearer entra-token-{}", i + 1));
        assert!(headers.get("api-key").is_none());
        assert_eq!(body["model"], "gpt-4.1");
    }
    // The transcript is JSON lines, one entry a line, ending with the budget.
    let jsonl = result.transcript_jsonl();
    let last: Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert_eq!((last["kind"].as_str(), last["ending"].as_str()), (Some("end"), Some("budget_exhausted")));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_ends_the_run() {
    let (base, seen) = serve(vec![Scripted::Status(400), Scripted::Status(400)]).await;
    let model = OpenAiModel::new(
        Endpoint::V1 { base: format!("{base}/v1"), model: "m".into(), auth: V1Auth::ApiKey("sk-test".into()) },
        options(),
    )
    .unwrap();
    let (client, _) = tools().await;
    let specs = runner::tool_specs(client.peer()).await.unwrap();
    let result = runner::run(&model, client.peer(), &specs, conversation(), Budgets::default(), &|_| {}).await;
    assert_eq!(result.ending, Ending::ModelFailed);
    assert!(result.answer.contains("400"), "{}", result.answer);
    let seen = seen.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].2.get("authorization").unwrap(), "Bearer sk-test");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_recorded_run_replays_to_the_same_tool_calls() {
    // Record a run with the scripted endpoint, then play its transcript back.
    let script = vec![
        Scripted::Chunks(vec![call(0, "c1", "read_fleet", "{\"fleet\": \"f\"}")], 10),
        Scripted::Chunks(vec![call(0, "c2", "propose_scale", "{\"fleet\": \"f\", \"spot_capacity\": 22}")], 10),
        Scripted::Chunks(vec![json!({"content": "Proposed."})], 10),
    ];
    let (base, _) = serve(script).await;
    let model =
        OpenAiModel::new(Endpoint::V1 { base: format!("{base}/v1"), model: "m".into(), auth: V1Auth::None }, options()).unwrap();
    let (client, calls) = tools().await;
    let specs = runner::tool_specs(client.peer()).await.unwrap();
    let recorded = runner::run(&model, client.peer(), &specs, conversation(), Budgets::default(), &|_| {}).await;
    let replay = fleetpilot_agent::replay::Replay::from_jsonl(&recorded.transcript_jsonl()).unwrap();
    let replayed = runner::run(&replay, client.peer(), &specs, conversation(), Budgets::default(), &|_| {}).await;
    assert_eq!(replayed.ending, Ending::Answered);
    assert_eq!(replayed.answer, "Proposed.");
    assert_eq!(*calls.lock().unwrap(), ["read_fleet f", "propose_scale f 22", "read_fleet f", "propose_scale f 22"]);
    client.cancel().await.unwrap();
}
