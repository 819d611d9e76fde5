//! What each tool does, independent of MCP. Every failure a model should read is a
//! [`ToolError`] with a code and, for guardrail refusals, every violation.

use std::sync::Arc;

use fleetpilot_core::{
    CostEstimate, Decision, FleetRef, FleetState, PriceTable, Proposal, ProposalStatus, ScaleTarget, Violation, plan,
};
use fleetpilot_guardrails::{Policies, check};
use fleetpilot_infra::{Applied, AzureApi, AzureError, ExecuteError, Executor, Store, StoreError};
use schemars::JsonSchema;
use serde::Serialize;
use time::OffsetDateTime;

use crate::schema::{
    ApplyProposalInput, ApplyResult, EstimateCostInput, FleetList, FleetView, GetPolicyInput, ListFleetsInput,
    ListProposalsInput, PolicyView, ProposalList, ProposeScaleInput, QueryKqlInput, QueryKqlResult, ReadFleetInput,
};

/// What the tools are configured with.
#[derive(Debug, Clone)]
pub struct ToolsConfig {
    /// Resource group used when a call leaves it empty.
    pub default_resource_group: String,
    /// Policies per fleet.
    pub policies: Policies,
    /// Prices for cost figures.
    pub prices: PriceTable,
    /// Log Analytics workspace used when `query_kql` leaves it empty.
    pub default_workspace: String,
    /// The Azure ML workspace the job tools use.
    pub ml_workspace: fleetpilot_core::ml::WorkspaceRef,
}

/// A failure the caller (often a model) should read and act on.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ToolError {
    /// Machine-readable: `invalid_argument`, `fleet_not_found`, `proposal_not_found`,
    /// `denied`, `needs_approval`, `azure_error`, `state_error`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// For guardrail refusals: every violated bound.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// The proposal concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Box<Proposal>>,
    /// Whether trying again later may succeed.
    pub retryable: bool,
}

impl ToolError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), violations: Vec::new(), proposal: None, retryable: false }
    }

    fn azure(fleet: Option<&FleetRef>, error: AzureError) -> Self {
        if let (Some(fleet), AzureError::Api { status: 404, .. }) = (fleet, &error) {
            return Self::new(
                "fleet_not_found",
                format!(
                    "fleet '{}' was not found in resource group '{}'; list_fleets shows the fleets there are",
                    fleet.name, fleet.resource_group
                ),
            );
        }
        let retryable = error.is_transient();
        Self { retryable, ..Self::new("azure_error", format!("{:#}", anyhow_like(&error))) }
    }

    fn state(error: StoreError) -> Self {
        Self::new("state_error", format!("{:#}", anyhow_like(&error)))
    }
}

