//! Authentication of HTTP callers: API keys (kept as SHA-256 digests) and Microsoft Entra ID
//! bearer tokens (issuer, audience, expiry, tenant, RS256 signature against the tenant's JWKS,
//! cached and refreshed; app roles mapped to fleetpilot roles), the MCP protected-resource
//! metadata, and `WWW-Authenticate` challenges. A caller's token is only ever checked, never
//! passed on: fleetpilot reaches Azure with its own credential.
//!
//! The middleware puts the authenticated [`Caller`] into the request's extensions, where the
//! MCP tools (through rmcp's request parts), the REST API and the dashboard read it. With no
//! credentials configured (development, loopback only) every caller is `anonymous` with the
//! HTTP role.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;

use crate::{Caller, Role};

/// One API key: a name for the audit, the digest of the key, a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Shown in the audit as `key:<name>`.
    pub name: String,
    /// SHA-256 of the key, lowercase hex.
    pub sha256: String,
    /// What it may do.
    pub role: Role,
}

/// Microsoft Entra ID token validation.
#[derive(Debug, Clone, PartialEq)]
pub struct EntraConfig {
    /// Tenant id (a GUID): tokens of other tenants are refused.
    pub tenant_id: String,
    /// Accepted audiences: fleetpilot's app ID URI (`api://fleetpilot`) and client id.
    pub audiences: Vec<String>,
    /// Accepted issuers (v2 and v1 endpoints of the tenant by default).
    pub issuers: Vec<String>,
    /// Where the signing keys are (`https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys`).
    pub jwks_uri: String,
    /// App role value → fleetpilot role.
    pub roles: BTreeMap<String, Role>,
}

impl EntraConfig {
    /// Defaults for a tenant and an app ID URI: issuers, JWKS and the role names
    /// `Fleet.Read`, `Fleet.Operate`, `Fleet.Approve`, `Fleet.Admin`.
    pub fn for_tenant(tenant_id: &str, audience: &str) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            audiences: vec![audience.into()],
            issuers: vec![
                format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
                format!("https://sts.windows.net/{tenant_id}/"),
            ],
            jwks_uri: format!("https://login.microsoftonline.com/{tenant_id}/discovery/v2.0/keys"),
            roles: BTreeMap::from([
                ("Fleet.Read".into(), Role::Reader),
                ("Fleet.Operate".into(), Role::Operator),
                ("Fleet.Approve".into(), Role::Approver),
                ("Fleet.Admin".into(), Role::Admin),
            ]),
        }
    }
}

/// How HTTP callers are authenticated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthConfig {
    /// API keys.
    pub api_keys: Vec<ApiKey>,
    /// Entra ID tokens.
    pub entra: Option<EntraConfig>,
    /// The role of every caller when nothing above is configured (development mode);
    /// `None` refuses everyone instead.
    pub anonymous_role: Option<Role>,
}

impl AuthConfig {
    /// Whether any credential is configured.
    pub fn enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.entra.is_some()
    }
}

