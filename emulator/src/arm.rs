//! The ARM surface: paths, api-versions, long-running operations and errors as Azure serves them.
//! Paths are matched without case, as ARM does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fleetpilot_core::Priority;
use serde_json::{Value, json};

pub mod generic;
mod whatif;

use crate::Emulator;
use crate::wire::{self, DeleteInstances, FleetPatch, FleetPut, ResourceGroupPut};
use crate::world::{ArmError, FleetRecord, ResourceGroup, World};

/// api-versions the emulator serves, per resource provider.
pub const FLEET_API_VERSIONS: &[&str] = &["2024-11-01"];
/// Microsoft.Resources api-versions accepted for resource groups.
pub const RESOURCES_API_VERSIONS: &[&str] =
    &["2025-04-01", "2025-03-01", "2024-11-01", "2024-07-01", "2024-03-01", "2023-07-01", "2022-09-01", "2021-04-01"];
/// Microsoft.Compute api-versions accepted for scale sets.
pub const COMPUTE_API_VERSIONS: &[&str] = &["2025-04-01", "2024-11-01", "2024-07-01", "2024-03-01", "2023-09-01"];

/// A response in the making: status, JSON body, extra headers.
pub(crate) struct Reply {
    status: StatusCode,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Self {
        Self { status, body: Some(body), headers: Vec::new() }
    }
    fn empty(status: StatusCode) -> Self {
        Self { status, body: None, headers: Vec::new() }
    }
    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Handle one ARM request.
pub async fn handle(emulator: Arc<Emulator>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let correlation = headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let base = match headers.get("host").and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => "http://127.0.0.1".to_string(),
    };
    let is_write = matches!(method, Method::PUT | Method::PATCH | Method::DELETE | Method::POST);
    let latency = emulator.lock_world().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let result = {
        let now = emulator.clock.now();
        let mut world = emulator.lock_world();
        world.advance_to(now);
        let result = match world.faults.take_request_fault(is_write) {
            Some((status, code, retry_after)) => {
                let message = match status {
                    429 => "The request was throttled (injected fault); retry after the interval in Retry-After.".to_string(),
                    _ => format!("The service is unavailable (injected fault {status}); retry later."),
                };
                let mut reply = Reply::json(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    json!({"error": {"code": code, "message": message}}),
                );
                if let Some(secs) = retry_after {
                    reply = reply.header("retry-after", secs.to_string());
                }
                Ok(reply)
            }
            None => route(&mut world, &base, &method, &uri, &body),
        };
        if is_write {
            let status = match &result {
                Ok(reply) => reply.status.as_u16(),
                Err(e) => e.status,
            };
            let caller =
                headers.get("user-agent").and_then(|v| v.to_str().ok()).and_then(|ua| ua.split('/').next()).unwrap_or("unknown");
            world.log_activity(method.as_str(), uri.path(), status, caller, &correlation);
        }
        result
    };
    let reply = result.unwrap_or_else(|e| {
        Reply::json(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            json!({"error": {"code": e.code, "message": e.message}}),
        )
    });
    tracing::debug!(%method, path = uri.path(), status = reply.status.as_u16(), correlation, "arm request");
    let mut response = match reply.body {
        Some(body) if method != Method::HEAD => (reply.status, axum::Json(body)).into_response(),
        _ => reply.status.into_response(),
    };
    let h = response.headers_mut();
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        h.insert("x-ms-correlation-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-ms-request-id", v);
    }
    response
}

fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// Check the api-version query parameter as ARM does.
fn api_version(uri: &Uri, supported: &[&str], resource_type: &str, location: &str) -> Result<(), ArmError> {
    let Some(version) = query_param(uri, "api-version") else {
        return Err(ArmError::new(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if supported.contains(&version) {
        return Ok(());
    }
    let looks_like_version = version.len() >= 10
        && version[..10].chars().enumerate().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
    if !looks_like_version {
        return Err(ArmError::new(
            400,
            "InvalidApiVersionParameter",
            format!("The api-version '{version}' is invalid. The supported versions are '{}'.", supported.join(",")),
        ));
    }
    Err(ArmError::new(
        400,
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location '{location}' and API version '{version}' for type '{resource_type}'. \
             The supported api-versions are '{}'. The supported locations are 'eastus'.",
            supported.join(", ")
        ),
    ))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ArmError> {
    serde_json::from_slice(body).map_err(|e| {
        ArmError::new(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })
}

fn route(world: &mut World, base: &str, method: &Method, uri: &Uri, body: &Bytes) -> Result<Reply, ArmError> {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    if l.first() == Some(&"providers") && l.get(1) == Some(&"microsoft.azurefleet") && l.get(2) == Some(&"operations") {
        api_version(uri, FLEET_API_VERSIONS, "operations", "eastus")?;
        return Ok(Reply::json(
            StatusCode::OK,
            json!({"value": [
                {"name": "Microsoft.AzureFleet/fleets/read", "isDataAction": false, "display": {"provider": "Microsoft.AzureFleet", "resource": "fleets", "operation": "Get fleet", "description": "Gets a fleet"}},
                {"name": "Microsoft.AzureFleet/fleets/write", "isDataAction": false, "display": {"provider": "Microsoft.AzureFleet", "resource": "fleets", "operation": "Create or update fleet", "description": "Creates or updates a fleet"}},
            ]}),
        ));
    }
    if l.len() < 2 || l[0] != "subscriptions" {
        return Err(not_found_path(uri));
    }
    let subscription = world.config.subscription_id.clone();
    if !segments[1].eq_ignore_ascii_case(&subscription) {
        return Err(ArmError::new(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{}' could not be found.", segments[1]),
        ));
    }
    match &l[2..] {
        ["resourcegroups"] if method == Method::GET => {
            api_version(uri, RESOURCES_API_VERSIONS, "resourceGroups", "eastus")?;
            let value: Vec<Value> =
                world.resource_groups.values().map(|rg| wire::resource_group_json(&subscription, rg)).collect();
            Ok(Reply::json(StatusCode::OK, json!({ "value": value })))
        }
        ["resourcegroups", _] => {
            api_version(uri, RESOURCES_API_VERSIONS, "resourceGroups", "eastus")?;
            resource_group(world, base, method, segments[3], body)
        }
        ["providers", "microsoft.azurefleet", "fleets"] if method == Method::GET => {
            api_version(uri, FLEET_API_VERSIONS, "fleets", "eastus")?;
            let value: Vec<Value> = world.fleets.values().map(|f| wire::fleet_json(&subscription, f)).collect();
            Ok(Reply::json(StatusCode::OK, json!({ "value": value })))
        }
        [
            "providers",
            "microsoft.azurefleet"
            | "microsoft.compute"
            | "microsoft.resources"
            | "microsoft.machinelearningservices"
            | "microsoft.storage"
            | "microsoft.keyvault"
            | "microsoft.operationalinsights"
            | "microsoft.network"
            | "microsoft.insights",
            "locations",
            _,
            kind,
            id,
        ] if method == Method::GET && matches!(*kind, "operationstatuses" | "operationresults" | "operations") => {
            operation(world, kind, segments[7])
                .ok_or_else(|| ArmError::new(404, "OperationNotFound", format!("The operation '{id}' could not be found.")))
        }
        ["resourcegroups", _, "providers", "microsoft.azurefleet", "fleets", rest @ ..] => {
            api_version(uri, FLEET_API_VERSIONS, "fleets", "eastus")?;
            let rg = segments[3];
            require_rg(world, rg)?;
            match rest {
                [] if method == Method::GET => {
                    let value: Vec<Value> = world
                        .fleets
                        .values()
                        .filter(|f| f.resource_group.eq_ignore_ascii_case(rg))
                        .map(|f| wire::fleet_json(&subscription, f))
                        .collect();
                    Ok(Reply::json(StatusCode::OK, json!({ "value": value })))
                }
                [_] => fleet(world, base, method, rg, segments[7], body),
                [_, "virtualmachinescalesets"] if method == Method::GET => {
                    let fleet = get_fleet(world, rg, segments[7])?;
                    let value: Vec<Value> = scale_sets(fleet)
                        .iter()
                        .map(|(name, _, _)| wire::fleet_scale_set_json(&subscription, &fleet.resource_group, name))
                        .collect();
                    Ok(Reply::json(StatusCode::OK, json!({ "value": value })))
                }
                _ => Err(method_or_path(method, uri)),
            }
        }
        ["resourcegroups", _, "providers", "microsoft.machinelearningservices", "workspaces", _, rest @ ..] => {
            api_version(uri, ML_API_VERSIONS, "workspaces", "eastus")?;
            let rg = segments[3];
            require_rg(world, rg)?;
            machine_learning(world, base, method, rg, segments[7], rest, &segments[8..], body)
        }
        ["resourcegroups", _, "providers", "microsoft.compute", "virtualmachinescalesets", _, rest @ ..] => {
            api_version(uri, COMPUTE_API_VERSIONS, "virtualMachineScaleSets", "eastus")?;
            let rg = segments[3];
            require_rg(world, rg)?;
            scale_set(world, base, method, rg, segments[7], rest, body)
        }
        ["resourcegroups", _, "providers", "microsoft.resources", "deployments", _, "whatif"] if method == Method::POST => {
            api_version(uri, RESOURCES_API_VERSIONS, "deployments", "eastus")?;
            require_rg(world, segments[3])?;
            whatif::what_if(world, segments[3], body)
        }
        ["resourcegroups", _, "resources"] if method == Method::GET => {
            api_version(uri, RESOURCES_API_VERSIONS, "resources", "eastus")?;
            require_rg(world, segments[3])?;
            Ok(Reply::json(StatusCode::OK, generic::list_group(world, segments[3])))
        }
        ["resourcegroups", _, "providers", provider, kind, _, rest @ ..] if rest.is_empty() || rest.len() == 2 => {
            let type_name = if rest.is_empty() { format!("{provider}/{kind}") } else { format!("{provider}/{kind}/{}", rest[0]) };
            let Some(spec) = generic::spec_for(&type_name) else {
                return Err(ArmError::new(
                    404,
                    "InvalidResourceType",
                    format!(
                        "The resource type '{}' could not be found in the namespace '{}'.",
                        type_name.split_once('/').map_or("", |t| t.1),
                        segments[5]
                    ),
                ));
            };
            api_version(uri, spec.api_versions, spec.type_name, "eastus")?;
            let rg = segments[3];
            require_rg(world, rg)?;
            let parent_path = format!(
                "/subscriptions/{subscription}/resourceGroups/{rg}/providers/{}/{}/{}",
                segments[5], segments[6], segments[7]
            );
            let (path, name, parent) = if rest.is_empty() {
                (parent_path, segments[7], None)
            } else {
                (format!("{parent_path}/{}/{}", segments[8], segments[9]), segments[9], Some(parent_path.as_str()))
            };
            generic::handle(world, base, method, spec, rg, &path, name, parent, body)
        }
        _ => Err(method_or_path(method, uri)),
    }
}

/// What a GET of the ARM id `id` would answer, if the resource exists: a generic resource, a
/// fleet, an ML workspace or compute (resource groups are not included).
pub(crate) fn resource_json_at(world: &World, id: &str) -> Option<Value> {
    let subscription = world.config.subscription_id.clone();
    let lower = id.trim_end_matches('/').to_ascii_lowercase();
    if let Some(r) = world.resources.get(&lower) {
        return generic::spec_for(&r.type_name).map(|spec| generic::resource_json(spec, r, &subscription));
    }
    let parts: Vec<&str> = lower.split('/').collect();
    let ["", "subscriptions", s, "resourcegroups", rg, "providers", provider, kind, name, rest @ ..] = parts.as_slice() else {
        return None;
    };
    if *s != subscription.to_ascii_lowercase() {
        return None;
    }
    let key = (rg.to_string(), name.to_string());
    match (*provider, *kind, rest) {
        ("microsoft.azurefleet", "fleets", []) => world.fleets.get(&key).map(|f| wire::fleet_json(&subscription, f)),
        ("microsoft.machinelearningservices", "workspaces", []) => world.ml.get(&key).map(|ws| workspace_json(&subscription, ws)),
        ("microsoft.machinelearningservices", "workspaces", ["computes", c]) => {
            let ws = world.ml.get(&key)?;
            ws.computes.get(*c).map(|c| compute_json(&subscription, ws, c))
        }
        _ => None,
    }
}

fn not_found_path(uri: &Uri) -> ArmError {
    ArmError::new(404, "InvalidResourceType", format!("The resource type could not be found for path '{}'.", uri.path()))
}

fn method_or_path(method: &Method, uri: &Uri) -> ArmError {
    if matches!(*method, Method::GET | Method::PUT | Method::PATCH | Method::DELETE | Method::POST | Method::HEAD) {
        not_found_path(uri)
    } else {
        ArmError::new(405, "MethodNotAllowed", format!("The method '{method}' is not allowed for '{}'.", uri.path()))
    }
}

fn require_rg(world: &World, rg: &str) -> Result<(), ArmError> {
    if world.resource_groups.contains_key(&rg.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(ArmError::new(404, "ResourceGroupNotFound", format!("Resource group '{rg}' could not be found.")))
    }
}

fn fleet_key(rg: &str, name: &str) -> (String, String) {
    (rg.to_ascii_lowercase(), name.to_ascii_lowercase())
}

fn fleet_not_found(rg: &str, name: &str) -> ArmError {
    ArmError::new(
        404,
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.AzureFleet/fleets/{name}' under resource group '{rg}' was not found. \
             For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

fn get_fleet<'w>(world: &'w World, rg: &str, name: &str) -> Result<&'w FleetRecord, ArmError> {
    world.fleets.get(&fleet_key(rg, name)).ok_or_else(|| fleet_not_found(rg, name))
}

/// Scale sets of a fleet: (name, size, priority), one per size and priority holding VMs.
fn scale_sets(fleet: &FleetRecord) -> Vec<(String, String, Priority)> {
    let mut out: Vec<(String, String, Priority)> = Vec::new();
    for vm in &fleet.vms {
        if !out.iter().any(|(name, _, _)| *name == vm.scale_set) {
            out.push((vm.scale_set.clone(), vm.size.clone(), vm.priority));
        }
    }
    out.sort();
    out
}

fn status_urls(base: &str, subscription: &str, provider: &str, op_id: &str, location: &str) -> (String, String) {
    let (status, result) =
        if provider == "Microsoft.Compute" { ("operations", "operations") } else { ("operationStatuses", "operationResults") };
    let api = match provider {
        "Microsoft.Compute" => COMPUTE_API_VERSIONS[0],
        "Microsoft.Resources" => RESOURCES_API_VERSIONS[0],
        "Microsoft.MachineLearningServices" => ML_API_VERSIONS[0],
        _ => FLEET_API_VERSIONS[0],
    };
    (
        format!(
            "{base}/subscriptions/{subscription}/providers/{provider}/locations/{location}/{status}/{op_id}?api-version={api}"
        ),
        format!(
            "{base}/subscriptions/{subscription}/providers/{provider}/locations/{location}/{result}/{op_id}?api-version={api}&monitor=true"
        ),
    )
}

/// Start a long-running operation on `resource_path` and answer 202 Accepted with its
/// `Location` (and, when `async_header`, `Azure-AsyncOperation`) URL and `Retry-After`.
fn accepted(world: &mut World, base: &str, provider: &str, location: &str, resource_path: &str, async_header: bool) -> Reply {
    let subscription = world.config.subscription_id.clone();
    let op = world.start_operation(location, resource_path);
    let (status_url, location_url) = status_urls(base, &subscription, provider, &op.id, location);
    let mut reply = Reply::empty(StatusCode::ACCEPTED)
        .header("location", location_url)
        .header("retry-after", world.config.retry_after_secs.to_string());
    if async_header {
        reply = reply.header("azure-asyncoperation", status_url);
    }
    reply
}

fn operation(world: &mut World, kind: &str, id: &str) -> Option<Reply> {
    let op = world.poll_operation(id)?;
    let retry = world.config.retry_after_secs.to_string();
    if kind == "operationresults" {
        // Location polling: 202 while running, 204 when done; a failed operation answers
        // with the error it would have returned had it been synchronous.
        return Some(match op.status.as_str() {
            "InProgress" => Reply::empty(StatusCode::ACCEPTED).header("retry-after", retry),
            "Failed" => Reply::json(
                StatusCode::CONFLICT,
                json!({"error": {"code": "InternalOperationError", "message": "The operation failed (injected fault)."}}),
            ),
            _ => Reply::empty(StatusCode::NO_CONTENT),
        });
    }
    let mut body = json!({
        "id": op.id,
        "name": op.id,
        "status": op.status,
        "startTime": wire::rfc3339(op.start_time),
    });
    if op.status == "Failed" {
        body["error"] = json!({"code": "InternalOperationError", "message": "The operation failed (injected fault)."});
    }
    if let Some(end) = op.end_time {
        body["endTime"] = json!(wire::rfc3339(end));
        body["percentComplete"] = json!(100);
    }
    Some(Reply::json(StatusCode::OK, body))
}

fn resource_group(world: &mut World, base: &str, method: &Method, name: &str, body: &Bytes) -> Result<Reply, ArmError> {
    let subscription = world.config.subscription_id.clone();
    let key = name.to_ascii_lowercase();
    match *method {
        Method::PUT => {
            validate_rg_name(name)?;
            let input: ResourceGroupPut = parse_body(body)?;
            let location = input.location.ok_or_else(|| {
                ArmError::new(400, "LocationRequired", "The location property is required for this definition.")
            })?;
            let existed = world.resource_groups.contains_key(&key);
            let rg = world.resource_groups.entry(key).or_insert_with(|| ResourceGroup {
                name: name.to_string(),
                location: location.clone(),
                tags: Default::default(),
            });
            if existed && !rg.location.eq_ignore_ascii_case(&location) {
                return Err(ArmError::new(
                    409,
                    "InvalidResourceGroupLocation",
                    format!(
                        "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                        rg.location
                    ),
                ));
            }
            rg.tags = input.tags;
            let json = wire::resource_group_json(&subscription, rg);
            Ok(Reply::json(if existed { StatusCode::OK } else { StatusCode::CREATED }, json))
        }
        Method::GET | Method::HEAD => {
            let rg = world.resource_groups.get(&key).ok_or_else(|| {
                ArmError::new(404, "ResourceGroupNotFound", format!("Resource group '{name}' could not be found."))
            })?;
            if *method == Method::HEAD {
                return Ok(Reply::empty(StatusCode::NO_CONTENT));
            }
            Ok(Reply::json(StatusCode::OK, wire::resource_group_json(&subscription, rg)))
        }
        Method::DELETE => {
            let Some(rg) = world.resource_groups.remove(&key) else {
                return Ok(Reply::empty(StatusCode::NOT_FOUND));
            };
            world.fleets.retain(|(rg_key, _), _| *rg_key != key);
            world.ml.retain(|(rg_key, _), _| *rg_key != key);
            let prefix = format!("/subscriptions/{}/resourcegroups/{key}/", subscription.to_ascii_lowercase());
            world.resources.retain(|id, _| !id.starts_with(&prefix));
            world.alert_rules.retain(|rule| !rule.id.as_ref().is_some_and(|id| id.starts_with(&prefix)));
            world.prune_agents();
            let path = format!("/subscriptions/{subscription}/resourceGroups/{name}");
            Ok(accepted(world, base, "Microsoft.Resources", &rg.location, &path, false))
        }
        _ => Err(ArmError::new(405, "MethodNotAllowed", format!("The method '{method}' is not allowed for resource groups."))),
    }
}

fn validate_rg_name(name: &str) -> Result<(), ArmError> {
    let ok = !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
    if ok {
        Ok(())
    } else {
        Err(ArmError::new(
            400,
            "InvalidResourceGroup",
            format!(
                "The provided resource group name '{name}' has these invalid characters: it must match '^[-\\w\\._\\(\\)]+$' and be 1-90 characters."
            ),
        ))
    }
}

fn validate_fleet_name(name: &str) -> Result<(), ArmError> {
    // ^[^_\W][\w\-._]{0,79}(?<![-.])$
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_alphanumeric());
    let rest_ok = name.chars().skip(1).all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let ok = first_ok && rest_ok && name.chars().count() <= 80 && !name.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(ArmError::new(
            400,
            "InvalidResourceName",
            format!("The resource name '{name}' is invalid. It must match the pattern '^[^_\\W][\\w\\-._]{{0,79}}(?<![-.])$'."),
        ))
    }
}

fn validate_sizes(world: &World, sizes: &[crate::world::SizeProfile], has_spot_maintain: bool) -> Result<(), ArmError> {
    if sizes.is_empty() {
        return Err(ArmError::new(400, "InvalidParameter", "The property 'vmSizesProfile' must list at least one VM size."));
    }
    if sizes.len() > 15 {
        return Err(ArmError::new(400, "InvalidParameter", "The property 'vmSizesProfile' may list at most 15 VM sizes."));
    }
    if has_spot_maintain && !(3..=10).contains(&sizes.len()) {
        return Err(ArmError::new(
            400,
            "InvalidParameter",
            "A spot priority profile with 'maintain' enabled requires between 3 and 10 VM sizes in 'vmSizesProfile'.",
        ));
    }
    for size in sizes {
        if world.prices.get(&size.name).is_none() {
            return Err(ArmError::new(
                400,
                "SkuNotAvailable",
                format!("The requested VM size '{}' is not available in location 'eastus'.", size.name),
            ));
        }
    }
    Ok(())
}

fn fleet(world: &mut World, base: &str, method: &Method, rg: &str, name: &str, body: &Bytes) -> Result<Reply, ArmError> {
    let subscription = world.config.subscription_id.clone();
    let key = fleet_key(rg, name);
    match *method {
        Method::GET => Ok(Reply::json(StatusCode::OK, wire::fleet_json(&subscription, get_fleet(world, rg, name)?))),
        Method::PUT => {
            validate_fleet_name(name)?;
            let input: FleetPut = parse_body(body)?;
            let location = input.location.ok_or_else(|| {
                ArmError::new(400, "LocationRequired", "The location property is required for this definition.")
            })?;
            let props = input
                .properties
                .ok_or_else(|| ArmError::new(400, "InvalidParameter", "The property 'properties' is required."))?;
            let sizes =
                props.vm_sizes_profile.as_deref().map(wire::sizes_from).ok_or_else(|| {
                    ArmError::new(400, "InvalidParameter", "The property 'properties.vmSizesProfile' is required.")
                })?;
            let compute_profile =
                props.compute_profile.filter(|c| c.get("baseVirtualMachineProfile").is_some()).ok_or_else(|| {
                    ArmError::new(
                        400,
                        "InvalidParameter",
                        "The property 'properties.computeProfile.baseVirtualMachineProfile' is required.",
                    )
                })?;
            let spot = props.spot_priority_profile.as_ref().map(wire::spot_from).transpose()?;
            let regular = props.regular_priority_profile.as_ref().map(wire::regular_from).transpose()?;
            if spot.is_none() && regular.is_none() {
                return Err(ArmError::new(
                    400,
                    "InvalidParameter",
                    "At least one of 'spotPriorityProfile' and 'regularPriorityProfile' must be given.",
                ));
            }
            validate_sizes(world, &sizes, spot.as_ref().is_some_and(|s| s.maintain))?;
            for (label, capacity, min) in [
                ("spotPriorityProfile", spot.as_ref().map(|s| s.capacity), spot.as_ref().map(|s| s.min_capacity)),
                ("regularPriorityProfile", regular.as_ref().map(|r| r.capacity), regular.as_ref().map(|r| r.min_capacity)),
            ] {
                if let (Some(capacity), Some(min)) = (capacity, min) {
                    if min > capacity {
                        return Err(ArmError::new(
                            400,
                            "InvalidParameter",
                            format!("'{label}.minCapacity' ({min}) must not be greater than '{label}.capacity' ({capacity})."),
                        ));
                    }
                    if capacity > 10_000 {
                        return Err(ArmError::new(400, "InvalidParameter", format!("'{label}.capacity' must be at most 10000.")));
                    }
                }
            }
            if regular.as_ref().is_some_and(|r| r.allocation_strategy != "Prioritized") && sizes.iter().any(|s| s.rank.is_some())
            {
                return Err(ArmError::new(
                    400,
                    "InvalidParameter",
                    "'vmSizesProfile.rank' is only allowed with the 'Prioritized' regular allocation strategy.",
                ));
            }
            let existed = world.fleets.contains_key(&key);
            if !existed {
                require_capacity_quota(
                    world,
                    &sizes,
                    spot.as_ref().map_or(0, |s| s.min_capacity),
                    regular.as_ref().map_or(0, |r| r.min_capacity),
                )?;
            }
            let now = world.now;
            let record = world.fleets.entry(key.clone()).or_insert_with(|| FleetRecord {
                name: name.to_string(),
                resource_group: rg.to_string(),
                location: location.clone(),
                tags: Default::default(),
                spot: None,
                regular: None,
                vm_sizes: Vec::new(),
                compute_profile: Value::Null,
                provisioning_state: "Creating".into(),
                time_created: now,
                unique_id: uuid::Uuid::new_v4().to_string(),
                vms: Vec::new(),
                next_instance: Default::default(),
            });
            record.tags = input.tags;
            record.spot = spot;
            record.regular = regular;
            record.vm_sizes = sizes;
            record.compute_profile = compute_profile;
            record.provisioning_state = if existed { "Updating".into() } else { "Creating".into() };
            let resource_path = wire::fleet_id(&subscription, record);
            let location = record.location.clone();
            world.seek_target(&key, false);
            let op = world.start_operation(&location, &resource_path);
            let json = wire::fleet_json(&subscription, &world.fleets[&key]);
            let (status_url, _) = status_urls(base, &subscription, "Microsoft.AzureFleet", &op.id, &location);
            let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
            Ok(Reply::json(status, json)
                .header("azure-asyncoperation", status_url)
                .header("retry-after", world.config.retry_after_secs.to_string()))
        }
        Method::PATCH => {
            let input: FleetPatch = parse_body(body)?;
            let record = get_fleet(world, rg, name)?.clone();
            if world.faults.ignore_fleet_writes {
                // Injected fault: accepted, and lost.
                let resource_path = wire::fleet_id(&subscription, &record);
                return Ok(accepted(world, base, "Microsoft.AzureFleet", &record.location.clone(), &resource_path, false));
            }
            let mut updated = record.clone();
            if let Some(tags) = input.tags {
                updated.tags = tags;
            }
            if let Some(props) = input.properties {
                if props.compute_profile.is_some() {
                    return Err(ArmError::new(
                        400,
                        "PropertyChangeNotAllowed",
                        "Changing property 'computeProfile' is not allowed on an existing fleet.",
                    ));
                }
                if let Some(spot_in) = &props.spot_priority_profile {
                    let spot = updated.spot.as_mut().ok_or_else(|| {
                        ArmError::new(400, "PropertyChangeNotAllowed", "The fleet has no spot priority profile to update.")
                    })?;
                    if spot_in.min_capacity.is_some_and(|m| m != spot.min_capacity) {
                        return Err(ArmError::new(
                            400,
                            "PropertyChangeNotAllowed",
                            "Changing property 'spotPriorityProfile.minCapacity' is not allowed.",
                        ));
                    }
                    if let Some(maintain) = spot_in.maintain {
                        spot.maintain = maintain;
                    }
                    if let Some(capacity) = spot_in.capacity {
                        if capacity != spot.capacity && !spot.maintain {
                            return Err(ArmError::new(
                                400,
                                "PropertyChangeNotAllowed",
                                "'spotPriorityProfile.capacity' can only be changed while 'maintain' is enabled.",
                            ));
                        }
                        if capacity < spot.min_capacity {
                            return Err(ArmError::new(
                                400,
                                "InvalidParameter",
                                format!(
                                    "'spotPriorityProfile.capacity' ({capacity}) must not be less than 'minCapacity' ({}).",
                                    spot.min_capacity
                                ),
                            ));
                        }
                        spot.capacity = capacity;
                    }
                    if let Some(price) = spot_in.max_price_per_vm {
                        spot.max_price_per_vm = Some(price);
                    }
                }
                if let Some(regular_in) = &props.regular_priority_profile {
                    let regular = updated.regular.as_mut().ok_or_else(|| {
                        ArmError::new(400, "PropertyChangeNotAllowed", "The fleet has no regular priority profile to update.")
                    })?;
                    if regular_in.min_capacity.is_some_and(|m| m != regular.min_capacity) {
                        return Err(ArmError::new(
                            400,
                            "PropertyChangeNotAllowed",
                            "Changing property 'regularPriorityProfile.minCapacity' is not allowed.",
                        ));
                    }
                    if let Some(capacity) = regular_in.capacity {
                        if capacity < regular.min_capacity {
                            return Err(ArmError::new(
                                400,
                                "InvalidParameter",
                                format!(
                                    "'regularPriorityProfile.capacity' ({capacity}) must not be less than 'minCapacity' ({}).",
                                    regular.min_capacity
                                ),
                            ));
                        }
                        regular.capacity = capacity;
                    }
                }
                if let Some(sizes) = &props.vm_sizes_profile {
                    updated.vm_sizes = wire::sizes_from(sizes);
                    if let Some(blocked) = updated.vm_sizes.iter().map(|s| s.name.clone()).find(|s| world.faults.sku_blocked(s)) {
                        return Err(ArmError::new(
                            409,
                            "SkuNotAvailable",
                            format!(
                                "The requested VM size '{blocked}' is currently not available in location 'eastus'. Please try another size or deploy to a different location or zone."
                            ),
                        ));
                    }
                    validate_sizes(world, &updated.vm_sizes, updated.spot.as_ref().is_some_and(|s| s.maintain))?;
                }
            }
            for priority in Priority::ALL {
                let (old, new) = match priority {
                    Priority::Spot => {
                        (record.spot.as_ref().map_or(0, |s| s.capacity), updated.spot.as_ref().map_or(0, |s| s.capacity))
                    }
                    Priority::Regular => {
                        (record.regular.as_ref().map_or(0, |r| r.capacity), updated.regular.as_ref().map_or(0, |r| r.capacity))
                    }
                };
                let extra = new.saturating_sub(old.max(record.counted(priority)));
                if world.faults.quota_exceeded && new > old {
                    return Err(ArmError::new(
                        409,
                        "OperationNotAllowed",
                        format!(
                            "Operation could not be completed as it results in exceeding approved {priority} vCPU quota (injected fault). \
                             Additional details - Location: eastus, Additional Required: {}.",
                            new - old
                        ),
                    ));
                }
                world.check_quota_for(&updated.vm_sizes, priority, extra)?;
            }
            updated.provisioning_state = "Updating".into();
            let location = updated.location.clone();
            let resource_path = wire::fleet_id(&subscription, &updated);
            world.fleets.insert(key.clone(), updated);
            world.seek_target(&key, false);
            Ok(accepted(world, base, "Microsoft.AzureFleet", &location, &resource_path, false))
        }
        Method::DELETE => {
            let Some(mut record) = world.fleets.remove(&key) else {
                return Ok(Reply::empty(StatusCode::NO_CONTENT));
            };
            record.provisioning_state = "Deleting".into();
            let path = wire::fleet_id(&subscription, &record);
            Ok(accepted(world, base, "Microsoft.AzureFleet", &record.location, &path, false))
        }
        _ => Err(ArmError::new(405, "MethodNotAllowed", format!("The method '{method}' is not allowed for fleets."))),
    }
}

fn require_capacity_quota(
    world: &World,
    sizes: &[crate::world::SizeProfile],
    spot_min: u32,
    regular_min: u32,
) -> Result<(), ArmError> {
    world.check_quota_for(sizes, Priority::Spot, spot_min)?;
    world.check_quota_for(sizes, Priority::Regular, regular_min)
}

fn scale_set(
    world: &mut World,
    base: &str,
    method: &Method,
    rg: &str,
    name: &str,
    rest: &[&str],
    body: &Bytes,
) -> Result<Reply, ArmError> {
    let subscription = world.config.subscription_id.clone();
    let not_found = || {
        ArmError::new(
            404,
            "ResourceNotFound",
            format!("The Resource 'Microsoft.Compute/virtualMachineScaleSets/{name}' under resource group '{rg}' was not found."),
        )
    };
    let key = world
        .fleets
        .iter()
        .find(|(_, f)| {
            f.resource_group.eq_ignore_ascii_case(rg) && scale_sets(f).iter().any(|(n, _, _)| n.eq_ignore_ascii_case(name))
        })
        .map(|(k, _)| k.clone())
        .ok_or_else(not_found)?;
    let fleet = &world.fleets[&key];
    let (set_name, size, priority) =
        scale_sets(fleet).into_iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name)).ok_or_else(not_found)?;
    match (method.clone(), rest) {
        (Method::GET, []) => {
            let capacity = fleet.vms.iter().filter(|vm| vm.scale_set == set_name).count();
            Ok(Reply::json(StatusCode::OK, wire::scale_set_json(&subscription, fleet, &set_name, &size, priority, capacity)))
        }
        (Method::GET, ["virtualmachines"]) => {
            let value: Vec<Value> = fleet
                .vms
                .iter()
                .filter(|vm| vm.scale_set == set_name)
                .map(|vm| wire::vm_json(&subscription, fleet, vm))
                .collect();
            Ok(Reply::json(StatusCode::OK, json!({ "value": value })))
        }
        (Method::POST, ["delete"]) => {
            let input: DeleteInstances = parse_body(body)?;
            delete_instances(world, base, &key, &set_name, &input.instance_ids)
        }
        (Method::DELETE, ["virtualmachines", id]) => delete_instances(world, base, &key, &set_name, &[id.to_string()]),
        _ => Err(ArmError::new(405, "MethodNotAllowed", format!("The method '{method}' is not allowed here."))),
    }
}

