//! fleetpilot's vocabulary: fleets and their observed state, VM sizes and prices, scale
//! targets, proposals, plans and verdicts.
//!
//! This crate is plain data and pure functions. It does no IO, holds no clock and draws no
//! random numbers: whoever needs "now" passes it in. It knows nothing of Azure's JSON, of
//! HTTP, of MCP or of LLMs — the outer crates convert at their edges.

pub mod alert;
pub mod cost;
pub mod fleet;
pub mod plan;
pub mod prices;
pub mod proposal;

pub use cost::{CostEstimate, CostLine};
pub use fleet::{EvictionPolicy, FleetRef, FleetState, FleetSummary, Priority, PriorityState, Vm, VmState};
pub use plan::{Action, Plan, plan};
pub use prices::{EvictionBand, PriceTable, SizeInfo, vm_family};
pub use proposal::{Decision, Outcome, Proposal, ProposalStatus, Review, ScaleTarget, Verdict, Violation};

/// A point in time. Always UTC; always passed in, never read from a clock here.
pub type Timestamp = time::OffsetDateTime;

mod secret;
pub use secret::{Secret, redact_json};

pub mod logs;
pub mod ml;
