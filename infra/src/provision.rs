//! Provisioning: the stack's plan, apply and destroy — the executor for whole stacks.
//!
//! Like the fleet executor it is a reconciler: it reads what exists (a GET per resource),
//! computes the difference from the desired [`Stack`], and converges by PUTting whole
//! resources in dependency order (independent ones in parallel), waiting for each long-running
//! operation. Every step is idempotent, so an apply interrupted anywhere — killed, throttled
//! past its retries, hit by a failed operation — converges when run again: what was done plans
//! to a no-op, what was left half-provisioned plans to an update.
//!
//! Secrets (the webhook token) never appear in a [`StackPlan`]'s rendering: [`Redactor`]
//! replaces them wherever they occur, and write-only values are compared by fingerprint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::stack::{MANAGED_BY_TAG, Plane, Resource, Stack};
use crate::{ArmClient, AzureError};

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The resource does not exist.
    Create,
    /// It exists and differs (or its provisioning did not finish).
    Update,
    /// It exists and should not (destroy, or managed by fleetpilot and no longer desired).
    Delete,
    /// It is as desired.
    NoOp,
}

/// One property that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyChange {
    /// Dotted path (`properties.sku.name`).
    pub path: String,
    /// Value found (absent on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Value wanted (absent on delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One resource's change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The stack's handle for it (empty for a managed resource no longer in the stack).
    pub key: String,
    /// ARM id (or the agent's URL).
    pub id: String,
    /// Resource type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// What happens.
    pub action: Action,
    /// Why, when the properties do not say it all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Properties that change.
    pub properties: Vec<PropertyChange>,
    /// The resource as found.
    #[serde(skip)]
    pub observed: Option<Value>,
}

/// A plan: every resource of the stack (and managed strays), in dependency order.
#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    /// The changes, no-ops included.
    pub changes: Vec<Change>,
}

impl StackPlan {
    /// How many changes of an action.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(|c| c.action == Action::NoOp)
    }
}

/// Replaces secrets wherever they appear. Clones share what they know, so that values learned
/// while planning (keys read from Azure) are redacted everywhere afterwards.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<std::sync::Mutex<Vec<String>>>,
}

/// What a secret is replaced with.
pub const REDACTED: &str = "(sensitive)";

impl Redactor {
    /// Redact these (empty strings are ignored).
    pub fn new(secrets: &[String]) -> Self {
        let this = Self::default();
        for s in secrets {
            this.add(s);
        }
        this
    }

    /// Redact this too from now on.
    pub fn add(&self, secret: &str) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if !secret.is_empty() && !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_string());
            // Longest first, so that a secret containing another is replaced whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// A text with every secret replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out = out.replace(s.as_str(), REDACTED);
        }
        out
    }

    /// A JSON value with every secret replaced in its strings.
    pub fn value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.value(v))).collect()),
            other => other.clone(),
        }
    }

    /// The plan as `{"changes": […]}`, redacted.
    pub fn plan_json(&self, plan: &StackPlan) -> Value {
        self.value(&serde_json::to_value(plan).unwrap_or_default())
    }
}

/// The outcome of one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done (created, updated or deleted) in this time.
    Done(Duration),
    /// Nothing to do.
    Unchanged,
    /// It failed; the message is redacted.
    Failed(String),
    /// Not tried: something it waits for failed.
    Skipped(String),
}

/// Hears about each change as it starts and ends (progress bars, logs).
pub trait Progress: Send + Sync {
    /// A change started.
    fn started(&self, change: &Change);
    /// A change ended.
    fn finished(&self, change: &Change, outcome: &Outcome);
}

/// A [`Progress`] that says nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn started(&self, _: &Change) {}
    fn finished(&self, _: &Change, _: &Outcome) {}
}

