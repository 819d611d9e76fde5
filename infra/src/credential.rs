//! Credentials for Azure, chosen by configuration, behind a token cache.

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential};
use fleetpilot_core::Secret;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::AzureError;

/// Which credential fleetpilot uses for its own calls to Azure. It never passes a caller's
/// token through.
#[derive(Debug, Clone, Default)]
pub enum CredentialConfig {
    /// No credential: for the emulator, which needs none.
    #[default]
    None,
    /// The developer's Azure CLI or Azure Developer CLI login.
    DeveloperTools,
    /// A managed identity (system-assigned, or user-assigned by client id).
    ManagedIdentity {
        /// Client id of a user-assigned identity.
        client_id: Option<String>,
    },
    /// Workload identity federation (AKS), from the standard `AZURE_*` environment.
    WorkloadIdentity,
    /// A service principal with a client secret.
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The secret.
        secret: Secret,
    },
}

impl CredentialConfig {
    /// Build the credential, or `None` for [`CredentialConfig::None`].
    ///
    /// # Errors
    /// When azure_identity rejects the configuration (e.g. a malformed tenant id).
    pub fn build(&self) -> Result<Option<Arc<dyn TokenCredential>>, AzureError> {
        let wrap = |kind: &'static str| move |source| AzureError::CredentialConfig { kind, source };
        Ok(Some(match self {
            CredentialConfig::None => return Ok(None),
            CredentialConfig::DeveloperTools => {
                azure_identity::DeveloperToolsCredential::new(None).map_err(wrap("developer tools"))? as Arc<dyn TokenCredential>
            }
            CredentialConfig::ManagedIdentity { client_id } => {
                let options = azure_identity::ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(azure_identity::UserAssignedId::ClientId),
                    ..Default::default()
                };
                azure_identity::ManagedIdentityCredential::new(Some(options)).map_err(wrap("managed identity"))?
            }
            CredentialConfig::WorkloadIdentity => {
                azure_identity::WorkloadIdentityCredential::new(None).map_err(wrap("workload identity"))?
            }
            CredentialConfig::ClientSecret { tenant_id, client_id, secret } => azure_identity::ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                azure_core::credentials::Secret::new(secret.expose().to_string()),
                None,
            )
            .map_err(wrap("client secret"))?,
        }))
    }
}

/// Caches tokens per scope and refreshes them five minutes before they expire. Some
/// credentials (the Azure CLI) run a process on every call, so this matters.
#[derive(Debug)]
pub struct TokenCache {
    credential: Arc<dyn TokenCredential>,
    tokens: Mutex<HashMap<String, AccessToken>>,
}

/// Refresh this long before expiry.
const REFRESH_MARGIN: time::Duration = time::Duration::minutes(5);

impl TokenCache {
    /// Wrap a credential.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self { credential, tokens: Mutex::new(HashMap::new()) }
    }

    /// A bearer token for `scope`, from the cache when it is fresh enough.
    ///
    /// # Errors
    /// When the credential cannot produce a token.
    pub async fn bearer(&self, scope: &str) -> Result<String, AzureError> {
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(scope)
            && token.expires_on - REFRESH_MARGIN > OffsetDateTime::now_utc()
        {
            return Ok(token.token.secret().to_string());
        }
        let token = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|source| AzureError::Credential { scope: scope.to_string(), source })?;
        let bearer = token.token.secret().to_string();
        tokens.insert(scope.to_string(), token);
        Ok(bearer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: AtomicU32,
        lifetime: time::Duration,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(AccessToken::new(format!("token-{n}"), OffsetDateTime::now_utc() + self.lifetime))
        }
    }

    #[tokio::test]
    async fn fresh_tokens_are_reused_and_stale_ones_refreshed() {
        let fresh = Arc::new(Counting { calls: AtomicU32::new(0), lifetime: time::Duration::hours(1) });
        let cache = TokenCache::new(fresh.clone());
        assert_eq!(cache.bearer("s").await.unwrap(), "token-0");
        assert_eq!(cache.bearer("s").await.unwrap(), "token-0");
        assert_eq!(cache.bearer("other").await.unwrap(), "token-1");

        let stale = Arc::new(Counting { calls: AtomicU32::new(0), lifetime: time::Duration::minutes(4) });
        let cache = TokenCache::new(stale);
        assert_eq!(cache.bearer("s").await.unwrap(), "token-0");
        assert_eq!(cache.bearer("s").await.unwrap(), "token-1", "expires within the margin: refreshed");
    }

    #[test]
    fn none_builds_nothing() {
        assert!(CredentialConfig::None.build().unwrap().is_none());
    }
}