/// An error and its sources on one line.
fn anyhow_like(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The tools' logic over Azure, the store and the executor.
#[derive(Debug)]
pub struct FleetService {
    api: Arc<dyn AzureApi>,
    store: Arc<Store>,
    executor: Executor,
    config: ToolsConfig,
}

impl FleetService {
    /// Wire the service.
    pub fn new(api: Arc<dyn AzureApi>, store: Arc<Store>, config: ToolsConfig) -> Self {
        let executor = Executor::new(api.clone(), store.clone());
        Self { api, store, executor, config }
    }

    fn fleet_ref(&self, resource_group: &str, name: &str) -> Result<FleetRef, ToolError> {
        if name.trim().is_empty() {
            return Err(ToolError::new("invalid_argument", "'fleet' must name a fleet; list_fleets shows them"));
        }
        let resource_group = if resource_group.trim().is_empty() { &self.config.default_resource_group } else { resource_group };
        Ok(FleetRef { resource_group: resource_group.trim().to_string(), name: name.trim().to_string() })
    }

    /// `list_fleets`.
    ///
    /// # Errors
    /// Azure failures.
    pub async fn list_fleets(&self, input: ListFleetsInput) -> Result<FleetList, ToolError> {
        let rg = input.resource_group.trim();
        let fleets = self.api.list_fleets((!rg.is_empty()).then_some(rg)).await.map_err(|e| ToolError::azure(None, e))?;
        Ok(FleetList { fleets })
    }

    /// `read_fleet`.
    ///
    /// # Errors
    /// Unknown fleet, Azure failures.
    pub async fn read_fleet(&self, input: ReadFleetInput) -> Result<FleetView, ToolError> {
        let fleet = self.fleet_ref(&input.resource_group, &input.fleet)?;
        let state = self.api.read_fleet(&fleet).await.map_err(|e| ToolError::azure(Some(&fleet), e))?;
        let hourly_cost_usd = fleetpilot_core::cost::hourly_cost(&state, &self.config.prices);
        Ok(FleetView { state, hourly_cost_usd })
    }

    /// `estimate_cost`: what the fleet costs per hour now and at a capacity mix.
    ///
    /// # Errors
    /// Bad input, unknown fleet, Azure failures.
    pub async fn estimate_cost(&self, input: EstimateCostInput) -> Result<CostEstimate, ToolError> {
        let fleet = self.fleet_ref(&input.resource_group, &input.fleet)?;
        let target = scale_target(input.spot_capacity, input.regular_capacity, input.vm_sizes);
        let state = self.api.read_fleet(&fleet).await.map_err(|e| ToolError::azure(Some(&fleet), e))?;
        Ok(fleetpilot_core::cost::estimate(&state, &target, &self.config.prices))
    }

    /// `get_policy`.
    ///
    /// # Errors
    /// An empty fleet name.
    pub fn get_policy(&self, input: GetPolicyInput) -> Result<PolicyView, ToolError> {
        let fleet = self.fleet_ref("", &input.fleet)?;
        Ok(PolicyView { policy: self.config.policies.for_fleet(&fleet.name), fleet: fleet.name })
    }

    /// `propose_scale`: check a target and record the proposal. Changes nothing in Azure.
    ///
    /// # Errors
    /// Bad input, unknown fleet, Azure failures; a guardrail denial is an error carrying the
    /// recorded proposal and every violation.
    pub async fn propose_scale(&self, input: ProposeScaleInput, requested_by: &str) -> Result<Proposal, ToolError> {
        let fleet = self.fleet_ref(&input.resource_group, &input.fleet)?;
        if input.reason.trim().is_empty() {
            return Err(ToolError::new(
                "invalid_argument",
                "'reason' must say what was observed and what the change should achieve",
            ));
        }
        let target = scale_target(input.spot_capacity, input.regular_capacity, input.vm_sizes);
        if target.spot_capacity.is_none() && target.regular_capacity.is_none() && target.vm_sizes.is_none() {
            return Err(ToolError::new(
                "invalid_argument",
                "nothing to change: give spot_capacity, regular_capacity or vm_sizes",
            ));
        }
        let observed = self.api.read_fleet(&fleet).await.map_err(|e| ToolError::azure(Some(&fleet), e))?;
        let policy = self.config.policies.for_fleet(&fleet.name);
        let verdict = check(&target, &observed, &policy);
        let status = match verdict.decision {
            Decision::Allow => ProposalStatus::Proposed,
            Decision::NeedsApproval => ProposalStatus::NeedsApproval,
            Decision::Deny => ProposalStatus::Denied,
        };
        let proposal = Proposal {
            id: format!("prop-{}", uuid::Uuid::new_v4().simple()),
            fleet,
            requested_by: requested_by.to_string(),
            reason: input.reason,
            created_at: OffsetDateTime::now_utc(),
            observed_spot_capacity: observed.spot.capacity,
            observed_regular_capacity: observed.regular.capacity,
            plan: plan(&observed, &target),
            cost: Some(fleetpilot_core::cost::estimate(&observed, &target, &self.config.prices)),
            target,
            verdict,
            status,
            outcome: None,
        };
        self.store.save_proposal(&proposal).map_err(ToolError::state)?;
        tracing::info!(proposal.id = %proposal.id, fleet = %proposal.fleet, decision = ?proposal.verdict.decision, requested_by, "proposal recorded");
        if proposal.status == ProposalStatus::Denied {
            return Err(refusal("denied", &proposal, &proposal.verdict.violations));
        }
        Ok(proposal)
    }

    /// `apply_proposal`: carry out an allowed proposal; re-reads and re-checks first.
    ///
    /// # Errors
    /// Unknown proposal, a denial now or before, a pending approval, Azure failures.
    pub async fn apply_proposal(&self, input: ApplyProposalInput) -> Result<ApplyResult, ToolError> {
        let mut proposal = self.store.proposal(input.proposal_id.trim()).map_err(ToolError::state)?.ok_or_else(|| {
            ToolError::new("proposal_not_found", format!("no proposal '{}'; list_proposals shows them", input.proposal_id))
        })?;
        match proposal.status {
            ProposalStatus::Denied => {
                return Err(refusal("denied", &proposal, &proposal.verdict.violations));
            }
            ProposalStatus::Applied => {
                return Ok(ApplyResult { result: "already_applied".into(), proposal });
            }
            _ => {}
        }
        let policy = self.config.policies.for_fleet(&proposal.fleet.name);
        let target = proposal.target.clone();
        let recheck = move |observed: &FleetState| check(&target, observed, &policy);
        let applied = self.executor.apply(&proposal, false, &recheck).await;
        let result = match applied {
            Ok(Applied::Done(outcome, plan)) => {
                proposal.status = ProposalStatus::Applied;
                proposal.plan = plan;
                proposal.outcome = Some(outcome);
                "applied"
            }
            Ok(Applied::AlreadyApplied(outcome)) => {
                proposal.status = ProposalStatus::Applied;
                proposal.outcome = Some(outcome);
                "already_applied"
            }
            Ok(Applied::DryRun(plan)) => {
                proposal.status = ProposalStatus::DryRun;
                proposal.plan = plan;
                "dry_run"
            }
            Err(ExecuteError::Refused(verdict)) => {
                proposal.status = match verdict.decision {
                    Decision::NeedsApproval => ProposalStatus::NeedsApproval,
                    _ => ProposalStatus::Denied,
                };
                proposal.verdict = verdict;
                self.store.save_proposal(&proposal).map_err(ToolError::state)?;
                let code = if proposal.status == ProposalStatus::NeedsApproval { "needs_approval" } else { "denied" };
                return Err(refusal(code, &proposal, &proposal.verdict.violations));
            }
            Err(ExecuteError::Azure(error)) => {
                proposal.status = ProposalStatus::Failed;
                proposal.outcome = self.store.outcome_of(&proposal.id).ok().flatten();
                self.store.save_proposal(&proposal).map_err(ToolError::state)?;
                let mut e = ToolError::azure(Some(&proposal.fleet), error);
                e.proposal = Some(Box::new(proposal));
                return Err(e);
            }
            Err(ExecuteError::Store(error)) => return Err(ToolError::state(error)),
        };
        self.store.save_proposal(&proposal).map_err(ToolError::state)?;
        Ok(ApplyResult { result: result.into(), proposal })
    }

    /// `query_kql`: run a read-only KQL query against Log Analytics.
    ///
    /// # Errors
    /// An empty or over-long query, a control command, a query error (with its line and
    /// position), Azure failures.
    pub async fn query_kql(&self, input: QueryKqlInput) -> Result<QueryKqlResult, ToolError> {
        const MAX_QUERY_CHARS: usize = 10_000;
        let query = input.query.trim();
        if query.is_empty() {
            return Err(ToolError::new(
                "invalid_argument",
                "'query' is empty; write a KQL query such as `Heartbeat | summarize count() by Computer`",
            ));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(ToolError::new(
                "invalid_argument",
                format!("the query is longer than {MAX_QUERY_CHARS} characters; shorten it"),
            ));
        }
        if query.starts_with('.') {
            return Err(ToolError::new(
                "invalid_argument",
                "control commands (.drop, .set, .ingest, …) are not allowed; only queries are",
            ));
        }
        let workspace = if input.workspace.trim().is_empty() {
            self.config.default_workspace.clone()
        } else {
            input.workspace.trim().to_string()
        };
        if workspace.is_empty() {
            return Err(ToolError::new("invalid_argument", "no Log Analytics workspace is configured; pass 'workspace'"));
        }
        let timespan = input.timespan.trim();
        let mut result =
            self.api.query_logs(&workspace, query, (!timespan.is_empty()).then_some(timespan)).await.map_err(|e| match &e {
                AzureError::Api { status: 400, message, .. } => ToolError::new("kql_error", message.clone()),
                AzureError::Api { status: 504, .. } => ToolError {
                    retryable: true,
                    ..ToolError::new(
                        "query_timeout",
                        "the query ran past its time limit; narrow it with a timespan or a where clause",
                    )
                },
                _ => ToolError::azure(None, e),
            })?;
        let max_rows = input.max_rows.clamp(1, 10_000) as usize;
        let mut rows_omitted = 0;
        if let Some(first) = result.tables.first_mut()
            && first.rows.len() > max_rows
        {
            rows_omitted = (first.rows.len() - max_rows) as u64;
            first.rows.truncate(max_rows);
        }
        Ok(QueryKqlResult { tables: result.tables, rows_omitted, partial_error: result.partial_error })
    }

    /// `submit_ml_job`: check the job guardrails against the compute, then submit.
    ///
    /// # Errors
    /// Bad input, a guardrail denial (with every violation), an unknown compute, Azure failures.
    pub async fn submit_job(&self, input: crate::schema::SubmitMlJobInput) -> Result<fleetpilot_core::ml::MlJob, ToolError> {
        for (field, value) in [("command", &input.command), ("environment", &input.environment), ("compute", &input.compute)] {
            if value.trim().is_empty() {
                return Err(ToolError::new("invalid_argument", format!("'{field}' is required")));
            }
        }
        let name = if input.name.trim().is_empty() {
            format!("job-{}", uuid::Uuid::new_v4().simple())
        } else {
            input.name.trim().to_string()
        };
        let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && name.len() <= 255;
        if !valid {
            return Err(ToolError::new("invalid_argument", "'name' may hold letters, digits, '-' and '_' only"));
        }
        let spec = fleetpilot_core::ml::MlJobSpec {
            display_name: if input.display_name.is_empty() { name.clone() } else { input.display_name },
            experiment_name: if input.experiment_name.is_empty() { "Default".into() } else { input.experiment_name },
            name,
            command: input.command,
            code: input.code,
            environment: input.environment,
            compute: input.compute,
            inputs: input.inputs,
            environment_variables: Default::default(),
            instance_count: input.instance_count.max(1),
        };
        let ws = self.config.ml_workspace.clone();
        let policy = self.config.policies.jobs.clone();
        let prices = self.config.prices.clone();
        let spec_for_check = spec.clone();
        let recheck = move |compute: &fleetpilot_core::ml::MlCompute, jobs: &[fleetpilot_core::ml::MlJob]| {
            let price = prices.get(&compute.vm_size).map_or(0.0, |s| s.price(fleetpilot_core::Priority::Regular));
            fleetpilot_guardrails::check_job(&spec_for_check, compute, jobs, price, &policy)
        };
        match self.executor.submit_job(&ws, &spec, &recheck).await {
            Ok(job) => Ok(job),
            Err(ExecuteError::Refused(verdict)) => Err(ToolError {
                code: "denied".into(),
                message: format!(
                    "job {} is denied by the job guardrails: {}",
                    spec.name,
                    verdict.violations.iter().map(|v| format!("{} ({})", v.bound, v.message)).collect::<Vec<_>>().join("; ")
                ),
                violations: verdict.violations,
                proposal: None,
                retryable: false,
            }),
            Err(ExecuteError::Azure(AzureError::Api { status: 404, .. })) => Err(ToolError::new(
                "compute_not_found",
                format!("compute '{}' was not found in workspace '{}'", spec.compute, ws.workspace),
            )),
            Err(ExecuteError::Azure(e)) => Err(ToolError::azure(None, e)),
            Err(ExecuteError::Store(e)) => Err(ToolError::state(e)),
        }
    }

    /// `get_ml_job`.
    ///
    /// # Errors
    /// Unknown job, Azure failures.
    pub async fn get_ml_job(&self, input: crate::schema::MlJobNameInput) -> Result<fleetpilot_core::ml::MlJob, ToolError> {
        self.api.get_ml_job(&self.config.ml_workspace, input.name.trim()).await.map_err(|e| job_error(&input.name, e))
    }

    /// `cancel_ml_job`: ask the job to stop; releases its nodes.
    ///
    /// # Errors
    /// Unknown job, Azure failures.
    pub async fn cancel_job(&self, input: crate::schema::MlJobNameInput) -> Result<fleetpilot_core::ml::MlJob, ToolError> {
        match self.executor.cancel_job(&self.config.ml_workspace, input.name.trim()).await {
            Ok(job) => Ok(job),
            Err(ExecuteError::Azure(e)) => Err(job_error(&input.name, e)),
            Err(ExecuteError::Store(e)) => Err(ToolError::state(e)),
            Err(ExecuteError::Refused(_)) => Err(ToolError::new("denied", "cancel was refused")),
        }
    }

    /// `list_proposals`.
    ///
    /// # Errors
    /// An unknown status, store failures.
    pub fn list_proposals(&self, input: ListProposalsInput) -> Result<ProposalList, ToolError> {
        let status = match input.status.trim() {
            "" => None,
            s => Some(parse_status(s).ok_or_else(|| {
                ToolError::new(
                    "invalid_argument",
                    format!("unknown status '{s}'; use proposed, needs_approval, denied, dry_run, applied or failed"),
                )
            })?),
        };
        let fleet = input.fleet.trim();
        let proposals = self
            .store
            .proposals((!fleet.is_empty()).then_some(fleet), status, input.limit.clamp(1, 500))
            .map_err(ToolError::state)?;
        Ok(ProposalList { proposals })
    }
}

fn job_error(name: &str, e: AzureError) -> ToolError {
    match e {
        AzureError::Api { status: 404, .. } => ToolError::new("job_not_found", format!("no job named '{name}' in the workspace")),
        other => ToolError::azure(None, other),
    }
}

fn parse_status(s: &str) -> Option<ProposalStatus> {
    [
        ProposalStatus::Proposed,
        ProposalStatus::NeedsApproval,
        ProposalStatus::Denied,
        ProposalStatus::DryRun,
        ProposalStatus::Applied,
        ProposalStatus::Failed,
    ]
    .into_iter()
    .find(|status| status.as_str() == s)
}

fn refusal(code: &str, proposal: &Proposal, violations: &[Violation]) -> ToolError {
    let bounds: Vec<&str> = violations.iter().map(|v| v.bound.as_str()).collect();
    let message = match code {
        "needs_approval" => {
            format!("proposal {} needs a human's approval ({}); it was not applied", proposal.id, bounds.join(", "))
        }
        _ => format!(
            "proposal {} is denied by the guardrails: {}",
            proposal.id,
            violations.iter().map(|v| format!("{} ({})", v.bound, v.message)).collect::<Vec<_>>().join("; ")
        ),
    };
    ToolError {
        code: code.into(),
        message,
        violations: violations.to_vec(),
        proposal: Some(Box::new(proposal.clone())),
        retryable: false,
    }
}

/// A target from a tool's inputs: an empty size list keeps the sizes.
fn scale_target(spot_capacity: Option<u32>, regular_capacity: Option<u32>, vm_sizes: Vec<String>) -> ScaleTarget {
    ScaleTarget { spot_capacity, regular_capacity, vm_sizes: (!vm_sizes.is_empty()).then_some(vm_sizes) }
}
