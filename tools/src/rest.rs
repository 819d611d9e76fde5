//! The tools as a REST API — `POST /api/v1/tools/{name}` with the tool's arguments as the JSON
//! body — and its OpenAPI 3.1 document at `/openapi.json`, generated from the same schemas the
//! MCP tools publish (an AI Foundry OpenAPI tool can use it as is).
//!
//! A REST call is the MCP call: it is handed to the same rmcp tool router (as transport
//! `rest`), so admission, roles, rate limits, guardrails and the audit are one code path. A
//! result is `200` with the structured content; a tool error is its `ToolError` JSON with a
//! status that follows its code.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::mcp::{FleetTools, HttpConfig};
use crate::service::FleetService;

type Mcp = StreamableHttpService<FleetTools, LocalSessionManager>;

/// `/api/v1/tools/{name}` and `/openapi.json`.
pub fn rest_router(service: Arc<FleetService>, config: HttpConfig, cancel: CancellationToken) -> axum::Router {
    let mcp: Mcp = crate::mcp::mcp_service(service, config, cancel, "rest");
    let document = Arc::new(openapi());
    axum::Router::new()
        .route("/api/v1/tools/{name}", post(call).with_state(mcp))
        .route("/openapi.json", get(move || std::future::ready(axum::Json((*document).clone()))))
}

/// The HTTP status of a tool error code (the REST surface's and the dashboard's).
pub(crate) fn status_of(code: &str) -> StatusCode {
    match code {
        "forbidden" => StatusCode::FORBIDDEN,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "invalid_argument" => StatusCode::BAD_REQUEST,
        c if c.ends_with("_not_found") || c == "not_found" => StatusCode::NOT_FOUND,
        "denied" | "needs_approval" | "expired" | "rejected" | "conflict" | "frozen" | "not_approved" => StatusCode::CONFLICT,
        "azure_error" | "azure_unavailable" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn call(State(mcp): State<Mcp>, Path(name): Path<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024 + 1).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(json!({"code": "too_large", "message": "the body is over 1 MiB"})))
            .into_response();
    };
    let arguments: Value = if bytes.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(
                        json!({"code": "invalid_argument", "message": "the body must be a JSON object of the tool's arguments"}),
                    ),
                )
                    .into_response();
            }
        }
    };
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
    let mut inner = axum::http::Request::builder()
        .method("POST")
        .uri("/")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    for h in [header::HOST, header::ORIGIN] {
        if let Some(v) = parts.headers.get(&h) {
            inner = inner.header(h, v.clone());
        }
    }
    let Ok(mut inner) = inner.body(Body::from(Bytes::from(rpc.to_string()))) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // Who the authentication middleware let in goes along.
    if let Some(caller) = parts.extensions.get::<crate::Caller>() {
        inner.extensions_mut().insert(caller.clone());
    }
    let response = match mcp.oneshot(inner).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = response.status();
    let Ok(bytes) = axum::body::to_bytes(Body::new(response.into_body()), 64 * 1024 * 1024).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if !status.is_success() {
        return (status, bytes).into_response();
    }
    let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(error) = reply.get("error") {
        // Unknown tool, malformed arguments: the protocol's error, as a 400/404.
        let message = error["message"].as_str().unwrap_or("invalid request").to_string();
        let status = if message.contains("not found") || message.contains("Unknown tool") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        return (status, axum::Json(json!({"code": "invalid_argument", "message": message}))).into_response();
    }
    let result = &reply["result"];
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    if result["isError"] == json!(true) {
        let error: Value = serde_json::from_str(text).unwrap_or_else(|_| json!({"code": "invalid_argument", "message": text}));
        let status = status_of(error["code"].as_str().unwrap_or_default());
        return (status, axum::Json(error)).into_response();
    }
    let body =
        result.get("structuredContent").cloned().unwrap_or_else(|| serde_json::from_str(text).unwrap_or(json!({"text": text})));
    axum::Json(body).into_response()
}

/// Move a schema's `$defs` into `defs` and point its `$ref`s at `#/components/schemas/…`.
fn hoist(schema: &Value, defs: &mut BTreeMap<String, Value>) -> Value {
    fn rewrite(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| k.as_str() != "$defs" && k.as_str() != "$schema")
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v) {
                            ("$ref", Value::String(r)) => json!(r.replace("#/$defs/", "#/components/schemas/")),
                            _ => rewrite(v),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(rewrite).collect()),
            other => other.clone(),
        }
    }
    if let Some(Value::Object(local)) = schema.get("$defs") {
        for (name, def) in local {
            defs.entry(name.clone()).or_insert_with(|| rewrite(def));
        }
    }
    rewrite(schema)
}

/// The OpenAPI 3.1 document of the tools.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    let mut defs: BTreeMap<String, Value> = BTreeMap::new();
    defs.insert(
        "ToolError".into(),
        json!({"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "forbidden, rate_limited, invalid_argument, denied, needs_approval, …"},
            "message": {"type": "string"},
            "violations": {"type": "array", "items": {"type": "object"}},
            "retryable": {"type": "boolean"},
        }}),
    );
    let mut tools = FleetTools::router().list_all();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    for tool in tools {
        let input = hoist(&Value::Object((*tool.input_schema).clone()), &mut defs);
        let output = tool
            .output_schema
            .as_ref()
            .map(|s| hoist(&Value::Object((**s).clone()), &mut defs))
            .unwrap_or_else(|| json!({"type": "object"}));
        let read_only = tool.annotations.as_ref().and_then(|a| a.read_only_hint).unwrap_or(false);
        let error = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ToolError"}}}});
        paths.insert(
            format!("/api/v1/tools/{}", tool.name),
            json!({"post": {
                "operationId": tool.name,
                "summary": tool.annotations.as_ref().and_then(|a| a.title.clone()).unwrap_or_else(|| tool.name.to_string()),
                "description": tool.description.as_deref().unwrap_or_default(),
                "tags": [if read_only { "read" } else { "change" }],
                "requestBody": {"required": true, "content": {"application/json": {"schema": input}}},
                "responses": {
                    "200": {"description": "The tool's result", "content": {"application/json": {"schema": output}}},
                    "400": error("Malformed arguments"),
                    "401": error("No valid credential"),
                    "403": error("The caller's role may not call this tool"),
                    "404": error("Unknown fleet, proposal, run or job"),
                    "409": error("Refused by the guardrails, waiting for approval, expired or rejected"),
                    "429": error("Over the caller's rate limit"),
                    "502": error("Azure failed"),
                },
            }}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "fleetpilot",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Scale Azure ML compute safely: every change passes deterministic guardrails and an idempotent executor. The same tools as the MCP endpoint at /mcp.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key, or a Microsoft Entra ID token for fleetpilot's app ID URI"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_tool_is_an_operation_and_every_ref_resolves() {
        let doc = openapi();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), FleetTools::tool_names().len());
        assert!(paths.contains_key("/api/v1/tools/propose_scale"));
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("a ref outside components: {r}"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
        }
        assert!(!doc.to_string().contains("$defs"));
    }
}
