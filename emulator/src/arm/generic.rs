//! Generic ARM resources: every resource type of the provisioned stack that the emulator does not
//! model in depth (storage, key vaults and their secrets, Log Analytics and Application Insights,
//! virtual networks, action groups, metric alerts, workbooks). Each is served at its official
//! path and api-versions with ARM's semantics: required properties validated, references to
//! other resources checked (a dangling one fails as Azure fails), `provisioningState`,
//! long-running creation where Azure has it, write-only properties never read back, and
//! server-filled properties. Metric alert rules and action groups are live: a rule provisioned
//! here is evaluated by [`crate::alerts`] and notifies its action groups' webhooks.

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{Reply, accepted, parse_body};
use crate::world::{ArmError, World};

/// One generic resource as stored: what was PUT, and its state.
#[derive(Debug, Clone)]
pub struct GenericResource {
    /// ARM id, cased as first created.
    pub id: String,
    /// `Microsoft.Storage/storageAccounts`, `Microsoft.KeyVault/vaults/secrets`, …
    pub type_name: String,
    /// Last segment of the id.
    pub name: String,
    /// Resource group (as in the id).
    pub resource_group: String,
    /// The body of the last accepted PUT.
    pub body: Value,
    /// `Creating`, `Updating`, `Succeeded` or `Failed`.
    pub provisioning_state: String,
    /// When it was first created.
    pub created: OffsetDateTime,
}

/// How a resource type behaves.
pub(crate) struct TypeSpec {
    /// Canonical type name.
    pub type_name: &'static str,
    /// api-versions served.
    pub api_versions: &'static [&'static str],
    /// JSON pointers a PUT body must carry.
    required: &'static [&'static str],
    /// Whether create and update are long-running operations.
    long_running: bool,
    /// Property names (under `properties`) that are accepted but never returned.
    pub write_only: &'static [&'static str],
    /// The ARM ids this body refers to, which must exist.
    references: fn(&Value) -> Vec<String>,
    /// Type-specific validation.
    validate: fn(&str, &Value) -> Result<(), ArmError>,
    /// Properties the service fills in.
    computed: fn(&GenericResource, &str) -> Map<String, Value>,
}

fn no_refs(_: &Value) -> Vec<String> {
    Vec::new()
}
fn no_check(_: &str, _: &Value) -> Result<(), ArmError> {
    Ok(())
}
fn nothing(_: &GenericResource, _: &str) -> Map<String, Value> {
    Map::new()
}

fn strings_at(body: &Value, pointer: &str) -> Vec<String> {
    match body.pointer(pointer) {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A GUID that follows from a text (stable across runs), for ids Azure would mint.
pub(crate) fn stable_guid(text: &str) -> String {
    // FNV-1a, twice with different offsets, is plenty for an emulator's made-up ids.
    let hash = |offset: u64| text.bytes().fold(offset, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a as u16) & 0x0fff,
        (b >> 48) as u16 & 0x0fff,
        b & 0xffff_ffff_ffff
    )
}

fn storage_name(name: &str, _: &Value) -> Result<(), ArmError> {
    let ok = (3..=24).contains(&name.len()) && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ArmError::new(
            400,
            "AccountNameInvalid",
            format!(
                "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
            ),
        ))
    }
}

fn vault_name(name: &str, _: &Value) -> Result<(), ArmError> {
    let ok = (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(ArmError::new(
            400,
            "VaultNameNotValid",
            format!(
                "The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens."
            ),
        ))
    }
}

fn action_group_check(_: &str, body: &Value) -> Result<(), ArmError> {
    let short = body.pointer("/properties/groupShortName").and_then(Value::as_str).unwrap_or_default();
    if short.is_empty() || short.len() > 12 {
        return Err(ArmError::new(
            400,
            "InvalidRequestContent",
            format!("The group short name '{short}' is invalid: it must have 1 to 12 characters."),
        ));
    }
    for receiver in body.pointer("/properties/webhookReceivers").and_then(Value::as_array).into_iter().flatten() {
        let uri = receiver.get("serviceUri").and_then(Value::as_str).unwrap_or_default();
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            return Err(ArmError::new(400, "InvalidRequestContent", "A webhook receiver needs an absolute 'serviceUri'."));
        }
    }
    Ok(())
}