fn delete_instances(
    world: &mut World,
    base: &str,
    key: &(String, String),
    set_name: &str,
    ids: &[String],
) -> Result<Reply, ArmError> {
    let subscription = world.config.subscription_id.clone();
    let Some(fleet) = world.fleets.get_mut(key) else {
        return Err(ArmError::new(404, "ResourceNotFound", "The fleet was deleted."));
    };
    for id in ids {
        let known = fleet.vms.iter().any(|vm| vm.scale_set == set_name && vm.instance_id.to_string() == *id);
        if !known {
            return Err(ArmError::new(
                400,
                "InvalidParameter",
                format!("The instance id '{id}' is not a valid instance of virtual machine scale set '{set_name}'."),
            ));
        }
    }
    // Deletion is immediate here; Azure takes a while, which the operation stands for.
    let now = world.now;
    let deleted: Vec<crate::world::DeletedVm> = fleet
        .vms
        .iter()
        .filter(|vm| vm.scale_set == set_name && ids.contains(&vm.instance_id.to_string()))
        .map(|vm| crate::world::DeletedVm {
            at: now,
            fleet: fleet.name.clone(),
            vm: format!("{}_{}", vm.scale_set, vm.instance_id),
            busy: vm.tags.get("workload.busy").and_then(serde_json::Value::as_str) == Some("true"),
            job: vm.tags.get("workload.job").and_then(serde_json::Value::as_str).map(str::to_string),
        })
        .collect();
    fleet.vms.retain(|vm| !(vm.scale_set == set_name && ids.contains(&vm.instance_id.to_string())));
    world.deleted_vms.extend(deleted);
    if world.deleted_vms.len() > crate::world::MAX_DELETED_VMS {
        let excess = world.deleted_vms.len() - crate::world::MAX_DELETED_VMS;
        world.deleted_vms.drain(..excess);
    }
    let (location, resource_group) =
        world.fleets.get(key).map(|f| (f.location.clone(), f.resource_group.clone())).unwrap_or_default();
    let resource_path = wire::scale_set_id(&subscription, &resource_group, set_name);
    Ok(accepted(world, base, "Microsoft.Compute", &location, &resource_path, true))
}

