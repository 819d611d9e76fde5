//! A REST client for Azure Resource Manager: auth, retries, long-running operations.

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use crate::AzureError;
use crate::credential::{CredentialConfig, TokenCache};

/// Scope of ARM tokens.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// Scope of Log Analytics query tokens.
pub const LOG_ANALYTICS_SCOPE: &str = "https://api.loganalytics.io/.default";

/// How transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay (a server's `Retry-After` is honoured up to `max_retry_after`).
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; longer ones are capped to this.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Where and how to reach ARM.
#[derive(Debug, Clone)]
pub struct ArmConfig {
    /// Base URL: `https://management.azure.com`, or the emulator's address.
    pub endpoint: String,
    /// Subscription id.
    pub subscription_id: String,
    /// fleetpilot's own credential.
    pub credential: CredentialConfig,
    /// Retries.
    pub retry: RetryConfig,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Longest wait for a long-running operation.
    pub operation_timeout: Duration,
    /// Poll interval when the server sends no `Retry-After`.
    pub default_poll: Duration,
    /// OAuth scope of the tokens for this endpoint.
    pub token_scope: String,
}

impl ArmConfig {
    /// Defaults for an endpoint and subscription, with no credential.
    pub fn new(endpoint: impl Into<String>, subscription_id: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            subscription_id: subscription_id.into(),
            credential: CredentialConfig::None,
            retry: RetryConfig::default(),
            request_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(600),
            default_poll: Duration::from_secs(5),
            token_scope: ARM_SCOPE.into(),
        }
    }
}

/// A response that was not an error.
#[derive(Debug)]
pub struct ArmResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, parsed as JSON (`Null` when empty).
    pub body: Value,
}

impl ArmResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(&self.headers)
    }
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

