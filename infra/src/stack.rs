//! The source recipe's whole architecture as data: every resource with its ARM id, api-version,
//! the body a PUT sends, and the resources it depends on. `fleetpilot provision` plans, applies
//! and destroys this model ([`crate::provision`]); nothing here talks to Azure.
//!
//! Names and SKUs come from the `stack` section of `fleetpilot.toml`; the defaults are the
//! recipe's (without its random suffixes: storage account and key vault names are global in
//! Azure, so set your own there).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;

/// The recipe's dashboard workbook (`recipe/artefacts/scaling-workbook.json`).
const SCALING_WORKBOOK: &str = include_str!("../data/scaling-workbook.json");
/// The recipe's cost workbook (`recipe/artefacts/cost-dashboard.json`).
const COST_WORKBOOK: &str = include_str!("../data/cost-dashboard.json");
/// The recipe's fleet compute profile (`recipe/artefacts/compute-profile.json`).
const COMPUTE_PROFILE: &str = include_str!("../data/compute-profile.json");

/// The `stack` section: names, SKUs and sizes, each with the recipe's value as default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    /// Where `fleetpilot provision` goes: an ARM endpoint (a running `fleetpilot emulator`, or
    /// Azure's). Left out: `azure.endpoint`. The `--arm-endpoint` flag wins over both.
    pub arm_endpoint: Option<String>,
    /// Azure region.
    pub location: String,
    /// Resource group that holds everything.
    pub resource_group: String,
    /// Tags on every resource (besides fleetpilot's own `managed-by`).
    pub tags: BTreeMap<String, String>,
    /// Storage account (3–24 lowercase letters and digits, unique in Azure).
    pub storage_account: String,
    /// Storage SKU.
    pub storage_sku: String,
    /// Key vault (3–24 characters, unique in Azure).
    pub key_vault: String,
    /// Entra tenant of the key vault.
    pub tenant_id: String,
    /// Log Analytics workspace.
    pub log_analytics: String,
    /// Log Analytics retention in days.
    pub log_retention_days: u32,
    /// Application Insights component.
    pub app_insights: String,
    /// AI Foundry hub (an ML workspace of kind `Hub`).
    pub hub: String,
    /// AI Foundry project (kind `Project`, in the hub).
    pub project: String,
    /// The Azure ML workspace that runs the jobs.
    pub ml_workspace: String,
    /// Virtual network and its address space.
    pub vnet: String,
    /// Address space of the virtual network.
    pub vnet_prefix: String,
    /// Subnet the fleet's VMs join.
    pub subnet: String,
    /// Subnet prefix.
    pub subnet_prefix: String,
    /// The Compute Fleet.
    pub fleet: FleetSpec,
    /// The AmlCompute cluster.
    pub compute: ComputeSpec,
    /// The action group that calls fleetpilot's `/alerts`.
    pub action_group: String,
    /// Its short name (at most 12 characters).
    pub action_group_short_name: String,
    /// Where Azure reaches fleetpilot (its `/alerts` and `/mcp`), e.g. `https://fleetpilot.contoso.com`.
    pub public_url: String,
    /// Name of the key vault secret that holds the alert webhook's token.
    pub token_secret: String,
    /// Name of the key vault secret that holds Application Insights' connection string.
    pub insights_secret: String,
    /// The AI Foundry agent.
    pub agent: AgentSpec,
}

/// The fleet's profiles (the recipe's `fleet-profiles.json`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FleetSpec {
    /// Fleet name.
    pub name: String,
    /// Spot capacity at creation (fleetpilot's scaling owns it afterwards).
    pub spot_capacity: u32,
    /// Spot minimum.
    pub spot_min_capacity: u32,
    /// Highest spot price per VM and hour.
    pub max_price_per_vm: f64,
    /// `Deallocate` or `Delete`.
    pub eviction_policy: String,
    /// Spot allocation strategy.
    pub spot_allocation_strategy: String,
    /// Regular capacity at creation.
    pub regular_capacity: u32,
    /// Regular minimum.
    pub regular_min_capacity: u32,
    /// Regular allocation strategy.
    pub regular_allocation_strategy: String,
    /// VM sizes.
    pub vm_sizes: Vec<String>,
    /// The VMs' SSH public key (`ssh-rsa …`).
    pub ssh_public_key: String,
}

/// The AmlCompute cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeSpec {
    /// Cluster name.
    pub name: String,
    /// Node size.
    pub vm_size: String,
    /// Fewest nodes.
    pub min_nodes: u32,
    /// Most nodes.
    pub max_nodes: u32,
    /// Idle seconds before a node is released.
    pub idle_seconds: u32,
}

