//! Azure ML jobs and computes, as plain data.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where ML work runs: a workspace in a resource group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceRef {
    /// Resource group.
    pub resource_group: String,
    /// Workspace name.
    pub workspace: String,
}

/// A command job to submit (the fields of an Azure ML command job YAML).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MlJobSpec {
    /// Job name (id), unique in the workspace.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Experiment.
    pub experiment_name: String,
    /// Command line.
    pub command: String,
    /// Code location (`.` or an asset id).
    pub code: String,
    /// Environment (`azureml:name@latest` or an asset id).
    pub environment: String,
    /// Compute cluster name.
    pub compute: String,
    /// Literal inputs.
    pub inputs: BTreeMap<String, String>,
    /// Environment variables.
    pub environment_variables: BTreeMap<String, String>,
    /// Nodes the job needs.
    pub instance_count: u32,
}

/// A job as Azure ML reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MlJob {
    /// Job name (id).
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Experiment.
    pub experiment_name: String,
    /// `NotStarted`, `Queued`, `Preparing`, `Running`, `CancelRequested`, `Completed`, `Failed`, `Canceled`.
    pub status: String,
    /// Compute cluster name.
    pub compute: String,
    /// Command line.
    pub command: String,
    /// Nodes.
    pub instance_count: u32,
}

/// An AmlCompute cluster as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MlCompute {
    /// Name.
    pub name: String,
    /// Node VM size.
    pub vm_size: String,
    /// Minimum nodes.
    pub min_nodes: u32,
    /// Maximum nodes.
    pub max_nodes: u32,
    /// Nodes now.
    pub current_nodes: u32,
    /// Idle nodes.
    pub idle_nodes: u32,
    /// Nodes running jobs.
    pub running_nodes: u32,
}