fn metric_alert_check(_: &str, body: &Value) -> Result<(), ArmError> {
    let criteria = body.pointer("/properties/criteria/allOf").and_then(Value::as_array).filter(|c| !c.is_empty());
    let Some(criteria) = criteria else {
        return Err(ArmError::new(400, "BadRequest", "Criteria 'allOf' must contain at least one condition."));
    };
    for c in criteria {
        if c.get("metricName").and_then(Value::as_str).is_none()
            || !matches!(
                c.get("operator").and_then(Value::as_str),
                Some("GreaterThan" | "LessThan" | "GreaterThanOrEqual" | "LessThanOrEqual")
            )
            || c.get("threshold").and_then(Value::as_f64).is_none()
        {
            return Err(ArmError::new(
                400,
                "BadRequest",
                "Each static criterion needs 'metricName', an 'operator' (GreaterThan, LessThan, …) and a numeric 'threshold'.",
            ));
        }
    }
    for key in ["evaluationFrequency", "windowSize"] {
        let text = body.pointer(&format!("/properties/{key}")).and_then(Value::as_str).unwrap_or_default();
        if super::iso_seconds(text).is_none_or(|s| s < 60) {
            return Err(ArmError::new(400, "BadRequest", format!("'{key}' must be an ISO 8601 duration of at least PT1M.")));
        }
    }
    Ok(())
}

fn metric_alert_refs(body: &Value) -> Vec<String> {
    let mut refs = strings_at(body, "/properties/scopes");
    for action in body.pointer("/properties/actions").and_then(Value::as_array).into_iter().flatten() {
        if let Some(id) = action.get("actionGroupId").and_then(Value::as_str) {
            refs.push(id.to_string());
        }
    }
    refs
}

fn workbook_check(name: &str, body: &Value) -> Result<(), ArmError> {
    if uuid::Uuid::parse_str(name).is_err() {
        return Err(ArmError::new(400, "BadRequest", format!("The workbook name '{name}' must be a GUID.")));
    }
    let data = body.pointer("/properties/serializedData").and_then(Value::as_str).unwrap_or_default();
    if serde_json::from_str::<Value>(data).is_err() {
        return Err(ArmError::new(
            400,
            "BadRequest",
            "'properties.serializedData' must be a JSON document serialized as a string.",
        ));
    }
    Ok(())
}

fn storage_computed(r: &GenericResource, _: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "primaryEndpoints".into(),
        json!({"blob": format!("https://{}.blob.core.windows.net/", r.name), "dfs": format!("https://{}.dfs.core.windows.net/", r.name)}),
    );
    m
}
fn vault_computed(r: &GenericResource, _: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("vaultUri".into(), json!(format!("https://{}.vault.azure.net/", r.name)));
    m
}
fn secret_computed(r: &GenericResource, _: &str) -> Map<String, Value> {
    let vault = r.id.split('/').rev().nth(2).unwrap_or_default();
    let mut m = Map::new();
    m.insert("secretUri".into(), json!(format!("https://{vault}.vault.azure.net/secrets/{}", r.name)));
    m
}
fn law_computed(r: &GenericResource, _: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("customerId".into(), json!(stable_guid(&r.id.to_ascii_lowercase())));
    m
}
fn insights_computed(r: &GenericResource, _: &str) -> Map<String, Value> {
    let key = stable_guid(&format!("ikey:{}", r.id.to_ascii_lowercase()));
    let mut m = Map::new();
    m.insert("AppId".into(), json!(stable_guid(&format!("app:{}", r.id.to_ascii_lowercase()))));
    m.insert("InstrumentationKey".into(), json!(key));
    m.insert(
        "ConnectionString".into(),
        json!(format!("InstrumentationKey={key};IngestionEndpoint=https://eastus-8.in.applicationinsights.azure.com/")),
    );
    m
}

