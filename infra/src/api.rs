//! The typed seam between fleetpilot and Azure, and its implementation over ARM.

use std::collections::BTreeMap;

use async_trait::async_trait;
use fleetpilot_core::logs::{LogColumn, LogQueryResult, LogTable};
use fleetpilot_core::ml::{MlCompute, MlJob, MlJobSpec, WorkspaceRef};
use fleetpilot_core::{EvictionPolicy, FleetRef, FleetState, FleetSummary, Priority, PriorityState, Vm, VmState};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{ArmClient, AzureError};

/// Compute Fleet api-version.
pub const FLEET_API: &str = "2024-11-01";
/// Microsoft.Compute api-version for scale sets.
pub const COMPUTE_API: &str = "2024-07-01";
/// Microsoft.MachineLearningServices api-version.
pub const ML_API: &str = "2026-07-01";
/// Microsoft.Resources api-version.
pub const RESOURCES_API: &str = "2025-04-01";

/// What fleetpilot asks of Azure. Everything that changes Azure state goes through here, and
/// only the executor calls the mutating methods.
#[async_trait]
pub trait AzureApi: Send + Sync + std::fmt::Debug {
    /// Fleets in a resource group, or in the whole subscription.
    async fn list_fleets(&self, resource_group: Option<&str>) -> Result<Vec<FleetSummary>, AzureError>;

    /// One fleet with its VMs.
    async fn read_fleet(&self, fleet: &FleetRef) -> Result<FleetState, AzureError>;

    /// A fleet's ARM resource id (no call: the id follows from the subscription and the name).
    fn fleet_id(&self, fleet: &FleetRef) -> String;

    /// PATCH a fleet's target capacities and sizes; `None` leaves a field alone.
    async fn update_fleet(
        &self,
        fleet: &FleetRef,
        spot_capacity: Option<u32>,
        regular_capacity: Option<u32>,
        vm_sizes: Option<&[String]>,
    ) -> Result<(), AzureError>;

    /// Delete VMs by ARM id (scale set VMs), grouped per scale set.
    async fn delete_vms(&self, vm_ids: &[String]) -> Result<(), AzureError>;

    /// Submit an Azure ML command job.
    async fn submit_ml_job(&self, workspace: &WorkspaceRef, spec: &MlJobSpec) -> Result<MlJob, AzureError>;

    /// Read a job.
    async fn get_ml_job(&self, workspace: &WorkspaceRef, name: &str) -> Result<MlJob, AzureError>;

    /// Ask a job to cancel.
    async fn cancel_ml_job(&self, workspace: &WorkspaceRef, name: &str) -> Result<(), AzureError>;

    /// Jobs of a workspace.
    async fn list_ml_jobs(&self, workspace: &WorkspaceRef) -> Result<Vec<MlJob>, AzureError>;

    /// A compute cluster.
    async fn get_ml_compute(&self, workspace: &WorkspaceRef, name: &str) -> Result<MlCompute, AzureError>;

    /// Run a KQL query against a Log Analytics workspace (`timespan`: ISO-8601 duration or
    /// interval). Read-only.
    async fn query_logs(&self, workspace: &str, query: &str, timespan: Option<&str>) -> Result<LogQueryResult, AzureError>;
}

/// [`AzureApi`] over the ARM REST API.
#[derive(Debug, Clone)]
pub struct ArmAzureApi {
    client: ArmClient,
    /// Priority and VM size per scale set id. A fleet's scale set is created for one size and
    /// one priority and never changes either, so one GET per scale set is enough.
    scale_sets: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Priority, String)>>>,
    /// The Log Analytics query endpoint (`https://api.loganalytics.io` in Azure).
    logs: Option<ArmClient>,
}

impl ArmAzureApi {
    /// Wrap a client.
    pub fn new(client: ArmClient) -> Self {
        Self { client, scale_sets: Default::default(), logs: None }
    }

