//! Any OpenAI-compatible chat-completions endpoint, through async-openai: Azure OpenAI by
//! deployment (api-key header, `api-version`), the v1 endpoints (Azure OpenAI `/openai/v1`
//! and Azure AI Foundry with an Entra ID bearer token, OpenAI with a key, a local server
//! with none). Replies are streamed; tool calls arriving in pieces are put together; 429 and
//! 5xx answers and transport failures are retried with backoff; every request has a timeout.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::{AzureConfig, Config};
use async_openai::error::OpenAIError;
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::{ChatError, ChatModel, Message, Reply, Role, TextSink, ToolCall, ToolSpec, Turn, Usage};

/// Where a bearer token comes from (an Entra ID credential, cached and refreshed before it
/// expires by whoever implements this).
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A valid token.
    ///
    /// # Errors
    /// When none can be had.
    async fn token(&self) -> Result<String, String>;
}

/// How to reach the model.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Azure OpenAI by deployment: `{base}/openai/deployments/{deployment}/chat/completions?api-version=…`
    /// with an `api-key` header.
    AzureDeployment {
        /// `https://<resource>.openai.azure.com`.
        base: String,
        /// Deployment name.
        deployment: String,
        /// `2024-10-21` or later.
        api_version: String,
        /// The resource's key.
        api_key: String,
    },
    /// A v1 endpoint: `{base}/chat/completions` with `model` in the body.
    V1 {
        /// `https://<resource>.openai.azure.com/openai/v1`, a Foundry project's models endpoint,
        /// `https://api.openai.com/v1`, or a local server.
        base: String,
        /// Model (the deployment name on Azure).
        model: String,
        /// How to authenticate.
        auth: V1Auth,
    },
}

/// Authentication of a v1 endpoint.
#[derive(Debug, Clone)]
pub enum V1Auth {
    /// `Authorization: Bearer <key>` with a fixed key (OpenAI, a Foundry key).
    ApiKey(String),
    /// `Authorization: Bearer <token>` from a token source (Entra ID), fetched per request so
    /// that a refreshed token is used as soon as there is one.
    Bearer(Arc<dyn TokenSource>),
    /// Nothing (a local server).
    None,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per request, first byte to last.
    pub request_timeout: Duration,
    /// Retries of 429, 5xx and transport failures after the first attempt.
    pub max_retries: usize,
    /// First backoff delay.
    pub min_backoff: Duration,
    /// Upper bound on the completion's tokens.
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature (unset: the model's default).
    pub temperature: Option<f32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            max_retries: 4,
            min_backoff: Duration::from_millis(500),
            max_completion_tokens: Some(2048),
            temperature: None,
        }
    }
}

/// A v1 configuration whose bearer token can change between requests.
#[derive(Debug, Clone)]
struct V1Config {
    base: String,
    bearer: Arc<RwLock<Option<String>>>,
    key: secrecy::SecretString,
}

impl Config for V1Config {
    fn headers(&self) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        let bearer = self.bearer.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(token) = bearer
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        headers
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }
    fn query(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }
    fn api_base(&self) -> &str {
        &self.base
    }
    fn api_key(&self) -> &secrecy::SecretString {
        &self.key
    }
}

enum Inner {
    Azure(Client<AzureConfig>),
    V1 { client: Client<V1Config>, bearer: Arc<RwLock<Option<String>>>, auth: V1Auth },
}

/// A model behind an OpenAI-compatible endpoint.
pub struct OpenAiModel {
    inner: Inner,
    model: String,
    options: Options,
}

impl std::fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiModel").field("model", &self.model).finish_non_exhaustive()
    }
}