/// The generic types, by lowercase `provider/type[/child]`.
pub(crate) static TYPES: &[TypeSpec] = &[
    TypeSpec {
        type_name: "Microsoft.Storage/storageAccounts",
        api_versions: &["2025-01-01", "2024-01-01", "2023-05-01", "2023-01-01"],
        required: &["/location", "/sku/name", "/kind"],
        long_running: true,
        write_only: &[],
        references: no_refs,
        validate: storage_name,
        computed: storage_computed,
    },
    TypeSpec {
        type_name: "Microsoft.KeyVault/vaults",
        api_versions: &["2024-11-01", "2023-07-01", "2022-07-01"],
        required: &["/location", "/properties/tenantId", "/properties/sku/name", "/properties/sku/family"],
        long_running: true,
        write_only: &[],
        references: no_refs,
        validate: vault_name,
        computed: vault_computed,
    },
    TypeSpec {
        type_name: "Microsoft.KeyVault/vaults/secrets",
        api_versions: &["2024-11-01", "2023-07-01", "2022-07-01"],
        required: &["/properties/value"],
        long_running: false,
        write_only: &["value"],
        references: no_refs,
        validate: no_check,
        computed: secret_computed,
    },
    TypeSpec {
        type_name: "Microsoft.OperationalInsights/workspaces",
        api_versions: &["2025-02-01", "2023-09-01", "2022-10-01"],
        required: &["/location"],
        long_running: true,
        write_only: &[],
        references: no_refs,
        validate: no_check,
        computed: law_computed,
    },
    TypeSpec {
        type_name: "Microsoft.Insights/components",
        api_versions: &["2020-02-02", "2015-05-01"],
        required: &["/location", "/kind", "/properties/Application_Type"],
        long_running: false,
        write_only: &[],
        references: |b| strings_at(b, "/properties/WorkspaceResourceId"),
        validate: no_check,
        computed: insights_computed,
    },
    TypeSpec {
        type_name: "Microsoft.Network/virtualNetworks",
        api_versions: &["2024-07-01", "2024-05-01", "2024-03-01", "2023-11-01"],
        required: &["/location", "/properties/addressSpace/addressPrefixes"],
        long_running: true,
        write_only: &[],
        references: no_refs,
        validate: no_check,
        computed: nothing,
    },
    TypeSpec {
        type_name: "Microsoft.Insights/actionGroups",
        api_versions: &["2023-01-01", "2022-06-01", "2021-09-01"],
        required: &["/location", "/properties/groupShortName", "/properties/enabled"],
        long_running: false,
        write_only: &[],
        references: no_refs,
        validate: action_group_check,
        computed: nothing,
    },
    TypeSpec {
        type_name: "Microsoft.Insights/metricAlerts",
        api_versions: &["2018-03-01"],
        required: &[
            "/location",
            "/properties/severity",
            "/properties/enabled",
            "/properties/scopes",
            "/properties/evaluationFrequency",
            "/properties/windowSize",
            "/properties/criteria",
        ],
        long_running: false,
        write_only: &[],
        references: metric_alert_refs,
        validate: metric_alert_check,
        computed: nothing,
    },
    TypeSpec {
        type_name: "Microsoft.Insights/workbooks",
        api_versions: &["2023-06-01", "2022-04-01"],
        required: &["/location", "/kind", "/properties/displayName", "/properties/serializedData", "/properties/category"],
        long_running: false,
        write_only: &[],
        references: |b| strings_at(b, "/properties/sourceId").into_iter().filter(|s| s.starts_with("/subscriptions/")).collect(),
        validate: workbook_check,
        computed: nothing,
    },
];

/// The spec of a lowercase `provider/type[/child]`.
pub(crate) fn spec_for(lower_type: &str) -> Option<&'static TypeSpec> {
    TYPES.iter().find(|t| t.type_name.eq_ignore_ascii_case(lower_type))
}

/// The resource as GET returns it.
pub(crate) fn resource_json(spec: &TypeSpec, r: &GenericResource, subscription: &str) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(r.id));
    out.insert("name".into(), json!(r.name));
    out.insert("type".into(), json!(r.type_name));
    for key in ["location", "kind", "sku", "identity", "tags", "etag"] {
        if let Some(v) = r.body.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut properties = r.body.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    for key in spec.write_only {
        properties.remove(*key);
    }
    properties.extend((spec.computed)(r, subscription));
    properties.insert("provisioningState".into(), json!(r.provisioning_state));
    out.insert("properties".into(), Value::Object(properties));
    Value::Object(out)
}