    fn workspace_path(&self, ws: &WorkspaceRef) -> String {
        format!(
            "{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.client.subscription_path(),
            ws.resource_group,
            ws.workspace
        )
    }

    /// Use `logs` (a client for the Log Analytics endpoint) for `query_logs`.
    pub fn with_logs(mut self, logs: ArmClient) -> Self {
        self.logs = Some(logs);
        self
    }

    fn known_scale_set(&self, id: &str) -> Option<(Priority, String)> {
        self.scale_sets.lock().unwrap_or_else(|e| e.into_inner()).get(&id.to_ascii_lowercase()).cloned()
    }

    fn remember_scale_set(&self, id: &str, priority: Priority, size: &str) {
        let mut sets = self.scale_sets.lock().unwrap_or_else(|e| e.into_inner());
        if sets.len() > 10_000 {
            sets.clear();
        }
        sets.insert(id.to_ascii_lowercase(), (priority, size.to_string()));
    }

    /// The client underneath.
    pub fn client(&self) -> &ArmClient {
        &self.client
    }

    fn fleet_path(&self, fleet: &FleetRef) -> String {
        format!(
            "{}/resourceGroups/{}/providers/Microsoft.AzureFleet/fleets/{}",
            self.client.subscription_path(),
            fleet.resource_group,
            fleet.name
        )
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn u32_at(v: &Value, pointer: &str) -> u32 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0) as u32
}

/// Resource group from an ARM id.
fn resource_group_of(id: &str) -> Option<String> {
    let mut parts = id.split('/');
    while let Some(part) = parts.next() {
        if part.eq_ignore_ascii_case("resourceGroups") {
            return parts.next().map(str::to_string);
        }
    }
    None
}

fn job_from(j: &Value) -> MlJob {
    let p = |k: &str| str_at(j, &format!("/properties/{k}")).unwrap_or_default().to_string();
    MlJob {
        name: str_at(j, "/name").unwrap_or_default().to_string(),
        display_name: p("displayName"),
        experiment_name: p("experimentName"),
        status: p("status"),
        compute: p("computeId").rsplit('/').next().unwrap_or_default().to_string(),
        command: p("command"),
        instance_count: u32_at(j, "/properties/resources/instanceCount").max(1),
    }
}

fn summary_from(fleet: &Value) -> Result<FleetSummary, AzureError> {
    let id = str_at(fleet, "/id").unwrap_or_default().to_string();
    let name = str_at(fleet, "/name").unwrap_or_default().to_string();
    let resource_group = resource_group_of(&id)
        .ok_or_else(|| AzureError::Decode { url: id.clone(), reason: "fleet id has no resource group".into() })?;
    Ok(FleetSummary {
        fleet: FleetRef { resource_group, name },
        location: str_at(fleet, "/location").unwrap_or_default().to_string(),
        provisioning_state: str_at(fleet, "/properties/provisioningState").unwrap_or("Succeeded").to_string(),
        spot_capacity: u32_at(fleet, "/properties/spotPriorityProfile/capacity"),
        regular_capacity: u32_at(fleet, "/properties/regularPriorityProfile/capacity"),
        vm_sizes: sizes_of(fleet),
        id,
    })
}

fn sizes_of(fleet: &Value) -> Vec<String> {
    fleet
        .pointer("/properties/vmSizesProfile")
        .and_then(Value::as_array)
        .map(|sizes| sizes.iter().filter_map(|s| s.get("name").and_then(Value::as_str)).map(str::to_string).collect())
        .unwrap_or_default()
}

