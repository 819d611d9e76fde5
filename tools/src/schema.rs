//! Tool inputs and outputs. Input schemas are kept portable (Azure AI Foundry rejects
//! multi-type fields and `anyOf`): optional inputs are plain types with defaults.

use std::collections::BTreeMap;

use fleetpilot_core::logs::LogTable;
use fleetpilot_core::{FleetState, FleetSummary, Proposal};
use fleetpilot_guardrails::Policy;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Input of `list_fleets`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFleetsInput {
    /// Resource group to list; empty lists every fleet in the subscription.
    #[serde(default)]
    pub resource_group: String,
}

/// Output of `list_fleets`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FleetList {
    /// The fleets.
    pub fleets: Vec<FleetSummary>,
}

/// Input of `read_fleet`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFleetInput {
    /// Fleet name, e.g. `cf-ml-scaling`.
    pub fleet: String,
    /// Resource group; empty means the configured default.
    #[serde(default)]
    pub resource_group: String,
}

/// Output of `read_fleet`: the fleet as observed now, with what it costs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FleetView {
    /// Observed configuration and VMs.
    #[serde(flatten)]
    pub state: FleetState,
    /// What the VMs that count towards the targets cost per hour, in USD, at list prices.
    pub hourly_cost_usd: f64,
}

/// Input of `get_policy`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPolicyInput {
    /// Fleet name.
    pub fleet: String,
}

/// Output of `get_policy`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PolicyView {
    /// Fleet name.
    pub fleet: String,
    /// The bounds that apply to it.
    pub policy: Policy,
}

/// Input of `propose_scale`. Leave a capacity out to keep it as it is.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeScaleInput {
    /// Fleet name.
    pub fleet: String,
    /// Resource group; empty means the configured default.
    #[serde(default)]
    pub resource_group: String,
    /// New spot target capacity in VMs; leave out to keep the current one.
    #[serde(default)]
    #[schemars(with = "u32")]
    pub spot_capacity: Option<u32>,
    /// New regular target capacity in VMs; leave out to keep the current one.
    #[serde(default)]
    #[schemars(with = "u32")]
    pub regular_capacity: Option<u32>,
    /// New list of VM sizes; leave out or empty to keep the current ones.
    #[serde(default)]
    pub vm_sizes: Vec<String>,
    /// Why: what was observed and what the change should achieve. Recorded verbatim.
    pub reason: String,
}

/// Input of `estimate_cost`. Leave a capacity out to keep it as it is.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateCostInput {
    /// Fleet name.
    pub fleet: String,
    /// Resource group; empty means the configured default.
    #[serde(default)]
    pub resource_group: String,
    /// Spot target capacity to price; leave out to keep the current one.
    #[serde(default)]
    #[schemars(with = "u32")]
    pub spot_capacity: Option<u32>,
    /// Regular target capacity to price; leave out to keep the current one.
    #[serde(default)]
    #[schemars(with = "u32")]
    pub regular_capacity: Option<u32>,
    /// VM sizes to price; leave out or empty to keep the current ones.
    #[serde(default)]
    pub vm_sizes: Vec<String>,
}

/// Input of `apply_proposal`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyProposalInput {
    /// Id returned by `propose_scale`.
    pub proposal_id: String,
}

/// Input of `approve_proposal`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveProposalInput {
    /// Id of a proposal waiting for approval (`needs_approval`).
    pub proposal_id: String,
    /// Why it is approved (kept with the decision).
    #[serde(default)]
    pub note: String,
}

/// Input of `reject_proposal`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectProposalInput {
    /// Id of a proposal not yet applied.
    pub proposal_id: String,
    /// Why it is rejected (kept with the decision).
    #[serde(default)]
    pub note: String,
}

/// Output of `apply_proposal`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApplyResult {
    /// `applied`, `already_applied` or `dry_run`; on an error result `denied`,
    /// `needs_approval`, `rejected`, `expired` or `azure_error`.
    pub result: String,
    /// The proposal, with its outcome.
    pub proposal: Proposal,
}

/// Input of `list_proposals`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProposalsInput {
    /// Only this fleet; empty for all.
    #[serde(default)]
    pub fleet: String,
    /// Only this status (`proposed`, `needs_approval`, `approved`, `rejected`, `expired`, `denied`, `dry_run`,
    /// `applied`, `failed`); empty for all.
    #[serde(default)]
    pub status: String,
    /// Most proposals to return, newest first (default 20, at most 500).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    20
}

