//! The emulator over real HTTP: its responses validate against the official REST specs'
//! schemas, and it answers bad requests the way ARM does.

mod azure_ml;
mod kql_cases;
mod kql_props;
mod log_analytics;
mod services;
mod spec;

use std::sync::Arc;

use fleetpilot_emulator::{Emulator, EmulatorConfig, Scenario, WorldConfig};
use serde_json::{Value, json};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

struct Env {
    base: String,
    sub: String,
    http: reqwest::Client,
    _emulator: Arc<Emulator>,
    _cancel: tokio_util::sync::DropGuard,
}

async fn start() -> Env {
    let emulator = Emulator::new(EmulatorConfig {
        world: WorldConfig::default(),
        start: datetime!(2026-03-02 08:00 UTC),
        speed: 0.0,
        scenario: Scenario::Reference,
    });
    let cancel = CancellationToken::new();
    let (addr, _) = fleetpilot_emulator::spawn(emulator.clone(), "127.0.0.1:0".parse().unwrap(), cancel.clone()).await.unwrap();
    let sub = format!("/subscriptions/{}", emulator.lock_world().config.subscription_id);
    Env { base: format!("http://{addr}"), sub, http: reqwest::Client::new(), _emulator: emulator, _cancel: cancel.drop_guard() }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Env {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Reply {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{}", self.base, path) };
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        Reply { status, headers, body }
    }

    fn fleet_path(&self, name: &str) -> String {
        format!(
            "{}/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.AzureFleet/fleets/{name}?api-version=2024-11-01",
            self.sub
        )
    }
}

fn fleet_body(spot: u32) -> String {
    json!({
        "location": "eastus",
        "tags": {"team": "ml"},
        "properties": {
            "spotPriorityProfile": {"capacity": spot, "minCapacity": 1, "maxPricePerVM": 0.1, "evictionPolicy": "Delete", "allocationStrategy": "PriceCapacityOptimized", "maintain": true},
            "regularPriorityProfile": {"capacity": 1, "minCapacity": 1, "allocationStrategy": "LowestPrice"},
            "vmSizesProfile": [{"name": "Standard_D4s_v5"}, {"name": "Standard_D8s_v5"}, {"name": "Standard_E4s_v5"}],
            "computeProfile": {"baseVirtualMachineProfile": {"storageProfile": {"osDisk": {"createOption": "FromImage"}}}, "computeApiVersion": "2023-09-01"}
        }
    })
    .to_string()
}

#[tokio::test]
async fn responses_validate_against_the_official_schemas() {
    let env = start().await;
    let fleet_spec = spec::Spec::load("azurefleet.2024-11-01.json");
    let resources_spec = spec::Spec::load("resources.2025-04-01.json");

    let get = env.call(reqwest::Method::GET, &env.fleet_path("cf-ml-scaling"), None).await;
    assert_eq!(get.status, 200);
    fleet_spec.check("Fleet", &get.body);
    assert_eq!(get.body["properties"]["spotPriorityProfile"]["capacity"], 20);

    let put = env.call(reqwest::Method::PUT, &env.fleet_path("f2"), Some(&fleet_body(2))).await;
    assert_eq!(put.status, 201);
    fleet_spec.check("Fleet", &put.body);

    let by_rg = env
        .call(
            reqwest::Method::GET,
            &format!(
                "{}/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.AzureFleet/fleets?api-version=2024-11-01",
                env.sub
            ),
            None,
        )
        .await;
    fleet_spec.check("FleetListResult", &by_rg.body);
    assert_eq!(by_rg.body["value"].as_array().unwrap().len(), 2);
    let by_sub = env
        .call(reqwest::Method::GET, &format!("{}/providers/Microsoft.AzureFleet/fleets?api-version=2024-11-01", env.sub), None)
        .await;
    fleet_spec.check("FleetListResult", &by_sub.body);

    let sets_path = env.fleet_path("cf-ml-scaling").replace("?api-version", "/virtualMachineScaleSets?api-version");
    let sets = env.call(reqwest::Method::GET, &sets_path, None).await;
    assert_eq!(sets.status, 200);
    fleet_spec.check("VirtualMachineScaleSetListResult", &sets.body);
    assert!(sets.body["value"].as_array().unwrap().len() >= 2, "spot and regular scale sets");

    let missing = env.call(reqwest::Method::GET, &env.fleet_path("nope"), None).await;
    assert_eq!(missing.status, 404);
    fleet_spec.check("common.ErrorResponse", &missing.body);

    let rg = env
        .call(reqwest::Method::GET, &format!("{}/resourcegroups/rg-ml-adaptive-scaling?api-version=2025-04-01", env.sub), None)
        .await;
    assert_eq!(rg.status, 200);
    resources_spec.check("ResourceGroup", &rg.body);
    let rgs = env.call(reqwest::Method::GET, &format!("{}/resourcegroups?api-version=2025-04-01", env.sub), None).await;
    resources_spec.check("ResourceGroupListResult", &rgs.body);
}

#[tokio::test]
async fn the_validator_catches_a_misspelled_property() {
    let fleet_spec = spec::Spec::load("azurefleet.2024-11-01.json");
    let wrong = json!({"location": "eastus", "properties": {"spotProfile": {}, "vmSizesProfile": [], "computeProfile": {"baseVirtualMachineProfile": {}}}});
    assert!(!fleet_spec.errors("Fleet", &wrong).is_empty());
    let wrong_type = json!({"location": "eastus", "properties": {"vmSizesProfile": [{"name": 3}], "computeProfile": {"baseVirtualMachineProfile": {}}}});
    assert!(!fleet_spec.errors("Fleet", &wrong_type).is_empty());
}

#[tokio::test]
async fn long_running_operations_carry_their_headers_and_finish() {
    let env = start().await;
    let put = env.call(reqwest::Method::PUT, &env.fleet_path("f3"), Some(&fleet_body(3))).await;
    assert_eq!(put.status, 201);
    assert_eq!(put.body["properties"]["provisioningState"], "Creating");
    assert!(put.headers.contains_key("retry-after"));
    let status_url = put.headers["azure-asyncoperation"].to_str().unwrap().to_string();
    let status = env.call(reqwest::Method::GET, &status_url, None).await;
    assert_eq!(status.body["status"], "Succeeded");
    let get = env.call(reqwest::Method::GET, &env.fleet_path("f3"), None).await;
    assert_eq!(get.body["properties"]["provisioningState"], "Succeeded");

    let patch = env
        .call(reqwest::Method::PATCH, &env.fleet_path("f3"), Some(r#"{"properties":{"spotPriorityProfile":{"capacity":5}}}"#))
        .await;
    assert_eq!(patch.status, 202);
    let location = patch.headers["location"].to_str().unwrap().to_string();
    assert_eq!(env.call(reqwest::Method::GET, &location, None).await.status, 204);
    let get = env.call(reqwest::Method::GET, &env.fleet_path("f3"), None).await;
    assert_eq!(get.body["properties"]["spotPriorityProfile"]["capacity"], 5);

    let delete = env.call(reqwest::Method::DELETE, &env.fleet_path("f3"), None).await;
    assert_eq!(delete.status, 202);
    assert_eq!(env.call(reqwest::Method::GET, &env.fleet_path("f3"), None).await.status, 404);
    assert_eq!(env.call(reqwest::Method::DELETE, &env.fleet_path("f3"), None).await.status, 204);
}

/// One bad request and the error ARM gives for it.
async fn check_error(env: &Env, method: reqwest::Method, path: &str, body: Option<&str>, status: u16, code: &str) {
    let reply = env.call(method.clone(), path, body).await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].as_str().unwrap_or("")),
        (status, code),
        "{method} {path}: {}",
        reply.body
    );
    assert!(reply.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn bad_requests_get_the_errors_azure_gives() {
    use reqwest::Method;
    let env = start().await;
    let base = env.fleet_path("cf-ml-scaling");
    let path = base.split('?').next().unwrap().to_string();
    check_error(&env, Method::GET, &path, None, 400, "MissingApiVersionParameter").await;
    check_error(&env, Method::GET, &format!("{path}?api-version=2023-01-01"), None, 400, "NoRegisteredProviderFound").await;
    check_error(&env, Method::GET, &format!("{path}?api-version=latest"), None, 400, "InvalidApiVersionParameter").await;
    check_error(&env, Method::PUT, &env.fleet_path("f4"), Some("{not json"), 400, "InvalidRequestContent").await;
    check_error(&env, Method::PUT, &env.fleet_path("f4"), Some(r#"{"properties":{}}"#), 400, "LocationRequired").await;
    check_error(
        &env,
        Method::PUT,
        &env.fleet_path("f4"),
        Some(r#"{"location":"eastus","properties":{"computeProfile":{"baseVirtualMachineProfile":{}}}}"#),
        400,
        "InvalidParameter",
    )
    .await;
    check_error(&env, Method::PUT, &env.fleet_path("_bad"), Some(&fleet_body(1)), 400, "InvalidResourceName").await;
    check_error(
        &env,
        Method::PUT,
        &env.fleet_path("f4"),
        Some(&fleet_body(1).replace("Standard_E4s_v5", "Standard_Z99")),
        400,
        "SkuNotAvailable",
    )
    .await;
    check_error(
        &env,
        Method::PUT,
        &env.fleet_path("f4"),
        Some(&fleet_body(1).replace("PriceCapacityOptimized", "Cheapest")),
        400,
        "InvalidParameter",
    )
    .await;
    check_error(
        &env,
        Method::PUT,
        &env.fleet_path("f4"),
        Some(&fleet_body(1).replace("\"capacity\":1,", "\"capacity\":-1,")),
        400,
        "InvalidRequestContent",
    )
    .await;
    check_error(
        &env,
        Method::PATCH,
        &base,
        Some(r#"{"properties":{"spotPriorityProfile":{"minCapacity":0}}}"#),
        400,
        "PropertyChangeNotAllowed",
    )
    .await;
    check_error(
        &env,
        Method::PATCH,
        &base,
        Some(r#"{"properties":{"spotPriorityProfile":{"capacity":1}}}"#),
        400,
        "InvalidParameter",
    )
    .await;
    check_error(
        &env,
        Method::PATCH,
        &base,
        Some(r#"{"properties":{"spotPriorityProfile":{"capacity":5000}}}"#),
        409,
        "OperationNotAllowed",
    )
    .await;
    check_error(
        &env,
        Method::GET,
        &env.fleet_path("cf-ml-scaling").replace("rg-ml-adaptive-scaling", "rg-nope"),
        None,
        404,
        "ResourceGroupNotFound",
    )
    .await;
    check_error(
        &env,
        Method::GET,
        "/subscriptions/11111111-1111-1111-1111-111111111111/resourcegroups?api-version=2025-04-01",
        None,
        404,
        "SubscriptionNotFound",
    )
    .await;
    check_error(
        &env,
        Method::GET,
        &format!("{}/providers/Microsoft.Nope/things?api-version=2024-11-01", env.sub),
        None,
        404,
        "InvalidResourceType",
    )
    .await;
}

#[tokio::test]
async fn paths_are_matched_without_case() {
    let env = start().await;
    let path = env
        .fleet_path("CF-ML-SCALING")
        .replace("resourceGroups", "RESOURCEGROUPS")
        .replace("Microsoft.AzureFleet", "microsoft.azurefleet");
    let reply = env.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["name"], "cf-ml-scaling");
}

#[tokio::test]
async fn the_clock_control_moves_the_world() {
    let env = start().await;
    let put = env.call(reqwest::Method::PUT, &env.fleet_path("f5"), Some(&fleet_body(3))).await;
    assert_eq!(put.status, 201);
    let vms_of = |set: &str| {
        format!(
            "{}/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.Compute/virtualMachineScaleSets/{set}/virtualMachines?api-version=2024-07-01",
            env.sub
        )
    };
    let sets_path = env.fleet_path("f5").replace("?api-version", "/virtualMachineScaleSets?api-version");
    let sets = env.call(reqwest::Method::GET, &sets_path, None).await;
    let first = sets.body["value"][0]["name"].as_str().unwrap().to_string();
    let before = env.call(reqwest::Method::GET, &vms_of(&first), None).await;
    assert_eq!(before.body["value"][0]["properties"]["provisioningState"], "Creating");
    let clock = env.call(reqwest::Method::POST, "/_emulator/clock", Some(r#"{"advance_seconds": 300}"#)).await;
    assert_eq!(clock.body["now"], "2026-03-02T08:05:00Z");
    let after = env.call(reqwest::Method::GET, &vms_of(&first), None).await;
    assert_eq!(after.body["value"][0]["properties"]["provisioningState"], "Succeeded");
    assert_eq!(after.body["value"][0]["properties"]["instanceView"]["statuses"][1]["code"], "PowerState/running");
}

/// A VM deleted through the API is remembered with whether a workload had marked it busy: the
/// ground truth of the evals' "no VM running a job was deleted" check.
#[tokio::test]
async fn deletions_remember_whether_the_vm_was_busy() {
    let env = start().await;
    let (set, busy, idle) = env._emulator.with_world(|w| {
        let fleet = w.fleets.values_mut().find(|f| f.name == "cf-ml-scaling").unwrap();
        let set = fleet.vms[0].scale_set.clone();
        let mut same: Vec<&mut fleetpilot_emulator::world::EmuVm> = fleet.vms.iter_mut().filter(|v| v.scale_set == set).collect();
        same[0].tags.insert("workload.busy".into(), json!("true"));
        same[0].tags.insert("workload.job".into(), json!("train-7b"));
        (set.clone(), same[0].instance_id, same[1].instance_id)
    });
    let path = format!(
        "{}/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.Compute/virtualMachineScaleSets/{set}/delete?api-version=2024-07-01",
        env.sub
    );
    let body = json!({"instanceIds": [busy.to_string(), idle.to_string()]}).to_string();
    let reply = env.call(reqwest::Method::POST, &path, Some(&body)).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let deleted = env._emulator.with_world(|w| w.deleted_vms.clone());
    assert_eq!(deleted.len(), 2);
    let of = |id: u64| deleted.iter().find(|d| d.vm == format!("{set}_{id}")).unwrap().clone();
    assert!(of(busy).busy && of(busy).job.as_deref() == Some("train-7b"));
    assert!(!of(idle).busy && of(idle).job.is_none());
    assert!(deleted.iter().all(|d| d.fleet == "cf-ml-scaling"));
}
