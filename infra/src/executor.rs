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

/// The executor. One change at a time per fleet.
#[derive(Debug)]
pub struct Executor {
    api: Arc<dyn AzureApi>,
    store: Arc<Store>,
    locks: Mutex<HashMap<FleetRef, Arc<tokio::sync::Mutex<()>>>>,
}

impl Executor {
    /// An executor over an Azure API and a journal.
    pub fn new(api: Arc<dyn AzureApi>, store: Arc<Store>) -> Self {
        Self { api, store, locks: Mutex::new(HashMap::new()) }
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
    /// - Intent is journalled before the first change, the outcome after the last.
    ///
    /// # Errors
    /// [`ExecuteError::Refused`] when the re-check does not allow the change; Azure and
    /// journal failures otherwise (a failed outcome is journalled when possible).
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
        if let Some(outcome) = self.store.outcome_of(&proposal.id)?
            && outcome.error.is_none()
        {
            tracing::info!("already applied; nothing to do");
            return Ok(Applied::AlreadyApplied(outcome));
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
            &json!({ "plan": plan, "observed_spot": observed.spot.capacity, "observed_regular": observed.regular.capacity }),
        )?;
        match self.carry_out(proposal, &plan).await {
            Ok(performed) => {
                let after = self.api.read_fleet(&proposal.fleet).await?;
                let outcome = Outcome {
                    verified: verify(&after, proposal, &plan),
                    performed,
                    spot_capacity: after.spot.capacity,
                    regular_capacity: after.regular.capacity,
                    error: None,
                    finished_at: OffsetDateTime::now_utc(),
                };
                self.store.journal(&proposal.id, "outcome", &json!(outcome))?;
                tracing::info!(verified = outcome.verified, "applied");
                Ok(Applied::Done(outcome, plan))
            }
            Err(ExecuteError::Azure(error)) => {
                let outcome = Outcome {
                    verified: false,
                    performed: Vec::new(),
                    spot_capacity: observed.spot.capacity,
                    regular_capacity: observed.regular.capacity,
                    error: Some(format!("{error:#}")),
                    finished_at: OffsetDateTime::now_utc(),
                };
                self.store.journal(&proposal.id, "outcome", &json!(outcome))?;
                tracing::warn!(error = %error, transient = error.is_transient(), "apply failed");
                Err(ExecuteError::Azure(error))
            }
            Err(other) => Err(other),
        }
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
    let sizes_ok = match &proposal.target.vm_sizes {
        None => true,
        Some(sizes) => {
            sizes.len() == after.vm_sizes.len() && sizes.iter().zip(&after.vm_sizes).all(|(a, b)| a.eq_ignore_ascii_case(b))
        }
    };
    tier_ok(Priority::Spot, proposal.target.spot_capacity)
        && tier_ok(Priority::Regular, proposal.target.regular_capacity)
        && sizes_ok
}
