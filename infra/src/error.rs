//! Errors talking to Azure, classified as transient (retry) or permanent (stop).

use std::time::Duration;

/// A failed call to Azure (or to anything that speaks its REST contracts).
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// Azure answered with an error status and an ARM error body.
    #[error("{method} {path} returned {status} {code}: {message}")]
    Api {
        /// Method of the request.
        method: String,
        /// Path of the request (no host, no query).
        path: String,
        /// HTTP status.
        status: u16,
        /// ARM error code (`ResourceNotFound`, `OperationNotAllowed`, …).
        code: String,
        /// ARM error message.
        message: String,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// The request never got an answer (connection refused, timeout, reset).
    #[error("{method} {url} failed")]
    Transport {
        /// Method of the request.
        method: String,
        /// URL of the request.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// No token could be had for a scope.
    #[error("could not get a token for {scope}")]
    Credential {
        /// The scope asked for.
        scope: String,
        /// The underlying error.
        #[source]
        source: azure_core::Error,
    },
    /// The credential could not be built from configuration.
    #[error("could not build the {kind} credential")]
    CredentialConfig {
        /// Which credential.
        kind: &'static str,
        /// The underlying error.
        #[source]
        source: azure_core::Error,
    },
    /// A long-running operation ended in `Failed` or `Canceled`.
    #[error("long-running operation at {url} ended {status}: {message}")]
    OperationFailed {
        /// Status URL.
        url: String,
        /// Terminal status.
        status: String,
        /// Error message from the status body.
        message: String,
    },
    /// A long-running operation did not finish in time.
    #[error("long-running operation at {url} did not finish within {after:?}")]
    OperationTimeout {
        /// Status URL.
        url: String,
        /// How long we waited.
        after: Duration,
    },
    /// A response could not be understood.
    #[error("unexpected response from {url}: {reason}")]
    Decode {
        /// URL of the request.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl AzureError {
    /// Whether retrying may help: throttling (429), server-side trouble (500, 502, 503, 504),
    /// request timeouts (408) and transport failures. Everything else is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            AzureError::Api { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            AzureError::Transport { source, .. } => source.is_timeout() || source.is_connect() || source.is_request(),
            AzureError::OperationTimeout { .. } => true,
            _ => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AzureError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            AzureError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
