//! What each tool does, independent of MCP. Every failure a model should read is a
//! [`ToolError`] with a code and, for guardrail refusals, every violation.

use std::sync::Arc;

use fleetpilot_core::{
    CostEstimate, Decision, FleetRef, FleetState, PriceTable, Proposal, ProposalStatus, Review, ScaleTarget, Violation, plan,
};
use fleetpilot_guardrails::{Change, Context, Policies, Policy, Recommendation, Telemetry, check};
use fleetpilot_infra::{Applied, AzureApi, AzureError, ExecuteError, Executor, ExecutorConfig, Store, StoreError};
use schemars::JsonSchema;
use serde::Serialize;
use time::OffsetDateTime;

use crate::schema::{
    ApplyProposalInput, ApplyResult, ApproveProposalInput, EstimateCostInput, FleetList, FleetView, GetPolicyInput,
    ListFleetsInput, ListProposalsInput, PolicyView, ProposalList, ProposeScaleInput, QueryKqlInput, QueryKqlResult,
    ReadFleetInput, RejectProposalInput,
};

pub use fleetpilot_infra::Clock;

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
    /// Now, for the guardrails' time rules and the stamps of proposals and outcomes (the call
    /// limit keeps the system's clock).
    pub clock: Clock,
    /// How the executor verifies.
    pub executor: ExecutorConfig,
    /// The role of MCP callers over stdio (a local operator).
    pub stdio_role: crate::Role,
    /// The role of MCP callers over HTTP until authentication says otherwise.
    pub http_role: crate::Role,
    /// The role of fleetpilot's own agent (in-process MCP).
    pub agent_role: crate::Role,
}

/// A failure the caller (often a model) should read and act on.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ToolError {
    /// Machine-readable: `invalid_argument`, `fleet_not_found`, `proposal_not_found`,
    /// `denied`, `needs_approval`, `rejected`, `expired`, `not_pending`, `frozen`,
    /// `forbidden`, `rate_limited`, `azure_error`, `state_error`.
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
    /// An error with a code and a message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
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
    limiter: crate::access::CallLimiter,
}

impl FleetService {
    /// Wire the service.
    pub fn new(api: Arc<dyn AzureApi>, store: Arc<Store>, config: ToolsConfig) -> Self {
        // Changes are stamped on the tools' clock: the guardrails read them back on it.
        let executor = Executor::with_config(api.clone(), store.clone(), config.executor).with_clock(config.clock.clone());
        // The call limit protects this process, on the machine's clock (the tools' clock may be
        // an emulator's, paused or many times real time).
        let limiter = crate::access::CallLimiter::new(config.policies.calls_per_caller_per_minute, Clock::system());
        Self { api, store, executor, config, limiter }
    }

    /// The configuration.
    pub fn config(&self) -> &ToolsConfig {
        &self.config
    }

    /// Admit a call: the caller's role must be enough for the tool, and the caller within its rate.
    ///
    /// # Errors
    /// `forbidden` or `rate_limited`.
    pub fn admit(&self, caller: &crate::Caller, tool: &str) -> Result<(), ToolError> {
        let needed = crate::access::required_role(tool);
        if caller.role < needed {
            return Err(ToolError::new(
                "forbidden",
                format!("{tool} needs the {} role; {} has {}", needed.as_str(), caller.id, caller.role.as_str()),
            ));
        }
        self.limiter.admit(&caller.id)
    }