/// Microsoft.MachineLearningServices api-versions accepted.
pub const ML_API_VERSIONS: &[&str] = &["2026-07-01", "2025-09-01", "2025-06-01", "2025-04-01", "2024-10-01", "2024-04-01"];

fn ml_not_found(kind: &str, name: &str) -> ArmError {
    ArmError::new(
        404,
        "ResourceNotFound",
        format!("The Resource 'Microsoft.MachineLearningServices/{kind}/{name}' was not found."),
    )
}

fn workspace_json(subscription: &str, ws: &crate::aml::Workspace) -> Value {
    let mut properties = Value::Object(ws.properties.clone());
    properties["provisioningState"] = json!("Succeeded");
    properties["friendlyName"] = json!(ws.friendly_name);
    if let Some(hub) = &ws.hub_id {
        properties["hubResourceId"] = json!(hub);
    }
    json!({
        "id": crate::wire::workspace_id(subscription, &ws.resource_group, &ws.name),
        "name": ws.name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": ws.location,
        "kind": ws.kind,
        "tags": ws.tags,
        "properties": properties,
    })
}

fn compute_json(subscription: &str, ws: &crate::aml::Workspace, c: &crate::aml::Compute) -> Value {
    let (idle, running, preparing) = crate::aml::node_counts(c);
    let current = c.nodes.len() as u32;
    json!({
        "id": format!("{}/computes/{}", crate::wire::workspace_id(subscription, &ws.resource_group, &ws.name), c.name),
        "name": c.name,
        "type": "Microsoft.MachineLearningServices/workspaces/computes",
        "location": c.location,
        "properties": {
            "computeType": "AmlCompute",
            "computeLocation": c.location,
            "provisioningState": "Succeeded",
            "properties": {
                "vmSize": c.vm_size,
                "vmPriority": c.vm_priority,
                "scaleSettings": {
                    "maxNodeCount": c.max_nodes,
                    "minNodeCount": c.min_nodes,
                    "nodeIdleTimeBeforeScaleDown": format!("PT{}S", c.idle_before_scale_down),
                },
                "allocationState": if preparing > 0 { "Resizing" } else { "Steady" },
                "currentNodeCount": current,
                "targetNodeCount": current,
                "nodeStateCounts": {
                    "idleNodeCount": idle,
                    "runningNodeCount": running,
                    "preparingNodeCount": preparing,
                    "unusableNodeCount": 0,
                    "leavingNodeCount": 0,
                    "preemptedNodeCount": 0,
                },
            },
        },
    })
}