/// Serve `PUT|GET|DELETE …/resourceGroups/{rg}/providers/{provider}/{type}/{name}[/{child}/{name}]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn handle(
    world: &mut World,
    base: &str,
    method: &Method,
    spec: &'static TypeSpec,
    rg: &str,
    path: &str,
    name: &str,
    parent: Option<&str>,
    body: &Bytes,
) -> Result<Reply, ArmError> {
    let subscription = world.config.subscription_id.clone();
    let key = path.to_ascii_lowercase();
    let provider = spec.type_name.split('/').next().unwrap_or_default();
    let not_found = || {
        ArmError::new(
            404,
            "ResourceNotFound",
            format!("The Resource '{}/{name}' under resource group '{rg}' was not found.", spec.type_name),
        )
    };
    if let Some(parent) = parent
        && !world.resources.contains_key(&parent.to_ascii_lowercase())
    {
        return Err(ArmError::new(
            404,
            "ParentResourceNotFound",
            format!(
                "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                parent.rsplit('/').next().unwrap_or(parent)
            ),
        ));
    }
    match *method {
        Method::GET => {
            let r = world.resources.get(&key).ok_or_else(not_found)?;
            Ok(Reply::json(StatusCode::OK, resource_json(spec, r, &subscription)))
        }
        Method::PUT => {
            let input: Value = parse_body(body)?;
            for pointer in spec.required {
                if input.pointer(pointer).is_none_or(Value::is_null) {
                    let what = pointer.trim_start_matches('/').replace('/', ".");
                    return Err(ArmError::new(
                        400,
                        "InvalidRequestContent",
                        format!("The property '{what}' is required for {}.", spec.type_name),
                    ));
                }
            }
            (spec.validate)(name, &input)?;
            for reference in (spec.references)(&input) {
                if !world.arm_resource_exists(&reference) {
                    return Err(ArmError::new(
                        400,
                        "InvalidResourceReference",
                        format!(
                            "Resource {reference} referenced by resource {path} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
                        ),
                    ));
                }
            }
            let location = input.get("location").and_then(Value::as_str).unwrap_or("global").to_string();
            let now = world.now;
            let existed = world.resources.get(&key).is_some_and(|r| r.provisioning_state != "Failed");
            let entry = world.resources.entry(key.clone()).or_insert_with(|| GenericResource {
                id: path.to_string(),
                type_name: spec.type_name.to_string(),
                name: name.to_string(),
                resource_group: rg.to_string(),
                body: Value::Null,
                provisioning_state: String::new(),
                created: now,
            });
            entry.body = input;
            entry.provisioning_state = match (spec.long_running, existed) {
                (false, _) => "Succeeded",
                (true, false) => "Creating",
                (true, true) => "Updating",
            }
            .to_string();
            let json = resource_json(spec, entry, &subscription);
            if spec.type_name == "Microsoft.Insights/metricAlerts" {
                world.register_metric_alert(&key);
            }
            let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
            if !spec.long_running {
                return Ok(Reply::json(status, json));
            }
            // A long-running write: the resource is there, provisioning, with an operation to poll.
            let mut reply = accepted(world, base, provider, &location, path, true);
            reply.status = status;
            reply.body = Some(json);
            Ok(reply)
        }
        Method::DELETE => {
            let Some(removed) = world.resources.remove(&key) else {
                return Ok(Reply::empty(StatusCode::NO_CONTENT));
            };
            // Children go with their parent (a vault's secrets).
            let prefix = format!("{key}/");
            world.resources.retain(|k, _| !k.starts_with(&prefix));
            world.forget_metric_alert(&key);
            if spec.long_running {
                let location = removed.body.get("location").and_then(Value::as_str).unwrap_or("eastus").to_string();
                return Ok(accepted(world, base, provider, &location, path, false));
            }
            Ok(Reply::empty(StatusCode::OK))
        }
        _ => Err(ArmError::new(405, "MethodNotAllowed", format!("The method '{method}' is not allowed for {}.", spec.type_name))),
    }
}

