//! Scale targets, the guardrails' verdicts, and proposals: the data a scale change is made of.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FleetRef, Plan};

/// What a caller asks a fleet to become. `None` leaves that part as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScaleTarget {
    /// Spot target capacity in VMs; absent leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub spot_capacity: Option<u32>,
    /// Regular target capacity in VMs; absent leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub regular_capacity: Option<u32>,
    /// The VM sizes the fleet may use; absent leaves them as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>")]
    pub vm_sizes: Option<Vec<String>>,
}

impl ScaleTarget {
    /// Whether the sizes asked for (if any) are `sizes`, in order, ignoring case as Azure does.
    pub fn sizes_match(&self, sizes: &[String]) -> bool {
        self.vm_sizes
            .as_ref()
            .is_none_or(|want| want.len() == sizes.len() && want.iter().zip(sizes).all(|(a, b)| a.eq_ignore_ascii_case(b)))
    }

    /// Whether `state` already has the capacities and sizes asked for.
    pub fn is_met_by(&self, state: &crate::FleetState) -> bool {
        self.spot_capacity.is_none_or(|c| c == state.spot.capacity)
            && self.regular_capacity.is_none_or(|c| c == state.regular.capacity)
            && self.sizes_match(&state.vm_sizes)
    }
}

/// The guardrails' decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Within every bound: may be applied.
    Allow,
    /// Within the hard bounds but above an approval threshold: a human must approve.
    NeedsApproval,
    /// Outside a hard bound: must not be applied.
    Deny,
}

/// One rule a proposal breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Violation {
    /// The bound, as named in the policy (`max_spot`, `max_step_up`, `allowed_vm_sizes`, …).
    pub bound: String,
    /// Whether this violation denies (`deny`) or only asks for approval (`needs_approval`).
    pub effect: Decision,
    /// A sentence a person or a model can act on.
    pub message: String,
    /// The policy's limit, where the bound is numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub limit: Option<f64>,
    /// What the proposal asked for, where numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub requested: Option<f64>,
}

/// The outcome of `guardrails::check`: a decision and every violation behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// Allow, needs approval, or deny.
    pub decision: Decision,
    /// Every rule broken, not only the first.
    pub violations: Vec<Violation>,
    /// Whether the policy is in dry-run: applying returns the plan and changes nothing.
    pub dry_run: bool,
}

impl Verdict {
    /// Build a verdict from violations: the strictest effect wins.
    pub fn from_violations(violations: Vec<Violation>, dry_run: bool) -> Self {
        let decision = if violations.iter().any(|v| v.effect == Decision::Deny) {
            Decision::Deny
        } else if violations.is_empty() {
            Decision::Allow
        } else {
            Decision::NeedsApproval
        };
        Self { decision, violations, dry_run }
    }
}

/// Where a proposal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Allowed, not yet applied.
    Proposed,
    /// Waiting for a human.
    NeedsApproval,
    /// Denied by the guardrails; will never be applied.
    Denied,
    /// Applied in dry-run: the plan was computed, nothing changed.
    DryRun,
    /// The executor carried it out and verified the result.
    Applied,
    /// The executor failed; see the outcome.
    Failed,
    /// A human approved it; the executor applies it next (re-checking first).
    Approved,
    /// A human rejected it; it will never be applied.
    Rejected,
    /// It waited for approval longer than the policy's TTL; it will never be applied.
    Expired,
}

impl ProposalStatus {
    /// The snake_case name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Proposed => "proposed",
            ProposalStatus::NeedsApproval => "needs_approval",
            ProposalStatus::Denied => "denied",
            ProposalStatus::DryRun => "dry_run",
            ProposalStatus::Applied => "applied",
            ProposalStatus::Failed => "failed",
            ProposalStatus::Approved => "approved",
            ProposalStatus::Rejected => "rejected",
            ProposalStatus::Expired => "expired",
        }
    }

    /// Every status, in life order.
    pub const ALL: [ProposalStatus; 9] = [
        ProposalStatus::Proposed,
        ProposalStatus::NeedsApproval,
        ProposalStatus::Approved,
        ProposalStatus::Rejected,
        ProposalStatus::Expired,
        ProposalStatus::Denied,
        ProposalStatus::DryRun,
        ProposalStatus::Applied,
        ProposalStatus::Failed,
    ];

    /// Parse the snake_case name.
    pub fn parse(s: &str) -> Option<ProposalStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// A human's decision on a proposal that needed approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    /// Approved (true) or rejected (false).
    pub approved: bool,
    /// Who decided (the caller's identity).
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: time::OffsetDateTime,
    /// Why, as the reviewer wrote it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// What happened when a proposal was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Whether the observed state matched the target afterwards.
    pub verified: bool,
    /// What the executor did, in order.
    pub performed: Vec<String>,
    /// Spot target capacity after the change.
    pub spot_capacity: u32,
    /// Regular target capacity after the change.
    pub regular_capacity: u32,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub error: Option<String>,
    /// For a failure: `transient` (throttling, 5xx, timeouts: retried with backoff before
    /// giving up) or `permanent` (a request Azure will not accept: recorded, not retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub error_class: Option<String>,
    /// When the executor finished.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub finished_at: time::OffsetDateTime,
}

/// A scale change as data: who asked, why, from what, to what, the verdict and the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Proposal {
    /// Stable id; applying the same id twice is a no-op.
    pub id: String,
    /// The fleet to change.
    pub fleet: FleetRef,
    /// Who asked (e.g. `mcp:claude-desktop`, `agent:run-42`).
    pub requested_by: String,
    /// The caller's reason, verbatim.
    pub reason: String,
    /// When it was proposed.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: time::OffsetDateTime,
    /// Spot target capacity observed when proposed.
    pub observed_spot_capacity: u32,
    /// Regular target capacity observed when proposed.
    pub observed_regular_capacity: u32,
    /// What was asked for.
    pub target: ScaleTarget,
    /// The guardrails' verdict when proposed.
    pub verdict: Verdict,
    /// What the executor would do, computed from the observed state.
    pub plan: Plan,
    /// What the fleet costs per hour now and would cost at the target (list prices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "crate::CostEstimate")]
    pub cost: Option<crate::CostEstimate>,
    /// Where the proposal is in its life.
    pub status: ProposalStatus,
    /// The executor's outcome, once applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Outcome")]
    pub outcome: Option<Outcome>,
    /// The human decision, for a proposal that needed approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Review")]
    pub review: Option<Review>,
}