/// The AI Foundry agent wired to fleetpilot's MCP endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSpec {
    /// Agent name.
    pub name: String,
    /// Model deployment it runs on.
    pub model: String,
    /// Its instructions.
    pub instructions: String,
    /// The project's endpoint (`https://<resource>.services.ai.azure.com/api/projects/<project>`);
    /// against the emulator, its `/api/projects/<project>` when left out.
    pub project_endpoint: Option<String>,
    /// Tools that need a person's approval in Foundry before they run.
    pub approval_required: Vec<String>,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            arm_endpoint: None,
            location: "eastus".into(),
            resource_group: "rg-ml-adaptive-scaling".into(),
            tags: BTreeMap::from([("purpose".into(), "ml-scaling".into()), ("environment".into(), "demo".into())]),
            storage_account: "stmlscaling".into(),
            storage_sku: "Standard_LRS".into(),
            key_vault: "kv-ml-scaling".into(),
            tenant_id: "00000000-0000-4000-8000-0000000000aa".into(),
            log_analytics: "law-ml-scaling".into(),
            log_retention_days: 30,
            app_insights: "ai-mlw-adaptive-scaling".into(),
            hub: "aifhub-adaptive".into(),
            project: "aifproj-adaptive".into(),
            ml_workspace: "mlw-adaptive-scaling".into(),
            vnet: "vnet-ml-scaling".into(),
            vnet_prefix: "10.0.0.0/16".into(),
            subnet: "default".into(),
            subnet_prefix: "10.0.0.0/24".into(),
            fleet: FleetSpec::default(),
            compute: ComputeSpec::default(),
            action_group: "ml-scaling-actions".into(),
            action_group_short_name: "mlscale".into(),
            public_url: "http://127.0.0.1:8080".into(),
            token_secret: "fleetpilot-alerts-token".into(),
            insights_secret: "appinsights-connection-string".into(),
            agent: AgentSpec::default(),
        }
    }
}

impl Default for FleetSpec {
    fn default() -> Self {
        Self {
            name: "cf-ml-scaling".into(),
            spot_capacity: 20,
            spot_min_capacity: 2,
            max_price_per_vm: 0.10,
            eviction_policy: "Deallocate".into(),
            spot_allocation_strategy: "PriceCapacityOptimized".into(),
            regular_capacity: 10,
            regular_min_capacity: 1,
            regular_allocation_strategy: "LowestPrice".into(),
            vm_sizes: vec!["Standard_D4s_v5".into(), "Standard_D8s_v5".into(), "Standard_E4s_v5".into()],
            ssh_public_key: "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC...".into(),
        }
    }
}

impl Default for ComputeSpec {
    fn default() -> Self {
        Self { name: "compute-cluster".into(), vm_size: "Standard_D4s_v3".into(), min_nodes: 0, max_nodes: 10, idle_seconds: 120 }
    }
}

impl Default for AgentSpec {
    fn default() -> Self {
        Self {
            name: "fleetpilot-scaler".into(),
            model: "gpt-4o".into(),
            instructions: "You keep Azure ML compute sized to its demand, safely and cheaply, through fleetpilot's tools. \
                           Read the fleet and its telemetry first, forecast demand, estimate the cost, then propose a \
                           change; apply a proposal only once the guardrails allowed it and a person approved the call."
                .into(),
            project_endpoint: None,
            approval_required: vec!["apply_proposal".into()],
        }
    }
}

/// Where a resource lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Azure Resource Manager: `PUT`/`GET`/`DELETE` on its id.
    Arm,
    /// The AI Foundry project's data plane: agent versions.
    Agent,
}

/// One resource of the stack.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Short handle (`storage`, `hub`, `alert_cpu`, …), unique in the stack.
    pub key: String,
    /// ARM id, or for an agent its URL on the project endpoint.
    pub id: String,
    /// Resource type.
    pub type_name: String,
    /// api-version.
    pub api_version: String,
    /// Where it lives.
    pub plane: Plane,
    /// What a PUT sends (for an agent: the version's body).
    pub body: Value,
    /// Keys of the resources that must exist first.
    pub depends_on: Vec<String>,
    /// JSON pointers set at creation and then left to whoever owns them (the fleet's
    /// capacities belong to fleetpilot's scaling): drift there is no change, and an update
    /// sends the value found.
    pub ignore_changes: Vec<String>,
    /// JSON pointers Azure never returns (a secret's value): compared through the
    /// fingerprint tag the body carries, never read back.
    pub write_only: Vec<String>,
    /// A value known only once another resource exists (a key it was given), copied from it
    /// when this one is planned and put.
    pub value_from: Option<ValueFrom>,
}