/// Output of `list_proposals`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProposalList {
    /// Newest first.
    pub proposals: Vec<Proposal>,
}

/// Input of `query_kql`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryKqlInput {
    /// The KQL query, e.g. `AzureMetrics | where MetricName == "SpotInstanceUtilization" | summarize avg(Average) by bin(TimeGenerated, 5m)`.
    pub query: String,
    /// ISO-8601 duration or interval to limit `TimeGenerated` to (`PT1H`, `P1D`,
    /// `2024-01-01T00:00:00Z/PT6H`); empty for no limit beyond the query's own.
    #[serde(default)]
    pub timespan: String,
    /// Log Analytics workspace id; empty means the configured one.
    #[serde(default)]
    pub workspace: String,
    /// Most rows to return to the caller (default 200, at most 10000); the rest is counted.
    #[serde(default = "default_max_rows")]
    pub max_rows: u32,
}

fn default_max_rows() -> u32 {
    200
}

/// Output of `query_kql`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QueryKqlResult {
    /// Result tables (`PrimaryResult` first).
    pub tables: Vec<LogTable>,
    /// Rows of the first table left out because of `max_rows`.
    pub rows_omitted: u64,
    /// Set when Log Analytics itself cut the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub partial_error: Option<String>,
}

/// Input of `submit_ml_job`: the fields of an Azure ML command job YAML.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitMlJobInput {
    /// Command line, e.g. `python train_model.py --samples 50000`.
    pub command: String,
    /// Environment, e.g. `azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest`.
    pub environment: String,
    /// Compute cluster name, e.g. `compute-cluster`.
    pub compute: String,
    /// Code location (default `.`).
    #[serde(default = "default_code")]
    pub code: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Experiment (default `Default`).
    #[serde(default)]
    pub experiment_name: String,
    /// Literal inputs by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Nodes the job needs (default 1).
    #[serde(default = "default_instances")]
    pub instance_count: u32,
    /// Job name; empty for a generated one.
    #[serde(default)]
    pub name: String,
}

fn default_code() -> String {
    ".".into()
}

fn default_instances() -> u32 {
    1
}

/// Input of `get_ml_job` and `cancel_ml_job`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlJobNameInput {
    /// Job name, as `submit_ml_job` returned it.
    pub name: String,
}

/// Input of `list_runs`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRunsInput {
    /// Only this fleet; empty for all.
    #[serde(default)]
    pub fleet: String,
    /// Most runs to return, newest first (default 20, at most 200).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

/// Output of `list_runs`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RunList {
    /// Newest first, without transcripts.
    pub runs: Vec<fleetpilot_infra::RunRecord>,
}

/// Input of `get_run`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRunInput {
    /// Run id (`run-…`).
    pub run_id: String,
    /// Include the transcript (JSON lines).
    #[serde(default)]
    pub include_transcript: bool,
}

/// Input of `forecast_demand`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForecastDemandInput {
    /// Fleet name.
    pub fleet: String,
    /// Resource group; empty means the configured default.
    #[serde(default)]
    pub resource_group: String,
    /// The fleet's metric to forecast (default `RequestsArrived`; also `Percentage CPU`, `RunningVMs`, …).
    #[serde(default = "default_metric")]
    pub metric: String,
    /// How much history to fit on, as an ISO 8601 duration (default `P7D`; at most `P30D`).
    #[serde(default = "default_history")]
    pub history: String,
    /// Minutes per step (default 5).
    #[serde(default = "default_step")]
    pub step_minutes: u32,
    /// How far ahead, in minutes (default 60, at most 1440).
    #[serde(default = "default_horizon")]
    pub horizon_minutes: u32,
    /// Prediction interval level (default 0.9).
    #[serde(default = "default_level")]
    pub level: f64,
}

fn default_metric() -> String {
    "RequestsArrived".into()
}
fn default_history() -> String {
    "P7D".into()
}
fn default_step() -> u32 {
    5
}
fn default_horizon() -> u32 {
    60
}
fn default_level() -> f64 {
    0.9
}

/// Output of `forecast_demand`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ForecastDemandResult {
    /// Fleet name.
    pub fleet: String,
    /// The metric.
    pub metric: String,
    /// The last observed step's start (RFC 3339), when there was history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_observed_at: Option<String>,
    /// The last observed value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    /// The forecast.
    #[serde(flatten)]
    pub forecast: fleetpilot_policy::DemandForecast,
}
