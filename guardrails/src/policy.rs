//! Scaling policy: the bounds a fleet's owners allow, per fleet with defaults.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The bounds of one fleet. Loaded from configuration only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Lowest spot target capacity allowed.
    pub min_spot: u32,
    /// Highest spot target capacity allowed.
    pub max_spot: u32,
    /// Lowest regular target capacity allowed (the regular floor).
    pub min_regular: u32,
    /// Highest regular target capacity allowed.
    pub max_regular: u32,
    /// Most VMs one change may add, spot and regular together.
    pub max_step_up: u32,
    /// Most VMs one change may remove, spot and regular together.
    pub max_step_down: u32,
    /// VM sizes a change may use; empty allows any.
    pub allowed_vm_sizes: Vec<String>,
    /// Changes moving more VMs than this (added plus removed) need a human's approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub approval_above_delta: Option<u32>,
    /// When true, applying computes the plan and changes nothing.
    pub dry_run: bool,
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
            allowed_vm_sizes: vec!["Standard_D4s_v5".into(), "Standard_D8s_v5".into(), "Standard_E4s_v5".into()],
            approval_above_delta: Some(8),
            dry_run: false,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    default: Policy,
    fleets: BTreeMap<String, Policy>,
    global_dry_run: bool,
    /// Bounds on Azure ML jobs.
    pub jobs: JobPolicy,
}

impl Policies {
    /// Build from a default and complete per-fleet policies (merging is the config layer's job).
    pub fn new(default: Policy, fleets: BTreeMap<String, Policy>) -> Self {
        Self { default, fleets, global_dry_run: false, jobs: JobPolicy::default() }
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
        policy
    }
}
