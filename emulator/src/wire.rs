//! Azure's JSON for the resources the emulator serves, per the official REST specs
//! (Microsoft.AzureFleet 2024-11-01, Microsoft.Resources 2025-04-01, Microsoft.Compute).

use fleetpilot_core::{EvictionPolicy, Priority, VmState};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::world::{ArmError, EmuVm, FleetRecord, RegularProfile, ResourceGroup, SizeProfile, SpotProfile};

/// `Fleet` as sent in a PUT.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetPut {
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Map<String, Value>,
    pub properties: Option<FleetPropertiesIn>,
}

/// `FleetUpdate` as sent in a PATCH.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetPatch {
    pub tags: Option<Map<String, Value>>,
    pub properties: Option<FleetPropertiesIn>,
}

/// `FleetProperties` as accepted on input (read-only fields are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetPropertiesIn {
    pub spot_priority_profile: Option<SpotIn>,
    pub regular_priority_profile: Option<RegularIn>,
    pub vm_sizes_profile: Option<Vec<SizeIn>>,
    pub compute_profile: Option<Value>,
}

/// `SpotPriorityProfile`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpotIn {
    pub capacity: Option<u32>,
    pub min_capacity: Option<u32>,
    #[serde(rename = "maxPricePerVM")]
    pub max_price_per_vm: Option<f64>,
    pub eviction_policy: Option<String>,
    pub allocation_strategy: Option<String>,
    pub maintain: Option<bool>,
}

/// `RegularPriorityProfile`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegularIn {
    pub capacity: Option<u32>,
    pub min_capacity: Option<u32>,
    pub allocation_strategy: Option<String>,
}

/// `VmSizeProfile`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SizeIn {
    pub name: String,
    pub rank: Option<u32>,
}

/// `ResourceGroup` as sent in a PUT.
#[derive(Debug, Deserialize)]
pub struct ResourceGroupPut {
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Map<String, Value>,
}

/// Body of `VirtualMachineScaleSets_DeleteInstances`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteInstances {
    pub instance_ids: Vec<String>,
}

/// The ARM error body `{"error":{"code","message"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

/// `ErrorDetail` of the common types.
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub const SPOT_STRATEGIES: [&str; 3] = ["PriceCapacityOptimized", "LowestPrice", "CapacityOptimized"];
pub const REGULAR_STRATEGIES: [&str; 2] = ["LowestPrice", "Prioritized"];

fn invalid(message: String) -> ArmError {
    ArmError::new(400, "InvalidParameter", message)
}

fn enum_value(value: &str, allowed: &[&str], field: &str) -> Result<String, ArmError> {
    allowed.iter().find(|a| a.eq_ignore_ascii_case(value)).map(|a| a.to_string()).ok_or_else(|| {
        invalid(format!("The value '{value}' of property '{field}' is not valid. Allowed values: {}.", allowed.join(", ")))
    })
}

/// Build a new spot profile from input, with the API's defaults.
pub fn spot_from(input: &SpotIn) -> Result<SpotProfile, ArmError> {
    let eviction_policy = match input.eviction_policy.as_deref() {
        None => EvictionPolicy::Delete,
        Some(p) => match enum_value(p, &["Delete", "Deallocate"], "spotPriorityProfile.evictionPolicy")?.as_str() {
            "Deallocate" => EvictionPolicy::Deallocate,
            _ => EvictionPolicy::Delete,
        },
    };
    let allocation_strategy = match input.allocation_strategy.as_deref() {
        None => "PriceCapacityOptimized".to_string(),
        Some(s) => enum_value(s, &SPOT_STRATEGIES, "spotPriorityProfile.allocationStrategy")?,
    };
    Ok(SpotProfile {
        capacity: input.capacity.unwrap_or(0),
        min_capacity: input.min_capacity.unwrap_or(0),
        max_price_per_vm: input.max_price_per_vm,
        eviction_policy,
        allocation_strategy,
        maintain: input.maintain.unwrap_or(true),
    })
}

/// Build a new regular profile from input, with the API's defaults.
pub fn regular_from(input: &RegularIn) -> Result<RegularProfile, ArmError> {
    let allocation_strategy = match input.allocation_strategy.as_deref() {
        None => "LowestPrice".to_string(),
        Some(s) => enum_value(s, &REGULAR_STRATEGIES, "regularPriorityProfile.allocationStrategy")?,
    };
    Ok(RegularProfile {
        capacity: input.capacity.unwrap_or(0),
        min_capacity: input.min_capacity.unwrap_or(0),
        allocation_strategy,
    })
}

pub fn sizes_from(input: &[SizeIn]) -> Vec<SizeProfile> {
    input.iter().map(|s| SizeProfile { name: s.name.clone(), rank: s.rank }).collect()
}

/// ARM id of an Azure ML workspace.
pub fn workspace_id(subscription: &str, rg: &str, ws: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}")
}

/// ARM id of a fleet.
pub fn fleet_id(subscription: &str, fleet: &FleetRecord) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{}/providers/Microsoft.AzureFleet/fleets/{}",
        fleet.resource_group, fleet.name
    )
}

/// ARM id of a scale set.
pub fn scale_set_id(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}"
    )
}

