//! The deterministic executor: carries out an allowed proposal against Azure, idempotently,
//! journalling intent and outcome.
//!
//! It is a reconciler. It gets the desired state (the proposal's target) and reads the
//! observed state itself; it never sees the model's prose. It recomputes the plan from what
//! it observes, so it is safe to re-run after failing at any point: a step already done
//! plans to nothing the second time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fleetpilot_core::ml::{MlCompute, MlJob, MlJobSpec, WorkspaceRef};
use fleetpilot_core::{Action, Decision, FleetRef, FleetState, Outcome, Plan, Priority, Proposal, Verdict, plan};
use serde_json::json;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::{AzureApi, AzureError, Store, StoreError};

/// Why the executor did not carry a proposal out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The re-check against the state observed now did not allow the change.
    #[error("the guardrails' re-check did not allow the change ({:?})", .0.decision)]
    Refused(Verdict),
    /// Azure failed (after retries, for transient errors).
    #[error("azure call failed")]
    Azure(#[from] AzureError),
    /// The journal could not be written: nothing was done after the failure.
    #[error("journal write failed")]
    Store(#[from] StoreError),
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The plan was carried out now.
    Done(Outcome, Plan),
    /// The proposal had been applied before; nothing was done.
    AlreadyApplied(Outcome),
    /// Dry-run: the plan was computed and journalled, nothing changed.
    DryRun(Plan),
}

/// How the executor waits for Azure after acting.
#[derive(Debug, Clone, Copy)]
pub struct ExecutorConfig {
    /// How long to wait for the fleet to match the target before declaring the change
    /// unverified (and proposing its inverse).
    pub verify_timeout: std::time::Duration,
    /// How often to re-read the fleet while waiting.
    pub verify_poll: std::time::Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self { verify_timeout: std::time::Duration::from_secs(60), verify_poll: std::time::Duration::from_millis(500) }
    }
}

/// What start-up reconciliation did with one unfinished journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The proposal.
    pub proposal_id: String,
    /// `finished` (the fleet already matched, or only deletions were left and are now done)
    /// or `failed` (the change had not reached Azure; it is not retried).
    pub result: &'static str,
    /// The outcome journalled.
    pub outcome: Outcome,
}

/// The executor. One change at a time per fleet.
#[derive(Debug)]
pub struct Executor {
    api: Arc<dyn AzureApi>,
    store: Arc<Store>,
    config: ExecutorConfig,
    clock: crate::Clock,
    locks: Mutex<HashMap<FleetRef, Arc<tokio::sync::Mutex<()>>>>,
}

/// The parts of a fleet's state the journal keeps before and after a change.
fn snapshot(state: &FleetState) -> serde_json::Value {
    json!({
        "spot_capacity": state.spot.capacity,
        "regular_capacity": state.regular.capacity,
        "vm_sizes": state.vm_sizes,
        "spot": { "creating": state.spot.creating, "running": state.spot.running, "deallocated": state.spot.deallocated },
        "regular": { "creating": state.regular.creating, "running": state.regular.running },
        "provisioning_state": state.provisioning_state,
        "observed_at": state.observed_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })
}

fn done_outcome(after: &FleetState, verified: bool, performed: Vec<String>, now: OffsetDateTime) -> Outcome {
    Outcome {
        verified,
        performed,
        spot_capacity: after.spot.capacity,
        regular_capacity: after.regular.capacity,
        error: None,
        error_class: None,
        finished_at: now,
    }
}

fn failed_outcome(observed: &FleetState, error: String, class: &str, now: OffsetDateTime) -> Outcome {
    Outcome {
        verified: false,
        performed: Vec::new(),
        spot_capacity: observed.spot.capacity,
        regular_capacity: observed.regular.capacity,
        error: Some(error),
        error_class: Some(class.to_string()),
        finished_at: now,
    }
}

impl Executor {
    /// An executor over an Azure API and a journal.
    pub fn new(api: Arc<dyn AzureApi>, store: Arc<Store>) -> Self {
        Self::with_config(api, store, ExecutorConfig::default())
    }

    /// An executor with explicit verification timing.
    pub fn with_config(api: Arc<dyn AzureApi>, store: Arc<Store>, config: ExecutorConfig) -> Self {
        Self { api, store, config, clock: crate::Clock::system(), locks: Mutex::new(HashMap::new()) }
    }