/// Where a resource takes a value from: `pointer` in what `source` (a key of the stack, one
/// this resource depends on) reads as, into `target` in this resource's body. The value is
/// a secret: it is redacted wherever it could show, and compared by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFrom {
    /// The resource that holds the value.
    pub source: String,
    /// Where in it.
    pub pointer: String,
    /// Where in this body.
    pub target: String,
}

/// What a value taken from another resource reads as before that resource exists.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

impl Resource {
    /// This resource with its taken value filled in from `source` (what the source reads as),
    /// and the fingerprint tag set from it; `None` when the source has no such value yet.
    pub fn with_value(&self, source: Option<&Value>) -> (Resource, Option<String>) {
        let mut out = self.clone();
        let Some(from) = &self.value_from else { return (out, None) };
        let value = source.and_then(|s| s.pointer(&from.pointer)).and_then(Value::as_str).map(str::to_string);
        let shown = value.clone().unwrap_or_else(|| KNOWN_AFTER_APPLY.into());
        if let Some(slot) = out.body.pointer_mut(&from.target) {
            *slot = json!(shown);
        }
        if let Some(tags) = out.body.get_mut("tags").and_then(Value::as_object_mut) {
            tags.insert(
                FINGERPRINT_TAG.into(),
                json!(value.as_deref().map_or_else(|| KNOWN_AFTER_APPLY.to_string(), fingerprint)),
            );
        }
        (out, value)
    }
}

/// The desired stack, in an order where every resource comes after what it depends on.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Resources.
    pub resources: Vec<Resource>,
    /// Strings that must never be printed or logged (the webhook token).
    pub secrets: Vec<String>,
}

/// What the model needs besides the configuration.
#[derive(Debug, Clone)]
pub struct StackInputs {
    /// Subscription id.
    pub subscription_id: String,
    /// The alert webhook's token.
    pub alerts_token: String,
    /// The AI Foundry project endpoint.
    pub project_endpoint: String,
    /// Every tool fleetpilot serves (those not in `approval_required` run without approval).
    pub tool_names: Vec<String>,
}

/// The tag that names the tool that manages a resource.
pub const MANAGED_BY_TAG: &str = "managed-by";
/// The tag that carries a write-only value's fingerprint.
pub const FINGERPRINT_TAG: &str = "fleetpilot-fingerprint";

