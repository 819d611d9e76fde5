//! The agent loop. A model proposes turns; tool calls go to fleetpilot's tools over MCP (the
//! same server, roles, guardrails and audit as any client); results go back to the model,
//! errors included, until it answers or a budget runs out. Everything is recorded as a
//! transcript of JSON lines with secrets redacted.

use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::{ChatError, ChatModel, Message, Reply, Role, ToolCall, ToolSpec, Turn, Usage};

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Model turns.
    pub max_turns: u32,
    /// Tool calls, all turns together.
    pub max_tool_calls: u32,
    /// Tokens (prompt and completion), all turns together.
    pub max_tokens: u64,
    /// Wall-clock time.
    pub wall_clock: Duration,
}

impl Default for Budgets {
    fn default() -> Self {
        Self { max_turns: 16, max_tool_calls: 40, max_tokens: 200_000, wall_clock: Duration::from_secs(300) }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The model answered.
    Answered,
    /// A budget ran out (`turns`, `tool_calls`, `tokens`, `wall_clock`).
    BudgetExhausted,
    /// The model failed.
    ModelFailed,
    /// The tool server could not be reached.
    ToolsFailed,
}

impl Ending {
    /// The snake_case name, as recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Answered => "answered",
            Ending::BudgetExhausted => "budget_exhausted",
            Ending::ModelFailed => "model_failed",
            Ending::ToolsFailed => "tools_failed",
        }
    }
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The run began.
    Start {
        /// Milliseconds since the run began.
        t_ms: u64,
        /// The model's name.
        model: String,
        /// The system prompt.
        system: String,
        /// The task.
        user: String,
        /// Tools offered.
        tools: Vec<String>,
    },
    /// A model turn.
    Model {
        /// Milliseconds since the run began.
        t_ms: u64,
        /// How long the model took.
        took_ms: u64,
        /// What it returned.
        reply: Reply,
    },
    /// A tool call and its result.
    Tool {
        /// Milliseconds since the run began.
        t_ms: u64,
        /// How long the call took.
        took_ms: u64,
        /// The call's id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments (parsed when they parse; secrets redacted).
        arguments: Value,
        /// Whether the result is an error the model was shown.
        is_error: bool,
        /// The result as the model saw it (secrets redacted).
        result: Value,
    },
    /// The run ended.
    End {
        /// Milliseconds since the run began.
        t_ms: u64,
        /// How.
        ending: Ending,
        /// The budget that ran out, or the failure.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
        /// The model's final text.
        answer: String,
        /// Tokens used.
        usage: Usage,
        /// Tool calls made.
        tool_calls: u32,
    },
}

