//! `fleetpilot chat`: the agent in a terminal. The person types; the model investigates with
//! the tools (as the agent, with the agent's role) and answers, streamed, with tool calls and
//! verdicts shown as they happen. A proposal the agent makes is put to the person: approving
//! or applying it goes through a second connection with the person's own role, so the model
//! can never approve its own proposals.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use fleetpilot_agent::planner::{Planner, PlannerConfig};
use fleetpilot_agent::runner::{self, Entry, Event};
use fleetpilot_agent::{ChatModel, Message, Role};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Flags of `fleetpilot chat`.
#[derive(Debug)]
pub struct ChatOptions {
    /// One message, then exit.
    pub message: Option<String>,
    /// The fleet in focus.
    pub fleet: String,
    /// A running server's MCP endpoint.
    pub server: Option<String>,
    /// Say yes to approval questions.
    pub approve: bool,
}

/// Keeps the connections (and an in-process backend) alive for the chat.
enum Link {
    Local(Box<rmcp::service::RunningService<RoleClient, rmcp::model::ClientConfig>>),
    Remote(Box<rmcp::service::RunningService<RoleClient, ()>>),
}

impl Link {
    fn peer(&self) -> Peer<RoleClient> {
        match self {
            Link::Local(c) => c.peer().clone(),
            Link::Remote(c) => c.peer().clone(),
        }
    }
}

fn show(event: Event<'_>) {
    match event {
        Event::Text(t) => {
            print!("{t}");
            let _ = std::io::stdout().flush();
        }
        Event::ToolCall(call) => println!("  → {} {}", call.name, call.arguments),
        Event::ToolResult { call, result, is_error } => {
            let summary = if is_error {
                format!(
                    "error {}: {}",
                    result["error"]["code"].as_str().unwrap_or(""),
                    result["error"]["message"].as_str().unwrap_or("").chars().take(200).collect::<String>()
                )
            } else if let Some(decision) = result.pointer("/verdict/decision").and_then(Value::as_str) {
                format!("{} {decision}", result["id"].as_str().unwrap_or(""))
            } else if let Some(r) = result.get("result").and_then(Value::as_str) {
                r.to_string()
            } else {
                "ok".to_string()
            };
            println!("  ← {} {summary}", call.name);
        }
    }
}

async fn ask(question: &str, yes: bool) -> bool {
    if yes {
        println!("{question} yes (--approve)");
        return true;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    matches!(answer, Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("y") || line.trim().eq_ignore_ascii_case("yes"))
}

async fn human_call(peer: &Peer<RoleClient>, tool: &str, args: Value) -> String {
    let args = args.as_object().cloned().unwrap_or_default();
    match peer.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args)).await {
        Ok(r) if r.is_error == Some(true) => {
            let text: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
            let e: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            format!("refused ({}): {}", e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""))
        }
        Ok(r) => {
            let v = r.structured_content.unwrap_or(Value::Null);
            let outcome = &v["proposal"]["outcome"];
            format!(
                "{} — spot {}, regular {}",
                v["result"].as_str().unwrap_or("done"),
                outcome["spot_capacity"],
                outcome["regular_capacity"]
            )
        }
        Err(e) => format!("failed: {e}"),
    }
}