/// A short fingerprint of a secret (SHA-256, 16 hex digits): changes when the value does and
/// says nothing of it.
pub fn fingerprint(secret: &str) -> String {
    let digest = sha2::Sha256::digest(secret.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A workbook's resource name: a GUID that follows from its resource group and display name,
/// so that re-running finds the same workbook.
pub fn workbook_guid(resource_group: &str, name: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{}/{name}", resource_group.to_ascii_lowercase()).as_bytes());
    let h: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// The type segments and names of an ARM id below its provider: `vaults/kv/secrets/s` gives
/// (`Microsoft.KeyVault/vaults/secrets`, `kv/s`).
fn type_and_name(id: &str) -> Option<(String, String)> {
    let (_, rest) = id.rsplit_once("/providers/")?;
    let mut parts = rest.split('/');
    let namespace = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let types: Vec<&str> = rest.iter().step_by(2).copied().collect();
    let names: Vec<&str> = rest.iter().skip(1).step_by(2).copied().collect();
    (types.len() == names.len() && !types.is_empty()).then(|| (format!("{namespace}/{}", types.join("/")), names.join("/")))
}

/// A literal as an ARM template string: one starting with `[` would be read as an expression.
fn template_literal(text: &str) -> String {
    if text.starts_with('[') { format!("[{text}") } else { text.to_string() }
}

/// `text` with every occurrence of `secret` replaced by the template parameter `param`.
fn parameterized(text: &str, secret: &str, param: &str) -> String {
    if text == secret {
        return format!("[parameters('{param}')]");
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut pieces = Vec::new();
    for (i, part) in text.split(secret).enumerate() {
        if i > 0 {
            pieces.push(format!("parameters('{param}')"));
        }
        if !part.is_empty() {
            pieces.push(quote(part));
        }
    }
    format!("[concat({})]", pieces.join(", "))
}

fn template_value(value: &Value, secret: &str, param: &str) -> Value {
    match value {
        Value::String(s) if !secret.is_empty() && s.contains(secret) => json!(parameterized(s, secret, param)),
        Value::String(s) => json!(template_literal(s)),
        Value::Array(items) => Value::Array(items.iter().map(|v| template_value(v, secret, param)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), template_value(v, secret, param))).collect()),
        other => other.clone(),
    }
}

impl Stack {
    /// The stack's resources inside its resource group as an ARM deployment template (for
    /// ARM's what-if), with the webhook token as a `securestring` parameter — never a literal —
    /// and taken values as `reference()` expressions. Returns the template and its parameters.
    pub fn arm_template(&self, alerts_token: &str) -> (Value, Value) {
        let by_key: BTreeMap<&str, &Resource> = self.resources.iter().map(|r| (r.key.as_str(), r)).collect();
        let inside: Vec<&Resource> = self
            .resources
            .iter()
            .filter(|r| r.plane == Plane::Arm && r.type_name != "Microsoft.Resources/resourceGroups")
            .collect();
        let mut resources = Vec::new();
        for r in &inside {
            let Some((type_name, name)) = type_and_name(&r.id) else { continue };
            let mut body = template_value(&r.body, alerts_token, "alertsToken");
            if let Some(from) = &r.value_from
                && let Some(source) = by_key.get(from.source.as_str())
                && let Some(slot) = body.pointer_mut(&from.target)
            {
                let property = from.pointer.trim_start_matches("/properties/").replace('/', ".");
                *slot = json!(format!("[reference('{}', '{}').{property}]", source.id, source.api_version));
                if let Some(tags) = body.get_mut("tags").and_then(Value::as_object_mut) {
                    tags.remove(FINGERPRINT_TAG);
                }
            }
            let mut resource = json!({"type": type_name, "apiVersion": r.api_version, "name": name});
            if let Some(map) = body.as_object() {
                for (k, v) in map {
                    resource[k] = v.clone();
                }
            }
            let depends: Vec<&str> = r
                .depends_on
                .iter()
                .filter_map(|d| by_key.get(d.as_str()))
                .filter(|d| inside.iter().any(|i| i.key == d.key))
                .map(|d| d.id.as_str())
                .collect();
            if !depends.is_empty() {
                resource["dependsOn"] = json!(depends);
            }
            resources.push(resource);
        }
        let template = json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "parameters": {"alertsToken": {"type": "securestring"}},
            "resources": resources,
        });
        (template, json!({"alertsToken": {"value": alerts_token}}))
    }
}