impl OpenAiModel {
    /// A client for `endpoint`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(endpoint: Endpoint, options: Options) -> Result<Self, ChatError> {
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ChatError::Other(format!("cannot build the HTTP client: {e}")))?;
        let (inner, model) = match endpoint {
            Endpoint::AzureDeployment { base, deployment, api_version, api_key } => {
                let config = AzureConfig::new()
                    .with_api_base(base)
                    .with_deployment_id(deployment.clone())
                    .with_api_version(api_version)
                    .with_api_key(api_key);
                (Inner::Azure(Client::build(http, config)), deployment)
            }
            Endpoint::V1 { base, model, auth } => {
                let bearer = Arc::new(RwLock::new(match &auth {
                    V1Auth::ApiKey(key) => Some(key.clone()),
                    _ => None,
                }));
                let config = V1Config { base, bearer: bearer.clone(), key: String::new().into() };
                (Inner::V1 { client: Client::build(http, config), bearer, auth }, model)
            }
        };
        Ok(Self { inner, model, options })
    }

    fn request(&self, conversation: &[Message], tools: &[ToolSpec]) -> Value {
        let messages: Vec<Value> = conversation.iter().map(wire_message).collect();
        let mut request = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !tools.is_empty() {
            request["tools"] = Value::Array(
                tools
                    .iter()
                    .map(|t| {
                        json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}})
                    })
                    .collect(),
            );
            request["parallel_tool_calls"] = json!(true);
        }
        if let Some(n) = self.options.max_completion_tokens {
            request["max_completion_tokens"] = json!(n);
        }
        if let Some(t) = self.options.temperature {
            request["temperature"] = json!(t);
        }
        request
    }

    /// One streamed request, put together.
    async fn attempt(&self, request: &Value, sink: TextSink<'_>) -> Result<Reply, Attempt> {
        let stream = match &self.inner {
            Inner::Azure(client) => client.chat().create_stream_byot::<_, Value>(request.clone()).await,
            Inner::V1 { client, bearer, auth } => {
                if let V1Auth::Bearer(source) = auth {
                    let token = source.token().await.map_err(|e| Attempt::Fatal(ChatError::Other(format!("no token: {e}"))))?;
                    *bearer.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
                }
                client.chat().create_stream_byot::<_, Value>(request.clone()).await
            }
        };
        let mut stream = stream.map_err(classify)?;
        let mut text = String::new();
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut usage = Usage::default();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify)?;
            if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                usage.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0);
                usage.completion_tokens = u["completion_tokens"].as_u64().unwrap_or(0);
            }
            let Some(delta) = chunk.pointer("/choices/0/delta") else { continue };
            if let Some(piece) = delta.get("content").and_then(Value::as_str)
                && !piece.is_empty()
            {
                sink(piece);
                text.push_str(piece);
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(calls.len() as u64) as usize;
                while calls.len() <= index {
                    calls.push(Default::default());
                }
                let slot = &mut calls[index];
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    slot.0 = id.to_string();
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    slot.1.push_str(name);
                }
                if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    slot.2.push_str(args);
                }
            }
        }
        let turn = if calls.is_empty() {
            Turn::Answer
        } else {
            let calls = calls
                .into_iter()
                .enumerate()
                .map(|(i, (id, name, arguments))| ToolCall {
                    id: if id.is_empty() { format!("call_{i}") } else { id },
                    name,
                    arguments,
                })
                .collect();
            Turn::ToolCalls { calls }
        };
        Ok(Reply { turn, text, usage })
    }
}

/// Whether a failed attempt is worth repeating.
enum Attempt {
    Retry(ChatError),
    Fatal(ChatError),
}

fn classify(e: OpenAIError) -> Attempt {
    match e {
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let error = ChatError::Endpoint { status, message: api.api_error.message.clone() };
            if status == 429 || status == 408 || status >= 500 { Attempt::Retry(error) } else { Attempt::Fatal(error) }
        }
        OpenAIError::Reqwest(e) => Attempt::Retry(ChatError::Transport(e.to_string())),
        OpenAIError::StreamError(e) => Attempt::Retry(ChatError::Transport(e.to_string())),
        OpenAIError::JSONDeserialize(e, body) => {
            Attempt::Fatal(ChatError::Protocol(format!("{e}: {}", body.chars().take(200).collect::<String>())))
        }
        other => Attempt::Fatal(ChatError::Other(other.to_string())),
    }
}

/// A message as the chat-completions API takes it.
fn wire_message(m: &Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Assistant if m.tool_calls.is_empty() => json!({"role": "assistant", "content": m.content}),
        Role::Assistant => json!({
            "role": "assistant",
            "content": if m.content.is_empty() { Value::Null } else { json!(m.content) },
            "tool_calls": m.tool_calls.iter().map(|c| json!({
                "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}
            })).collect::<Vec<_>>(),
        }),
        Role::Tool => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
    }
}

#[async_trait::async_trait]
impl ChatModel for OpenAiModel {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    async fn next_turn(&self, conversation: &[Message], tools: &[ToolSpec], sink: TextSink<'_>) -> Result<Reply, ChatError> {
        let request = self.request(conversation, tools);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.min_backoff)
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(self.options.max_retries)
            .with_jitter();
        let result = (|| async { self.attempt(&request, sink).await })
            .retry(backoff)
            .when(|e| matches!(e, Attempt::Retry(_)))
            .notify(|e, after| {
                let (Attempt::Retry(e) | Attempt::Fatal(e)) = e;
                tracing::warn!(error = %e, retry_in = ?after, "model endpoint failed; retrying");
            })
            .await;
        result.map_err(|e| match e {
            Attempt::Retry(e) | Attempt::Fatal(e) => e,
        })
    }
}