/// `GET …/resourceGroups/{rg}/resources`: every resource of a resource group, generic or not.
pub(crate) fn list_group(world: &World, rg: &str) -> Value {
    let subscription = &world.config.subscription_id;
    let rg_lower = rg.to_ascii_lowercase();
    let mut value: Vec<Value> = Vec::new();
    let brief = |id: String, name: &str, type_name: &str, location: &str, tags: &Value| json!({"id": id, "name": name, "type": type_name, "location": location, "tags": tags});
    for r in world.resources.values().filter(|r| r.resource_group.eq_ignore_ascii_case(rg)) {
        let location = r.body.get("location").and_then(Value::as_str).unwrap_or("global");
        value.push(brief(r.id.clone(), &r.name, &r.type_name, location, r.body.get("tags").unwrap_or(&json!({}))));
    }
    for ((fleet_rg, _), f) in &world.fleets {
        if *fleet_rg == rg_lower {
            value.push(brief(
                crate::wire::fleet_id(subscription, f),
                &f.name,
                "Microsoft.AzureFleet/fleets",
                &f.location,
                &json!(f.tags),
            ));
        }
    }
    for ((ws_rg, _), w) in &world.ml {
        if *ws_rg == rg_lower {
            value.push(brief(
                crate::wire::workspace_id(subscription, &w.resource_group, &w.name),
                &w.name,
                "Microsoft.MachineLearningServices/workspaces",
                &w.location,
                &json!(w.tags),
            ));
        }
    }
    json!({ "value": value })
}

/// Turn a provisioned metric alert's body into the rule the world evaluates.
pub(crate) fn rule_from(id: &str, name: &str, body: &Value) -> Option<crate::alerts::AlertRule> {
    if body.pointer("/properties/enabled").and_then(Value::as_bool) == Some(false) {
        return None;
    }
    let criterion = body.pointer("/properties/criteria/allOf/0")?;
    let minutes = |key: &str| {
        body.pointer(&format!("/properties/{key}"))
            .and_then(Value::as_str)
            .and_then(super::iso_seconds)
            .map_or(5, |s| (s / 60) as u32)
    };
    Some(crate::alerts::AlertRule {
        name: name.to_string(),
        description: body.pointer("/properties/description").and_then(Value::as_str).unwrap_or_default().to_string(),
        severity: format!("Sev{}", body.pointer("/properties/severity").and_then(Value::as_u64).unwrap_or(3)),
        scope: body.pointer("/properties/scopes/0").and_then(Value::as_str).unwrap_or_default().to_string(),
        namespace: criterion.get("metricNamespace").and_then(Value::as_str).unwrap_or_default().to_string(),
        metric: criterion.get("metricName").and_then(Value::as_str).unwrap_or_default().to_string(),
        operator: if criterion.get("operator").and_then(Value::as_str).is_some_and(|o| o.starts_with("Greater")) {
            crate::alerts::Operator::GreaterThan
        } else {
            crate::alerts::Operator::LessThan
        },
        threshold: criterion.get("threshold").and_then(Value::as_f64).unwrap_or_default(),
        window_minutes: minutes("windowSize"),
        frequency_minutes: minutes("evaluationFrequency"),
        id: Some(id.to_ascii_lowercase()),
        action_groups: metric_alert_refs(body)
            .into_iter()
            .filter(|r| r.to_ascii_lowercase().contains("/actiongroups/"))
            .map(|r| r.to_ascii_lowercase())
            .collect(),
        samples: Default::default(),
        fired: None,
        last_evaluated: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_guids_are_guids_and_stable() {
        let a = stable_guid("x");
        assert_eq!(a, stable_guid("x"));
        assert_ne!(a, stable_guid("y"));
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }

    #[test]
    fn every_type_has_versions_and_a_provider() {
        for t in TYPES {
            assert!(!t.api_versions.is_empty());
            assert!(t.type_name.starts_with("Microsoft."));
            assert!(spec_for(&t.type_name.to_ascii_lowercase()).is_some());
        }
    }
}
