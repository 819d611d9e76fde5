//! The AI Foundry Agent Service's agent definitions, on a project's data plane
//! (`{project endpoint}/agents/{name}` with `api-version=v1`): versioned prompt agents whose
//! tools may include a remote MCP server. The emulator's project endpoint is
//! `{emulator}/api/projects/{project}`, for an ML workspace of kind `Project`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Emulator;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

/// The checks every call shares: `api-version=v1`, and a project that exists. The refusal,
/// if any.
fn precheck(emulator: &Emulator, project: &str, query: &std::collections::HashMap<String, String>) -> Option<Response> {
    if query.get("api-version").map(String::as_str) != Some("v1") {
        return Some(error(StatusCode::BAD_REQUEST, "BadRequest", "The query parameter 'api-version' must be 'v1'."));
    }
    let exists = emulator.lock_world().ml.values().any(|w| w.kind == "Project" && w.name.eq_ignore_ascii_case(project));
    (!exists).then(|| error(StatusCode::NOT_FOUND, "NotFound", format!("Project '{project}' was not found.")))
}

fn agent_json(name: &str, versions: &[Value]) -> Value {
    json!({"object": "agent", "id": name, "name": name, "versions": {"latest": versions.last().cloned().unwrap_or(Value::Null)}})
}

type Q = Query<std::collections::HashMap<String, String>>;

/// `GET …/agents`: every agent of a project.
pub(crate) async fn list(State(emulator): State<Arc<Emulator>>, Path(project): Path<String>, Query(q): Q) -> Response {
    if let Some(e) = precheck(&emulator, &project, &q) {
        return e;
    }
    let key = project.to_ascii_lowercase();
    let world = emulator.lock_world();
    let data: Vec<Value> = world.agents.iter().filter(|((p, _), _)| *p == key).map(|((_, n), v)| agent_json(n, v)).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET …/agents/{name}`: an agent and its latest version.
pub(crate) async fn get(
    State(emulator): State<Arc<Emulator>>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    if let Some(e) = precheck(&emulator, &project, &q) {
        return e;
    }
    let world = emulator.lock_world();
    match world.agents.get(&(project.to_ascii_lowercase(), name.to_ascii_lowercase())) {
        Some(versions) => axum::Json(agent_json(&name, versions)).into_response(),
        None => error(StatusCode::NOT_FOUND, "NotFound", format!("Agent '{name}' was not found.")),
    }
}

/// `POST …/agents/{name}/versions`: a new version of an agent (creating the agent).
pub(crate) async fn create_version(
    State(emulator): State<Arc<Emulator>>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Q,
    body: axum::body::Bytes,
) -> Response {
    if let Some(e) = precheck(&emulator, &project, &q) {
        return e;
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "The body must be a JSON object.");
    };
    let Some(definition) = input.get("definition").filter(|d| d.is_object()) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "'definition' is required.");
    };
    if definition.get("kind").and_then(Value::as_str) != Some("prompt")
        || definition.get("model").and_then(Value::as_str).is_none()
    {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "A definition needs kind 'prompt' and a 'model'.");
    }
    let mut labels = std::collections::HashSet::new();
    for tool in definition.get("tools").and_then(Value::as_array).into_iter().flatten() {
        if tool.get("type").and_then(Value::as_str) == Some("mcp") {
            let label = tool.get("server_label").and_then(Value::as_str).unwrap_or_default();
            let url = tool.get("server_url").and_then(Value::as_str).unwrap_or_default();
            if label.is_empty() || !(url.starts_with("https://") || url.starts_with("http://")) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "An MCP tool needs a 'server_label' and an absolute 'server_url'.",
                );
            }
            if !labels.insert(label.to_string()) {
                return error(StatusCode::BAD_REQUEST, "BadRequest", format!("The server_label '{label}' is used twice."));
            }
        }
    }
    let mut world = emulator.lock_world();
    let created = world.now.unix_timestamp();
    let versions = world.agents.entry((project.to_ascii_lowercase(), name.to_ascii_lowercase())).or_default();
    let version = (versions.len() + 1).to_string();
    let mut out = json!({
        "object": "agent.version",
        "id": format!("{name}:{version}"),
        "name": name,
        "version": version,
        "created_at": created,
        "definition": definition,
    });
    for key in ["description", "metadata"] {
        if let Some(v) = input.get(key) {
            out[key] = v.clone();
        }
    }
    versions.push(out.clone());
    (StatusCode::OK, axum::Json(out)).into_response()
}

/// `DELETE …/agents/{name}`: the agent and all its versions.
pub(crate) async fn delete(
    State(emulator): State<Arc<Emulator>>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    if let Some(e) = precheck(&emulator, &project, &q) {
        return e;
    }
    let removed = emulator.lock_world().agents.remove(&(project.to_ascii_lowercase(), name.to_ascii_lowercase()));
    match removed {
        Some(_) => axum::Json(json!({"object": "agent.deleted", "name": name, "deleted": true})).into_response(),
        None => error(StatusCode::NOT_FOUND, "NotFound", format!("Agent '{name}' was not found.")),
    }
}