    /// Write the audit record of one call (failures to write are logged, not returned: the
    /// call has happened).
    pub fn audit_call(
        &self,
        caller: &crate::Caller,
        tool: &str,
        arguments: &serde_json::Value,
        result: &Result<serde_json::Value, ToolError>,
    ) {
        let proposal = match result {
            Ok(v) => v.get("proposal").or(Some(v)).filter(|p| p.get("verdict").is_some()).cloned(),
            Err(e) => e.proposal.as_ref().and_then(|p| serde_json::to_value(p).ok()),
        };
        let verdict = proposal.as_ref().and_then(|p| p["verdict"]["decision"].as_str().map(str::to_string));
        let m = crate::metrics::metrics();
        m.call(tool, result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok"));
        if let Some(decision) = &verdict
            && tool == "propose_scale"
        {
            m.verdict(decision);
        }
        if let (Ok(v), Some(p)) = (result, &proposal)
            && matches!(tool, "apply_proposal" | "approve_proposal")
            && v["result"] == "applied"
        {
            for action in p["plan"]["actions"].as_array().into_iter().flatten().filter(|_| p["outcome"].is_object()) {
                m.action(action["kind"].as_str().unwrap_or("unknown"));
            }
        }
        let fleet = proposal
            .as_ref()
            .and_then(|p| p["fleet"]["name"].as_str().map(str::to_string))
            .or_else(|| arguments["fleet"].as_str().filter(|f| !f.is_empty()).map(str::to_string));
        let (code, detail) = match result {
            Ok(v) => (
                "ok".to_string(),
                proposal
                    .as_ref()
                    .and_then(|p| p["id"].as_str())
                    .map(|id| format!("proposal {id}"))
                    .or_else(|| v["name"].as_str().map(|n| format!("job {n}")))
                    .unwrap_or_default(),
            ),
            Err(e) => (e.code.clone(), e.message.chars().take(500).collect()),
        };
        let record = fleetpilot_infra::AuditRecord {
            seq: 0,
            at: self.config.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            caller: caller.id.clone(),
            role: caller.role.as_str().into(),
            tool: tool.into(),
            fleet,
            arguments: crate::access::redact(arguments),
            verdict,
            result: code,
            detail,
        };
        if let Err(e) = self.store.audit(&record) {
            tracing::error!(error = %e, tool, "cannot write the audit record");
        }
    }

    /// The store (for the audit and the CLI's views).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Settle changes a crash interrupted; run once before serving.
    ///
    /// # Errors
    /// Journal or Azure failures (the entries stay for the next start).
    pub async fn recover(&self) -> Result<Vec<fleetpilot_infra::Recovered>, ExecuteError> {
        let recovered = self.executor.recover().await?;
        for r in &recovered {
            if let Ok(Some(mut p)) = self.store.proposal(&r.proposal_id) {
                p.status = if r.result == "finished" { ProposalStatus::Applied } else { ProposalStatus::Failed };
                p.outcome = Some(r.outcome.clone());
                self.store.save_proposal(&p)?;
            }
        }
        Ok(recovered)
    }

    /// The policy of a fleet now: configuration, plus the freeze switch in the state database.
    fn policy_for(&self, fleet: &str) -> Result<Policy, ToolError> {
        let mut policy = self.config.policies.for_fleet(fleet);
        policy.frozen |= self.frozen_now()?;
        Ok(policy)
    }

    /// Whether every fleet is frozen now: by configuration or by the switch in the database.
    fn frozen_now(&self) -> Result<bool, ToolError> {
        Ok(self.config.policies.globally_frozen() || self.store.frozen().map_err(ToolError::state)?.is_some_and(|(on, _, _)| on))
    }

    /// Whether every mutation is refused right now.
    fn ensure_not_frozen(&self) -> Result<(), ToolError> {
        if self.frozen_now()? {
            return Err(ToolError::new(
                "frozen",
                "fleetpilot is frozen: every change is refused until an operator lifts the freeze",
            ));
        }
        Ok(())
    }

    /// The history and telemetry the guardrails judge a change of `fleet` by.
    async fn gather(&self, fleet: &FleetRef, policy: &Policy, exclude: Option<&str>) -> Result<Gathered, ToolError> {
        let now = self.config.clock.now();
        let span = 3600.max(policy.stabilization_secs).max(policy.cooldown_secs) + policy.approval_ttl_secs;
        let history = self
            .store
            .fleet_proposals_since(&fleet.name, now - time::Duration::seconds(span as i64))
            .map_err(ToolError::state)?;
        let mut changes = Vec::new();
        let mut recommendations = Vec::new();
        for p in history.iter().filter(|p| p.fleet.resource_group.eq_ignore_ascii_case(&fleet.resource_group)) {
            let from = p.observed_spot_capacity + p.observed_regular_capacity;
            let to = p.target.spot_capacity.unwrap_or(p.observed_spot_capacity)
                + p.target.regular_capacity.unwrap_or(p.observed_regular_capacity);
            if let Some(o) = &p.outcome
                && o.error.is_none()
                && !o.performed.is_empty()
            {
                changes.push(Change { at: o.finished_at, from_total: from, to_total: o.spot_capacity + o.regular_capacity });
            }
            let counts = !matches!(p.status, ProposalStatus::Denied | ProposalStatus::Rejected | ProposalStatus::Expired);
            if counts && Some(p.id.as_str()) != exclude {
                recommendations.push(Recommendation { at: p.created_at, total: to });
            }
        }
        let (telemetry, spent_today_usd) = self.fleet_telemetry(fleet).await;
        Ok(Gathered { now, changes, recommendations, telemetry, spent_today_usd })
    }

    /// The fleet's newest telemetry (age, CPU) and today's spend, from Log Analytics; `None`
    /// when it cannot be read (which refuses scale-in, and counts the whole day at the
    /// target's rate).
    async fn fleet_telemetry(&self, fleet: &FleetRef) -> (Option<Telemetry>, Option<f64>) {
        let workspace = &self.config.default_workspace;
        let id = self.api.fleet_id(fleet);
        if workspace.is_empty() {
            return (None, None);
        }
        let query = format!(
            "AzureMetrics
| where TimeGenerated > ago(1d) and ResourceId =~ {}
| summarize newest = max(TimeGenerated),
    spent = sumif(Average, MetricName == 'TotalCost' and TimeGenerated >= startofday(now())),
    costs = countif(MetricName == 'TotalCost'),
    cpu = avgif(Average, MetricName == 'Percentage CPU' and TimeGenerated > ago(15m))
| extend age_s = (now() - newest) / 1s
| project age_s, spent, costs, cpu",
            serde_json::Value::String(id)
        );
        let result = match self.api.query_logs(workspace, &query, Some("P1D")).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, fleet = %fleet, "cannot read the fleet's telemetry; scale-in will be refused");
                return (None, None);
            }
        };
        let Some(row) = result.tables.first().and_then(|t| t.rows.first()) else { return (None, None) };
        let num = |i: usize| row.get(i).and_then(serde_json::Value::as_f64).filter(|x| x.is_finite());
        let telemetry = num(0).map(|age_secs| Telemetry { age_secs: age_secs.max(0.0), utilization_percent: num(3) });
        let spent = if num(2).unwrap_or(0.0) > 0.0 { num(1) } else { None };
        (telemetry, spent)
    }

    fn expire_if_stale(&self, proposal: &mut Proposal, policy: &Policy) -> Result<(), ToolError> {
        expire_if_stale(&self.store, proposal, policy, self.config.clock.now())
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
        Ok(PolicyView { policy: self.policy_for(&fleet.name)?, fleet: fleet.name })
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
        let policy = self.policy_for(&fleet.name)?;
        let gathered = self.gather(&observed.fleet, &policy, None).await?;
        let verdict = check(&target, &observed, &policy, &gathered.context(&self.config.prices));
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
            created_at: self.config.clock.now(),
            observed_spot_capacity: observed.spot.capacity,
            observed_regular_capacity: observed.regular.capacity,
            plan: plan(&observed, &target),
            cost: Some(fleetpilot_core::cost::estimate(&observed, &target, &self.config.prices)),
            target,
            verdict,
            status,
            outcome: None,
            review: None,
        };
        self.store.save_proposal(&proposal).map_err(ToolError::state)?;
        tracing::info!(proposal.id = %proposal.id, fleet = %proposal.fleet, decision = ?proposal.verdict.decision, requested_by, "proposal recorded");
        if proposal.status == ProposalStatus::Denied {
            return Err(refusal("denied", &proposal, &proposal.verdict.violations));
        }
        Ok(proposal)
    }

    fn load_proposal(&self, id: &str) -> Result<Proposal, ToolError> {
        self.store.proposal(id.trim()).map_err(ToolError::state)?.ok_or_else(|| {
            ToolError::new("proposal_not_found", format!("no proposal '{}'; list_proposals shows them", id.trim()))
        })
    }

    /// `apply_proposal`: carry out an allowed (or approved) proposal; re-reads and re-checks first.
    ///
    /// # Errors
    /// Unknown proposal, a denial now or before, a pending approval, a rejection or expiry,
    /// Azure failures.
    pub async fn apply_proposal(&self, input: ApplyProposalInput) -> Result<ApplyResult, ToolError> {
        let mut proposal = self.load_proposal(&input.proposal_id)?;
        // The approval TTL (the freeze is checked where it matters, in `execute`).
        let policy = self.config.policies.for_fleet(&proposal.fleet.name);
        self.expire_if_stale(&mut proposal, &policy)?;
        let approved = proposal.status == ProposalStatus::Approved;
        self.execute(proposal, approved).await
    }

    /// `approve_proposal`: a human (approver role; checked by the caller) approves a proposal
    /// waiting for approval; it is then applied at once, re-checked against the state now.
    ///
    /// # Errors
    /// Unknown proposal, one not waiting for approval (or expired), a denial now, Azure failures.
    pub async fn approve_proposal(&self, input: ApproveProposalInput, reviewer: &str) -> Result<ApplyResult, ToolError> {
        let now = self.config.clock.now();
        let proposal = record_review(&self.store, &self.config.policies, now, &input.proposal_id, reviewer, true, &input.note)?;
        self.execute(proposal, true).await
    }

    /// `reject_proposal`: a human rejects a proposal that is not applied; it never will be.
    ///
    /// # Errors
    /// Unknown proposal, one already applied, denied or decided.
    pub fn reject_proposal(&self, input: RejectProposalInput, reviewer: &str) -> Result<Proposal, ToolError> {
        let now = self.config.clock.now();
        record_review(&self.store, &self.config.policies, now, &input.proposal_id, reviewer, false, &input.note)
    }

    /// Apply proposals a human approved outside a tool call (`fleetpilot proposals approve`);
    /// the server runs this every few seconds. Returns how many it applied.
    pub async fn apply_approved(&self) -> usize {
        let Ok(approved) = self.store.proposals(None, Some(ProposalStatus::Approved), 50) else { return 0 };
        let mut applied = 0;
        for proposal in approved.into_iter().rev() {
            let id = proposal.id.clone();
            match self.execute(proposal, true).await {
                Ok(_) => applied += 1,
                Err(e) => {
                    tracing::warn!(proposal.id = %id, code = %e.code, message = %e.message, "approved proposal not applied")
                }
            }
        }
        applied
    }

    async fn execute(&self, mut proposal: Proposal, approved: bool) -> Result<ApplyResult, ToolError> {
        match proposal.status {
            ProposalStatus::Denied => {
                return Err(refusal("denied", &proposal, &proposal.verdict.violations));
            }
            ProposalStatus::Applied => {
                return Ok(ApplyResult { result: "already_applied".into(), proposal });
            }
            ProposalStatus::Rejected | ProposalStatus::Expired => {
                let code = proposal.status.as_str();
                return Err(ToolError {
                    proposal: Some(Box::new(proposal.clone())),
                    ..ToolError::new(code, format!("proposal {} was {code}; it will not be applied — propose again", proposal.id))
                });
            }
            _ => {}
        }
        let policy = self.policy_for(&proposal.fleet.name)?;
        // History and telemetry are read before the executor reads the fleet; the check itself
        // runs on the state read just before acting.
        let gathered = self.gather(&proposal.fleet, &policy, Some(&proposal.id)).await?;
        let prices = self.config.prices.clone();
        let target = proposal.target.clone();
        let recheck = move |observed: &FleetState| check(&target, observed, &policy, &gathered.context(&prices));
        let applied = self.executor.apply(&proposal, approved, &recheck).await;
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
                    Decision::NeedsApproval if proposal.status != ProposalStatus::Approved => ProposalStatus::NeedsApproval,
                    Decision::NeedsApproval => ProposalStatus::Approved,
                    _ => ProposalStatus::Denied,
                };
                proposal.verdict = verdict;
                self.store.save_proposal(&proposal).map_err(ToolError::state)?;
                let code = if proposal.status == ProposalStatus::Denied { "denied" } else { "needs_approval" };
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
                AzureError::Api { status: 404, .. } => ToolError::new(
                    "workspace_not_found",
                    format!("no Log Analytics workspace '{workspace}'; leave 'workspace' empty for the configured one"),
                ),
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
        self.ensure_not_frozen()?;
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
        check_job_name(&input.name)?;
        self.api.get_ml_job(&self.config.ml_workspace, input.name.trim()).await.map_err(|e| job_error(&input.name, e))
    }

    /// `cancel_ml_job`: ask the job to stop; releases its nodes.
    ///
    /// # Errors
    /// Unknown job, Azure failures.
    pub async fn cancel_job(&self, input: crate::schema::MlJobNameInput) -> Result<fleetpilot_core::ml::MlJob, ToolError> {
        check_job_name(&input.name)?;
        self.ensure_not_frozen()?;
        match self.executor.cancel_job(&self.config.ml_workspace, input.name.trim()).await {
            Ok(job) => Ok(job),
            Err(ExecuteError::Azure(e)) => Err(job_error(&input.name, e)),
            Err(ExecuteError::Store(e)) => Err(ToolError::state(e)),
            Err(ExecuteError::Refused(_)) => Err(ToolError::new("denied", "cancel was refused")),
        }
    }

    /// `forecast_demand`: a fleet metric's history from Log Analytics, forecast with intervals.
    ///
    /// # Errors
    /// Bad input, a query failure.
    pub async fn forecast_demand(
        &self,
        input: crate::schema::ForecastDemandInput,
    ) -> Result<crate::schema::ForecastDemandResult, ToolError> {
        let fleet = self.fleet_ref(&input.resource_group, &input.fleet)?;
        let metric = input.metric.trim().to_string();
        if metric.is_empty() || !metric.chars().all(|c| c.is_ascii_alphanumeric() || " _-.%/".contains(c)) {
            return Err(ToolError::new(
                "invalid_argument",
                "'metric' must be a metric name (letters, digits, spaces, _ - . % /)",
            ));
        }
        if !(1..=60).contains(&input.step_minutes) {
            return Err(ToolError::new("invalid_argument", "'step_minutes' must be between 1 and 60"));
        }
        if !(1..=1440).contains(&input.horizon_minutes) {
            return Err(ToolError::new("invalid_argument", "'horizon_minutes' must be between 1 and 1440"));
        }
        if !(0.5..=0.99).contains(&input.level) {
            return Err(ToolError::new("invalid_argument", "'level' must be between 0.5 and 0.99"));
        }
        let history = input.history.trim();
        let valid_history =
            history.starts_with('P') && history.len() <= 12 && history[1..].chars().all(|c| c.is_ascii_alphanumeric());
        if !valid_history {
            return Err(ToolError::new("invalid_argument", "'history' must be an ISO 8601 duration such as P7D or PT12H"));
        }
        let workspace = &self.config.default_workspace;
        if workspace.is_empty() {
            return Err(ToolError::new("invalid_argument", "no Log Analytics workspace is configured"));
        }
        let query = format!(
            "AzureMetrics | where ResourceId =~ {} and MetricName == {} | summarize value = avg(Average) by t = bin(TimeGenerated, {}m) | order by t asc",
            serde_json::Value::String(self.api.fleet_id(&fleet)),
            serde_json::Value::String(metric.clone()),
            input.step_minutes
        );
        let result = self.api.query_logs(workspace, &query, Some(history)).await.map_err(|e| match &e {
            AzureError::Api { status: 400, message, .. } => ToolError::new("invalid_argument", message.clone()),
            _ => ToolError::azure(None, e),
        })?;
        let rows = result.tables.first().map(|t| t.rows.clone()).unwrap_or_default();
        // An evenly spaced series: missing steps are gaps the forecaster carries over.
        let step_secs = i64::from(input.step_minutes) * 60;
        let parse = |v: &serde_json::Value| {
            v.as_str().and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        };
        let points: Vec<(OffsetDateTime, f64)> =
            rows.iter().filter_map(|r| Some((parse(r.first()?)?, r.get(1)?.as_f64().unwrap_or(f64::NAN)))).collect();
        let mut series = Vec::new();
        if let (Some(first), Some(last)) = (points.first(), points.last()) {
            let steps = ((last.0 - first.0).whole_seconds() / step_secs) as usize + 1;
            series = vec![f64::NAN; steps.min(100_000)];
            for (t, v) in &points {
                let i = ((*t - first.0).whole_seconds() / step_secs) as usize;
                if let Some(slot) = series.get_mut(i) {
                    *slot = *v;
                }
            }
        }
        let horizon = input.horizon_minutes.div_ceil(input.step_minutes) as usize;
        let forecast = fleetpilot_policy::forecast(&series, input.step_minutes, horizon, input.level);
        Ok(crate::schema::ForecastDemandResult {
            fleet: fleet.name,
            metric,
            last_observed_at: points.last().and_then(|(t, _)| t.format(&time::format_description::well_known::Rfc3339).ok()),
            last_value: points.last().map(|(_, v)| *v).filter(|v| v.is_finite()),
            forecast,
        })
    }

    /// `list_runs`.
    ///
    /// # Errors
    /// Store failures.
    pub fn list_runs(&self, input: crate::schema::ListRunsInput) -> Result<crate::schema::RunList, ToolError> {
        let fleet = input.fleet.trim();
        let runs = self.store.runs((!fleet.is_empty()).then_some(fleet), input.limit.clamp(1, 200)).map_err(ToolError::state)?;
        Ok(crate::schema::RunList { runs })
    }

    /// `get_run`.
    ///
    /// # Errors
    /// Unknown run, store failures.
    pub fn get_run(&self, input: crate::schema::GetRunInput) -> Result<fleetpilot_infra::RunRecord, ToolError> {
        let mut run =
            self.store.run(input.run_id.trim()).map_err(ToolError::state)?.ok_or_else(|| {
                ToolError::new("run_not_found", format!("no run '{}'; list_runs shows them", input.run_id.trim()))
            })?;
        if !input.include_transcript {
            run.transcript.clear();
        }
        Ok(run)
    }

    /// `list_proposals`.
    ///
    /// # Errors
    /// An unknown status, store failures.
    pub fn list_proposals(&self, input: ListProposalsInput) -> Result<ProposalList, ToolError> {
        let status = match input.status.trim() {
            "" => None,
            s => Some(ProposalStatus::parse(s).ok_or_else(|| {
                let names: Vec<&str> = ProposalStatus::ALL.iter().map(|s| s.as_str()).collect();
                ToolError::new("invalid_argument", format!("unknown status '{s}'; use one of {}", names.join(", ")))
            })?),
        };
        let fleet = input.fleet.trim();
        let mut proposals = self
            .store
            .proposals((!fleet.is_empty()).then_some(fleet), status, input.limit.clamp(1, 500))
            .map_err(ToolError::state)?;
        for p in &mut proposals {
            // Only the approval TTL matters here: the configured policy, no database read per row.
            let policy = self.config.policies.for_fleet(&p.fleet.name);
            self.expire_if_stale(p, &policy)?;
        }
        proposals.retain(|p| status.is_none_or(|s| p.status == s));
        Ok(ProposalList { proposals })
    }
}

