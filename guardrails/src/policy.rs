//! Scaling policy: the bounds a fleet's owners allow, per fleet with defaults.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The bounds of one fleet. Loaded from configuration only; no tool can change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Lowest spot target capacity allowed.
    pub min_spot: u32,
    /// Highest spot target capacity allowed.
    pub max_spot: u32,
    /// Lowest regular target capacity allowed: the regular floor, what must never be evicted.
    pub min_regular: u32,
    /// Highest regular target capacity allowed.
    pub max_regular: u32,
    /// Most VMs one change may add, spot and regular together.
    pub max_step_up: u32,
    /// Most VMs one change may remove, spot and regular together.
    pub max_step_down: u32,
    /// Most VMs one change may add, as a percentage of the fleet's current total capacity
    /// (at least one VM); the smaller of this and `max_step_up` applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub max_step_up_percent: Option<f64>,
    /// Most VMs one change may remove, as a percentage of the current total (at least one).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub max_step_down_percent: Option<f64>,
    /// VM sizes a change may use; empty allows any.
    pub allowed_vm_sizes: Vec<String>,
    /// Regions a fleet may be changed in; empty allows any.
    pub allowed_regions: Vec<String>,
    /// Most the fleet may cost per hour at its target (list prices, spot and regular priced
    /// separately). Changes that lower the cost are always allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub budget_usd_per_hour: Option<f64>,
    /// Most the fleet may cost per UTC day: spend so far today plus the target's hourly cost
    /// for the rest of the day. Changes that lower the cost are always allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub budget_usd_per_day: Option<f64>,
    /// Most changes applied to the fleet in any hour.
    pub max_changes_per_hour: u32,
    /// Seconds after any applied change during which no other change is allowed.
    pub cooldown_secs: u64,
    /// The stabilization window in seconds: a scale-in goes only to the highest capacity
    /// recommended within it, and never within it after a scale-out (nor a scale-out within
    /// it after a scale-in).
    pub stabilization_secs: u64,
    /// Utilization (percent) at which the fleet would scale out: a scale-in is refused when
    /// the load spread over the smaller fleet would reach it (the anti-flapping check).
    pub scale_out_utilization_percent: f64,
    /// No scale-in when the newest telemetry is older than this (seconds) or missing.
    pub max_telemetry_age_secs: u64,
    /// Changes moving more VMs than this (added plus removed) need a human's approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub approval_above_delta: Option<u32>,
    /// Changes raising the hourly cost by more than this (USD) need a human's approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub approval_above_cost_increase_usd_per_hour: Option<f64>,
    /// Seconds a proposal waits for approval before it expires.
    pub approval_ttl_secs: u64,
    /// When true, applying computes the plan and changes nothing.
    pub dry_run: bool,
    /// When true, every change to this fleet is refused.
    pub frozen: bool,
}

/// Most VMs one change may move on a fleet of `total` VMs: `absolute`, or `percent` of the
/// fleet where smaller (at least one VM).
pub fn step_limit(absolute: u32, percent: Option<f64>, total: u32) -> u32 {
    match percent {
        Some(p) => absolute.min(((f64::from(total) * p / 100.0).floor() as u32).max(1)),
        None => absolute,
    }
}

impl Policy {
    /// Most VMs one change may add and remove (up, down) on a fleet of `total` VMs
    /// ([`step_limit`] of each direction's limits).
    pub fn step_limits(&self, total: u32) -> (u32, u32) {
        (
            step_limit(self.max_step_up, self.max_step_up_percent, total),
            step_limit(self.max_step_down, self.max_step_down_percent, total),
        )
    }
}

impl Default for Policy {
    /// Defaults sized for the source recipe's reference fleet (20 spot, 10 regular).
    fn default() -> Self {
        Self {
            min_spot: 0,
            max_spot: 40,
            min_regular: 1,
            max_regular: 20,
            max_step_up: 10,
            max_step_down: 10,
            max_step_up_percent: None,
            max_step_down_percent: None,
            allowed_vm_sizes: vec!["Standard_D4s_v5".into(), "Standard_D8s_v5".into(), "Standard_E4s_v5".into()],
            allowed_regions: Vec::new(),
            budget_usd_per_hour: None,
            budget_usd_per_day: None,
            max_changes_per_hour: 12,
            cooldown_secs: 60,
            stabilization_secs: 300,
            scale_out_utilization_percent: 75.0,
            max_telemetry_age_secs: 900,
            approval_above_delta: Some(8),
            approval_above_cost_increase_usd_per_hour: None,
            approval_ttl_secs: 3600,
            dry_run: false,
            frozen: false,
        }
    }
}

/// Bounds on Azure ML jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JobPolicy {
    /// Jobs queued, preparing or running on one compute at once.
    pub max_concurrent_jobs_per_compute: u32,
    /// Nodes one job may ask for.
    pub max_nodes_per_job: u32,
    /// What one job's nodes may cost per hour, USD.
    pub max_job_usd_per_hour: f64,
}

impl Default for JobPolicy {
    fn default() -> Self {
        Self { max_concurrent_jobs_per_compute: 10, max_nodes_per_job: 4, max_job_usd_per_hour: 5.0 }
    }
}

/// Policies for every fleet: one default and overrides by fleet name; and the job policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    default: Policy,
    fleets: BTreeMap<String, Policy>,
    global_dry_run: bool,
    global_freeze: bool,
    /// Bounds on Azure ML jobs.
    pub jobs: JobPolicy,
    /// Tool calls one caller may make per minute.
    pub calls_per_caller_per_minute: u32,
}

impl Default for Policies {
    fn default() -> Self {
        Self::new(Policy::default(), BTreeMap::new())
    }
}

impl Policies {
    /// Build from a default and complete per-fleet policies (merging is the config layer's job).
    pub fn new(default: Policy, fleets: BTreeMap<String, Policy>) -> Self {
        Self {
            default,
            fleets,
            global_dry_run: false,
            global_freeze: false,
            jobs: JobPolicy::default(),
            calls_per_caller_per_minute: 120,
        }
    }

    /// Freeze every fleet: every change is refused, whatever its policy says.
    pub fn with_global_freeze(mut self, frozen: bool) -> Self {
        self.global_freeze = frozen;
        self
    }

    /// Whether the configuration freezes every fleet.
    pub fn globally_frozen(&self) -> bool {
        self.global_freeze
    }

    /// Force dry-run on every fleet, whatever its policy says.
    pub fn with_global_dry_run(mut self, dry_run: bool) -> Self {
        self.global_dry_run = dry_run;
        self
    }

    /// The policy that applies to a fleet (matched by name, ignoring case as Azure does).
    pub fn for_fleet(&self, fleet: &str) -> Policy {
        let mut policy = self
            .fleets
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(fleet))
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| self.default.clone());
        policy.dry_run |= self.global_dry_run;
        policy.frozen |= self.global_freeze;
        policy
    }
}
