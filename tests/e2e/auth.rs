//! Authentication end to end: `serve` with API keys and Entra ID configured (the tenant's keys
//! served by a JWKS endpoint on loopback), attacked with every credential that must fail —
//! missing, unknown key, expired, wrong audience, wrong signature, other tenant, unsigned,
//! symmetric, role-less tokens; a reader calling an operator's tool; a forged Host; an oversized
//! body — and used with the ones that must work. And `serve` refuses to listen beyond loopback
//! with no authentication.

use std::path::Path;

use anyhow::{Context, Result};
use fleetpilot_e2e::{Server, TempDir};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::bin;

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const AUDIENCE: &str = "api://fleetpilot-test";
const OPERATOR_KEY: &str = "operator-key-0123456789abcdef";
const APPROVER_KEY: &str = "approver-key-0123456789abcdef";

fn data(name: &str) -> Result<Vec<u8>> {
    Ok(std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/auth").join(name))?)
}

fn digest(key: &str) -> String {
    fleetpilot_tools::auth::key_digest(key)
}

/// The tenant's signing keys, served on loopback.
async fn jwks_server() -> Result<String> {
    let jwks: Value = serde_json::from_slice(&data("jwks.json")?)?;
    let app = axum::Router::new().route("/keys", axum::routing::get(move || std::future::ready(axum::Json(jwks.clone()))));
    let addr = fleetpilot_e2e::serve_loopback(app).await?;
    Ok(format!("http://{addr}/keys"))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(roles: &[&str]) -> Value {
    json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "aud": AUDIENCE,
        "tid": TENANT,
        "oid": "aaaaaaaa-0000-4000-8000-000000000001",
        "iat": now() - 60,
        "nbf": now() - 60,
        "exp": now() + 3600,
        "roles": roles,
    })
}

fn sign(claims: &Value, key_file: &str) -> Result<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let key = EncodingKey::from_rsa_pem(&data(key_file)?)?;
    Ok(jsonwebtoken::encode(&header, claims, &key)?)
}

async fn server(dir: &TempDir, jwks: &str) -> Result<Server> {
    let config = dir.path().join("auth.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\nfollow_up_secs = 0\n\n[[auth.api_keys]]\nname = \"ops\"\nsha256 = \"{}\"\nrole = \"operator\"\n\n\
             [[auth.api_keys]]\nname = \"lead\"\nsha256 = \"{}\"\nrole = \"approver\"\n\n\
             [auth.entra]\ntenant_id = \"{TENANT}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{jwks}\"\n",
            digest(OPERATOR_KEY),
            digest(APPROVER_KEY)
        ),
    )?;
    Server::start(bin(), &["--config", &config.display().to_string()]).await
}