/// An Azure ML job name: 1–255 letters, digits, `-` and `_` (what fits in its ARM path).
fn check_job_name(name: &str) -> Result<(), ToolError> {
    let name = name.trim();
    let ok = !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(ToolError::new("invalid_argument", "a job name is 1 to 255 letters, digits, '-' and '_'")) }
}

fn job_error(name: &str, e: AzureError) -> ToolError {
    match e {
        AzureError::Api { status: 404, .. } => ToolError::new("job_not_found", format!("no job named '{name}' in the workspace")),
        other => ToolError::azure(None, other),
    }
}

/// Mark a proposal that waited for approval past its policy's TTL as expired (and save it).
///
/// # Errors
/// Store failures.
pub fn expire_if_stale(store: &Store, proposal: &mut Proposal, policy: &Policy, now: OffsetDateTime) -> Result<(), ToolError> {
    let age = (now - proposal.created_at).whole_seconds();
    if proposal.status == ProposalStatus::NeedsApproval && age >= policy.approval_ttl_secs as i64 {
        proposal.status = ProposalStatus::Expired;
        store.save_proposal(proposal).map_err(ToolError::state)?;
        tracing::info!(proposal.id = %proposal.id, "approval window passed; proposal expired");
    }
    Ok(())
}

/// Record a human decision: approve a proposal waiting for approval (it becomes `approved`,
/// for the executor to apply after re-checking), or reject one not yet applied. Saved with
/// who and when. Used by the tools and by `fleetpilot proposals approve|reject`.
///
/// # Errors
/// Unknown proposal; one that cannot take the decision (applied, denied, expired, decided).
pub fn record_review(
    store: &Store,
    policies: &Policies,
    now: OffsetDateTime,
    id: &str,
    reviewer: &str,
    approve: bool,
    note: &str,
) -> Result<Proposal, ToolError> {
    let mut proposal = store
        .proposal(id.trim())
        .map_err(ToolError::state)?
        .ok_or_else(|| ToolError::new("proposal_not_found", format!("no proposal '{}'; list_proposals shows them", id.trim())))?;
    let policy = policies.for_fleet(&proposal.fleet.name);
    expire_if_stale(store, &mut proposal, &policy, now)?;
    let open = if approve {
        matches!(proposal.status, ProposalStatus::NeedsApproval)
    } else {
        matches!(proposal.status, ProposalStatus::NeedsApproval | ProposalStatus::Proposed | ProposalStatus::Approved)
    };
    if !open {
        let what = if approve { "approved" } else { "rejected" };
        return Err(ToolError {
            proposal: Some(Box::new(proposal.clone())),
            ..ToolError::new(
                "not_pending",
                format!("proposal {} is {}; only a pending proposal can be {what}", proposal.id, proposal.status.as_str()),
            )
        });
    }
    proposal.review = Some(Review { approved: approve, by: reviewer.to_string(), at: now, note: note.to_string() });
    proposal.status = if approve { ProposalStatus::Approved } else { ProposalStatus::Rejected };
    store.save_proposal(&proposal).map_err(ToolError::state)?;
    tracing::info!(proposal.id = %proposal.id, reviewer, approved = approve, "proposal reviewed");
    Ok(proposal)
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

/// History and telemetry gathered for one check.
struct Gathered {
    now: OffsetDateTime,
    changes: Vec<Change>,
    recommendations: Vec<Recommendation>,
    telemetry: Option<Telemetry>,
    spent_today_usd: Option<f64>,
}

impl Gathered {
    fn context<'a>(&'a self, prices: &'a PriceTable) -> Context<'a> {
        Context {
            now: self.now,
            prices,
            changes: &self.changes,
            recommendations: &self.recommendations,
            telemetry: self.telemetry,
            spent_today_usd: self.spent_today_usd,
        }
    }
}