/// `Fleet` as returned by GET, PUT and list.
pub fn fleet_json(subscription: &str, fleet: &FleetRecord) -> Value {
    let mut properties = Map::new();
    properties.insert("provisioningState".into(), json!(fleet.provisioning_state));
    if let Some(spot) = &fleet.spot {
        let mut s = json!({
            "capacity": spot.capacity,
            "minCapacity": spot.min_capacity,
            "evictionPolicy": match spot.eviction_policy { EvictionPolicy::Delete => "Delete", EvictionPolicy::Deallocate => "Deallocate" },
            "allocationStrategy": spot.allocation_strategy,
            "maintain": spot.maintain,
        });
        if let Some(price) = spot.max_price_per_vm {
            s["maxPricePerVM"] = json!(price);
        }
        properties.insert("spotPriorityProfile".into(), s);
    }
    if let Some(regular) = &fleet.regular {
        properties.insert(
            "regularPriorityProfile".into(),
            json!({
                "capacity": regular.capacity,
                "minCapacity": regular.min_capacity,
                "allocationStrategy": regular.allocation_strategy,
            }),
        );
    }
    let sizes: Vec<Value> = fleet
        .vm_sizes
        .iter()
        .map(|s| match s.rank {
            Some(rank) => json!({"name": s.name, "rank": rank}),
            None => json!({"name": s.name}),
        })
        .collect();
    properties.insert("vmSizesProfile".into(), Value::Array(sizes));
    properties.insert("computeProfile".into(), fleet.compute_profile.clone());
    properties.insert("timeCreated".into(), json!(rfc3339(fleet.time_created)));
    properties.insert("uniqueId".into(), json!(fleet.unique_id));
    json!({
        "id": fleet_id(subscription, fleet),
        "name": fleet.name,
        "type": "Microsoft.AzureFleet/fleets",
        "location": fleet.location,
        "tags": fleet.tags,
        "properties": properties,
    })
}

/// `ResourceGroup` as returned by GET and PUT.
pub fn resource_group_json(subscription: &str, rg: &ResourceGroup) -> Value {
    json!({
        "id": format!("/subscriptions/{subscription}/resourceGroups/{}", rg.name),
        "name": rg.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": rg.location,
        "tags": rg.tags,
        "properties": {"provisioningState": "Succeeded"},
    })
}

/// A scale set as `Fleets_ListVirtualMachineScaleSets` returns it.
pub fn fleet_scale_set_json(subscription: &str, resource_group: &str, name: &str) -> Value {
    json!({
        "name": name,
        "id": scale_set_id(subscription, resource_group, name),
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "operationStatus": "Succeeded",
    })
}

/// A scale set as `VirtualMachineScaleSets_Get` returns it (the fields fleetpilot reads).
pub fn scale_set_json(
    subscription: &str,
    fleet: &FleetRecord,
    name: &str,
    size: &str,
    priority: Priority,
    capacity: usize,
) -> Value {
    let mut profile = json!({ "priority": match priority { Priority::Spot => "Spot", Priority::Regular => "Regular" } });
    if priority == Priority::Spot
        && let Some(spot) = &fleet.spot
    {
        profile["evictionPolicy"] = json!(match spot.eviction_policy {
            EvictionPolicy::Delete => "Delete",
            EvictionPolicy::Deallocate => "Deallocate",
        });
        profile["billingProfile"] = json!({"maxPrice": spot.max_price_per_vm.unwrap_or(-1.0)});
    }
    json!({
        "id": scale_set_id(subscription, &fleet.resource_group, name),
        "name": name,
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": fleet.location,
        "sku": {"name": size, "tier": "Standard", "capacity": capacity},
        "tags": {"azurefleet": fleet.name},
        "properties": {
            "provisioningState": "Succeeded",
            "orchestrationMode": "Flexible",
            "virtualMachineProfile": profile,
        },
    })
}

/// A scale set VM as `VirtualMachineScaleSetVMs_List` returns it (with its instance view).
pub fn vm_json(subscription: &str, fleet: &FleetRecord, vm: &EmuVm) -> Value {
    let (provisioning, power) = match vm.state {
        VmState::Creating => ("Creating", "PowerState/starting"),
        VmState::Running => ("Succeeded", "PowerState/running"),
        VmState::Deallocated => ("Succeeded", "PowerState/deallocated"),
        VmState::Deleting => ("Deleting", "PowerState/stopping"),
    };
    json!({
        "id": format!("{}/virtualMachines/{}", scale_set_id(subscription, &fleet.resource_group, &vm.scale_set), vm.instance_id),
        "name": format!("{}_{}", vm.scale_set, vm.instance_id),
        "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
        "location": fleet.location,
        "instanceId": vm.instance_id.to_string(),
        "sku": {"name": vm.size, "tier": "Standard"},
        "tags": vm.tags,
        "properties": {
            "provisioningState": provisioning,
            "timeCreated": rfc3339(vm.created_at),
            "hardwareProfile": {"vmSize": vm.size},
            "instanceView": {
                "statuses": [
                    {"code": format!("ProvisioningState/{}", provisioning.to_ascii_lowercase()), "level": "Info"},
                    {"code": power, "level": "Info"},
                ],
            },
        },
    })
}