/// SHA-256 of a key, lowercase hex (what `[[auth.api_keys]] sha256` holds).
pub fn key_digest(key: &str) -> String {
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a caller was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential.
    Missing,
    /// A credential that is not valid (unknown key, bad token); the reason is for the log and
    /// the `error_description`.
    Invalid(String),
    /// Valid, but with no fleetpilot role.
    NoRole(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    tid: Option<String>,
    oid: Option<String>,
    sub: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

struct Keys {
    set: JwkSet,
    fetched: Option<Instant>,
}

/// Validates callers; cheap to share.
pub struct Authenticator {
    config: AuthConfig,
    keys: tokio::sync::Mutex<Keys>,
    http: reqwest::Client,
    sessions: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("api_keys", &self.config.api_keys.len())
            .field("entra", &self.config.entra.is_some())
            .finish()
    }
}

/// How long a dashboard session lasts.
const SESSION: Duration = Duration::from_secs(8 * 3600);
/// Keys are refetched at most this often when a token names an unknown key id.
const KEY_REFETCH: Duration = Duration::from_secs(60);
/// And at least this often.
const KEY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "fleetpilot_session";

impl Authenticator {
    /// An authenticator for a configuration.
    pub fn new(config: AuthConfig) -> Arc<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Arc::new(Self {
            config,
            keys: tokio::sync::Mutex::new(Keys { set: JwkSet { keys: Vec::new() }, fetched: None }),
            http,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn api_key(&self, presented: &str) -> Option<Caller> {
        let digest = key_digest(presented);
        self.config
            .api_keys
            .iter()
            .find(|k| k.sha256.eq_ignore_ascii_case(&digest))
            .map(|k| Caller { id: format!("key:{}", k.name), role: k.role })
    }

    /// Who presents these headers.
    ///
    /// # Errors
    /// [`AuthError`] when nobody valid does.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let Some(token) = bearer else {
            if let Some(caller) = self.session(headers) {
                return Ok(caller);
            }
            return match self.config.anonymous_role.filter(|_| !self.config.enabled()) {
                Some(role) => Ok(Caller { id: "anonymous".into(), role }),
                None => Err(AuthError::Missing),
            };
        };
        if let Some(caller) = self.api_key(token) {
            return Ok(caller);
        }
        // Three dot-separated parts: a JWT; anything else was meant as a key.
        if token.split('.').count() == 3
            && let Some(entra) = &self.config.entra
        {
            return self.entra(entra, token).await;
        }
        Err(AuthError::Invalid("unknown API key".into()))
    }

    async fn decoding_key(&self, entra: &EntraConfig, kid: &str) -> Result<DecodingKey, AuthError> {
        let mut keys = self.keys.lock().await;
        let stale = keys.fetched.is_none_or(|t| t.elapsed() > KEY_MAX_AGE);
        let unknown = keys.set.find(kid).is_none() && keys.fetched.is_none_or(|t| t.elapsed() > KEY_REFETCH);
        if stale || unknown {
            match self.http.get(&entra.jwks_uri).send().await.and_then(reqwest::Response::error_for_status) {
                Ok(response) => match response.json::<JwkSet>().await {
                    Ok(set) => {
                        keys.set = set;
                        keys.fetched = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "the JWKS is not a key set"),
                },
                Err(e) => tracing::warn!(error = %e, uri = %entra.jwks_uri, "cannot fetch the signing keys"),
            }
        }
        let jwk = keys.set.find(kid).ok_or_else(|| AuthError::Invalid(format!("unknown signing key '{kid}'")))?;
        DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Invalid(format!("unusable signing key: {e}")))
    }

    async fn entra(&self, entra: &EntraConfig, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| AuthError::Invalid("the token names no signing key".into()))?;
        let key = self.decoding_key(entra, &kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&entra.audiences);
        validation.set_issuer(&entra.issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.tid.as_deref() != Some(entra.tenant_id.as_str()) {
            return Err(AuthError::Invalid("the token is from another tenant".into()));
        }
        let principal = claims.oid.or(claims.sub).or(claims.appid.clone()).or(claims.azp.clone()).unwrap_or_default();
        let role = claims.roles.iter().filter_map(|r| entra.roles.get(r)).max().copied();
        match role {
            Some(role) => Ok(Caller { id: format!("entra:{principal}"), role }),
            None => Err(AuthError::NoRole(format!(
                "the token carries no fleetpilot app role (has {:?}; give it one of {:?})",
                claims.roles,
                entra.roles.keys().collect::<Vec<_>>()
            ))),
        }
    }

    /// Start a dashboard session for an API key; its id goes in the session cookie.
    pub fn open_session(&self, key: &str) -> Option<String> {
        let caller = self.api_key(key)?;
        let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, (_, at)| at.elapsed() < SESSION);
        sessions.insert(id.clone(), (caller, Instant::now()));
        Some(id)
    }

    fn session(&self, headers: &HeaderMap) -> Option<Caller> {
        let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';'));
        let id =
            cookies.filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == SESSION_COOKIE).map(|(_, v)| v.to_string())?;
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(&id).filter(|(_, at)| at.elapsed() < SESSION).map(|(c, _)| c.clone())
    }
}

/// `scheme://host` of a request, as its client addressed it (behind a proxy, from
/// `X-Forwarded-Proto`).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Where the protected-resource metadata is, for a request's host.
fn metadata_url(headers: &HeaderMap) -> String {
    format!("{}/.well-known/oauth-protected-resource", base_url(headers))
}