fn vm_from(vm: &Value, scale_set: &str, priority: Priority, size: &str) -> Vm {
    let provisioning = str_at(vm, "/properties/provisioningState").unwrap_or("Succeeded");
    let power = vm
        .pointer("/properties/instanceView/statuses")
        .and_then(Value::as_array)
        .and_then(|statuses| {
            statuses.iter().filter_map(|s| s.get("code").and_then(Value::as_str)).find(|c| c.starts_with("PowerState/"))
        })
        .unwrap_or("PowerState/running");
    let state = match (provisioning, power) {
        ("Deleting", _) => VmState::Deleting,
        ("Creating", _) => VmState::Creating,
        (_, "PowerState/deallocated" | "PowerState/deallocating") => VmState::Deallocated,
        (_, "PowerState/running") => VmState::Running,
        _ => VmState::Creating,
    };
    let created_at = str_at(vm, "/properties/timeCreated")
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Vm {
        id: str_at(vm, "/id").unwrap_or_default().to_string(),
        scale_set: scale_set.to_string(),
        instance_id: str_at(vm, "/instanceId").unwrap_or_default().to_string(),
        size: str_at(vm, "/properties/hardwareProfile/vmSize").or(str_at(vm, "/sku/name")).unwrap_or(size).to_string(),
        priority,
        state,
        busy: str_at(vm, "/tags/workload.busy") == Some("true"),
        created_at,
    }
}

#[async_trait]
impl AzureApi for ArmAzureApi {
    async fn list_fleets(&self, resource_group: Option<&str>) -> Result<Vec<FleetSummary>, AzureError> {
        let mut path = match resource_group {
            Some(rg) => format!(
                "{}/resourceGroups/{rg}/providers/Microsoft.AzureFleet/fleets?api-version={FLEET_API}",
                self.client.subscription_path()
            ),
            None => format!("{}/providers/Microsoft.AzureFleet/fleets?api-version={FLEET_API}", self.client.subscription_path()),
        };
        let mut out = Vec::new();
        // Follow nextLink pages.
        loop {
            let page: Value = self.client.get(&path).await?;
            for fleet in page.get("value").and_then(Value::as_array).into_iter().flatten() {
                out.push(summary_from(fleet)?);
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => path = next.to_string(),
                _ => break,
            }
        }
        Ok(out)
    }

    fn fleet_id(&self, fleet: &FleetRef) -> String {
        let path = self.fleet_path(fleet);
        match path.find("/subscriptions/") {
            Some(i) => path[i..].to_string(),
            None => path,
        }
    }