/// What an apply or destroy did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Each change with its outcome, in plan order.
    pub outcomes: Vec<(Change, Outcome)>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every change succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcomes.iter().all(|(_, o)| matches!(o, Outcome::Done(_) | Outcome::Unchanged))
    }

    /// How many changes of an action were carried out.
    pub fn done(&self, action: Action) -> usize {
        self.outcomes.iter().filter(|(c, o)| c.action == action && matches!(o, Outcome::Done(_))).count()
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// ARM refused the what-if.
    #[error("ARM what-if failed")]
    WhatIf(#[source] AzureError),
    /// Reading a resource failed (after retries).
    #[error("cannot read {id}")]
    Read {
        /// The resource.
        id: String,
        /// Why.
        #[source]
        source: AzureError,
    },
}

/// Plans, applies and destroys a [`Stack`].
#[derive(Debug, Clone)]
pub struct Provisioner {
    arm: ArmClient,
    agents: ArmClient,
    redactor: Redactor,
}

fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.trim_start_matches('/').split('/') {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else if part.contains('.') {
            out.push_str(&format!("[{part:?}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether two leaf values are the same to Azure: numbers by value, locations without case
/// or spaces, everything else exactly.
fn same_leaf(pointer: &str, desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) if pointer == "/location" || pointer == "/kind" => {
            let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
            norm(a) == norm(b)
        }
        _ => desired == observed,
    }
}

/// The properties where `observed` differs from `desired`. Only what the stack sets is
/// compared: Azure adds fields of its own (ids, states, defaults), which are not drift.
pub fn diff(desired: &Value, observed: &Value, skip: &[String]) -> Vec<PropertyChange> {
    let mut out = Vec::new();
    walk(desired, Some(observed).filter(|o| !o.is_null()), String::new(), skip, &mut out);
    out
}

fn walk(desired: &Value, observed: Option<&Value>, pointer: String, skip: &[String], out: &mut Vec<PropertyChange>) {
    if skip.contains(&pointer) {
        return;
    }
    match (desired, observed) {
        (Value::Object(d), Some(Value::Object(_)) | None) => {
            for (k, v) in d {
                let child = format!("{pointer}/{}", escape(k));
                walk(v, observed.and_then(|o| o.get(k)), child, skip, out);
            }
        }
        (Value::Array(d), Some(Value::Array(o))) if d.len() == o.len() && d.iter().any(Value::is_object) => {
            for (i, (dv, ov)) in d.iter().zip(o).enumerate() {
                walk(dv, Some(ov), format!("{pointer}/{i}"), skip, out);
            }
        }
        (d, Some(o)) if same_leaf(&pointer, d, o) => {}
        (d, o) => out.push(PropertyChange {
            path: pointer_to_path(&pointer),
            before: o.filter(|v| !v.is_null()).cloned(),
            after: Some(d.clone()),
        }),
    }
}

/// The body to PUT: the desired one, with the ignored properties as found.
fn body_to_send(resource: &Resource, observed: Option<&Value>) -> Value {
    let mut body = resource.body.clone();
    if let Some(observed) = observed {
        for pointer in &resource.ignore_changes {
            if let (Some(found), Some(slot)) = (observed.pointer(pointer), body.pointer_mut(pointer)) {
                *slot = found.clone();
            }
        }
    }
    body
}

impl Provisioner {
    /// A provisioner over an ARM client and a client for the AI Foundry project endpoint.
    pub fn new(arm: ArmClient, agents: ArmClient, secrets: &[String]) -> Self {
        Self { arm, agents, redactor: Redactor::new(secrets) }
    }

    /// The redactor for this stack's secrets.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn url(resource: &Resource) -> String {
        format!("{}?api-version={}", resource.id, resource.api_version)
    }

    /// Read one resource as the plan compares it; `None` when it does not exist.
    async fn read(&self, resource: &Resource) -> Result<Option<Value>, AzureError> {
        let client = if resource.plane == Plane::Agent { &self.agents } else { &self.arm };
        let found: Value = match client.get(&Self::url(resource)).await {
            Ok(v) => v,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(match resource.plane {
            Plane::Arm => found,
            // An agent is compared through its latest version.
            Plane::Agent => {
                let latest = found.pointer("/versions/latest").cloned().unwrap_or(Value::Null);
                json!({"description": latest.get("description"), "definition": latest.get("definition")})
            }
        }))
    }

    async fn read_all(&self, stack: &Stack) -> Result<Vec<Option<Value>>, ProvisionError> {
        let mut set = tokio::task::JoinSet::new();
        for (i, r) in stack.resources.iter().enumerate() {
            let this = self.clone();
            let r = r.clone();
            set.spawn(
                async move { (i, this.read(&r).await.map_err(|source| ProvisionError::Read { id: r.id.clone(), source })) },
            );
        }
        let mut found = vec![None; stack.resources.len()];
        while let Some(joined) = set.join_next().await {
            let (i, result) = joined.expect("a read task panicked");
            found[i] = result?;
        }
        Ok(found)
    }

    /// Managed resources in the stack's resource group that the stack no longer has.
    async fn strays(&self, stack: &Stack) -> Result<Vec<Value>, ProvisionError> {
        let Some(rg) = stack.resources.iter().find(|r| r.type_name == "Microsoft.Resources/resourceGroups") else {
            return Ok(Vec::new());
        };
        let url = format!("{}/resources?api-version={}", rg.id, rg.api_version);
        let listed: Value = match self.arm.get(&url).await {
            Ok(v) => v,
            Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
            Err(source) => return Err(ProvisionError::Read { id: rg.id.clone(), source }),
        };
        let known: std::collections::HashSet<String> = stack.resources.iter().map(|r| r.id.to_ascii_lowercase()).collect();
        Ok(listed
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| {
                let id = r.get("id").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
                !known.contains(&id)
            })
            .cloned()
            .collect())
    }

    /// What `apply` would do.
    ///
    /// # Errors
    /// When a resource cannot be read.
    pub async fn plan(&self, stack: &Stack) -> Result<StackPlan, ProvisionError> {
        let found = self.read_all(stack).await?;
        let by_key: HashMap<&str, &Value> =
            stack.resources.iter().zip(&found).filter_map(|(r, o)| o.as_ref().map(|o| (r.key.as_str(), o))).collect();
        let mut changes = Vec::new();
        for (r, observed) in stack.resources.iter().zip(found.iter().cloned()) {
            let source = r.value_from.as_ref().and_then(|f| by_key.get(f.source.as_str()).copied());
            let (r, value) = r.with_value(source);
            if let Some(value) = value {
                self.redactor.add(&value);
            }
            let r = &r;
            let change = match &observed {
                None => {
                    // Write-only values are secrets: shown redacted, whatever they are.
                    let mut shown = r.body.clone();
                    for pointer in &r.write_only {
                        if let Some(slot) = shown.pointer_mut(pointer) {
                            *slot = json!(REDACTED);
                        }
                    }
                    Change {
                        key: r.key.clone(),
                        id: r.id.clone(),
                        type_name: r.type_name.clone(),
                        action: Action::Create,
                        reason: None,
                        properties: diff(&shown, &Value::Null, &[]),
                        observed: None,
                    }
                }
                Some(o) => {
                    let skip: Vec<String> = r.ignore_changes.iter().chain(&r.write_only).cloned().collect();
                    let mut properties = diff(&r.body, o, &skip);
                    let state = o.pointer("/properties/provisioningState").and_then(Value::as_str).unwrap_or("Succeeded");
                    let reason = (state != "Succeeded").then(|| format!("provisioning is {state}: it is put again"));
                    if state != "Succeeded" {
                        properties.push(PropertyChange {
                            path: "properties.provisioningState".into(),
                            before: Some(json!(state)),
                            after: Some(json!("Succeeded")),
                        });
                    }
                    Change {
                        key: r.key.clone(),
                        id: r.id.clone(),
                        type_name: r.type_name.clone(),
                        action: if properties.is_empty() { Action::NoOp } else { Action::Update },
                        reason,
                        properties,
                        observed: observed.clone(),
                    }
                }
            };
            changes.push(change);
        }
        changes.extend(self.strays(stack).await?.into_iter().filter(managed).map(stray_deletion));
        Ok(StackPlan { changes })
    }

    /// ARM's own what-if for the stack's resources inside its resource group (which must
    /// exist): the template of [`Stack::arm_template`], deployed incrementally, changing
    /// nothing. The result is ARM's `WhatIfOperationResult`, redacted.
    ///
    /// # Errors
    /// When the resource group does not exist or ARM refuses.
    pub async fn what_if(&self, stack: &Stack, alerts_token: &str) -> Result<Value, ProvisionError> {
        let Some(rg) = stack.resources.iter().find(|r| r.type_name == "Microsoft.Resources/resourceGroups") else {
            return Ok(json!({"status": "Succeeded", "properties": {"changes": []}}));
        };
        let (template, parameters) = stack.arm_template(alerts_token);
        let body = json!({"properties": {"mode": "Incremental", "template": template, "parameters": parameters}});
        let url = format!(
            "{}/providers/Microsoft.Resources/deployments/fleetpilot-what-if/whatIf?api-version={}",
            rg.id, rg.api_version
        );
        let result = self.arm.post_for_result(&url, &body).await.map_err(ProvisionError::WhatIf)?;
        Ok(self.redactor.value(&result))
    }

    /// What `destroy` would do: delete every resource of the stack that exists, dependents
    /// first. The resource group is kept when it holds resources fleetpilot does not manage
    /// (deleting it would delete them).
    ///
    /// # Errors
    /// When a resource cannot be read.
    pub async fn plan_destroy(&self, stack: &Stack) -> Result<StackPlan, ProvisionError> {
        let found = self.read_all(stack).await?;
        let strays = self.strays(stack).await?;
        let foreign: Vec<String> = strays
            .iter()
            .filter(|s| !managed(s))
            .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut changes = Vec::new();
        for (r, observed) in stack.resources.iter().zip(found).rev() {
            let Some(observed) = observed else { continue };
            let keep = r.type_name == "Microsoft.Resources/resourceGroups" && !foreign.is_empty();
            changes.push(Change {
                key: r.key.clone(),
                id: r.id.clone(),
                type_name: r.type_name.clone(),
                action: if keep { Action::NoOp } else { Action::Delete },
                reason: keep.then(|| {
                    format!("kept: it holds {} resource(s) fleetpilot does not manage ({})", foreign.len(), foreign.join(", "))
                }),
                properties: Vec::new(),
                observed: Some(observed),
            });
        }
        // Strays first: nothing of the stack depends on them.
        let mut all: Vec<Change> = strays.into_iter().filter(managed).map(stray_deletion).collect();
        all.extend(changes);
        Ok(StackPlan { changes: all })
    }

    /// Carry a plan out: each change once what it waits for is done (dependencies for creates
    /// and updates, dependents for deletes), at most `parallelism` at a time. A failure skips
    /// what waits for it and lets the rest go on.
    pub async fn apply(&self, stack: &Stack, plan: &StackPlan, parallelism: usize, progress: Arc<dyn Progress>) -> Report {
        let started = Instant::now();
        let by_key: HashMap<&str, &Resource> = stack.resources.iter().map(|r| (r.key.as_str(), r)).collect();
        let index: HashMap<&str, usize> =
            plan.changes.iter().enumerate().filter(|(_, c)| !c.key.is_empty()).map(|(i, c)| (c.key.as_str(), i)).collect();
        // waits[i]: the changes i waits for.
        let mut waits: Vec<Vec<usize>> = vec![Vec::new(); plan.changes.len()];
        for (i, c) in plan.changes.iter().enumerate() {
            let Some(r) = by_key.get(c.key.as_str()) else { continue };
            for dep in &r.depends_on {
                let Some(&j) = index.get(dep.as_str()) else { continue };
                if c.action == Action::Delete {
                    // Delete the dependent (i) before what it depends on (j).
                    waits[j].push(i);
                } else {
                    waits[i].push(j);
                }
            }
        }
        let mut state: Vec<Step> = vec![Step::Pending; plan.changes.len()];
        let mut running = tokio::task::JoinSet::new();
        let parallelism = parallelism.max(1);
        loop {
            // Skip what waits for a failure (transitively), then start what is ready.
            let mut skipped_any = true;
            while skipped_any {
                skipped_any = false;
                for i in 0..plan.changes.len() {
                    if state[i] != Step::Pending {
                        continue;
                    }
                    if let Some(&j) =
                        waits[i].iter().find(|&&j| matches!(state[j], Step::Ended(Outcome::Failed(_) | Outcome::Skipped(_))))
                    {
                        let o = Outcome::Skipped(format!("{} did not succeed", plan.changes[j].id));
                        progress.finished(&plan.changes[i], &o);
                        state[i] = Step::Ended(o);
                        skipped_any = true;
                    }
                }
            }
            for i in 0..plan.changes.len() {
                if running.len() >= parallelism {
                    break;
                }
                let ready = state[i] == Step::Pending
                    && waits[i].iter().all(|&j| matches!(state[j], Step::Ended(Outcome::Done(_) | Outcome::Unchanged)));
                if !ready {
                    continue;
                }
                let change = plan.changes[i].clone();
                if change.action == Action::NoOp {
                    progress.finished(&change, &Outcome::Unchanged);
                    state[i] = Step::Ended(Outcome::Unchanged);
                    continue;
                }
                state[i] = Step::Running;
                progress.started(&change);
                let resource = by_key.get(change.key.as_str()).map(|r| (*r).clone());
                let source = resource
                    .as_ref()
                    .and_then(|r| r.value_from.as_ref())
                    .and_then(|f| by_key.get(f.source.as_str()))
                    .map(|r| (*r).clone());
                let this = self.clone();
                running.spawn(async move {
                    let t = Instant::now();
                    let result = this.carry_out(&change, resource.as_ref(), source.as_ref()).await;
                    (i, change, result.map(|()| t.elapsed()))
                });
            }
            let Some(joined) = running.join_next().await else { break };
            let (i, change, result) = joined.expect("a provisioning task panicked");
            let outcome = match result {
                Ok(took) => Outcome::Done(took),
                Err(e) => Outcome::Failed(self.redactor.text(&e.to_string())),
            };
            progress.finished(&change, &outcome);
            state[i] = Step::Ended(outcome);
        }
        let outcomes = plan
            .changes
            .iter()
            .cloned()
            .zip(state)
            .map(|(c, s)| match s {
                Step::Ended(o) => (c, o),
                _ => (c, Outcome::Skipped("a dependency cycle".into())),
            })
            .collect();
        Report { outcomes, elapsed: started.elapsed() }
    }

    async fn carry_out(&self, change: &Change, resource: Option<&Resource>, source: Option<&Resource>) -> Result<(), AzureError> {
        let agent = resource.is_some_and(|r| r.plane == Plane::Agent) || change.type_name == "Microsoft.Foundry/agents";
        match (change.action, resource) {
            (Action::NoOp, _) => Ok(()),
            (Action::Delete, Some(r)) if agent => self.agents.delete(&Self::url(r)).await,
            (Action::Delete, Some(r)) => self.arm.delete(&Self::url(r)).await,
            (Action::Delete, None) => {
                let api = stray_api_version(&change.type_name);
                self.arm.delete(&format!("{}?api-version={api}", change.id)).await
            }
            (Action::Create | Action::Update, Some(r)) => {
                // A value taken from another resource is read now: that resource was just put.
                let resolved;
                let r = match source {
                    Some(source) => {
                        let found = self.read(source).await?;
                        let (filled, value) = r.with_value(found.as_ref());
                        let Some(value) = value else {
                            return Err(AzureError::Decode {
                                url: source.id.clone(),
                                reason: "the value this resource takes from it is not there".into(),
                            });
                        };
                        self.redactor.add(&value);
                        resolved = filled;
                        &resolved
                    }
                    None => r,
                };
                let body = body_to_send(r, change.observed.as_ref());
                match r.plane {
                    Plane::Arm => self.arm.put(&Self::url(r), &body).await.map(|_| ()),
                    Plane::Agent => self
                        .agents
                        .post_json(&format!("{}/versions?api-version={}", r.id, r.api_version), &body)
                        .await
                        .map(|_| ()),
                }
            }
            (Action::Create | Action::Update, None) => Ok(()),
        }
    }
}

/// Where a change stands during an apply.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Pending,
    Running,
    Ended(Outcome),
}