static TRANSIENT_RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Transient Azure errors retried by every client of this process so far (for `/metrics`).
pub fn transient_retries() -> u64 {
    TRANSIENT_RETRIES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The ARM client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArmClient {
    http: reqwest::Client,
    config: std::sync::Arc<ArmConfig>,
    tokens: Option<std::sync::Arc<TokenCache>>,
}

impl ArmClient {
    /// Build a client.
    ///
    /// # Errors
    /// When the credential cannot be built or the HTTP client cannot start.
    pub fn new(config: ArmConfig) -> Result<Self, AzureError> {
        let tokens = config.credential.build()?.map(|c| std::sync::Arc::new(TokenCache::new(c)));
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("fleetpilot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| AzureError::Transport { method: "BUILD".into(), url: config.endpoint.clone(), source })?;
        Ok(Self { http, config: std::sync::Arc::new(config), tokens })
    }

    /// `/subscriptions/{id}`.
    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.config.subscription_id)
    }

    /// GET a resource and decode it.
    ///
    /// # Errors
    /// Any [`AzureError`], after retries of transient ones.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, AzureError> {
        let response = self.call(Method::GET, path, None).await?;
        decode(path, response.body)
    }

    /// PUT a resource and wait for its long-running operation; returns the final resource.
    ///
    /// # Errors
    /// Any [`AzureError`]; a failed operation is [`AzureError::OperationFailed`].
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, AzureError> {
        let response = self.call(Method::PUT, path, Some(body)).await?;
        if self.wait(&Method::PUT, path, &response).await? {
            return Ok(self.call(Method::GET, path, None).await?.body);
        }
        Ok(response.body)
    }

    /// PATCH a resource and wait for its long-running operation.
    ///
    /// # Errors
    /// Any [`AzureError`].
    pub async fn patch(&self, path: &str, body: &Value) -> Result<(), AzureError> {
        let response = self.call(Method::PATCH, path, Some(body)).await?;
        self.wait(&Method::PATCH, path, &response).await.map(|_| ())
    }

    /// POST an action and wait for its long-running operation.
    ///
    /// # Errors
    /// Any [`AzureError`].
    pub async fn post(&self, path: &str, body: &Value) -> Result<(), AzureError> {
        let response = self.call(Method::POST, path, Some(body)).await?;
        self.wait(&Method::POST, path, &response).await.map(|_| ())
    }

    /// POST a request whose result comes at once (200) or at the end of a long-running
    /// operation (202, then its `Location` until that stops answering 202): ARM what-if.
    ///
    /// # Errors
    /// Any [`AzureError`]; an operation past `operation_timeout` is
    /// [`AzureError::OperationTimeout`].
    pub async fn post_for_result(&self, path: &str, body: &Value) -> Result<Value, AzureError> {
        let response = self.call(Method::POST, path, Some(body)).await?;
        let Some(url) = response.header("location").filter(|_| response.status == StatusCode::ACCEPTED) else {
            return Ok(response.body);
        };
        let deadline = Instant::now() + self.config.operation_timeout;
        let mut delay = response.retry_after().unwrap_or(self.config.default_poll);
        loop {
            self.sleep_until_poll(delay, deadline, &url).await?;
            let poll = self.call(Method::GET, &url, None).await?;
            if poll.status != StatusCode::ACCEPTED {
                return Ok(poll.body);
            }
            delay = poll.retry_after().unwrap_or(self.config.default_poll);
        }
    }

    /// POST a request that answers with a body at once (no long-running operation), e.g. a
    /// Log Analytics query.
    ///
    /// # Errors
    /// Any [`AzureError`].
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, AzureError> {
        Ok(self.call(Method::POST, path, Some(body)).await?.body)
    }

    /// DELETE a resource and wait for its long-running operation. A resource that is already
    /// gone (404, 204) is success: deleting is idempotent.
    ///
    /// # Errors
    /// Any [`AzureError`] but 404.
    pub async fn delete(&self, path: &str) -> Result<(), AzureError> {
        match self.call(Method::DELETE, path, None).await {
            Ok(response) => self.wait(&Method::DELETE, path, &response).await.map(|_| ()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One logical call: retried on transient errors, with one correlation id for all attempts.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<ArmResponse, AzureError> {
        let correlation = uuid::Uuid::new_v4().to_string();
        let span = tracing::debug_span!("arm.request", %method, path, correlation_id = %correlation);
        let retry = &self.config.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(retry.min_delay)
            .with_max_delay(retry.max_delay)
            .with_max_times(retry.max_retries)
            .with_jitter();
        let max_retry_after = retry.max_retry_after;
        // The first retry of a call is worth a warning; the rest of its attempts are detail
        // (a refused connection would otherwise print one warning per attempt per call).
        let retries = std::sync::atomic::AtomicU32::new(0);
        (|| self.send_once(method.clone(), path, body, &correlation))
            .retry(backoff)
            .when(AzureError::is_transient)
            .adjust(move |e, delay| delay.map(|d| e.retry_after().map_or(d, |ra| ra.min(max_retry_after))))
            .notify(|e, delay| {
                TRANSIENT_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let retry = retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if retry == 1 {
                    tracing::warn!(error = %e, ?delay, "transient Azure error, retrying (further retries of this call are logged at debug)")
                } else {
                    tracing::debug!(error = %e, ?delay, attempt = retry + 1, "transient Azure error, retrying")
                }
            })
            .instrument(span)
            .await
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        correlation: &str,
    ) -> Result<ArmResponse, AzureError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.config.endpoint.trim_end_matches('/'), path)
        };
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string())
            .header("x-ms-correlation-request-id", correlation);
        if let Some(tokens) = &self.tokens {
            request = request.bearer_auth(tokens.bearer(&self.config.token_scope).await?);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source| AzureError::Transport { method: method.to_string(), url: url.clone(), source };
        let response = request.send().instrument(tracing::trace_span!("http")).await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(transport)?;
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if status.is_success() {
            return Ok(ArmResponse { status, headers, body });
        }
        let error = body.get("error").unwrap_or(&body);
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
        // Log Analytics nests the useful part (line and position of a query error) in
        // `innererror`s: keep the deepest message too.
        let mut deepest = error;
        while let Some(inner) = deepest.get("innererror") {
            deepest = inner;
        }
        let inner_message = (!std::ptr::eq(deepest, error)).then(|| deepest.get("message").and_then(Value::as_str)).flatten();
        Err(AzureError::Api {
            method: method.to_string(),
            path: url.split('?').next().unwrap_or(&url).to_string(),
            status: status.as_u16(),
            code: text("code").unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_string()),
            message: match (text("message"), inner_message) {
                (Some(m), Some(inner)) => format!("{m}: {inner}"),
                (Some(m), None) => m,
                (None, _) => String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            },
            retry_after: parse_retry_after(&headers),
        })
    }

    /// Wait for the operation a response started, if it started one. Returns whether it did.
    async fn wait(&self, method: &Method, path: &str, response: &ArmResponse) -> Result<bool, AzureError> {
        let running_state =
            response.body.pointer("/properties/provisioningState").and_then(Value::as_str).is_some_and(|s| !is_terminal(s));
        // A 201 alone does not prove an operation is running: only a status URL, a 202, or a
        // non-terminal provisioningState does.
        let has_status_url = response.headers.contains_key("azure-asyncoperation") || response.headers.contains_key("location");
        let started = response.status == StatusCode::ACCEPTED
            || (response.status == StatusCode::CREATED && has_status_url)
            || (matches!(*method, Method::PUT | Method::PATCH) && running_state);
        if !started {
            return Ok(false);
        }
        let deadline = Instant::now() + self.config.operation_timeout;
        let mut delay = response.retry_after().unwrap_or(self.config.default_poll);
        if let Some(url) = response.header("azure-asyncoperation") {
            loop {
                self.sleep_until_poll(delay, deadline, &url).await?;
                let poll = self.call(Method::GET, &url, None).await?;
                let status = poll.body.get("status").and_then(Value::as_str).unwrap_or("InProgress").to_string();
                match status.as_str() {
                    "Succeeded" => return Ok(true),
                    "Failed" | "Canceled" => {
                        let message =
                            poll.body.pointer("/error/message").and_then(Value::as_str).unwrap_or("no message").to_string();
                        return Err(AzureError::OperationFailed { url, status, message });
                    }
                    _ => delay = poll.retry_after().unwrap_or(self.config.default_poll),
                }
            }
        }
        if let Some(url) = response.header("location") {
            loop {
                self.sleep_until_poll(delay, deadline, &url).await?;
                // A failed operation answers its Location with the error it would have
                // returned synchronously: that is the operation failing, not the poll.
                let poll = match self.call(Method::GET, &url, None).await {
                    Ok(poll) => poll,
                    Err(AzureError::Api { status, code, message, .. }) if !(500..600).contains(&status) && status != 429 => {
                        return Err(AzureError::OperationFailed {
                            url,
                            status: "Failed".into(),
                            message: format!("{code}: {message}"),
                        });
                    }
                    Err(e) => return Err(e),
                };
                if poll.status != StatusCode::ACCEPTED {
                    return Ok(true);
                }
                delay = poll.retry_after().unwrap_or(self.config.default_poll);
            }
        }
        // No status URL: poll the resource's provisioningState (PUT/PATCH only).
        loop {
            self.sleep_until_poll(delay, deadline, path).await?;
            let poll = self.call(Method::GET, path, None).await?;
            let state = poll.body.pointer("/properties/provisioningState").and_then(Value::as_str).unwrap_or("Succeeded");
            match state {
                "Succeeded" => return Ok(true),
                "Failed" | "Canceled" => {
                    return Err(AzureError::OperationFailed {
                        url: path.to_string(),
                        status: state.to_string(),
                        message: "provisioning ended".into(),
                    });
                }
                _ => delay = poll.retry_after().unwrap_or(self.config.default_poll),
            }
        }
    }

    async fn sleep_until_poll(&self, delay: Duration, deadline: Instant, url: &str) -> Result<(), AzureError> {
        let delay = delay.min(self.config.retry.max_retry_after);
        if Instant::now() + delay > deadline {
            return Err(AzureError::OperationTimeout { url: url.to_string(), after: self.config.operation_timeout });
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "Canceled")
}

fn decode<T: DeserializeOwned>(path: &str, body: Value) -> Result<T, AzureError> {
    serde_json::from_value(body).map_err(|e| AzureError::Decode { url: path.to_string(), reason: e.to_string() })
}