    async fn read_fleet(&self, fleet: &FleetRef) -> Result<FleetState, AzureError> {
        let path = self.fleet_path(fleet);
        let body: Value = self.client.get(&format!("{path}?api-version={FLEET_API}")).await?;
        let summary = summary_from(&body)?;
        let sets: Value = self.client.get(&format!("{path}/virtualMachineScaleSets?api-version={FLEET_API}")).await?;
        let ids: Vec<String> = sets
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (index, id) in ids.into_iter().enumerate() {
            let client = self.client.clone();
            let known = self.known_scale_set(&id);
            tasks.spawn(async move {
                let kind = match known {
                    Some(kind) => kind,
                    None => {
                        let set: Value = client.get(&format!("{id}?api-version={COMPUTE_API}")).await?;
                        let priority = match str_at(&set, "/properties/virtualMachineProfile/priority") {
                            Some(p) if p.eq_ignore_ascii_case("spot") || p.eq_ignore_ascii_case("low") => Priority::Spot,
                            _ => Priority::Regular,
                        };
                        (priority, str_at(&set, "/sku/name").unwrap_or_default().to_string())
                    }
                };
                let vms: Value =
                    client.get(&format!("{id}/virtualMachines?api-version={COMPUTE_API}&$expand=instanceView")).await?;
                Ok::<_, AzureError>((index, id, kind, vms))
            });
        }
        let mut by_index = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (index, id, kind, vms) =
                joined.map_err(|e| AzureError::Decode { url: path.clone(), reason: e.to_string() })??;
            self.remember_scale_set(&id, kind.0, &kind.1);
            by_index.insert(index, (id, kind, vms));
        }
        let mut vms = Vec::new();
        for (id, (priority, size), list) in by_index.into_values() {
            for vm in list.get("value").and_then(Value::as_array).into_iter().flatten() {
                vms.push(vm_from(vm, &id, priority, &size));
            }
        }
        let tier = |profile: &str| PriorityState {
            capacity: u32_at(&body, &format!("/properties/{profile}/capacity")),
            min_capacity: u32_at(&body, &format!("/properties/{profile}/minCapacity")),
            allocation_strategy: str_at(&body, &format!("/properties/{profile}/allocationStrategy"))
                .unwrap_or_default()
                .to_string(),
            ..Default::default()
        };
        let mut state = FleetState {
            fleet: summary.fleet,
            id: summary.id,
            location: summary.location,
            provisioning_state: summary.provisioning_state,
            spot: tier("spotPriorityProfile"),
            regular: tier("regularPriorityProfile"),
            spot_max_price_per_vm: body
                .pointer("/properties/spotPriorityProfile/maxPricePerVM")
                .and_then(Value::as_f64)
                .unwrap_or(-1.0),
            spot_eviction_policy: match str_at(&body, "/properties/spotPriorityProfile/evictionPolicy") {
                Some("Deallocate") => EvictionPolicy::Deallocate,
                _ => EvictionPolicy::Delete,
            },
            spot_maintain: body.pointer("/properties/spotPriorityProfile/maintain").and_then(Value::as_bool).unwrap_or(true),
            vm_sizes: summary.vm_sizes,
            vms,
            observed_at: OffsetDateTime::now_utc(),
        };
        state.recount();
        Ok(state)
    }

    async fn update_fleet(
        &self,
        fleet: &FleetRef,
        spot_capacity: Option<u32>,
        regular_capacity: Option<u32>,
        vm_sizes: Option<&[String]>,
    ) -> Result<(), AzureError> {
        let mut properties = serde_json::Map::new();
        if let Some(capacity) = spot_capacity {
            properties.insert("spotPriorityProfile".into(), json!({ "capacity": capacity }));
        }
        if let Some(capacity) = regular_capacity {
            properties.insert("regularPriorityProfile".into(), json!({ "capacity": capacity }));
        }
        if let Some(sizes) = vm_sizes {
            let sizes: Vec<Value> = sizes.iter().map(|s| json!({ "name": s })).collect();
            properties.insert("vmSizesProfile".into(), Value::Array(sizes));
        }
        if properties.is_empty() {
            return Ok(());
        }
        let path = format!("{}?api-version={FLEET_API}", self.fleet_path(fleet));
        self.client.patch(&path, &json!({ "properties": properties })).await
    }

    async fn delete_vms(&self, vm_ids: &[String]) -> Result<(), AzureError> {
        let mut by_set: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in vm_ids {
            let Some((set, instance)) = id.rsplit_once("/virtualMachines/") else {
                return Err(AzureError::Decode { url: id.clone(), reason: "not a scale set VM id".into() });
            };
            by_set.entry(set.to_string()).or_default().push(instance.to_string());
        }
        for (set, instances) in by_set {
            let path = format!("{set}/delete?api-version={COMPUTE_API}");
            self.client.post(&path, &json!({ "instanceIds": instances })).await?;
        }
        Ok(())
    }

    async fn submit_ml_job(&self, ws: &WorkspaceRef, spec: &MlJobSpec) -> Result<MlJob, AzureError> {
        let base = self.workspace_path(ws);
        let inputs: serde_json::Map<String, Value> =
            spec.inputs.iter().map(|(k, v)| (k.clone(), json!({"jobInputType": "literal", "value": v}))).collect();
        let mut properties = json!({
            "jobType": "Command",
            "command": spec.command,
            "environmentId": spec.environment,
            "computeId": format!("{base}/computes/{}", spec.compute),
            "displayName": spec.display_name,
            "experimentName": spec.experiment_name,
            "resources": {"instanceCount": spec.instance_count.max(1)},
            "inputs": inputs,
            "environmentVariables": spec.environment_variables,
        });
        if !spec.code.is_empty() {
            properties["codeId"] = json!(spec.code);
        }
        let body = self
            .client
            .put(&format!("{base}/jobs/{}?api-version={ML_API}", spec.name), &json!({ "properties": properties }))
            .await?;
        Ok(job_from(&body))
    }

    async fn get_ml_job(&self, ws: &WorkspaceRef, name: &str) -> Result<MlJob, AzureError> {
        let body: Value = self.client.get(&format!("{}/jobs/{name}?api-version={ML_API}", self.workspace_path(ws))).await?;
        Ok(job_from(&body))
    }

    async fn cancel_ml_job(&self, ws: &WorkspaceRef, name: &str) -> Result<(), AzureError> {
        self.client.post(&format!("{}/jobs/{name}/cancel?api-version={ML_API}", self.workspace_path(ws)), &json!({})).await
    }

    async fn list_ml_jobs(&self, ws: &WorkspaceRef) -> Result<Vec<MlJob>, AzureError> {
        let body: Value = self.client.get(&format!("{}/jobs?api-version={ML_API}", self.workspace_path(ws))).await?;
        Ok(body.get("value").and_then(Value::as_array).into_iter().flatten().map(job_from).collect())
    }

    async fn get_ml_compute(&self, ws: &WorkspaceRef, name: &str) -> Result<MlCompute, AzureError> {
        let c: Value = self.client.get(&format!("{}/computes/{name}?api-version={ML_API}", self.workspace_path(ws))).await?;
        let n = |p: &str| u32_at(&c, &format!("/properties/properties/{p}"));
        Ok(MlCompute {
            name: str_at(&c, "/name").unwrap_or(name).to_string(),
            vm_size: str_at(&c, "/properties/properties/vmSize").unwrap_or_default().to_string(),
            min_nodes: n("scaleSettings/minNodeCount"),
            max_nodes: n("scaleSettings/maxNodeCount"),
            current_nodes: n("currentNodeCount"),
            idle_nodes: n("nodeStateCounts/idleNodeCount"),
            running_nodes: n("nodeStateCounts/runningNodeCount"),
        })
    }

    async fn query_logs(&self, workspace: &str, query: &str, timespan: Option<&str>) -> Result<LogQueryResult, AzureError> {
        let Some(logs) = &self.logs else {
            return Err(AzureError::Decode {
                url: "log analytics".into(),
                reason: "no Log Analytics endpoint is configured".into(),
            });
        };
        let mut body = json!({ "query": query });
        if let Some(t) = timespan.filter(|t| !t.is_empty()) {
            body["timespan"] = json!(t);
        }
        let path = format!("/v1/workspaces/{workspace}/query");
        let response = logs.post_json(&path, &body).await?;
        let tables = response
            .get("tables")
            .and_then(Value::as_array)
            .ok_or_else(|| AzureError::Decode { url: path.clone(), reason: "no 'tables' in the response".into() })?
            .iter()
            .map(|t| LogTable {
                name: str_at(t, "/name").unwrap_or("PrimaryResult").to_string(),
                columns: t
                    .get("columns")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|c| LogColumn {
                        name: str_at(c, "/name").unwrap_or_default().to_string(),
                        ty: str_at(c, "/type").unwrap_or("string").to_string(),
                    })
                    .collect(),
                rows: t
                    .get("rows")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect(),
            })
            .collect();
        let partial_error = response.pointer("/error/message").and_then(Value::as_str).map(|m| {
            let detail = response.pointer("/error/details/0/message").and_then(Value::as_str).unwrap_or_default();
            if detail.is_empty() { m.to_string() } else { format!("{m} {detail}") }
        });
        Ok(LogQueryResult { tables, partial_error })
    }
}
