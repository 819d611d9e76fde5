//! The agent loop's own overhead per tool call, without model or Azure time:
//!
//! ```text
//! cargo run --release -p fleetpilot-agent --example loop-bench
//! ```
//!
//! A replayed model (answers at once) asks for tool calls — one at a time and four in
//! parallel — against an MCP server (rmcp, in process over a duplex pipe) whose tool returns at
//! once; what is measured is the loop: the turn, argument parsing, the MCP round trip
//! (serialisation both ways), the transcript and redaction.

use std::time::Instant;

use fleetpilot_agent::replay::Replay;
use fleetpilot_agent::runner::{self, Budgets};
use fleetpilot_agent::{Message, Reply, Role, ToolCall, Turn, Usage};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ServiceExt, tool, tool_handler, tool_router};
use serde_json::json;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Args {
    fleet: String,
}

#[derive(Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    #[tool(description = "Read a fleet.")]
    async fn read_fleet(&self, Parameters(a): Parameters<Args>) -> Result<CallToolResult, rmcp::ErrorData> {
        Ok(CallToolResult::structured(
            json!({"fleet": a.fleet, "spot": {"capacity": 20, "running": 20}, "regular": {"capacity": 10}}),
        ))
    }
}

#[tool_handler(router = self.tool_router)]
impl rmcp::ServerHandler for Tools {}

fn script(turns: usize, parallel: usize) -> Vec<Reply> {
    let mut replies: Vec<Reply> = (0..turns)
        .map(|t| Reply {
            turn: Turn::ToolCalls {
                calls: (0..parallel)
                    .map(|i| ToolCall {
                        id: format!("c{t}-{i}"),
                        name: "read_fleet".into(),
                        arguments: "{\"fleet\":\"f\"}".into(),
                    })
                    .collect(),
            },
            text: String::new(),
            usage: Usage::default(),
        })
        .collect();
    replies.push(Reply { turn: Turn::Answer, text: "done".into(), usage: Usage::default() });
    replies
}

#[tokio::main]
async fn main() {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Ok(s) = (Tools { tool_router: Tools::tool_router() }).serve(server_io).await {
            let _ = s.waiting().await;
        }
    });
    let client = ().serve(client_io).await.expect("client");
    let tools = runner::tool_specs(client.peer()).await.expect("tools");
    let budgets = Budgets { max_turns: 10_000, max_tool_calls: 100_000, ..Budgets::default() };
    for (turns, parallel) in [(200, 1), (100, 4)] {
        let mut per_call = Vec::new();
        for _ in 0..5 {
            let model = Replay::new(script(turns, parallel));
            let conversation = vec![Message::text(Role::System, "s"), Message::text(Role::User, "u")];
            let started = Instant::now();
            let result = runner::run(&model, client.peer(), &tools, conversation, budgets, &|_| {}).await;
            assert_eq!(result.tool_calls as usize, turns * parallel);
            per_call.push(started.elapsed().as_secs_f64() * 1e6 / result.tool_calls as f64);
        }
        per_call.sort_by(f64::total_cmp);
        println!(
            "loop overhead per tool call ({turns} turns × {parallel} call{}): median {:.0} µs (min {:.0}, max {:.0}) over 5 runs",
            if parallel > 1 { "s in parallel" } else { "" },
            per_call[2],
            per_call[0],
            per_call[4]
        );
    }
    let _ = client.cancel().await;
}