/// Whether a listed resource carries fleetpilot's `managed-by` tag.
fn managed(resource: &Value) -> bool {
    resource.pointer(&format!("/tags/{MANAGED_BY_TAG}")).and_then(Value::as_str) == Some("fleetpilot")
}

/// The deletion of a managed resource the stack no longer has.
fn stray_deletion(stray: Value) -> Change {
    Change {
        key: String::new(),
        id: stray.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
        type_name: stray.get("type").and_then(Value::as_str).unwrap_or_default().to_string(),
        action: Action::Delete,
        reason: Some("managed by fleetpilot and no longer in the stack".into()),
        properties: Vec::new(),
        observed: Some(stray),
    }
}

/// The api-version to delete a stray of a type with (one the type serves).
fn stray_api_version(type_name: &str) -> &'static str {
    let versions: BTreeMap<&str, &str> = [
        ("microsoft.storage/storageaccounts", "2023-05-01"),
        ("microsoft.keyvault/vaults", "2023-07-01"),
        ("microsoft.operationalinsights/workspaces", "2023-09-01"),
        ("microsoft.insights/components", "2020-02-02"),
        ("microsoft.network/virtualnetworks", "2024-05-01"),
        ("microsoft.insights/actiongroups", "2023-01-01"),
        ("microsoft.insights/metricalerts", "2018-03-01"),
        ("microsoft.insights/workbooks", "2022-04-01"),
        ("microsoft.azurefleet/fleets", "2024-11-01"),
        ("microsoft.machinelearningservices/workspaces", "2026-07-01"),
    ]
    .into_iter()
    .collect();
    versions.get(type_name.to_ascii_lowercase().as_str()).copied().unwrap_or("2025-04-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_compares_only_what_is_desired_and_names_paths() {
        let desired = json!({"location": "eastus", "sku": {"name": "Standard_LRS"}, "properties": {"a": 1, "list": [{"name": "x", "p": 1}]}});
        let observed = json!({"location": "East US", "id": "/x", "sku": {"name": "Premium_LRS", "tier": "Premium"},
                              "properties": {"a": 1.0, "provisioningState": "Succeeded", "list": [{"name": "x", "p": 2, "id": "/y"}]}});
        let changes = diff(&desired, &observed, &[]);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["properties.list[0].p", "sku.name"]);
        assert_eq!(changes[1].before, Some(json!("Premium_LRS")));
        assert_eq!(changes[1].after, Some(json!("Standard_LRS")));
        assert!(diff(&desired, &observed, &["/sku/name".into(), "/properties/list/0/p".into()]).is_empty());
    }

    #[test]
    fn a_missing_property_and_a_changed_list_length_are_changes() {
        let desired = json!({"properties": {"scopes": ["a", "b"], "new": true}});
        let observed = json!({"properties": {"scopes": ["a"]}});
        let changes = diff(&desired, &observed, &[]);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].path, "properties.new");
        assert_eq!(changes[0].before, None);
    }

    #[test]
    fn ignored_properties_keep_the_value_found() {
        let r = Resource {
            key: "fleet".into(),
            id: "/f".into(),
            type_name: "t".into(),
            api_version: "v".into(),
            plane: Plane::Arm,
            body: json!({"properties": {"spot": {"capacity": 20, "min": 2}}}),
            depends_on: Vec::new(),
            ignore_changes: vec!["/properties/spot/capacity".into()],
            write_only: Vec::new(),
            value_from: None,
        };
        let sent = body_to_send(&r, Some(&json!({"properties": {"spot": {"capacity": 7, "min": 1}}})));
        assert_eq!(sent, json!({"properties": {"spot": {"capacity": 7, "min": 2}}}));
        assert_eq!(body_to_send(&r, None), r.body);
    }

    #[test]
    fn the_redactor_hides_secrets_inside_strings_and_json() {
        let r = Redactor::new(&["s3cr3t-token-value".into(), String::new()]);
        assert_eq!(r.text("https://x/alerts?token=s3cr3t-token-value"), "https://x/alerts?token=(sensitive)");
        let v = r.value(&json!({"a": ["s3cr3t-token-value"], "b": 1}));
        assert_eq!(v, json!({"a": ["(sensitive)"], "b": 1}));
    }

    #[test]
    fn paths_read_like_properties() {
        assert_eq!(pointer_to_path("/properties/criteria/allOf/0/threshold"), "properties.criteria.allOf[0].threshold");
        assert_eq!(pointer_to_path("/tags/a~1b"), "tags.a/b");
        assert_eq!(pointer_to_path("/criteria/odata.type"), "criteria[\"odata.type\"]");
    }
}