async fn mcp_call(base: &str, bearer: Option<&str>, tool: &str, arguments: Value) -> Result<(u16, Option<String>, Value)> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
    let mut request =
        reqwest::Client::new().post(format!("{base}/mcp")).header("accept", "application/json, text/event-stream").json(&body);
    if let Some(b) = bearer {
        request = request.bearer_auth(b);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((status, challenge, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn every_attack_is_refused_and_valid_callers_get_their_roles() -> Result<()> {
    let dir = TempDir::new("auth")?;
    let jwks = jwks_server().await?;
    let server = server(&dir, &jwks).await?;
    let base = &server.base;

    // Metadata, public.
    let metadata: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource")).await?.json().await?;
    assert_eq!(metadata["authorization_servers"][0], format!("https://login.microsoftonline.com/{TENANT}/v2.0"));
    assert_eq!(metadata["resource"], format!("{base}/mcp"));

    let mut expired = claims(&["Fleet.Operate"]);
    expired["exp"] = json!(now() - 600);
    expired["nbf"] = json!(now() - 4000);
    expired["iat"] = json!(now() - 4000);
    let mut wrong_audience = claims(&["Fleet.Operate"]);
    wrong_audience["aud"] = json!("api://someone-else");
    let other_tenant_id = "99999999-2222-4333-8444-555555555555";
    let mut other_tenant = claims(&["Fleet.Operate"]);
    other_tenant["tid"] = json!(other_tenant_id);
    other_tenant["iss"] = json!(format!("https://login.microsoftonline.com/{other_tenant_id}/v2.0"));
    let mut other_tenant_same_issuer = claims(&["Fleet.Operate"]);
    other_tenant_same_issuer["tid"] = json!(other_tenant_id);
    let unsigned = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.", e.encode(r#"{"alg":"none","typ":"JWT"}"#), e.encode(claims(&["Fleet.Admin"]).to_string()))
    };
    let symmetric = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key-1".into());
        jsonwebtoken::encode(&header, &claims(&["Fleet.Admin"]), &EncodingKey::from_secret(b"guess"))?
    };
    let attacks: Vec<(&str, Option<String>, u16)> = vec![
        ("missing credential", None, 401),
        ("unknown API key", Some("not-a-key-0123456789".into()), 401),
        ("expired token", Some(sign(&expired, "tenant-key.pem")?), 401),
        ("wrong audience", Some(sign(&wrong_audience, "tenant-key.pem")?), 401),
        ("wrong signature", Some(sign(&claims(&["Fleet.Admin"]), "attacker-key.pem")?), 401),
        ("other tenant", Some(sign(&other_tenant, "tenant-key.pem")?), 401),
        ("other tenant behind our issuer", Some(sign(&other_tenant_same_issuer, "tenant-key.pem")?), 401),
        ("unsigned (alg none)", Some(unsigned), 401),
        ("symmetric (HS256)", Some(symmetric), 401),
        ("no fleetpilot role", Some(sign(&claims(&["Something.Else"]), "tenant-key.pem")?), 403),
    ];
    let mut report = Vec::new();
    for (name, bearer, want) in &attacks {
        for path in ["/mcp", "/api/fleets", "/api/v1/tools/read_fleet"] {
            let (status, challenge) = if path == "/mcp" {
                let (s, c, _) = mcp_call(base, bearer.as_deref(), "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
                (s, c)
            } else {
                let mut r = if path.starts_with("/api/v1") {
                    reqwest::Client::new().post(format!("{base}{path}")).json(&json!({"fleet": "cf-ml-scaling"}))
                } else {
                    reqwest::Client::new().get(format!("{base}{path}"))
                };
                if let Some(b) = bearer {
                    r = r.bearer_auth(b);
                }
                let r = r.send().await?;
                (r.status().as_u16(), r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_string))
            };
            assert_eq!(status, *want, "{name} on {path}");
            let challenge = challenge.with_context(|| format!("{name} on {path}: no WWW-Authenticate"))?;
            assert!(challenge.contains("resource_metadata="), "{name}: {challenge}");
            report.push(format!("{name} on {path}: {status}"));
        }
    }
    println!("attacks refused:\n{}", report.join("\n"));

    // Valid callers, with their roles.
    let (status, _, read) = mcp_call(base, Some(OPERATOR_KEY), "read_fleet", json!({"fleet": "cf-ml-scaling"})).await?;
    assert_eq!(status, 200);
    assert!(read["result"]["isError"] != json!(true), "{read}");
    let reader = sign(&claims(&["Fleet.Read"]), "tenant-key.pem")?;
    let (status, _, refused) = mcp_call(
        base,
        Some(&reader),
        "propose_scale",
        json!({"fleet": "cf-ml-scaling", "spot_capacity": 21, "reason": "a reader tries"}),
    )
    .await?;
    assert_eq!(status, 200, "a role check is a tool result");
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(refused["result"]["content"][0]["text"].as_str().unwrap_or_default().contains("forbidden"), "{refused}");
    let approver = sign(&claims(&["Fleet.Read", "Fleet.Approve"]), "tenant-key.pem")?;
    let me: Value = reqwest::Client::new().get(format!("{base}/api/me")).bearer_auth(&approver).send().await?.json().await?;
    assert_eq!(me["role"], "approver", "{me}");
    assert_eq!(me["caller"], "dashboard:entra:aaaaaaaa-0000-4000-8000-000000000001");

    // The dashboard signs in with a key and gets a session cookie, not the key.
    let login = reqwest::Client::new().post(format!("{base}/api/session")).json(&json!({"key": APPROVER_KEY})).send().await?;
    assert_eq!(login.status().as_u16(), 204);
    let cookie = login.headers().get("set-cookie").and_then(|v| v.to_str().ok()).context("a cookie")?.to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains(APPROVER_KEY), "{cookie}");
    let session = cookie.split(';').next().context("cookie value")?;
    let me: Value = reqwest::Client::new().get(format!("{base}/api/me")).header("cookie", session).send().await?.json().await?;
    assert_eq!(me["caller"], "dashboard:key:lead");
    let bad_login = reqwest::Client::new().post(format!("{base}/api/session")).json(&json!({"key": "nope"})).send().await?;
    assert_eq!(bad_login.status().as_u16(), 401);

    // Forged Host and oversized bodies.
    let forged = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("host", "evil.example.com")
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await?;
    assert_eq!(forged.status().as_u16(), 403, "forged Host");
    let huge = "x".repeat(2 * 1024 * 1024);
    let oversized = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "query_kql", "arguments": {"query": huge}}}))
        .send()
        .await?;
    assert_eq!(oversized.status().as_u16(), 413, "oversized body");

    // Every refusal by role is audited with who it was.
    let audit = std::process::Command::new(bin())
        .args(["audit", "--since", "1d", "--json", "--state"])
        .arg(server.state_db())
        .output()?;
    let audit: Value = serde_json::from_slice(&audit.stdout)?;
    let denied = audit
        .as_array()
        .context("audit")?
        .iter()
        .any(|r| r["result"] == "forbidden" && r["caller"].as_str().unwrap_or_default().starts_with("entra:aaaaaaaa"));
    assert!(denied, "{audit}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn serve_refuses_to_listen_beyond_loopback_without_authentication() -> Result<()> {
    let dir = TempDir::new("auth-open")?;
    let output = tokio::process::Command::new(bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--state"])
        .arg(dir.path().join("s.db"))
        .env_remove("FLEETPILOT_API_KEY")
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no authentication") && stderr.contains("[auth]"), "{stderr}");
    Ok(())
}