impl StackConfig {
    /// Check what the model cannot fix by itself.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        let sa = &self.storage_account;
        if !(3..=24).contains(&sa.len()) || !sa.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(format!("stack.storage_account '{sa}' must be 3–24 lowercase letters and digits"));
        }
        if !(3..=24).contains(&self.key_vault.len()) {
            return Err(format!("stack.key_vault '{}' must have 3–24 characters", self.key_vault));
        }
        if self.action_group_short_name.is_empty() || self.action_group_short_name.len() > 12 {
            return Err("stack.action_group_short_name must have 1–12 characters".into());
        }
        if !(self.public_url.starts_with("https://") || self.public_url.starts_with("http://")) {
            return Err(format!("stack.public_url '{}' must be an http(s) URL", self.public_url));
        }
        if self.fleet.vm_sizes.is_empty() {
            return Err("stack.fleet.vm_sizes must list at least one size".into());
        }
        if self.compute.min_nodes > self.compute.max_nodes {
            return Err("stack.compute.min_nodes must not exceed max_nodes".into());
        }
        Ok(())
    }

    /// The desired stack.
    pub fn resources(&self, inputs: &StackInputs) -> Stack {
        let sub = format!("/subscriptions/{}", inputs.subscription_id);
        let rg_id = format!("{sub}/resourceGroups/{}", self.resource_group);
        let provider = |p: &str, name: &str| format!("{rg_id}/providers/{p}/{name}");
        let mut tags: serde_json::Map<String, Value> = self.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        tags.insert(MANAGED_BY_TAG.into(), json!("fleetpilot"));
        let tags = Value::Object(tags);
        let loc = &self.location;
        let storage_id = provider("Microsoft.Storage/storageAccounts", &self.storage_account);
        let vault_id = provider("Microsoft.KeyVault/vaults", &self.key_vault);
        let law_id = provider("Microsoft.OperationalInsights/workspaces", &self.log_analytics);
        let insights_id = provider("Microsoft.Insights/components", &self.app_insights);
        let ml = |name: &str| provider("Microsoft.MachineLearningServices/workspaces", name);
        let (hub_id, project_id, ws_id) = (ml(&self.hub), ml(&self.project), ml(&self.ml_workspace));
        let vnet_id = provider("Microsoft.Network/virtualNetworks", &self.vnet);
        let fleet_id = provider("Microsoft.AzureFleet/fleets", &self.fleet.name);
        let group_id = provider("Microsoft.Insights/actionGroups", &self.action_group);
        let public = self.public_url.trim_end_matches('/');

        let mut out = Vec::new();
        let mut add = |key: &str, id: String, type_name: &str, api: &str, body: Value, deps: &[&str]| {
            out.push(Resource {
                key: key.into(),
                id,
                type_name: type_name.into(),
                api_version: api.into(),
                plane: Plane::Arm,
                body,
                depends_on: deps.iter().map(|d| (*d).to_string()).collect(),
                ignore_changes: Vec::new(),
                write_only: Vec::new(),
                value_from: None,
            });
        };
        add(
            "resource_group",
            rg_id.clone(),
            "Microsoft.Resources/resourceGroups",
            "2025-04-01",
            json!({"location": loc, "tags": tags}),
            &[],
        );
        add(
            "storage",
            storage_id.clone(),
            "Microsoft.Storage/storageAccounts",
            "2023-05-01",
            json!({"location": loc, "kind": "StorageV2", "sku": {"name": self.storage_sku}, "tags": tags, "properties": {
                "isHnsEnabled": true, "minimumTlsVersion": "TLS1_2", "supportsHttpsTrafficOnly": true, "allowBlobPublicAccess": false,
            }}),
            &["resource_group"],
        );
        add(
            "key_vault",
            vault_id.clone(),
            "Microsoft.KeyVault/vaults",
            "2023-07-01",
            json!({"location": loc, "tags": tags, "properties": {
                "tenantId": self.tenant_id, "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": true, "enableSoftDelete": true, "softDeleteRetentionInDays": 7,
            }}),
            &["resource_group"],
        );
        add(
            "log_analytics",
            law_id.clone(),
            "Microsoft.OperationalInsights/workspaces",
            "2023-09-01",
            json!({"location": loc, "tags": tags, "properties": {"sku": {"name": "PerGB2018"}, "retentionInDays": self.log_retention_days}}),
            &["resource_group"],
        );
        add(
            "app_insights",
            insights_id.clone(),
            "Microsoft.Insights/components",
            "2020-02-02",
            json!({"location": loc, "kind": "web", "tags": tags, "properties": {"Application_Type": "web", "WorkspaceResourceId": law_id}}),
            &["log_analytics"],
        );
        let workspace = |kind: &str, name: &str, description: &str, extra: Value| {
            let mut properties = json!({"friendlyName": name, "description": description});
            if let (Some(p), Some(e)) = (properties.as_object_mut(), extra.as_object()) {
                p.extend(e.clone());
            }
            json!({"location": loc, "kind": kind, "tags": tags, "properties": properties})
        };
        let dependencies = json!({"storageAccount": storage_id, "keyVault": vault_id, "applicationInsights": insights_id});
        add(
            "hub",
            hub_id.clone(),
            "Microsoft.MachineLearningServices/workspaces",
            "2026-07-01",
            workspace("Hub", &self.hub, "AI Foundry Hub for ML Scaling", dependencies.clone()),
            &["storage", "key_vault", "app_insights"],
        );
        add(
            "project",
            project_id.clone(),
            "Microsoft.MachineLearningServices/workspaces",
            "2026-07-01",
            workspace("Project", &self.project, "AI Foundry Project for Adaptive ML Scaling", json!({"hubResourceId": hub_id})),
            &["hub"],
        );
        add(
            "ml_workspace",
            ws_id.clone(),
            "Microsoft.MachineLearningServices/workspaces",
            "2026-07-01",
            workspace("Default", &self.ml_workspace, "ML Workspace for adaptive compute scaling", dependencies),
            &["storage", "key_vault", "app_insights"],
        );
        add(
            "vnet",
            vnet_id.clone(),
            "Microsoft.Network/virtualNetworks",
            "2024-05-01",
            json!({"location": loc, "tags": tags, "properties": {
                "addressSpace": {"addressPrefixes": [self.vnet_prefix]},
                "subnets": [{"name": self.subnet, "properties": {"addressPrefix": self.subnet_prefix}}],
            }}),
            &["resource_group"],
        );
        let f = &self.fleet;
        let compute_profile: Value = serde_json::from_str(
            &COMPUTE_PROFILE
                .replace("${SUBSCRIPTION_ID}", &inputs.subscription_id)
                .replace("${RESOURCE_GROUP}", &self.resource_group)
                .replace("vnet-ml-scaling/subnets/default", &format!("{}/subnets/{}", self.vnet, self.subnet))
                .replace("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC...", &f.ssh_public_key),
        )
        .unwrap_or_default();
        add(
            "fleet",
            fleet_id.clone(),
            "Microsoft.AzureFleet/fleets",
            "2024-11-01",
            json!({"location": loc, "tags": tags, "properties": {
                "spotPriorityProfile": {
                    "capacity": f.spot_capacity, "minCapacity": f.spot_min_capacity, "maxPricePerVM": f.max_price_per_vm,
                    "evictionPolicy": f.eviction_policy, "allocationStrategy": f.spot_allocation_strategy,
                },
                "regularPriorityProfile": {
                    "capacity": f.regular_capacity, "minCapacity": f.regular_min_capacity, "allocationStrategy": f.regular_allocation_strategy,
                },
                "vmSizesProfile": f.vm_sizes.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
                "computeProfile": compute_profile,
            }}),
            &["vnet"],
        );
        let c = &self.compute;
        add(
            "compute",
            format!("{ws_id}/computes/{}", c.name),
            "Microsoft.MachineLearningServices/workspaces/computes",
            "2026-07-01",
            json!({"location": loc, "properties": {"computeType": "AmlCompute", "properties": {
                "vmSize": c.vm_size, "vmPriority": "Dedicated",
                "scaleSettings": {"minNodeCount": c.min_nodes, "maxNodeCount": c.max_nodes, "nodeIdleTimeBeforeScaleDown": format!("PT{}S", c.idle_seconds)},
            }}}),
            &["ml_workspace"],
        );
        let mut secret_tags = tags.clone();
        secret_tags[FINGERPRINT_TAG] = json!(fingerprint(&inputs.alerts_token));
        add(
            "alerts_token",
            format!("{vault_id}/secrets/{}", self.token_secret),
            "Microsoft.KeyVault/vaults/secrets",
            "2023-07-01",
            json!({"tags": secret_tags, "properties": {"value": inputs.alerts_token, "contentType": "fleetpilot alert webhook token"}}),
            &["key_vault"],
        );
        add(
            "insights_connection",
            format!("{vault_id}/secrets/{}", self.insights_secret),
            "Microsoft.KeyVault/vaults/secrets",
            "2023-07-01",
            json!({"tags": tags, "properties": {"value": KNOWN_AFTER_APPLY, "contentType": "Application Insights connection string"}}),
            &["key_vault", "app_insights"],
        );
        add(
            "action_group",
            group_id.clone(),
            "Microsoft.Insights/actionGroups",
            "2023-01-01",
            json!({"location": "Global", "tags": tags, "properties": {
                "groupShortName": self.action_group_short_name, "enabled": true,
                "webhookReceivers": [{"name": "fleetpilot", "serviceUri": format!("{public}/alerts?token={}", inputs.alerts_token), "useCommonAlertSchema": true}],
            }}),
            &["resource_group", "alerts_token"],
        );
        let alert = |description: &str,
                     severity: u32,
                     scope: &str,
                     namespace: &str,
                     metric: &str,
                     op: &str,
                     threshold: f64,
                     window: &str,
                     every: &str| {
            json!({"location": "global", "tags": tags, "properties": {
                "description": description, "severity": severity, "enabled": true, "scopes": [scope],
                "evaluationFrequency": every, "windowSize": window, "autoMitigate": true,
                "criteria": {
                    "odata.type": "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                    "allOf": [{"criterionType": "StaticThresholdCriterion", "name": "condition", "metricName": metric,
                               "metricNamespace": namespace, "operator": op, "threshold": threshold, "timeAggregation": "Average"}],
                },
                "actions": [{"actionGroupId": group_id}],
            }})
        };
        add(
            "alert_cpu",
            provider("Microsoft.Insights/metricAlerts", "ml-scaling-trigger"),
            "Microsoft.Insights/metricAlerts",
            "2018-03-01",
            alert(
                "Triggers scaling actions based on ML workload metrics",
                2,
                &ws_id,
                "Microsoft.MachineLearningServices/workspaces",
                "Percentage CPU",
                "GreaterThan",
                75.0,
                "PT5M",
                "PT1M",
            ),
            &["action_group", "ml_workspace"],
        );
        add(
            "alert_spot",
            provider("Microsoft.Insights/metricAlerts", "scaling-efficiency-alert"),
            "Microsoft.Insights/metricAlerts",
            "2018-03-01",
            alert(
                "Monitors scaling efficiency and cost optimization",
                3,
                &fleet_id,
                "Microsoft.AzureFleet/fleets",
                "SpotInstanceUtilization",
                "LessThan",
                40.0,
                "PT15M",
                "PT5M",
            ),
            &["action_group", "fleet"],
        );
        for (key, name, display, description, data) in [
            (
                "workbook_scaling",
                "ML-Scaling-Dashboard",
                "ML Adaptive Scaling Dashboard",
                "Comprehensive monitoring for ML compute scaling",
                SCALING_WORKBOOK,
            ),
            (
                "workbook_cost",
                "ML-Cost-Optimization",
                "ML Cost Optimization Dashboard",
                "Advanced cost optimization monitoring for adaptive ML scaling",
                COST_WORKBOOK,
            ),
        ] {
            let mut workbook_tags = tags.clone();
            workbook_tags["hidden-title"] = json!(display);
            // Compact, so that what Azure stores is byte-for-byte what is compared.
            let serialized = serde_json::from_str::<Value>(data).map(|v| v.to_string()).unwrap_or_default();
            add(
                key,
                provider("Microsoft.Insights/workbooks", &workbook_guid(&self.resource_group, name)),
                "Microsoft.Insights/workbooks",
                "2022-04-01",
                json!({"location": loc, "kind": "shared", "tags": workbook_tags, "properties": {
                    "displayName": display, "description": description, "category": "workbook",
                    "serializedData": serialized, "sourceId": law_id,
                }}),
                &["log_analytics"],
            );
        }
        let mut never: Vec<&String> = inputs.tool_names.iter().filter(|t| !self.agent.approval_required.contains(t)).collect();
        never.sort();
        let a = &self.agent;
        out.push(Resource {
            key: "agent".into(),
            id: format!("{}/agents/{}", inputs.project_endpoint.trim_end_matches('/'), a.name),
            type_name: "Microsoft.Foundry/agents".into(),
            api_version: "v1".into(),
            plane: Plane::Agent,
            body: json!({
                "description": "Scales Azure ML compute through fleetpilot",
                "definition": {"kind": "prompt", "model": a.model, "instructions": a.instructions, "tools": [{
                    "type": "mcp", "server_label": "fleetpilot", "server_url": format!("{public}/mcp"),
                    "require_approval": {"always": {"tool_names": a.approval_required}, "never": {"tool_names": never}},
                }]},
            }),
            depends_on: vec!["project".into()],
            ignore_changes: Vec::new(),
            write_only: Vec::new(),
            value_from: None,
        });
        for r in &mut out {
            match r.key.as_str() {
                "fleet" => {
                    r.ignore_changes = vec![
                        "/properties/spotPriorityProfile/capacity".into(),
                        "/properties/regularPriorityProfile/capacity".into(),
                    ]
                }
                "alerts_token" => r.write_only = vec!["/properties/value".into()],
                "insights_connection" => {
                    r.write_only = vec!["/properties/value".into()];
                    r.value_from = Some(ValueFrom {
                        source: "app_insights".into(),
                        pointer: "/properties/ConnectionString".into(),
                        target: "/properties/value".into(),
                    });
                }
                _ => {}
            }
        }
        Stack { resources: out, secrets: vec![inputs.alerts_token.clone()] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> StackInputs {
        StackInputs {
            subscription_id: "sub".into(),
            alerts_token: "0123456789abcdef0123".into(),
            project_endpoint: "http://127.0.0.1:1/api/projects/aifproj-adaptive".into(),
            tool_names: vec!["apply_proposal".into(), "read_fleet".into()],
        }
    }

    #[test]
    fn every_dependency_is_declared_before_its_dependent_and_keys_are_unique() {
        let stack = StackConfig::default().resources(&inputs());
        let mut seen = std::collections::HashSet::new();
        for r in &stack.resources {
            for d in &r.depends_on {
                assert!(seen.contains(d), "{} depends on {d}, which comes later or not at all", r.key);
            }
            assert!(seen.insert(r.key.clone()), "{} twice", r.key);
        }
        assert_eq!(stack.resources.len(), 19);
    }

    #[test]
    fn every_reference_in_a_body_is_a_declared_dependency_of_it_or_of_one_it_depends_on() {
        // Dependencies are explicit: an id a body names must be reachable through depends_on.
        let stack = StackConfig::default().resources(&inputs());
        let by_key: BTreeMap<&str, &Resource> = stack.resources.iter().map(|r| (r.key.as_str(), r)).collect();
        fn closure(key: &str, by_key: &BTreeMap<&str, &Resource>, out: &mut std::collections::HashSet<String>) {
            for d in &by_key[key].depends_on {
                if out.insert(d.clone()) {
                    closure(d, by_key, out);
                }
            }
        }
        for r in &stack.resources {
            let mut deps = std::collections::HashSet::new();
            closure(&r.key, &by_key, &mut deps);
            let text = r.body.to_string().to_ascii_lowercase();
            for other in &stack.resources {
                if other.key != r.key
                    && other.key != "resource_group"
                    && other.plane == Plane::Arm
                    && text.contains(&format!("\"{}\"", other.id.to_ascii_lowercase()))
                {
                    assert!(deps.contains(&other.key), "{} names {} without depending on it", r.key, other.key);
                }
            }
        }
    }

    #[test]
    fn the_agent_needs_approval_for_apply_proposal_only() {
        let stack = StackConfig::default().resources(&inputs());
        let agent = stack.resources.iter().find(|r| r.key == "agent").unwrap();
        let approval = &agent.body["definition"]["tools"][0]["require_approval"];
        assert_eq!(approval["always"]["tool_names"], json!(["apply_proposal"]));
        assert_eq!(approval["never"]["tool_names"], json!(["read_fleet"]));
        assert_eq!(agent.body["definition"]["tools"][0]["server_url"], "http://127.0.0.1:8080/mcp");
    }

    #[test]
    fn workbook_names_are_stable_guids_and_fingerprints_hide_the_secret() {
        let a = workbook_guid("rg", "ML-Scaling-Dashboard");
        assert_eq!(a, workbook_guid("RG", "ML-Scaling-Dashboard"));
        assert_ne!(a, workbook_guid("rg", "ML-Cost-Optimization"));
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
        let f = fingerprint("0123456789abcdef0123");
        assert_eq!(f.len(), 16);
        assert!(!f.contains("0123456789"));
    }

    #[test]
    fn a_taken_value_is_filled_from_its_source_or_known_after_apply() {
        let stack = StackConfig::default().resources(&inputs());
        let secret = stack.resources.iter().find(|r| r.key == "insights_connection").unwrap();
        assert!(secret.depends_on.contains(&"app_insights".to_string()));
        let (pending, value) = secret.with_value(None);
        assert_eq!(value, None);
        assert_eq!(pending.body["properties"]["value"], KNOWN_AFTER_APPLY);
        let source = json!({"properties": {"ConnectionString": "InstrumentationKey=abc"}});
        let (filled, value) = secret.with_value(Some(&source));
        assert_eq!(value.as_deref(), Some("InstrumentationKey=abc"));
        assert_eq!(filled.body["properties"]["value"], "InstrumentationKey=abc");
        assert_eq!(filled.body["tags"][FINGERPRINT_TAG], json!(fingerprint("InstrumentationKey=abc")));
    }

    #[test]
    fn the_template_has_every_resource_in_the_group_and_no_secret_literal() {
        let stack = StackConfig::default().resources(&inputs());
        let (template, parameters) = stack.arm_template("0123456789abcdef0123");
        let resources = template["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 17, "all but the resource group and the agent");
        let text = template.to_string();
        assert!(!text.contains("0123456789abcdef0123"), "the token is a literal in the template");
        assert_eq!(parameters["alertsToken"]["value"], "0123456789abcdef0123");
        let secret = resources.iter().find(|r| r["name"] == "kv-ml-scaling/fleetpilot-alerts-token").unwrap();
        assert_eq!(secret["type"], "Microsoft.KeyVault/vaults/secrets");
        assert_eq!(secret["properties"]["value"], "[parameters('alertsToken')]");
        let group = resources.iter().find(|r| r["type"] == "Microsoft.Insights/actionGroups").unwrap();
        assert_eq!(
            group["properties"]["webhookReceivers"][0]["serviceUri"],
            "[concat('http://127.0.0.1:8080/alerts?token=', parameters('alertsToken'))]"
        );
        let connection = resources.iter().find(|r| r["name"] == "kv-ml-scaling/appinsights-connection-string").unwrap();
        assert!(connection["properties"]["value"].as_str().unwrap().starts_with("[reference('/subscriptions/sub/"));
        assert!(connection["dependsOn"].as_array().unwrap().len() == 2);
        let compute = resources.iter().find(|r| r["type"] == "Microsoft.MachineLearningServices/workspaces/computes").unwrap();
        assert_eq!(compute["name"], "mlw-adaptive-scaling/compute-cluster");
    }

    #[test]
    fn validation_names_the_setting() {
        let bad = StackConfig { storage_account: "Has-Caps".into(), ..StackConfig::default() };
        assert!(bad.validate().unwrap_err().contains("stack.storage_account"));
        assert!(StackConfig::default().validate().is_ok());
    }
}
