//! fleetpilot's agent: a chat model driving fleetpilot's tools through an MCP client.
//!
//! The agent reaches Azure only through the tools, over MCP — in-process over a duplex pipe or
//! a remote URL — so every call it makes passes the same roles, guardrails and audit as any
//! other client's. This crate must not depend on `infra`, the emulator or `tools` (the tidy
//! test enforces it).
//!
//! - [`ChatModel`]: the contract every model fulfils; [`openai::OpenAiModel`] (any
//!   OpenAI-compatible endpoint: Azure OpenAI, Azure AI Foundry, OpenAI, a local server),
//!   [`planner::Planner`] (deterministic, built in, what runs offline) and
//!   [`replay::Replay`] (a recorded transcript played back).
//! - [`runner`]: the loop — budgets, malformed calls answered, transcripts recorded.

pub mod openai;
pub mod planner;
pub mod replay;
pub mod runner;

use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The operator, or the alert that started a run.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Id pairing the call with its result.
    pub id: String,
    /// Tool name, as the MCP server lists it.
    pub name: String,
    /// Arguments as the model wrote them (JSON text; it may be malformed).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Tool calls (assistant messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Which call this answers (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A system, user or assistant message with text only.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A tool as offered to a model: generated from the schemas the MCP server publishes, so there
/// is one source of truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// JSON schema of the arguments.
    pub input_schema: serde_json::Value,
}

/// What a model returns for one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Turn {
    /// Call these tools (in parallel), then ask again.
    ToolCalls {
        /// The calls.
        calls: Vec<ToolCall>,
    },
    /// The final answer.
    Answer,
}

/// Tokens a turn used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// What a model's tokens cost, in USD per million (the deployment's list or contract price).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// USD per million prompt (input) tokens.
    pub prompt_per_million: f64,
    /// USD per million completion (output) tokens.
    pub completion_per_million: f64,
}

impl ModelPrice {
    /// What `usage` cost.
    pub fn cost_usd(&self, usage: &Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.prompt_per_million + usage.completion_tokens as f64 * self.completion_per_million)
            / 1e6
    }
}

/// A model's reply to one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Tool calls or the answer.
    pub turn: Turn,
    /// Text the model wrote (the answer, or what it said beside its tool calls).
    pub text: String,
    /// Tokens used.
    pub usage: Usage,
}

/// A model error.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The endpoint answered with an error (after retries, when it was retryable).
    #[error("model endpoint returned {status}: {message}")]
    Endpoint {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The endpoint could not be reached or timed out (after retries).
    #[error("model endpoint unreachable: {0}")]
    Transport(String),
    /// The endpoint's reply could not be understood.
    #[error("model reply not understood: {0}")]
    Protocol(String),
    /// A replayed transcript has no more turns, or a token could not be had.
    #[error("{0}")]
    Other(String),
}

/// Receives streamed text as a model writes it.
pub type TextSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// The contract every model (remote, planner, replay) fulfils: given the conversation and the
/// tools, the next turn. Text is streamed to `sink` as it is written.
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync {
    /// A short name for transcripts (`planner`, `openai:gpt-4o`, `replay`).
    fn name(&self) -> String;

    /// The next turn.
    ///
    /// # Errors
    /// When the model cannot answer.
    async fn next_turn(&self, conversation: &[Message], tools: &[ToolSpec], sink: TextSink<'_>) -> Result<Reply, ChatError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_cost_is_priced_per_million_tokens_of_each_kind() {
        let price = ModelPrice { prompt_per_million: 2.5, completion_per_million: 10.0 };
        let usage = Usage { prompt_tokens: 1_000_000, completion_tokens: 500_000 };
        assert!((price.cost_usd(&usage) - 7.5).abs() < 1e-12);
        assert_eq!(ModelPrice::default().cost_usd(&usage), 0.0, "no price configured: no cost claimed");
        assert_eq!(price.cost_usd(&Usage::default()), 0.0);
    }
}