/// Run the chat.
pub async fn run(config: Config, options: ChatOptions) -> Result<()> {
    let model = crate::autonomy::build_model(&config.model)?;
    if model.is_none() {
        eprintln!(
            "No model endpoint is configured, so the built-in planner answers: it reads fleet {} and its telemetry and proposes what its policy allows.\n\
             To chat with a model, add to fleetpilot.toml either\n  [model]\n  kind = \"azure_openai\"\n  endpoint = \"https://<resource>.openai.azure.com\"\n  deployment = \"<deployment>\"\n  api_key_env = \"AZURE_OPENAI_API_KEY\"\n\
             or\n  [model]\n  kind = \"openai\"\n  endpoint = \"https://<resource>.openai.azure.com/openai/v1\"   # or any OpenAI-compatible base URL\n  model = \"<deployment or model>\"\n  auth = \"entra\"   # or api_key, none\n",
            options.fleet
        );
    }
    let cancel = CancellationToken::new();
    let user = crate::admin_cli::terminal_user();
    let (agent_link, human_link, store, role) = match &options.server {
        Some(url) => {
            let connect = || async {
                ().serve(StreamableHttpClientTransport::from_uri(url.clone()))
                    .await
                    .with_context(|| format!("cannot reach fleetpilot at {url}"))
            };
            (
                Link::Remote(Box::new(connect().await?)),
                Link::Remote(Box::new(connect().await?)),
                None,
                "as the server grants".to_string(),
            )
        }
        None => {
            let backend = crate::run::backend(&config, &cancel).await?;
            let service = backend.service;
            let agent = crate::autonomy::connect_as(service.clone(), "agent", &format!("chat-agent:{user}")).await?;
            let human = crate::autonomy::connect_as(service.clone(), "stdio", &user).await?;
            (
                Link::Local(Box::new(agent)),
                Link::Local(Box::new(human)),
                Some(service.store().clone()),
                config.stdio_role.as_str().to_string(),
            )
        }
    };
    let peer = agent_link.peer();
    let human = human_link.peer();
    let tools = runner::tool_specs(&peer).await.map_err(|e| anyhow::anyhow!("cannot list the tools: {e}"))?;
    let system = fleetpilot_prompts::system(&fleetpilot_prompts::SystemInputs {
        fleet: &options.fleet,
        resource_group: &config.default_resource_group,
        apply_rule: "the person at the terminal asks you to, or agrees (they are asked about every proposal)",
    })?;
    let context = fleetpilot_prompts::chat(&fleetpilot_prompts::ChatInputs { user: &user, role: &role, fleet: &options.fleet })?;
    let mut conversation = vec![Message::text(Role::System, system), Message::text(Role::System, context)];
    let mut editor = if options.message.is_none() {
        println!(
            "fleetpilot chat — fleet {} ({}). Ask about the fleet, or /exit.",
            options.fleet,
            model.as_ref().map_or("built-in planner".into(), |m| m.name())
        );
        Some(rustyline::DefaultEditor::new().context("cannot open the terminal for line editing")?)
    } else {
        None
    };
    let mut once = options.message.clone();
    loop {
        let line = match (&mut editor, once.take()) {
            (_, Some(message)) => message,
            (Some(ed), None) => match ed.readline("you> ") {
                Ok(line) => {
                    let _ = ed.add_history_entry(line.as_str());
                    line
                }
                Err(_) => break,
            },
            (None, None) => break,
        };
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        if matches!(line.as_str(), "/exit" | "/quit" | "exit" | "quit") {
            break;
        }
        conversation.push(Message::text(Role::User, line.clone()));
        let model: Arc<dyn ChatModel> = match &model {
            Some(m) => m.clone(),
            None => {
                let mut planner =
                    PlannerConfig::new(options.fleet.clone(), config.default_resource_group.clone(), format!("chat: {line}"));
                planner.auto_apply = false;
                planner.siblings = config.services.siblings_of(&options.fleet);
                Arc::new(Planner::new(planner))
            }
        };
        let mut record = crate::autonomy::new_run("chat", &options.fleet, json!({"message": line, "user": user}));
        record.status = "running".into();
        record.started_at = Some(crate::autonomy::now());
        record.model = model.name();
        print!("agent> ");
        let result = runner::run(model.as_ref(), &peer, &tools, conversation.clone(), config.agent.budgets, &show).await;
        println!();
        conversation = result.conversation.clone();
        if let Some(store) = &store {
            crate::autonomy::finish_run(&mut record, &result, &config.model.price);
            let _ = store.save_run(&record);
        }
        // Proposals the agent made are put to the person.
        for entry in &result.transcript {
            let Entry::Tool { name, result, is_error: false, .. } = entry else { continue };
            if name != "propose_scale" {
                continue;
            }
            let id = result["id"].as_str().unwrap_or_default();
            let decision = result.pointer("/verdict/decision").and_then(Value::as_str).unwrap_or_default();
            let applied = result["status"].as_str() == Some("applied");
            let (question, tool, args) = match decision {
                "needs_approval" => (
                    format!("Proposal {id} needs approval. Approve it?"),
                    "approve_proposal",
                    json!({"proposal_id": id, "note": "approved in chat"}),
                ),
                "allow" if !applied => (format!("Apply proposal {id}?"), "apply_proposal", json!({"proposal_id": id})),
                _ => continue,
            };
            if ask(&question, options.approve).await {
                println!("  {}", human_call(&human, tool, args).await);
            }
        }
    }
    cancel.cancel();
    Ok(())
}