    /// The clock outcomes and the proposals the executor files are stamped with (the system's
    /// by default): the one the guardrails check cooldowns and rates on.
    pub fn with_clock(mut self, clock: crate::Clock) -> Self {
        self.clock = clock;
        self
    }

    fn lock_for(&self, fleet: &FleetRef) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(fleet.clone()).or_default().clone()
    }

    /// Carry out `proposal`: re-read the fleet, re-check with `recheck` (the guardrails),
    /// plan from the observed state, act, verify, journal.
    ///
    /// `approved` says a human approved a `needs_approval` verdict.
    ///
    /// # Guarantees
    /// - Re-running a proposal whose outcome is journalled does nothing and returns it.
    /// - Nothing is changed unless `recheck` allows it on the state read just before acting.
    /// - Capacity is lowered before surplus VMs are deleted, so the fleet does not replace them.
    /// - Intent (with the state before) is journalled before the first change, each step as it
    ///   is done, the outcome (with the state after) after the last.
    /// - When the fleet does not match the target within the verification deadline, the
    ///   inverse change is recorded as a proposal, ready to apply; nothing is guessed.
    ///
    /// # Errors
    /// [`ExecuteError::Refused`] when the re-check does not allow the change; Azure and
    /// journal failures otherwise (a failed outcome, classified, is journalled when possible).
    pub async fn apply(
        &self,
        proposal: &Proposal,
        approved: bool,
        recheck: &(dyn Fn(&FleetState) -> Verdict + Send + Sync),
    ) -> Result<Applied, ExecuteError> {
        let span = tracing::info_span!("executor.apply", proposal.id = %proposal.id, fleet = %proposal.fleet);
        self.apply_locked(proposal, approved, recheck).instrument(span).await
    }

    async fn apply_locked(
        &self,
        proposal: &Proposal,
        approved: bool,
        recheck: &(dyn Fn(&FleetState) -> Verdict + Send + Sync),
    ) -> Result<Applied, ExecuteError> {
        let lock = self.lock_for(&proposal.fleet);
        let _guard = lock.lock().await;
        if let Some(outcome) = self.store.outcome_of(&proposal.id)? {
            if outcome.error.is_none() {
                tracing::info!("already applied; nothing to do");
                return Ok(Applied::AlreadyApplied(outcome));
            }
        } else if self.store.has_intent(&proposal.id)? {
            // An intent without an outcome: a crash interrupted it, and start-up recovery has
            // not settled it yet. Never act on it twice.
            return Err(ExecuteError::Store(StoreError::Unfinished(proposal.id.clone())));
        }
        let observed = self.api.read_fleet(&proposal.fleet).await?;
        let verdict = recheck(&observed);
        let allowed = match verdict.decision {
            Decision::Allow => true,
            Decision::NeedsApproval => approved,
            Decision::Deny => false,
        };
        if !allowed {
            self.store.journal(&proposal.id, "refused", &json!(verdict))?;
            return Err(ExecuteError::Refused(verdict));
        }
        let plan = plan(&observed, &proposal.target);
        if verdict.dry_run {
            self.store.journal(&proposal.id, "dry_run", &json!(plan))?;
            return Ok(Applied::DryRun(plan));
        }
        self.store.journal(
            &proposal.id,
            "intent",
            &json!({ "fleet": proposal.fleet, "target": proposal.target, "plan": plan, "before": snapshot(&observed) }),
        )?;
        let started = std::time::Instant::now();
        match self.carry_out(proposal, &plan).await {
            Ok(performed) => {
                let (after, verified) = self.wait_verified(proposal, &plan).await?;
                let outcome = done_outcome(&after, verified, performed, self.clock.now());
                let mut body = json!(outcome);
                body["after"] = snapshot(&after);
                body["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
                if !verified {
                    let inverse = self.propose_inverse(proposal, &observed, &after)?;
                    body["inverse_proposal"] = json!(inverse);
                }
                self.store.journal(&proposal.id, "outcome", &body)?;
                tracing::info!(verified, "applied");
                Ok(Applied::Done(outcome, plan))
            }
            Err(ExecuteError::Azure(error)) => {
                let class = if error.is_transient() { "transient" } else { "permanent" };
                let outcome = failed_outcome(&observed, format!("{error:#}"), class, self.clock.now());
                self.store.journal(&proposal.id, "outcome", &json!(outcome))?;
                tracing::warn!(error = %error, class, "apply failed");
                Err(ExecuteError::Azure(error))
            }
            Err(other) => Err(other),
        }
    }

    /// Re-read the fleet until it matches the target or the deadline passes.
    async fn wait_verified(&self, proposal: &Proposal, plan: &Plan) -> Result<(FleetState, bool), ExecuteError> {
        let deadline = std::time::Instant::now() + self.config.verify_timeout;
        loop {
            let after = self.api.read_fleet(&proposal.fleet).await?;
            if verify(&after, proposal, plan) {
                return Ok((after, true));
            }
            if std::time::Instant::now() + self.config.verify_poll > deadline {
                tracing::warn!(timeout = ?self.config.verify_timeout, "the fleet did not reach the target in time");
                return Ok((after, false));
            }
            tokio::time::sleep(self.config.verify_poll).await;
        }
    }

    /// Record the change back to the capacities observed before `proposal`, ready to apply.
    fn propose_inverse(&self, proposal: &Proposal, before: &FleetState, after: &FleetState) -> Result<String, ExecuteError> {
        let target = fleetpilot_core::ScaleTarget {
            spot_capacity: Some(before.spot.capacity),
            regular_capacity: Some(before.regular.capacity),
            vm_sizes: (before.vm_sizes != after.vm_sizes).then(|| before.vm_sizes.clone()),
        };
        let inverse = Proposal {
            id: format!("{}-inverse", proposal.id),
            fleet: proposal.fleet.clone(),
            requested_by: "executor".into(),
            reason: format!(
                "{} was not verified within {:?} (spot {}/{}, regular {}/{} after); this restores the capacities observed before it. Review, then apply or reject.",
                proposal.id,
                self.config.verify_timeout,
                after.spot.capacity,
                proposal.target.spot_capacity.unwrap_or(after.spot.capacity),
                after.regular.capacity,
                proposal.target.regular_capacity.unwrap_or(after.regular.capacity),
            ),
            created_at: self.clock.now(),
            observed_spot_capacity: after.spot.capacity,
            observed_regular_capacity: after.regular.capacity,
            plan: plan(after, &target),
            target,
            verdict: Verdict::from_violations(Vec::new(), false),
            cost: None,
            status: fleetpilot_core::ProposalStatus::Proposed,
            outcome: None,
            review: None,
        };
        self.store.save_proposal(&inverse)?;
        Ok(inverse.id)
    }

    /// Settle every journal entry a crash left unfinished (an intent with no outcome): if the
    /// fleet already carries the target, finish it (deleting what surplus idle VMs remain);
    /// otherwise the change never reached Azure, and it is marked failed — never retried, since
    /// the state it was checked against is gone. Run once at start-up, before serving.
    ///
    /// # Errors
    /// Journal failures; an Azure failure leaves the entry for the next start.
    pub async fn recover(&self) -> Result<Vec<Recovered>, ExecuteError> {
        let mut done = Vec::new();
        for (proposal_id, intent) in self.store.unfinished()? {
            let Ok(fleet) = serde_json::from_value::<FleetRef>(intent["fleet"].clone()) else {
                continue;
            };
            let target: fleetpilot_core::ScaleTarget = serde_json::from_value(intent["target"].clone()).unwrap_or_default();
            let proposal = match self.store.proposal(&proposal_id)? {
                Some(p) => p,
                None => continue,
            };
            let observed = self.api.read_fleet(&fleet).await?;
            let reached = target.is_met_by(&observed);
            let (result, outcome, after) = if reached {
                // The capacity change landed; only deletions of idle surplus may be left.
                let rest = plan(&observed, &target);
                let performed = self.carry_out(&proposal, &rest).await?;
                let after = self.api.read_fleet(&fleet).await?;
                let outcome = done_outcome(&after, verify(&after, &proposal, &rest), performed, self.clock.now());
                ("finished", outcome, after)
            } else {
                let outcome = failed_outcome(
                    &observed,
                    "interrupted by a restart before the change reached Azure; not retried automatically (the state it was checked against is gone): apply again to re-check, or propose anew".into(),
                    "permanent",
                    self.clock.now(),
                );
                ("failed", outcome, observed)
            };
            let mut body = json!(outcome);
            body["recovered"] = json!(true);
            body["after"] = snapshot(&after);
            self.store.journal(&proposal_id, "outcome", &body)?;
            tracing::warn!(proposal.id = %proposal_id, result, "recovered an unfinished change");
            done.push(Recovered { proposal_id, result, outcome });
        }
        Ok(done)
    }

    /// Submit an ML job: read the compute and the active jobs, ask `recheck` (the job
    /// guardrails), then submit. Journalled under the job's name.
    ///
    /// # Errors
    /// [`ExecuteError::Refused`] when the check denies; Azure and journal failures.
    pub async fn submit_job(
        &self,
        ws: &WorkspaceRef,
        spec: &MlJobSpec,
        recheck: &(dyn Fn(&MlCompute, &[MlJob]) -> Verdict + Send + Sync),
    ) -> Result<MlJob, ExecuteError> {
        let compute = self.api.get_ml_compute(ws, &spec.compute).await?;
        let jobs = self.api.list_ml_jobs(ws).await?;
        let verdict = recheck(&compute, &jobs);
        if verdict.decision != Decision::Allow {
            self.store.journal(&spec.name, "refused", &json!(verdict))?;
            return Err(ExecuteError::Refused(verdict));
        }
        self.store.journal(&spec.name, "intent", &json!({ "submit_job": spec }))?;
        let job = self.api.submit_ml_job(ws, spec).await?;
        self.store.journal(&spec.name, "outcome", &json!({ "job": job }))?;
        Ok(job)
    }

    /// Cancel an ML job (always allowed: it only releases capacity). Journalled.
    ///
    /// # Errors
    /// Azure and journal failures.
    pub async fn cancel_job(&self, ws: &WorkspaceRef, name: &str) -> Result<MlJob, ExecuteError> {
        self.store.journal(name, "intent", &json!({ "cancel_job": name }))?;
        self.api.cancel_ml_job(ws, name).await?;
        let job = self.api.get_ml_job(ws, name).await?;
        self.store.journal(name, "outcome", &json!({ "job": job }))?;
        Ok(job)
    }

    async fn carry_out(&self, proposal: &Proposal, plan: &Plan) -> Result<Vec<String>, ExecuteError> {
        let mut performed = Vec::new();
        let (mut spot, mut regular, mut sizes) = (None, None, None);
        for action in &plan.actions {
            match action {
                Action::SetCapacity { priority: Priority::Spot, to, .. } => spot = Some(*to),
                Action::SetCapacity { priority: Priority::Regular, to, .. } => regular = Some(*to),
                Action::SetVmSizes { to, .. } => sizes = Some(to.clone()),
                Action::DeleteVms { .. } => {}
            }
        }
        if spot.is_some() || regular.is_some() || sizes.is_some() {
            self.api.update_fleet(&proposal.fleet, spot, regular, sizes.as_deref()).await?;
            let mut parts = Vec::new();
            if let Some(to) = spot {
                parts.push(format!("spot capacity {to}"));
            }
            if let Some(to) = regular {
                parts.push(format!("regular capacity {to}"));
            }
            if let Some(to) = &sizes {
                parts.push(format!("VM sizes {}", to.join(", ")));
            }
            let step = format!("set {}", parts.join(", "));
            self.store.journal(&proposal.id, "step", &json!(step))?;
            performed.push(step);
        }
        for action in &plan.actions {
            if let Action::DeleteVms { priority, vm_ids } = action {
                self.api.delete_vms(vm_ids).await?;
                let step = format!("deleted {} {priority} VMs", vm_ids.len());
                self.store.journal(&proposal.id, "step", &json!({ "step": step, "vm_ids": vm_ids }))?;
                performed.push(step);
            }
        }
        Ok(performed)
    }
}

/// The state after matches the target: capacities set, no surplus beyond busy VMs kept.
fn verify(after: &FleetState, proposal: &Proposal, plan: &Plan) -> bool {
    let tier_ok = |priority: Priority, wanted: Option<u32>| match wanted {
        None => true,
        Some(to) => {
            let tier = after.tier(priority);
            tier.capacity == to && tier.counted() <= to + plan.busy_kept
        }
    };
    let sizes_ok = proposal.target.sizes_match(&after.vm_sizes);
    tier_ok(Priority::Spot, proposal.target.spot_capacity)
        && tier_ok(Priority::Regular, proposal.target.regular_capacity)
        && sizes_ok
}