/// Something happening, for a live view (the chat).
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A tool is being called.
    ToolCall(&'a ToolCall),
    /// It returned.
    ToolResult {
        /// The call.
        call: &'a ToolCall,
        /// Its result as the model sees it.
        result: &'a Value,
        /// Whether it is an error.
        is_error: bool,
    },
    /// Streamed answer text.
    Text(&'a str),
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How it ended.
    pub ending: Ending,
    /// The final answer (or why there is none).
    pub answer: String,
    /// The transcript.
    pub transcript: Vec<Entry>,
    /// Tokens used.
    pub usage: Usage,
    /// Tool calls made.
    pub tool_calls: u32,
    /// The conversation, for a chat's next turn.
    pub conversation: Vec<Message>,
    /// Time spent waiting for the model and for tools (the rest is the loop's own).
    pub model_time: Duration,
    /// Time spent in tool calls.
    pub tool_time: Duration,
    /// Total time.
    pub elapsed: Duration,
}

impl RunResult {
    /// The transcript as JSON lines.
    pub fn transcript_jsonl(&self) -> String {
        self.transcript.iter().filter_map(|e| serde_json::to_string(e).ok()).map(|l| l + "\n").collect()
    }
}

/// The tools a run may call: the MCP server's list, as model tool specs.
///
/// # Errors
/// When the server cannot list them.
pub async fn tool_specs(peer: &Peer<RoleClient>) -> Result<Vec<ToolSpec>, String> {
    let tools = peer.list_all_tools().await.map_err(|e| e.to_string())?;
    Ok(tools
        .into_iter()
        .map(|t| ToolSpec {
            name: t.name.to_string(),
            description: t.description.map(|d| d.to_string()).unwrap_or_default(),
            input_schema: Value::Object((*t.input_schema).clone()),
        })
        .collect())
}

/// Run the loop: from `conversation` (system prompt, history, the new user message) until the
/// model answers or a budget runs out. Never panics on what a model sends: bad JSON, unknown
/// tools and arguments the server rejects become error results the model can correct.
pub async fn run(
    model: &dyn ChatModel,
    peer: &Peer<RoleClient>,
    tools: &[ToolSpec],
    conversation: Vec<Message>,
    budgets: Budgets,
    on_event: &(dyn Fn(Event<'_>) + Send + Sync),
) -> RunResult {
    let span = tracing::info_span!(
        "agent.run",
        model = %model.name(),
        turns = tracing::field::Empty,
        tool_calls = tracing::field::Empty,
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
        ending = tracing::field::Empty
    );
    let result = run_loop(model, peer, tools, conversation, budgets, on_event).instrument(span.clone()).await;
    span.record("turns", result.transcript.iter().filter(|e| matches!(e, Entry::Model { .. })).count() as u64);
    span.record("tool_calls", u64::from(result.tool_calls));
    span.record("prompt_tokens", result.usage.prompt_tokens);
    span.record("completion_tokens", result.usage.completion_tokens);
    span.record("ending", result.ending.as_str());
    result
}

async fn run_loop(
    model: &dyn ChatModel,
    peer: &Peer<RoleClient>,
    tools: &[ToolSpec],
    mut conversation: Vec<Message>,
    budgets: Budgets,
    on_event: &(dyn Fn(Event<'_>) + Send + Sync),
) -> RunResult {
    let started = Instant::now();
    let ms = |t: Instant| t.duration_since(started).as_millis() as u64;
    let system = conversation.iter().find(|m| m.role == Role::System).map(|m| m.content.clone()).unwrap_or_default();
    let user = conversation.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.clone()).unwrap_or_default();
    let mut transcript =
        vec![Entry::Start { t_ms: 0, model: model.name(), system, user, tools: tools.iter().map(|t| t.name.clone()).collect() }];
    let (mut usage, mut tool_calls, mut turns) = (Usage::default(), 0u32, 0u32);
    let (mut model_time, mut tool_time) = (Duration::ZERO, Duration::ZERO);
    let mut answer = String::new();
    let (ending, detail) = loop {
        if turns >= budgets.max_turns {
            break (Ending::BudgetExhausted, format!("turns: {} used", turns));
        }
        if usage.total() >= budgets.max_tokens {
            break (Ending::BudgetExhausted, format!("tokens: {} used of {}", usage.total(), budgets.max_tokens));
        }
        let Some(left) = budgets.wall_clock.checked_sub(started.elapsed()) else {
            break (Ending::BudgetExhausted, "wall_clock".to_string());
        };
        turns += 1;
        let asked = Instant::now();
        let sink = |text: &str| on_event(Event::Text(text));
        let turn_span = tracing::info_span!("agent.turn", turn = turns);
        let reply = match tokio::time::timeout(left, model.next_turn(&conversation, tools, &sink)).instrument(turn_span).await {
            Err(_) => break (Ending::BudgetExhausted, "wall_clock".to_string()),
            Ok(Err(e)) => break (Ending::ModelFailed, e.to_string()),
            Ok(Ok(reply)) => reply,
        };
        model_time += asked.elapsed();
        usage.prompt_tokens += reply.usage.prompt_tokens;
        usage.completion_tokens += reply.usage.completion_tokens;
        transcript.push(Entry::Model { t_ms: ms(asked), took_ms: asked.elapsed().as_millis() as u64, reply: reply.clone() });
        let calls = match reply.turn {
            Turn::Answer => {
                answer = reply.text.clone();
                conversation.push(Message::text(Role::Assistant, reply.text));
                break (Ending::Answered, String::new());
            }
            Turn::ToolCalls { calls } => calls,
        };
        conversation.push(Message { role: Role::Assistant, content: reply.text, tool_calls: calls.clone(), tool_call_id: None });
        if usage.total() >= budgets.max_tokens {
            // The turn's calls are not made: the budget is spent.
            for call in &calls {
                conversation
                    .push(tool_message(call, &error_value("budget", "the run's token budget is spent; no more tool calls")));
            }
            break (Ending::BudgetExhausted, format!("tokens: {} used of {}", usage.total(), budgets.max_tokens));
        }
        if tool_calls + calls.len() as u32 > budgets.max_tool_calls {
            for call in &calls {
                conversation.push(tool_message(call, &error_value("budget", "the run's tool-call budget is spent")));
            }
            break (Ending::BudgetExhausted, format!("tool_calls: {tool_calls} used of {}", budgets.max_tool_calls));
        }
        // Parallel tool calls run concurrently; results go back in the order asked.
        for call in &calls {
            on_event(Event::ToolCall(call));
        }
        let called = Instant::now();
        let results = futures::future::join_all(calls.iter().map(|call| {
            call_tool(peer, tools, call).instrument(tracing::info_span!("agent.tool_call", tool = %call.name, id = %call.id))
        }))
        .await;
        tool_time += called.elapsed();
        let took = called.elapsed().as_millis() as u64;
        let mut transport_failed = None;
        for (call, (result, is_error, failed)) in calls.iter().zip(results) {
            tool_calls += 1;
            if failed {
                transport_failed = Some(result.to_string());
            }
            on_event(Event::ToolResult { call, result: &result, is_error });
            let arguments = serde_json::from_str(&call.arguments).unwrap_or_else(|_| Value::String(call.arguments.clone()));
            transcript.push(Entry::Tool {
                t_ms: ms(called),
                took_ms: took,
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: fleetpilot_core::redact_json(&arguments),
                is_error,
                result: fleetpilot_core::redact_json(&result),
            });
            conversation.push(tool_message(call, &result));
        }
        if let Some(why) = transport_failed {
            break (Ending::ToolsFailed, why);
        }
    };
    if answer.is_empty() && ending != Ending::Answered {
        answer = format!("The run stopped before an answer ({ending:?}: {detail}).");
    }
    transcript.push(Entry::End { t_ms: ms(Instant::now()), ending, detail, answer: answer.clone(), usage, tool_calls });
    RunResult { ending, answer, transcript, usage, tool_calls, conversation, model_time, tool_time, elapsed: started.elapsed() }
}

fn error_value(code: &str, message: &str) -> Value {
    serde_json::json!({"is_error": true, "error": {"code": code, "message": message}})
}

fn tool_message(call: &ToolCall, result: &Value) -> Message {
    Message { role: Role::Tool, content: result.to_string(), tool_calls: Vec::new(), tool_call_id: Some(call.id.clone()) }
}

/// Call one tool; returns (what the model sees, is_error, the server could not be reached).
async fn call_tool(peer: &Peer<RoleClient>, tools: &[ToolSpec], call: &ToolCall) -> (Value, bool, bool) {
    if !tools.iter().any(|t| t.name == call.name) {
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        let message = format!("there is no tool named {:?}; the tools are: {}", call.name, names.join(", "));
        return (error_value("unknown_tool", &message), true, false);
    }
    let arguments = if call.arguments.trim().is_empty() { "{}" } else { call.arguments.as_str() };
    let arguments = match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return (error_value("invalid_arguments", "the arguments must be a JSON object"), true, false),
        Err(e) => {
            return (
                error_value("invalid_arguments", &format!("the arguments are not valid JSON ({e}); send a JSON object")),
                true,
                false,
            );
        }
    };
    match peer.call_tool(CallToolRequestParams::new(call.name.clone()).with_arguments(arguments)).await {
        Ok(result) => {
            let is_error = result.is_error.unwrap_or(false);
            let text: String =
                result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n");
            if is_error {
                // fleetpilot's tools send a JSON error ({code, message, …}); anything else
                // (e.g. arguments the server could not read) is wrapped the same way.
                let error = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => serde_json::json!({"code": "tool_error", "message": text}),
                };
                (serde_json::json!({"is_error": true, "error": error}), true, false)
            } else {
                let value = result
                    .structured_content
                    .clone()
                    .unwrap_or_else(|| serde_json::from_str(&text).unwrap_or(Value::String(text)));
                (value, false, false)
            }
        }
        Err(rmcp::ServiceError::McpError(e)) => {
            // The server refused the request itself (arguments that do not fit the schema).
            (error_value("invalid_arguments", &format!("{} — check the tool's parameters", e.message)), true, false)
        }
        Err(e) => (error_value("tools_unreachable", &e.to_string()), true, true),
    }
}

/// A model error as the run reports it.
pub fn describe(e: &ChatError) -> String {
    e.to_string()
}