fn job_json(subscription: &str, ws: &crate::aml::Workspace, j: &crate::aml::Job, created_by: &str) -> Value {
    let ws_id = crate::wire::workspace_id(subscription, &ws.resource_group, &ws.name);
    let mut properties = json!({
        "jobType": "Command",
        "displayName": j.display_name,
        "experimentName": j.experiment_name,
        "status": j.status.as_str(),
        "command": j.command,
        "environmentId": j.environment_id,
        "computeId": format!("{ws_id}/computes/{}", j.compute),
        "resources": {"instanceCount": j.instance_count},
        "inputs": j.inputs,
        "environmentVariables": j.environment_variables,
        "tags": j.tags,
        "properties": {},
        "services": {},
    });
    if let Some(code) = &j.code_id {
        properties["codeId"] = json!(code);
    }
    if let Some(t) = j.timeout_secs {
        properties["limits"] = json!({"jobLimitsType": "Command", "timeout": format!("PT{t}S")});
    }
    json!({
        "id": format!("{ws_id}/jobs/{}", j.name),
        "name": j.name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": properties,
        "systemData": {"createdAt": wire::rfc3339(j.created), "createdBy": created_by, "createdByType": "Application"},
    })
}

/// Parse `PT5M`, `PT1H30M`, `PT90S`, `P1D` into seconds.
fn iso_seconds(text: &str) -> Option<u64> {
    crate::logs::iso_duration(text).map(|ticks| (ticks / crate::kql::value::TICKS_PER_SECOND).max(0) as u64)
}