/// The 401/403 answer, with the challenge the MCP authorization spec asks for.
pub fn refusal(error: &AuthError, headers: &HeaderMap) -> Response {
    let resource = metadata_url(headers);
    let (status, challenge, message) = match error {
        AuthError::Missing => {
            (StatusCode::UNAUTHORIZED, format!("Bearer resource_metadata=\"{resource}\""), "authentication required".to_string())
        }
        AuthError::Invalid(why) => (
            StatusCode::UNAUTHORIZED,
            format!(
                "Bearer resource_metadata=\"{resource}\", error=\"invalid_token\", error_description=\"{}\"",
                why.replace('"', "'")
            ),
            format!("invalid credential: {why}"),
        ),
        AuthError::NoRole(why) => {
            (StatusCode::FORBIDDEN, format!("Bearer resource_metadata=\"{resource}\", error=\"insufficient_scope\""), why.clone())
        }
    };
    let mut response = (status, axum::Json(json!({"code": "unauthorized", "message": message}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// Paths anyone may read: health, the metadata, the dashboard's static page and assets, the
/// OpenAPI document, and the alert webhook (it checks its own token).
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/" | "/favicon.ico" | "/openapi.json" | "/alerts" | "/api/session")
        || path.starts_with("/.well-known/oauth-protected-resource")
        || path.starts_with("/assets/")
}

/// The middleware: authenticate, put the [`Caller`] into the request, or refuse.
pub async fn middleware(State(auth): State<Arc<Authenticator>>, mut request: Request, next: Next) -> Response {
    if public(request.uri().path()) {
        return next.run(request).await;
    }
    match auth.authenticate(request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => {
            tracing::warn!(path = request.uri().path(), reason = ?e, "request refused");
            refusal(&e, request.headers())
        }
    }
}

/// `GET /.well-known/oauth-protected-resource` (RFC 9728): what protects `/mcp` and who issues
/// tokens for it.
pub async fn protected_resource(State(auth): State<Arc<Authenticator>>, headers: HeaderMap) -> Response {
    let mut body = json!({
        "resource": format!("{}/mcp", base_url(&headers)),
        "resource_name": "fleetpilot",
        "bearer_methods_supported": ["header"],
        "authorization_servers": [],
    });
    if let Some(entra) = &auth.config.entra {
        body["authorization_servers"] = json!([format!("https://login.microsoftonline.com/{}/v2.0", entra.tenant_id)]);
        body["scopes_supported"] = json!(entra.audiences.iter().map(|a| format!("{a}/.default")).collect::<Vec<_>>());
    }
    axum::Json(body).into_response()
}

#[derive(Debug, Deserialize)]
struct SessionBody {
    key: String,
}

/// `POST /api/session {"key": …}`: a dashboard session for an API key, as an HttpOnly,
/// SameSite=Strict cookie.
async fn login(
    State(auth): State<Arc<Authenticator>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<SessionBody>,
) -> Response {
    match auth.open_session(&body.key) {
        Some(id) => {
            let secure = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) == Some("https");
            let cookie = format!(
                "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                SESSION.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        None => refusal(&AuthError::Invalid("unknown API key".into()), &headers),
    }
}

/// The routes auth serves itself.
pub fn routes(auth: Arc<Authenticator>) -> axum::Router {
    axum::Router::new()
        .route("/.well-known/oauth-protected-resource", axum::routing::get(protected_resource))
        .route("/.well-known/oauth-protected-resource/mcp", axum::routing::get(protected_resource))
        .route("/api/session", axum::routing::post(login))
        .with_state(auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[tokio::test]
    async fn keys_are_checked_by_digest_and_development_mode_is_anonymous() {
        let auth = Authenticator::new(AuthConfig {
            api_keys: vec![ApiKey { name: "ci".into(), sha256: key_digest("s3cret-key"), role: Role::Operator }],
            entra: None,
            anonymous_role: Some(Role::Operator),
        });
        let ok = auth.authenticate(&headers("Bearer s3cret-key")).await.unwrap();
        assert_eq!((ok.id.as_str(), ok.role), ("key:ci", Role::Operator));
        assert!(matches!(auth.authenticate(&headers("Bearer wrong")).await, Err(AuthError::Invalid(_))));
        assert_eq!(auth.authenticate(&HeaderMap::new()).await, Err(AuthError::Missing), "keys configured: no anonymous");
        let dev = Authenticator::new(AuthConfig { anonymous_role: Some(Role::Operator), ..AuthConfig::default() });
        assert_eq!(dev.authenticate(&HeaderMap::new()).await.unwrap().id, "anonymous");
    }

    #[test]
    fn refusals_carry_the_challenge() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let r = refusal(&AuthError::Invalid("expired".into()), &h);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.contains("resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource\""),
            "{challenge}"
        );
        assert!(challenge.contains("invalid_token"));
        assert_eq!(refusal(&AuthError::NoRole("none".into()), &h).status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn sessions_open_only_for_known_keys() {
        let auth = Authenticator::new(AuthConfig {
            api_keys: vec![ApiKey { name: "ops".into(), sha256: key_digest("k"), role: Role::Approver }],
            ..AuthConfig::default()
        });
        assert!(auth.open_session("nope").is_none());
        let id = auth.open_session("k").unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; {SESSION_COOKIE}={id}")).unwrap());
        assert_eq!(auth.session(&h).unwrap().role, Role::Approver);
    }
}
