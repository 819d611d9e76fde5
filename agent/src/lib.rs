//! fleetpilot's agent: a chat model driving fleetpilot's tools through an MCP client.
//!
//! This crate reaches Azure only through the tools — it must not depend on `infra` or the
//! emulator (the tidy test enforces it). What is here now is the seam the agent loop is built
//! on: the conversation vocabulary and the [`ChatModel`] contract. The model implementations
//! (OpenAI-compatible endpoints, the built-in planner, replay) and the loop come with the agent
//! work; until then `fleetpilot` serves its tools to external agents only.

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
    /// Arguments (a JSON object).
    pub arguments: serde_json::Value,
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
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// Call these tools, then ask again.
    ToolCalls(Vec<ToolCall>),
    /// The final answer.
    Answer(String),
}

/// A model error.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The endpoint failed.
    #[error("model endpoint failed: {0}")]
    Endpoint(String),
}

/// The contract every model (remote, planner, replay) fulfils: given the conversation and the
/// tools, the next turn. Implementations are deterministic where they can be (planner, replay).
pub trait ChatModel: Send + Sync {
    /// The next turn.
    ///
    /// # Errors
    /// When the model cannot answer.
    fn next_turn(
        &self,
        conversation: &[Message],
        tools: &[ToolSpec],
    ) -> impl std::future::Future<Output = Result<Turn, ChatError>> + Send;
}