/// Route `…/providers/Microsoft.MachineLearningServices/workspaces/{ws}[/…]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn machine_learning(
    world: &mut World,
    base: &str,
    method: &Method,
    rg: &str,
    ws_name: &str,
    rest: &[&str],
    raw_rest: &[&str],
    body: &Bytes,
) -> Result<Reply, ArmError> {
    let subscription = world.config.subscription_id.clone();
    let key = (rg.to_ascii_lowercase(), ws_name.to_ascii_lowercase());
    match (method.clone(), rest) {
        (Method::PUT, []) => {
            let input: Value = parse_body(body)?;
            let location = input.get("location").and_then(Value::as_str).ok_or_else(|| {
                ArmError::new(400, "LocationRequired", "The location property is required for this definition.")
            })?;
            let kind = input.get("kind").and_then(Value::as_str).unwrap_or("Default");
            let kind = ["Default", "Hub", "Project"].iter().find(|k| k.eq_ignore_ascii_case(kind)).ok_or_else(|| {
                ArmError::new(
                    400,
                    "InvalidParameter",
                    format!("Workspace kind '{kind}' is not valid; use Default, Hub or Project."),
                )
            })?;
            let hub_id = input.pointer("/properties/hubResourceId").and_then(Value::as_str).map(str::to_string);
            if *kind == "Project" && hub_id.is_none() {
                return Err(ArmError::new(
                    400,
                    "InvalidParameter",
                    "A workspace of kind 'Project' needs 'properties.hubResourceId'.",
                ));
            }
            if let Some(hub) = &hub_id {
                let hub_key = hub.to_ascii_lowercase();
                let is_hub = world.arm_resource_exists(hub)
                    && world.ml.values().any(|w| {
                        w.kind == "Hub"
                            && hub_key.ends_with(&format!(
                                "/resourcegroups/{}/providers/microsoft.machinelearningservices/workspaces/{}",
                                w.resource_group.to_ascii_lowercase(),
                                w.name.to_ascii_lowercase()
                            ))
                    });
                if !is_hub {
                    return Err(ArmError::new(
                        400,
                        "ValidationError",
                        format!(
                            "The hub workspace '{hub}' referenced by 'properties.hubResourceId' does not exist or is not of kind 'Hub'."
                        ),
                    ));
                }
            }
            for key in ["storageAccount", "keyVault", "applicationInsights"] {
                if let Some(reference) = input.pointer(&format!("/properties/{key}")).and_then(Value::as_str)
                    && !world.arm_resource_exists(reference)
                {
                    return Err(ArmError::new(
                        400,
                        "ValidationError",
                        format!("The {key} '{reference}' of workspace '{ws_name}' was not found."),
                    ));
                }
            }
            let existed = world.ml.contains_key(&key);
            let entry = world.ml.entry(key.clone()).or_insert_with(|| crate::aml::Workspace {
                name: ws_name.to_string(),
                resource_group: rg.to_string(),
                location: location.to_string(),
                kind: kind.to_string(),
                hub_id: None,
                friendly_name: ws_name.to_string(),
                properties: Default::default(),
                tags: Default::default(),
                computes: BTreeMap::new(),
                jobs: BTreeMap::new(),
            });
            entry.kind = kind.to_string();
            entry.hub_id = hub_id;
            if let Some(f) = input.pointer("/properties/friendlyName").and_then(Value::as_str) {
                entry.friendly_name = f.to_string();
            }
            entry.properties = input.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            for k in ["friendlyName", "hubResourceId", "provisioningState"] {
                entry.properties.remove(k);
            }
            entry.tags = input.get("tags").and_then(Value::as_object).cloned().unwrap_or_default();
            Ok(Reply::json(if existed { StatusCode::OK } else { StatusCode::CREATED }, workspace_json(&subscription, entry)))
        }
        (Method::GET, []) => {
            let ws = world.ml.get(&key).ok_or_else(|| ml_not_found("workspaces", ws_name))?;
            Ok(Reply::json(StatusCode::OK, workspace_json(&subscription, ws)))
        }
        (Method::DELETE, []) => {
            let location = world.ml.remove(&key).map(|w| w.location);
            world.prune_agents();
            match location {
                Some(location) => Ok(accepted(
                    world,
                    base,
                    "Microsoft.MachineLearningServices",
                    &location,
                    &crate::wire::workspace_id(&subscription, rg, ws_name),
                    false,
                )),
                None => Ok(Reply::empty(StatusCode::NO_CONTENT)),
            }
        }
        (_, ["computes", _, ..]) => {
            let name = raw_rest[1];
            let ws = world.ml.get_mut(&key).ok_or_else(|| ml_not_found("workspaces", ws_name))?;
            let ckey = name.to_ascii_lowercase();
            match *method {
                Method::GET => {
                    let c = ws.computes.get(&ckey).ok_or_else(|| ml_not_found("computes", name))?;
                    Ok(Reply::json(StatusCode::OK, compute_json(&subscription, ws, c)))
                }
                Method::PUT | Method::PATCH => {
                    let input: Value = parse_body(body)?;
                    // PATCH nests scaleSettings under properties.properties (ClusterUpdateParameters).
                    let props = input.pointer("/properties/properties").cloned().unwrap_or(Value::Null);
                    let scale = props.get("scaleSettings").cloned().unwrap_or(Value::Null);
                    if *method == Method::PUT {
                        let compute_type = input.pointer("/properties/computeType").and_then(Value::as_str).unwrap_or_default();
                        if compute_type != "AmlCompute" {
                            return Err(ArmError::new(
                                400,
                                "InvalidParameter",
                                format!("computeType '{compute_type}' is not supported by the emulator; use 'AmlCompute'."),
                            ));
                        }
                        let vm_size = props.get("vmSize").and_then(Value::as_str).unwrap_or("Standard_DS3_v2").to_string();
                        let max =
                            scale.get("maxNodeCount").and_then(Value::as_u64).ok_or_else(|| {
                                ArmError::new(400, "InvalidParameter", "'scaleSettings.maxNodeCount' is required.")
                            })? as u32;
                        let min = scale.get("minNodeCount").and_then(Value::as_u64).unwrap_or(0) as u32;
                        if min > max {
                            return Err(ArmError::new(
                                400,
                                "InvalidParameter",
                                "'minNodeCount' must not be greater than 'maxNodeCount'.",
                            ));
                        }
                        let idle =
                            scale.get("nodeIdleTimeBeforeScaleDown").and_then(Value::as_str).and_then(iso_seconds).unwrap_or(120);
                        let location = input.get("location").and_then(Value::as_str).unwrap_or(&ws.location).to_string();
                        let existed = ws.computes.contains_key(&ckey);
                        let entry = ws.computes.entry(ckey.clone()).or_insert_with(|| crate::aml::Compute {
                            name: name.to_string(),
                            location: location.clone(),
                            vm_size: vm_size.clone(),
                            vm_priority: "Dedicated".into(),
                            min_nodes: min,
                            max_nodes: max,
                            idle_before_scale_down: idle,
                            nodes: Vec::new(),
                            next_node: 0,
                        });
                        entry.vm_size = vm_size;
                        entry.vm_priority = props.get("vmPriority").and_then(Value::as_str).unwrap_or("Dedicated").to_string();
                        entry.min_nodes = min;
                        entry.max_nodes = max;
                        entry.idle_before_scale_down = idle;
                        let json = compute_json(&subscription, ws, &ws.computes[&ckey]);
                        let _ = existed;
                        Ok(Reply::json(StatusCode::OK, json))
                    } else {
                        let c = ws.computes.get_mut(&ckey).ok_or_else(|| ml_not_found("computes", name))?;
                        if let Some(max) = scale.get("maxNodeCount").and_then(Value::as_u64) {
                            c.max_nodes = max as u32;
                        }
                        if let Some(min) = scale.get("minNodeCount").and_then(Value::as_u64) {
                            c.min_nodes = min as u32;
                        }
                        if let Some(idle) = scale.get("nodeIdleTimeBeforeScaleDown").and_then(Value::as_str).and_then(iso_seconds)
                        {
                            c.idle_before_scale_down = idle;
                        }
                        let json = compute_json(&subscription, ws, &ws.computes[&ckey]);
                        Ok(Reply::json(StatusCode::OK, json))
                    }
                }
                Method::DELETE => {
                    ws.computes.remove(&ckey);
                    Ok(Reply::empty(StatusCode::OK))
                }
                _ => Err(ArmError::new(405, "MethodNotAllowed", "The method is not allowed for computes.")),
            }
        }
        (Method::GET, ["jobs"]) => {
            let ws = world.ml.get(&key).ok_or_else(|| ml_not_found("workspaces", ws_name))?;
            let value: Vec<Value> = ws.jobs.values().map(|j| job_json(&subscription, ws, j, "fleetpilot")).collect();
            Ok(Reply::json(StatusCode::OK, json!({ "value": value })))
        }
        (_, ["jobs", _]) => {
            let name = raw_rest[1];
            let now = world.now;
            let draw = world.draw();
            let ws = world.ml.get_mut(&key).ok_or_else(|| ml_not_found("workspaces", ws_name))?;
            match *method {
                Method::GET => {
                    let j = ws.jobs.get(name).ok_or_else(|| ml_not_found("jobs", name))?;
                    Ok(Reply::json(StatusCode::OK, job_json(&subscription, ws, j, "fleetpilot")))
                }
                Method::PUT => {
                    if ws.jobs.contains_key(name) {
                        return Err(ArmError::new(
                            409,
                            "Conflict",
                            format!("A job named '{name}' already exists; job properties cannot be changed."),
                        ));
                    }
                    let input: Value = parse_body(body)?;
                    let p = input.get("properties").cloned().unwrap_or(Value::Null);
                    let job_type = p.get("jobType").and_then(Value::as_str).unwrap_or_default();
                    if job_type != "Command" {
                        return Err(ArmError::new(
                            400,
                            "UserError",
                            format!("jobType '{job_type}' is not supported; submit a 'Command' job."),
                        ));
                    }
                    let command = p
                        .get("command")
                        .and_then(Value::as_str)
                        .filter(|c| !c.trim().is_empty())
                        .ok_or_else(|| ArmError::new(400, "UserError", "'command' is required for a command job."))?;
                    let environment = p
                        .get("environmentId")
                        .and_then(Value::as_str)
                        .ok_or_else(|| ArmError::new(400, "UserError", "'environmentId' is required for a command job."))?;
                    let compute_id = p
                        .get("computeId")
                        .and_then(Value::as_str)
                        .ok_or_else(|| ArmError::new(400, "UserError", "'computeId' is required."))?;
                    let compute = compute_id.rsplit('/').next().unwrap_or(compute_id).to_string();
                    if !ws.computes.contains_key(&compute.to_ascii_lowercase()) {
                        return Err(ArmError::new(
                            400,
                            "UserError",
                            format!("Compute '{compute}' was not found in workspace '{ws_name}'."),
                        ));
                    }
                    let instance_count = p.pointer("/resources/instanceCount").and_then(Value::as_u64).unwrap_or(1).max(1) as u32;
                    let env = p.get("environmentVariables").and_then(Value::as_object).cloned().unwrap_or_default();
                    let timeout_secs = p.pointer("/limits/timeout").and_then(Value::as_str).and_then(iso_seconds);
                    let job = crate::aml::Job {
                        name: name.to_string(),
                        display_name: p.get("displayName").and_then(Value::as_str).unwrap_or(name).to_string(),
                        experiment_name: p.get("experimentName").and_then(Value::as_str).unwrap_or("Default").to_string(),
                        command: command.to_string(),
                        environment_id: environment.to_string(),
                        code_id: p.get("codeId").and_then(Value::as_str).map(str::to_string),
                        compute,
                        instance_count,
                        inputs: p.get("inputs").cloned().unwrap_or_else(|| json!({})),
                        duration_secs: crate::aml::job_duration(command, &env, draw),
                        environment_variables: env,
                        tags: p.get("tags").and_then(Value::as_object).cloned().unwrap_or_default(),
                        timeout_secs,
                        status: crate::aml::JobStatus::NotStarted,
                        created: now,
                        stage_ends: None,
                    };
                    let json = job_json(&subscription, ws, &job, "fleetpilot");
                    ws.jobs.insert(name.to_string(), job);
                    Ok(Reply::json(StatusCode::CREATED, json))
                }
                _ => Err(ArmError::new(405, "MethodNotAllowed", "The method is not allowed for jobs.")),
            }
        }
        (Method::POST, ["jobs", _, "cancel"]) => {
            let name = raw_rest[1];
            let location;
            {
                let ws = world.ml.get_mut(&key).ok_or_else(|| ml_not_found("workspaces", ws_name))?;
                location = ws.location.clone();
                let j = ws.jobs.get_mut(name).ok_or_else(|| ml_not_found("jobs", name))?;
                if !j.status.is_terminal() {
                    j.status = crate::aml::JobStatus::CancelRequested;
                }
            }
            Ok(accepted(
                world,
                base,
                "Microsoft.MachineLearningServices",
                &location,
                &format!("{}/jobs/{name}", crate::wire::workspace_id(&subscription, rg, ws_name)),
                false,
            ))
        }
        _ => Err(ArmError::new(404, "InvalidResourceType", "The resource type could not be found under the workspace.")),
    }
}
