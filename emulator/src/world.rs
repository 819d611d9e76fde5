//! The emulated world's state and physics: resource groups, fleets and their VMs, quota,
//! spot capacity pools, evictions and long-running operations. No HTTP here: `arm` converts.
//!
//! Time only moves through [`World::advance_to`], in fixed ticks, and every random draw comes
//! from one seeded generator in tick order, so a world is deterministic under its seed however
//! often or rarely it is observed.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetpilot_core::{EvictionPolicy, PriceTable, Priority, SizeInfo, VmState, vm_family};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use time::OffsetDateTime;

/// Tunables of the world.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// The one subscription this emulator serves.
    pub subscription_id: String,
    /// Seed of every random draw.
    pub seed: u64,
    /// Length of one simulation step.
    pub tick: Duration,
    /// Boot latency (request → Running) for CPU sizes.
    pub boot_latency_cpu: Duration,
    /// Boot latency for GPU sizes.
    pub boot_latency_gpu: Duration,
    /// The period over which a size's eviction band is the share of spot VMs evicted.
    /// Azure publishes bands without a period; fleetpilot reads them per day.
    pub eviction_band_period: Duration,
    /// Multiplies every eviction probability (1.0 = the published bands).
    pub eviction_multiplier: f64,
    /// Regular-priority vCPU quota per VM family.
    pub family_vcpu_quota: u32,
    /// Spot vCPU quota for the region (all families together).
    pub spot_vcpu_quota: u32,
    /// Spot VMs available per size in each region at eviction band 0–5 %; worse bands get
    /// less. Each region has its own pool: a fleet in another region does not draw on it.
    pub spot_pool_base: u32,
    /// `Retry-After` seconds the emulator sends with long-running operations.
    pub retry_after_secs: u32,
    /// The Log Analytics workspace.
    pub logs: crate::logs::LogConfig,
    /// Write each running VM's `Heartbeat` and `Perf` rows every minute (three rows per VM
    /// per minute: most of the telemetry of a large world). Fleet, service and job telemetry
    /// is written either way.
    pub vm_telemetry: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            subscription_id: "00000000-0000-4000-8000-000000000001".into(),
            seed: 42,
            tick: Duration::from_secs(10),
            boot_latency_cpu: Duration::from_secs(90),
            boot_latency_gpu: Duration::from_secs(480),
            eviction_band_period: Duration::from_secs(24 * 3600),
            eviction_multiplier: 1.0,
            family_vcpu_quota: 350,
            spot_vcpu_quota: 600,
            spot_pool_base: 40,
            retry_after_secs: 1,
            logs: crate::logs::LogConfig::default(),
            vm_telemetry: true,
        }
    }
}

/// A resource group.
#[derive(Debug, Clone)]
pub struct ResourceGroup {
    /// Name as created (lookups ignore case).
    pub name: String,
    /// Region.
    pub location: String,
    /// Tags.
    pub tags: serde_json::Map<String, serde_json::Value>,
}

/// Spot tier settings of a fleet, as in `SpotPriorityProfile`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotProfile {
    /// Target capacity.
    pub capacity: u32,
    /// Minimum starting capacity.
    pub min_capacity: u32,
    /// Max price per VM, USD/h; `None` or -1 means up to pay-as-you-go.
    pub max_price_per_vm: Option<f64>,
    /// Eviction policy.
    pub eviction_policy: EvictionPolicy,
    /// `PriceCapacityOptimized`, `LowestPrice` or `CapacityOptimized`.
    pub allocation_strategy: String,
    /// Replace evicted VMs.
    pub maintain: bool,
}

/// Regular tier settings of a fleet, as in `RegularPriorityProfile`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegularProfile {
    /// Target capacity.
    pub capacity: u32,
    /// Minimum starting capacity.
    pub min_capacity: u32,
    /// `LowestPrice` or `Prioritized`.
    pub allocation_strategy: String,
}

/// One entry of `vmSizesProfile`.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeProfile {
    /// VM size name.
    pub name: String,
    /// Rank for the `Prioritized` strategy (lower first).
    pub rank: Option<u32>,
}

/// One VM of a fleet.
#[derive(Debug, Clone)]
pub struct EmuVm {
    /// Scale set name.
    pub scale_set: String,
    /// Instance id within the scale set.
    pub instance_id: u64,
    /// VM size.
    pub size: String,
    /// Priority.
    pub priority: Priority,
    /// Lifecycle state.
    pub state: VmState,
    /// When it was requested.
    pub created_at: OffsetDateTime,
    /// When it becomes Running.
    pub ready_at: OffsetDateTime,
    /// Tags (workloads mark busy VMs with `workload.busy = "true"`).
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Its size's prices and shape, looked up once (the table does not change).
    pub info: Option<std::sync::Arc<SizeInfo>>,
    /// Its names as telemetry writes them, made once so that each minute's rows share them.
    pub labels: std::sync::Arc<VmLabels>,
}

pub use crate::vm_telemetry::VmLabels;

/// A Compute Fleet.
#[derive(Debug, Clone)]
pub struct FleetRecord {
    /// Name as created.
    pub name: String,
    /// Resource group name as created.
    pub resource_group: String,
    /// Region.
    pub location: String,
    /// Tags.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Spot tier.
    pub spot: Option<SpotProfile>,
    /// Regular tier.
    pub regular: Option<RegularProfile>,
    /// Sizes.
    pub vm_sizes: Vec<SizeProfile>,
    /// `computeProfile`, kept as given.
    pub compute_profile: serde_json::Value,
    /// ARM provisioning state.
    pub provisioning_state: String,
    /// Creation time.
    pub time_created: OffsetDateTime,
    /// Unique id.
    pub unique_id: String,
    /// The VMs.
    pub vms: Vec<EmuVm>,
    /// Next instance id per scale set.
    pub next_instance: BTreeMap<String, u64>,
}

impl FleetRecord {
    /// The scale set that holds VMs of a size and priority.
    pub fn scale_set_name(&self, size: &str, priority: Priority) -> String {
        let short = size.strip_prefix("Standard_").unwrap_or(size).to_ascii_lowercase();
        format!("{}-{}-{}", self.name, priority.as_str(), short)
    }

    /// VMs of a priority that count towards its target.
    pub fn counted(&self, priority: Priority) -> u32 {
        self.vms.iter().filter(|vm| vm.priority == priority && vm.state.counts_towards_target()).count() as u32
    }
}

/// Something that happened to a fleet that Azure reports as an event.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEvent {
    /// When.
    pub at: OffsetDateTime,
    /// Fleet name.
    pub fleet: String,
    /// `SpotEviction` or `AllocationFailure`.
    pub kind: String,
    /// VM size concerned.
    pub size: String,
    /// Details.
    pub message: String,
}

/// A VM deleted through the API.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedVm {
    /// When.
    pub at: OffsetDateTime,
    /// Fleet name.
    pub fleet: String,
    /// `{scale set}_{instance id}`, the VM's name.
    pub vm: String,
    /// Whether a workload had marked it busy (`workload.busy = "true"`).
    pub busy: bool,
    /// The workload's job (`workload.job`), if it named one.
    pub job: Option<String>,
}

/// How many deletions [`World::deleted_vms`] keeps.
pub const MAX_DELETED_VMS: usize = 10_000;

/// A long-running operation and its status.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Id.
    pub id: String,
    /// Region the status URL lives under.
    pub location: String,
    /// Resource the operation acts on (its ARM path).
    pub resource_path: String,
    /// `InProgress`, then `Succeeded` (or `Failed`).
    pub status: String,
    /// Status polls so far.
    pub polls: u32,
    /// When it started.
    pub start_time: OffsetDateTime,
    /// When it ended.
    pub end_time: Option<OffsetDateTime>,
}

/// An error with the ARM shape: HTTP status, code and message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ArmError {
    /// HTTP status.
    pub status: u16,
    /// ARM error code.
    pub code: String,
    /// Message.
    pub message: String,
}

impl ArmError {
    /// Build an error.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into() }
    }
}

/// The whole emulated world.
#[derive(Debug)]
pub struct World {
    /// Tunables.
    pub config: WorldConfig,
    /// Prices and sizes.
    pub prices: PriceTable,
    rng: StdRng,
    /// Resource groups by lowercase name.
    pub resource_groups: BTreeMap<String, ResourceGroup>,
    /// Fleets by (lowercase resource group, lowercase name).
    pub fleets: BTreeMap<(String, String), FleetRecord>,
    /// Long-running operations by id.
    pub operations: BTreeMap<String, Operation>,
    /// Faults in force (see [`crate::faults`]).
    pub faults: crate::faults::Faults,
    /// Metric alert rules.
    pub alert_rules: Vec<crate::alerts::AlertRule>,
    /// Where notifications go (the action group's webhooks).
    pub alert_webhooks: Vec<String>,
    /// Notifications not yet delivered.
    pub alert_outbox: Vec<serde_json::Value>,
    /// Notifications produced so far.
    pub alerts_sent: u64,
    /// The eviction multiplier of the configuration, restored when a storm ends.
    base_eviction_multiplier: f64,
    /// Evictions and allocation failures, oldest first (bounded).
    pub events: Vec<FleetEvent>,
    /// VMs deleted through the API (not evicted), oldest first (bounded): the ground truth of
    /// whether a workload's VM was taken from under it.
    pub deleted_vms: Vec<DeletedVm>,
    /// Time up to which the world has been simulated.
    pub now: OffsetDateTime,
    next_operation: u64,
    /// The Log Analytics workspace the world writes its telemetry to.
    pub logs: crate::logs::LogStore,
    /// How many of `events` have been written to the logs.
    events_logged: usize,
    /// Inference services and their state.
    pub services: Vec<(crate::services::ServiceSpec, crate::services::ServiceState)>,
    /// Every served minute of every service, oldest first (bounded).
    pub ledger: Vec<crate::services::LedgerRow>,
    /// Azure ML workspaces by (lowercase resource group, lowercase name).
    pub ml: BTreeMap<(String, String), crate::aml::Workspace>,
    /// Generic ARM resources (storage, key vaults, monitoring, networks, alert rules, …) by
    /// lowercase id.
    pub resources: BTreeMap<String, crate::arm::generic::GenericResource>,
    /// AI Foundry agents by (lowercase project, lowercase agent name): their versions, oldest
    /// first.
    pub agents: BTreeMap<(String, String), Vec<serde_json::Value>>,
}

/// Most ledger rows kept (7 days × 100 services at one row a minute).
const MAX_LEDGER: usize = 1_008_000;

const MAX_EVENTS: usize = 10_000;

/// The ledger's rows of `minute` (the newest ones).
fn rows_of(ledger: &[crate::services::LedgerRow], minute: OffsetDateTime) -> Vec<&crate::services::LedgerRow> {
    ledger.iter().rev().take_while(|r| r.minute == minute).collect()
}

/// Requests served and capacity of some ledger rows; `None` without rows.
fn served_and_capacity<'a>(rows: impl IntoIterator<Item = &'a crate::services::LedgerRow>) -> Option<(f64, f64)> {
    rows.into_iter().fold(None, |acc, r| {
        let (served, capacity) = acc.unwrap_or((0.0, 0.0));
        Some((served + r.served, capacity + r.capacity))
    })
}

/// Running spot VMs as a percentage of the spot target (the fleet's SpotInstanceUtilization);
/// `None` without a spot target.
fn spot_running_percent(fleet: &FleetRecord) -> Option<f64> {
    let target = f64::from(fleet.spot.as_ref().map_or(0, |s| s.capacity));
    let running = fleet.vms.iter().filter(|v| v.priority == Priority::Spot && v.state == VmState::Running).count() as f64;
    (target > 0.0).then(|| 100.0 * running / target)
}

impl World {
    /// An empty world at `start`.
    pub fn new(config: WorldConfig, prices: PriceTable, start: OffsetDateTime) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let logs = crate::logs::LogStore::new(config.logs.clone(), config.seed);
        let base_eviction_multiplier = config.eviction_multiplier;
        Self {
            logs,
            events_logged: 0,
            services: Vec::new(),
            ledger: Vec::new(),
            ml: BTreeMap::new(),
            resources: BTreeMap::new(),
            agents: BTreeMap::new(),
            config,
            prices,
            rng,
            resource_groups: BTreeMap::new(),
            fleets: BTreeMap::new(),
            operations: BTreeMap::new(),
            faults: crate::faults::Faults::default(),
            alert_rules: Vec::new(),
            alert_webhooks: Vec::new(),
            alert_outbox: Vec::new(),
            alerts_sent: 0,
            base_eviction_multiplier,
            events: Vec::new(),
            deleted_vms: Vec::new(),
            now: start,
            next_operation: 1,
        }
    }

    /// Simulate up to `t` in whole ticks. Earlier times are ignored: time never goes back.
    pub fn advance_to(&mut self, t: OffsetDateTime) {
        let tick = self.config.tick;
        while self.now + tick <= t {
            let before = self.now;
            self.now += tick;
            self.step();
            // Telemetry is written once per virtual minute.
            let minute = |t: OffsetDateTime| t.unix_timestamp().div_euclid(60);
            if minute(self.now) != minute(before) {
                let at = OffsetDateTime::from_unix_timestamp(minute(self.now) * 60).unwrap_or(self.now);
                self.serve_minute(at);
                self.write_minute_telemetry(at);
                self.evaluate_alerts(at);
            }
            self.log_events();
            self.logs.ingest_until(self.now);
        }
    }

    /// Sample every alert rule's metric for the minute that just ended, and evaluate the rules
    /// that are due; notifications go to the outbox.
    fn evaluate_alerts(&mut self, at: OffsetDateTime) {
        if self.alert_rules.is_empty() {
            return;
        }
        let rows = rows_of(&self.ledger, at - time::Duration::minutes(1));
        let subscription = self.config.subscription_id.clone();
        let mut rules = std::mem::take(&mut self.alert_rules);
        for rule in &mut rules {
            let scope = rule.scope.to_ascii_lowercase();
            let value = match rule.metric.as_str() {
                // CPU of what the scope serves: the workspace's services, or one fleet's.
                "Percentage CPU" | "CpuUtilization" => served_and_capacity(rows.iter().copied().filter(|r| {
                    scope.contains("/workspaces/") || scope.ends_with(&format!("/fleets/{}", r.fleet.to_ascii_lowercase()))
                }))
                .and_then(|(served, capacity)| (capacity > 0.0).then(|| 100.0 * served / capacity)),
                "SpotInstanceUtilization" => self
                    .fleets
                    .values()
                    .find(|f| scope.ends_with(&format!("/fleets/{}", f.name.to_ascii_lowercase())))
                    .and_then(spot_running_percent),
                _ => None,
            };
            if self.faults.telemetry_gap {
                continue;
            }
            if let Some(notification) = rule.observe(at, value, &subscription, &mut self.next_operation) {
                tracing::info!(rule = %rule.name, condition = %notification["data"]["essentials"]["monitorCondition"], "alert rule changed state");
                self.alerts_sent += 1;
                self.alert_outbox.push(notification);
            }
        }
        self.alert_rules = rules;
    }

    /// Serve one minute of every inference service (the minute that just ended).
    fn serve_minute(&mut self, at: OffsetDateTime) {
        let minute = at - time::Duration::minutes(1);
        let surge = self.faults.demand_multiplier.filter(|m| m.is_finite() && *m >= 0.0);
        for (spec, state) in &mut self.services {
            // A fleet that no longer exists serves nothing (its share goes to the others).
            let fleets: Vec<&FleetRecord> = spec.fleets.iter().filter_map(|key| self.fleets.get(key)).collect();
            if fleets.is_empty() {
                continue;
            }
            let rows = match surge {
                Some(m) => {
                    let mut surged = spec.clone();
                    surged.replay.amplitude *= m;
                    crate::services::serve_fleets(&surged, state, &fleets, minute)
                }
                None => crate::services::serve_fleets(spec, state, &fleets, minute),
            };
            self.ledger.extend(rows);
        }
        if self.ledger.len() > MAX_LEDGER {
            let excess = self.ledger.len() - MAX_LEDGER;
            self.ledger.drain(..excess);
        }
    }

    /// Per-fleet metrics (AzureMetrics), service metrics, and a Heartbeat and Perf counters per
    /// running VM, for the minute `at`.
    fn write_minute_telemetry(&mut self, at: OffsetDateTime) {
        if self.faults.telemetry_gap {
            return;
        }
        use crate::kql::Value as V;
        let subscription = self.config.subscription_id.clone();
        let mut rows: Vec<(&'static str, Vec<(&'static str, V)>)> = Vec::new();
        // This minute's service rows, and each fleet's utilization (served / capacity).
        let minute = at - time::Duration::minutes(1);
        let this_minute = rows_of(&self.ledger, minute);
        let utilization_of = |fleet: &str| -> Option<f64> {
            served_and_capacity(this_minute.iter().copied().filter(|r| r.fleet == fleet))
                .map(|(served, capacity)| if capacity > 0.0 { served / capacity } else { 0.0 })
        };
        let workspace = crate::wire::workspace_id(
            &subscription,
            crate::scenario::REFERENCE_RESOURCE_GROUP,
            crate::scenario::REFERENCE_WORKSPACE,
        );
        // The strings of a metric row, made once per resource and minute and shared by its rows.
        let (azure, grain, sub_value) = (V::str("Azure"), V::str("PT1M"), V::str(&subscription));
        let source = |resource_id: &str, provider: &str, resource: &str, rg: &str| -> [V; 5] {
            [
                V::str(&resource_id.to_ascii_uppercase()),
                V::str(&resource_id.to_ascii_lowercase()),
                V::str(&rg.to_ascii_uppercase()),
                V::str(provider),
                V::str(&resource.to_ascii_uppercase()),
            ]
        };
        let metric = |src: &[V; 5], name: &str, value: f64, unit: &str| -> Vec<(&'static str, V)> {
            let [id_upper, id_lower, rg, provider, resource] = src.clone();
            vec![
                ("SourceSystem", azure.clone()),
                ("ResourceId", id_upper),
                ("_ResourceId", id_lower),
                ("MetricName", V::str(name)),
                ("Average", V::Real(value)),
                ("Total", V::Real(value)),
                ("Maximum", V::Real(value)),
                ("Minimum", V::Real(value)),
                ("Count", V::Real(1.0)),
                ("TimeGrain", grain.clone()),
                ("UnitName", V::str(unit)),
                ("SubscriptionId", sub_value.clone()),
                ("ResourceGroup", rg),
                ("ResourceProvider", provider),
                ("Resource", resource),
            ]
        };
        let workspace_source = source(
            &workspace,
            "MICROSOFT.MACHINELEARNINGSERVICES",
            crate::scenario::REFERENCE_WORKSPACE,
            crate::scenario::REFERENCE_RESOURCE_GROUP,
        );
        for row in &this_minute {
            let Some(fleet) = self.fleets.values().find(|f| f.name == row.fleet) else { continue };
            let id = crate::wire::fleet_id(&subscription, fleet);
            let fleet_source = source(&id, "Microsoft.AzureFleet", &fleet.name, &fleet.resource_group);
            let latency = if row.latency_p95_ms.is_finite() { row.latency_p95_ms } else { 3_600_000.0 };
            for (name, value, unit) in [
                ("RequestsArrived", row.arrivals, "Count"),
                ("RequestsServed", row.served, "Count"),
                ("RequestsDropped", row.dropped, "Count"),
                ("QueueLength", row.queued, "Count"),
                ("LatencyP95Ms", latency, "Milliseconds"),
                ("SlaMet", if row.sla_met { 1.0 } else { 0.0 }, "Count"),
            ] {
                rows.push(("AzureMetrics", metric(&fleet_source, name, value, unit)));
            }
            // The workspace the services belong to reports their load, as the recipe's workbook reads it.
            let cpu = 100.0 * row.utilization;
            rows.push(("AzureMetrics", metric(&workspace_source, "CpuUtilization", cpu, "Percent")));
            rows.push(("AzureMetrics", metric(&workspace_source, "MemoryUtilization", 20.0 + 0.6 * cpu, "Percent")));
        }
        // Azure ML clusters: node counts as the workspace's metrics name them, and what the
        // allocated nodes cost (they bill like VMs from allocation to release).
        for ws in self.ml.values() {
            let id = crate::wire::workspace_id(&subscription, &ws.resource_group, &ws.name);
            for compute in ws.computes.values() {
                let priority =
                    if compute.vm_priority.eq_ignore_ascii_case("LowPriority") { Priority::Spot } else { Priority::Regular };
                let price = self.prices.get(&compute.vm_size).map_or(0.0, |s| s.price(priority));
                let count = |state: crate::aml::NodeState| compute.nodes.iter().filter(|n| n.state == state).count() as f64;
                let total = compute.nodes.len() as f64;
                // One series per cluster, as Azure's ClusterName dimension separates them.
                let cluster = format!("{}/computes/{}", ws.name, compute.name);
                let cluster_source = source(&id, "MICROSOFT.MACHINELEARNINGSERVICES", &cluster, &ws.resource_group);
                for (name, value, unit) in [
                    ("Active Nodes", count(crate::aml::NodeState::Running), "Count"),
                    ("Idle Nodes", count(crate::aml::NodeState::Idle), "Count"),
                    ("Total Nodes", total, "Count"),
                    ("TotalCost", total * price / 60.0, "USD"),
                ] {
                    rows.push(("AzureMetrics", metric(&cluster_source, name, value, unit)));
                }
            }
        }
        for fleet in self.fleets.values() {
            let id = crate::wire::fleet_id(&subscription, fleet);
            let running =
                |p: Priority| fleet.vms.iter().filter(|v| v.priority == p && v.state == VmState::Running).count() as f64;
            let spot_target = fleet.spot.as_ref().map_or(0, |s| s.capacity) as f64;
            let regular_target = fleet.regular.as_ref().map_or(0, |r| r.capacity) as f64;
            let cost_per_minute: f64 = fleet
                .vms
                .iter()
                .filter(|v| matches!(v.state, VmState::Creating | VmState::Running))
                .filter_map(|v| v.info.as_ref().map(|s| s.price(v.priority) / 60.0))
                .sum();
            let load = utilization_of(&fleet.name);
            let metrics = [
                // Average CPU of the running VMs (Azure's platform metric), when the fleet serves load.
                ("Percentage CPU", 100.0 * load.unwrap_or(0.0), "Percent"),
                ("SpotInstanceUtilization", spot_running_percent(fleet).unwrap_or(0.0), "Percent"),
                ("RunningVMs", running(Priority::Spot) + running(Priority::Regular), "Count"),
                ("SpotCapacity", spot_target, "Count"),
                ("RegularCapacity", regular_target, "Count"),
                ("TotalCost", cost_per_minute, "USD"),
            ];
            let fleet_source = source(&id, "Microsoft.AzureFleet", &fleet.name, &fleet.resource_group);
            for (name, value, unit) in metrics {
                rows.push(("AzureMetrics", metric(&fleet_source, name, value, unit)));
            }
            // Per-VM Heartbeat and Perf rows are generated when read (see `vm_telemetry`).
            let load = load.unwrap_or(0.0);
            if self.config.vm_telemetry {
                let minute = crate::logs::ticks(at);
                let vm_rows = std::sync::Arc::make_mut(&mut self.logs.vm);
                let handle = vm_rows.fleet_load(&fleet.name, minute, load);
                for vm in fleet.vms.iter().filter(|v| v.state == VmState::Running) {
                    vm_rows.report(handle, minute, &vm.labels);
                }
            }
        }
        for (table, cells) in rows {
            self.logs.write(table, at, cells);
        }
    }

    /// A uniform draw in [0, 1) from the world's generator.
    pub fn draw(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Job and cluster events go to `AmlComputeJobEvent` and `AmlComputeClusterEvent`.
    fn log_ml_events(&mut self, events: Vec<crate::aml::MlEvent>) {
        use crate::kql::Value as V;
        let subscription = self.config.subscription_id.clone();
        let now = self.now;
        for e in events {
            match e {
                crate::aml::MlEvent::Job { workspace, resource_group, job, experiment, cluster, status } => {
                    let id = crate::wire::workspace_id(&subscription, &resource_group, &workspace);
                    let event = match status {
                        crate::aml::JobStatus::Queued => "JobSubmitted",
                        crate::aml::JobStatus::Preparing => "JobPreparing",
                        crate::aml::JobStatus::Running => "JobRunning",
                        crate::aml::JobStatus::Completed => "JobCompleted",
                        crate::aml::JobStatus::Failed => "JobFailed",
                        crate::aml::JobStatus::Canceled => "JobCanceled",
                        other => other.as_str(),
                    };
                    self.logs.write(
                        "AmlComputeJobEvent",
                        now,
                        [
                            ("ResourceId", V::str(&id.to_ascii_uppercase())),
                            ("_ResourceId", V::str(&id.to_ascii_lowercase())),
                            ("OperationName", V::str("Microsoft.MachineLearningServices/workspaces/jobs/write")),
                            ("EventType", V::str(event)),
                            ("JobId", V::str(&job)),
                            ("JobName", V::str(&job)),
                            ("ExperimentName", V::str(&experiment)),
                            ("ClusterName", V::str(&cluster)),
                            ("JobStatus", V::str(status.as_str())),
                            ("ToolType", V::str("Command")),
                        ],
                    );
                }
                crate::aml::MlEvent::Cluster { workspace, resource_group, cluster, vm_size, vm_priority, current, target } => {
                    let id = crate::wire::workspace_id(&subscription, &resource_group, &workspace);
                    self.logs.write(
                        "AmlComputeClusterEvent",
                        now,
                        [
                            ("ResourceId", V::str(&id.to_ascii_uppercase())),
                            ("_ResourceId", V::str(&id.to_ascii_lowercase())),
                            ("OperationName", V::str("Microsoft.MachineLearningServices/workspaces/computes/write")),
                            ("EventType", V::str("Resize")),
                            ("ClusterName", V::str(&cluster)),
                            ("VmSize", V::str(&vm_size)),
                            ("VmPriority", V::str(&vm_priority)),
                            ("CurrentNodeCount", V::Long(i64::from(current))),
                            ("TargetNodeCount", V::Long(i64::from(target))),
                        ],
                    );
                }
            }
        }
    }

    /// Evictions and allocation failures go to `ComputeFleetEvents_CL`.
    fn log_events(&mut self) {
        use crate::kql::Value as V;
        let subscription = self.config.subscription_id.clone();
        let start = self.events_logged.min(self.events.len());
        let new: Vec<FleetEvent> = self.events[start..].to_vec();
        self.events_logged = self.events.len();
        for e in new {
            let rg = self.fleets.values().find(|f| f.name == e.fleet).map(|f| f.resource_group.clone()).unwrap_or_default();
            let id =
                format!("/subscriptions/{subscription}/resourcegroups/{rg}/providers/microsoft.azurefleet/fleets/{}", e.fleet)
                    .to_ascii_lowercase();
            let priority = if e.kind == "SpotEviction" { "Spot" } else { "" };
            self.logs.write(
                "ComputeFleetEvents_CL",
                e.at,
                [
                    ("Fleet", V::str(&e.fleet)),
                    ("EventType", V::str(&e.kind)),
                    ("VmSize", V::str(&e.size)),
                    ("Priority", V::str(priority)),
                    ("Message", V::str(&e.message)),
                    ("_ResourceId", V::str(&id)),
                ],
            );
        }
    }

    /// Record an ARM write in `AzureActivity`, as the Activity Log does.
    pub fn log_activity(&mut self, method: &str, path: &str, status: u16, caller: &str, correlation: &str) {
        use crate::kql::Value as V;
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
        let provider_at = lower.iter().rposition(|s| s == "providers");
        let (provider, resource_path) = match provider_at {
            Some(i) if i + 1 < segments.len() => (segments[i + 1].to_string(), &segments[i + 2..]),
            _ => ("Microsoft.Resources".to_string(), &segments[2.min(segments.len())..]),
        };
        // Resource types are the even positions of the path after the provider.
        let types: Vec<&str> = resource_path.iter().step_by(2).copied().collect();
        let mut operation = format!("{provider}/{}", types.join("/"));
        if provider == "Microsoft.Resources" {
            operation = "Microsoft.Resources/subscriptions/resourceGroups".into();
        }
        let action = match method {
            "DELETE" => "delete".to_string(),
            "POST" => format!("{}/action", resource_path.last().copied().unwrap_or("action")),
            _ => "write".to_string(),
        };
        let operation = if method == "POST" {
            let base: Vec<&str> = resource_path[..resource_path.len().saturating_sub(1)].iter().step_by(2).copied().collect();
            format!("{provider}/{}/{action}", base.join("/"))
        } else {
            format!("{operation}/{action}")
        };
        let resource_id = path.split('?').next().unwrap_or(path).to_string();
        let resource_group =
            lower.iter().position(|s| s == "resourcegroups").and_then(|i| segments.get(i + 1)).copied().unwrap_or_default();
        let ok = status < 400;
        let mut ops = vec![operation.clone()];
        // A capacity change of a fleet is the fleet writing its scale sets.
        if method == "PATCH" && provider.eq_ignore_ascii_case("Microsoft.AzureFleet") && ok {
            ops.push("Microsoft.AzureFleet/fleets/virtualMachineScaleSets/write".into());
        }
        let now = self.now;
        for op in ops {
            self.logs.write(
                "AzureActivity",
                now,
                [
                    ("SourceSystem", V::str("Azure")),
                    ("CategoryValue", V::str("Administrative")),
                    ("CorrelationId", V::str(correlation)),
                    ("Level", V::str(if ok { "Informational" } else { "Error" })),
                    ("OperationNameValue", V::str(&op)),
                    ("OperationName", V::str(&op)),
                    ("Caller", V::str(caller)),
                    ("CallerIpAddress", V::str("127.0.0.1")),
                    ("EventSubmissionTimestamp", V::DateTime(crate::logs::ticks(now))),
                    ("ActivityStatusValue", V::str(if ok { "Success" } else { "Failure" })),
                    ("ActivityStatus", V::str(if ok { "Succeeded" } else { "Failed" })),
                    ("ActivitySubstatusValue", V::str(&status.to_string())),
                    ("ResourceGroup", V::str(&resource_group.to_ascii_uppercase())),
                    ("ResourceProviderValue", V::str(&provider.to_ascii_uppercase())),
                    ("ResourceProvider", V::str(&provider)),
                    ("SubscriptionId", V::str(&self.config.subscription_id)),
                    ("Resource", V::str(segments.last().copied().unwrap_or_default())),
                    ("ResourceId", V::str(&resource_id.to_ascii_uppercase())),
                    ("_ResourceId", V::str(&resource_id.to_ascii_lowercase())),
                    (
                        "Properties",
                        V::Dynamic(std::sync::Arc::new(serde_json::json!({"statusCode": status, "httpMethod": method}))),
                    ),
                ],
            );
        }
    }

    /// One tick: boots complete, spot VMs may be evicted, fleets seek their targets.
    fn step(&mut self) {
        let now = self.now;
        let tick_secs = self.config.tick.as_secs_f64();
        let period = self.config.eviction_band_period.as_secs_f64();
        let keys: Vec<_> = self.fleets.keys().cloned().collect();
        for key in keys {
            let mut evictions = Vec::new();
            {
                let Some(fleet) = self.fleets.get_mut(&key) else {
                    continue;
                };
                // A storm confined to some regions leaves the others at the configured rate.
                let regions = &self.faults.eviction_regions;
                let multiplier = if regions.is_empty() || regions.iter().any(|r| r.eq_ignore_ascii_case(&fleet.location)) {
                    self.config.eviction_multiplier
                } else {
                    self.base_eviction_multiplier
                };
                for vm in &mut fleet.vms {
                    if vm.state == VmState::Creating && vm.ready_at <= now {
                        vm.state = VmState::Running;
                    }
                }
                let policy = fleet.spot.as_ref().map(|s| s.eviction_policy).unwrap_or(EvictionPolicy::Delete);
                for (index, vm) in fleet.vms.iter_mut().enumerate() {
                    if vm.priority != Priority::Spot || !matches!(vm.state, VmState::Running | VmState::Creating) {
                        continue;
                    }
                    let band = vm.info.as_ref().and_then(|s| s.eviction_band).map(|b| b.mid_fraction()).unwrap_or(0.05);
                    let p = (1.0 - (1.0 - band).powf(tick_secs / period)) * multiplier;
                    if self.rng.random::<f64>() < p {
                        evictions.push(index);
                    }
                }
                for &index in evictions.iter().rev() {
                    let vm = &mut fleet.vms[index];
                    let message = format!("{}_{} evicted ({policy:?})", vm.scale_set, vm.instance_id);
                    let size = vm.size.clone();
                    match policy {
                        EvictionPolicy::Deallocate => vm.state = VmState::Deallocated,
                        EvictionPolicy::Delete => {
                            fleet.vms.remove(index);
                        }
                    }
                    self.events.push(FleetEvent {
                        at: now,
                        fleet: fleet.name.clone(),
                        kind: "SpotEviction".into(),
                        size,
                        message,
                    });
                }
            }
            self.seek_target(&key, true);
        }
        let ml_events = crate::aml::step(&mut self.ml, now, self.config.boot_latency_cpu, &mut self.rng);
        self.log_ml_events(ml_events);
        if self.events.len() > MAX_EVENTS {
            let excess = self.events.len() - MAX_EVENTS;
            self.events.drain(..excess);
        }
    }

    /// Create VMs until each tier reaches its target, as Compute Fleet's goal seeking does.
    /// `replacing` is true on ticks: then spot is replaced only with `maintain` on.
    pub fn seek_target(&mut self, key: &(String, String), replacing: bool) {
        for priority in Priority::ALL {
            let Some(fleet) = self.fleets.get(key) else {
                return;
            };
            if fleet.provisioning_state == "Deleting" {
                return;
            }
            let target = match priority {
                Priority::Spot => match &fleet.spot {
                    Some(s) if !replacing || s.maintain => s.capacity,
                    _ => continue,
                },
                Priority::Regular => match &fleet.regular {
                    Some(r) => r.capacity,
                    None => continue,
                },
            };
            let missing = target.saturating_sub(fleet.counted(priority));
            for _ in 0..missing {
                if let Err(failure) = self.allocate_one(key, priority) {
                    let fleet_name = self.fleets.get(key).map(|f| f.name.clone()).unwrap_or_default();
                    // One event per tick and tier is enough to see the failure.
                    self.events.push(FleetEvent {
                        at: self.now,
                        fleet: fleet_name,
                        kind: "AllocationFailure".into(),
                        size: failure.0,
                        message: failure.1,
                    });
                    break;
                }
            }
        }
    }

    /// Allocate one VM of a priority by the fleet's allocation strategy.
    /// Returns `(size, reason)` when no size can take it.
    fn allocate_one(&mut self, key: &(String, String), priority: Priority) -> Result<(), (String, String)> {
        let size = self.choose_size(key, priority)?;
        let now = self.now;
        let info = self.prices.get(&size).cloned();
        let latency = match info {
            Some(ref s) if s.gpus > 0 => self.config.boot_latency_gpu,
            _ => self.config.boot_latency_cpu,
        };
        // ±20 % jitter, drawn from the world's generator.
        let jitter = 0.8 + 0.4 * self.rng.random::<f64>();
        let Some(fleet) = self.fleets.get_mut(key) else {
            return Ok(());
        };
        let scale_set = fleet.scale_set_name(&size, priority);
        let next = fleet.next_instance.entry(scale_set.clone()).or_insert(0);
        let instance_id = *next;
        *next += 1;
        let labels =
            std::sync::Arc::new(VmLabels::new(&self.config.subscription_id, &fleet.resource_group, &scale_set, instance_id));
        fleet.vms.push(EmuVm {
            labels,
            info: info.map(std::sync::Arc::new),
            scale_set,
            instance_id,
            size,
            priority,
            state: VmState::Creating,
            created_at: now,
            ready_at: now + latency.mul_f64(jitter),
            tags: serde_json::Map::new(),
        });
        Ok(())
    }

    fn choose_size(&self, key: &(String, String), priority: Priority) -> Result<String, (String, String)> {
        let fleet = self.fleets.get(key).ok_or_else(|| (String::new(), "fleet vanished".to_string()))?;
        let mut candidates: Vec<(&SizeProfile, &SizeInfo, u32)> = Vec::new();
        let mut last_reason = (String::new(), "the fleet lists no VM sizes".to_string());
        for profile in &fleet.vm_sizes {
            let Some(info) = self.prices.get(&profile.name) else {
                last_reason = (profile.name.clone(), format!("unknown VM size {}", profile.name));
                continue;
            };
            if let Err(reason) = self.quota_allows(info, priority) {
                last_reason = (profile.name.clone(), reason);
                continue;
            }
            let mut pool = u32::MAX;
            if priority == Priority::Spot {
                if let Some(max) = fleet.spot.as_ref().and_then(|s| s.max_price_per_vm)
                    && max >= 0.0
                    && info.spot_usd_hour > max
                {
                    last_reason =
                        (profile.name.clone(), format!("spot price {} is above maxPricePerVM {max}", info.spot_usd_hour));
                    continue;
                }
                pool = self.spot_pool_left(info, &fleet.location);
                if pool == 0 {
                    last_reason = (profile.name.clone(), format!("no spot capacity left for {}", info.name));
                    continue;
                }
            }
            candidates.push((profile, info, pool));
        }
        let strategy = match priority {
            Priority::Spot => fleet.spot.as_ref().map(|s| s.allocation_strategy.as_str()),
            Priority::Regular => fleet.regular.as_ref().map(|r| r.allocation_strategy.as_str()),
        }
        .unwrap_or("LowestPrice");
        let position = |p: &SizeProfile| fleet.vm_sizes.iter().position(|q| q.name == p.name).unwrap_or(usize::MAX);
        let price = |i: &SizeInfo| i.price(priority);
        let best = match strategy {
            "Prioritized" => candidates.iter().min_by(|a, b| {
                a.0.rank.unwrap_or(u32::MAX).cmp(&b.0.rank.unwrap_or(u32::MAX)).then(position(a.0).cmp(&position(b.0)))
            }),
            // Most spare capacity first, price ignored.
            "CapacityOptimized" => candidates.iter().max_by(|a, b| a.2.cmp(&b.2).then(position(b.0).cmp(&position(a.0)))),
            // Deepest capacity bucket first, then the lowest price within it.
            "PriceCapacityOptimized" => candidates.iter().min_by(|a, b| {
                (b.2 / 10).cmp(&(a.2 / 10)).then(price(a.1).total_cmp(&price(b.1))).then(position(a.0).cmp(&position(b.0)))
            }),
            _ => candidates.iter().min_by(|a, b| price(a.1).total_cmp(&price(b.1)).then(position(a.0).cmp(&position(b.0)))),
        };
        best.map(|c| c.1.name.clone()).ok_or(last_reason)
    }

    /// vCPUs in use per (family, priority), over every fleet. Deallocated spot VMs still hold
    /// quota, as they do on Azure.
    fn vcpus_in_use(&self, family: Option<&str>, priority: Priority) -> u32 {
        self.fleets
            .values()
            .flat_map(|f| &f.vms)
            .filter(|vm| vm.priority == priority && vm.state != VmState::Deleting)
            .filter_map(|vm| self.prices.get(&vm.size))
            .filter(|info| family.is_none_or(|fam| info.family() == fam))
            .map(|info| info.vcpus)
            .sum()
    }

    fn quota_allows(&self, info: &SizeInfo, priority: Priority) -> Result<(), String> {
        match priority {
            Priority::Regular => {
                let family = vm_family(&info.name);
                let used = self.vcpus_in_use(Some(&family), priority);
                let limit = self.config.family_vcpu_quota;
                if used + info.vcpus > limit {
                    return Err(format!("QuotaExceeded: family {family} would use {} of {limit} vCPUs", used + info.vcpus));
                }
            }
            Priority::Spot => {
                let used = self.vcpus_in_use(None, priority);
                let limit = self.config.spot_vcpu_quota;
                if used + info.vcpus > limit {
                    return Err(format!("QuotaExceeded: spot would use {} of {limit} vCPUs", used + info.vcpus));
                }
            }
        }
        Ok(())
    }

    /// Spot VMs of a size still available in a region.
    fn spot_pool_left(&self, info: &SizeInfo, location: &str) -> u32 {
        let band = info.eviction_band.map(|b| b.high_pct).unwrap_or(20.0);
        // Bands are a proxy for spare capacity: 0–5 % gets the full pool, 5–10 % 60 %, …
        let share = match band {
            b if b <= 5.0 => 1.0,
            b if b <= 10.0 => 0.6,
            b if b <= 15.0 => 0.4,
            b if b <= 20.0 => 0.25,
            _ => 0.1,
        };
        let pool = (f64::from(self.config.spot_pool_base) * share).round() as u32;
        let used = self
            .fleets
            .values()
            .filter(|f| f.location.eq_ignore_ascii_case(location))
            .flat_map(|f| &f.vms)
            .filter(|vm| {
                vm.priority == Priority::Spot && vm.state != VmState::Deleting && vm.size.eq_ignore_ascii_case(&info.name)
            })
            .count() as u32;
        pool.saturating_sub(used)
    }

    /// vCPUs a capacity would need at the least, with the smallest listed size.
    pub fn check_quota_for(&self, sizes: &[SizeProfile], priority: Priority, extra_vms: u32) -> Result<(), ArmError> {
        if extra_vms == 0 {
            return Ok(());
        }
        let smallest = sizes.iter().filter_map(|s| self.prices.get(&s.name)).min_by_key(|i| i.vcpus);
        let Some(smallest) = smallest else {
            return Ok(());
        };
        let need = smallest.vcpus * extra_vms;
        let (used, limit, what) = match priority {
            Priority::Spot => {
                (self.vcpus_in_use(None, priority), self.config.spot_vcpu_quota, "Total Regional Spot vCPUs".to_string())
            }
            Priority::Regular => {
                // Any listed family may take the VMs: the quota left is the sum over families.
                let mut families: Vec<String> =
                    sizes.iter().filter_map(|s| self.prices.get(&s.name)).map(|i| i.family()).collect();
                families.sort();
                families.dedup();
                let used: u32 = families.iter().map(|f| self.vcpus_in_use(Some(f), priority)).sum();
                (used, self.config.family_vcpu_quota * families.len() as u32, format!("{} vCPUs", families.join(", ")))
            }
        };
        if used + need > limit {
            return Err(ArmError::new(
                409,
                "OperationNotAllowed",
                format!(
                    "Operation could not be completed as it results in exceeding approved {what} quota. \
                     Additional details - Location: eastus, Current Limit: {limit}, Current Usage: {used}, \
                     Additional Required: {need}, (Minimum) New Limit Required: {}.",
                    used + need
                ),
            ));
        }
        Ok(())
    }

    /// Put `faults` in force (replacing the ones before).
    pub fn set_faults(&mut self, faults: crate::faults::Faults) {
        self.config.eviction_multiplier = faults.eviction_multiplier.unwrap_or(self.base_eviction_multiplier);
        self.logs.extra_delay_secs = faults.telemetry_delay_secs;
        tracing::info!(?faults, "emulator faults set");
        self.faults = faults;
    }

    /// Start a long-running operation on a resource; it completes on its first status poll.
    pub fn start_operation(&mut self, location: &str, resource_path: &str) -> Operation {
        let id = format!("{:08x}-0000-4000-8000-{:012x}", self.next_operation, self.config.seed);
        self.next_operation += 1;
        let op = Operation {
            id: id.clone(),
            location: location.to_string(),
            resource_path: resource_path.to_string(),
            status: "InProgress".into(),
            polls: 0,
            start_time: self.now,
            end_time: None,
        };
        self.operations.insert(id, op.clone());
        op
    }

    /// Whether an ARM id names something that exists: a resource group, fleet, ML workspace
    /// (or compute) or generic resource.
    pub fn arm_resource_exists(&self, id: &str) -> bool {
        let lower = id.trim_end_matches('/').to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if let ["", "subscriptions", s, "resourcegroups", rg] = parts.as_slice() {
            return *s == self.config.subscription_id.to_ascii_lowercase() && self.resource_groups.contains_key(*rg);
        }
        crate::arm::resource_json_at(self, id).is_some()
    }

    /// (Re)load the rule of the provisioned metric alert `id` (lowercase) from its resource.
    pub fn register_metric_alert(&mut self, id: &str) {
        self.forget_metric_alert(id);
        let Some(r) = self.resources.get(id) else { return };
        if let Some(rule) = crate::arm::generic::rule_from(id, &r.name, &r.body) {
            // A provisioned rule replaces a built-in one of the same name.
            self.alert_rules.retain(|old| !(old.id.is_none() && old.name == rule.name));
            self.alert_rules.push(rule);
        }
    }

    /// Forget the agents of projects that no longer exist.
    pub fn prune_agents(&mut self) {
        let projects: std::collections::HashSet<String> =
            self.ml.values().filter(|w| w.kind == "Project").map(|w| w.name.to_ascii_lowercase()).collect();
        self.agents.retain(|(project, _), _| projects.contains(project));
    }

    /// Stop evaluating the provisioned metric alert `id` (lowercase).
    pub fn forget_metric_alert(&mut self, id: &str) {
        self.alert_rules.retain(|rule| rule.id.as_deref() != Some(id));
    }

    /// Where a notification goes: the webhooks of its rule's action groups (enabled ones), or,
    /// for the built-in rules that name none, the webhooks set through `/_emulator/alerts/webhook`.
    pub fn webhooks_for(&self, notification: &serde_json::Value) -> Vec<String> {
        let rule_name = notification.pointer("/data/essentials/alertRule").and_then(serde_json::Value::as_str);
        let Some(rule) = self.alert_rules.iter().find(|r| Some(r.name.as_str()) == rule_name && !r.action_groups.is_empty())
        else {
            return self.alert_webhooks.clone();
        };
        let mut hooks = Vec::new();
        for group in &rule.action_groups {
            let Some(r) = self.resources.get(group) else { continue };
            if r.body.pointer("/properties/enabled").and_then(serde_json::Value::as_bool) != Some(true) {
                continue;
            }
            for receiver in
                r.body.pointer("/properties/webhookReceivers").and_then(serde_json::Value::as_array).into_iter().flatten()
            {
                if let Some(uri) = receiver.get("serviceUri").and_then(serde_json::Value::as_str) {
                    hooks.push(uri.to_string());
                }
            }
        }
        hooks
    }

    /// Poll an operation: the first poll finishes it, and with it the resource's provisioning.
    pub fn poll_operation(&mut self, id: &str) -> Option<Operation> {
        let now = self.now;
        let op = self.operations.get_mut(id)?;
        op.polls += 1;
        if op.status == "InProgress" && self.faults.lro == crate::faults::LroFault::Fail {
            op.status = "Failed".into();
            op.end_time = Some(now);
        }
        let path = op.resource_path.to_ascii_lowercase();
        if op.status == "Failed"
            && let Some(r) = self.resources.get_mut(&path)
            && matches!(r.provisioning_state.as_str(), "Creating" | "Updating")
        {
            r.provisioning_state = "Failed".into();
        }
        if op.status == "InProgress" && self.faults.lro != crate::faults::LroFault::Hang {
            op.status = "Succeeded".into();
            op.end_time = Some(now);
            if let Some(r) = self.resources.get_mut(&path)
                && matches!(r.provisioning_state.as_str(), "Creating" | "Updating")
            {
                r.provisioning_state = "Succeeded".into();
            }
            for fleet in self.fleets.values_mut() {
                let fleet_path = format!(
                    "/resourcegroups/{}/providers/microsoft.azurefleet/fleets/{}",
                    fleet.resource_group.to_ascii_lowercase(),
                    fleet.name.to_ascii_lowercase()
                );
                if path.ends_with(&fleet_path) && matches!(fleet.provisioning_state.as_str(), "Creating" | "Updating") {
                    fleet.provisioning_state = "Succeeded".into();
                }
            }
        }
        self.operations.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn world_with_fleet(spot: u32, regular: u32, strategy: &str, eviction: EvictionPolicy) -> (World, (String, String)) {
        let mut world = World::new(WorldConfig::default(), PriceTable::embedded(), datetime!(2026-01-01 00:00 UTC));
        let key = ("rg".to_string(), "f".to_string());
        world.fleets.insert(
            key.clone(),
            FleetRecord {
                name: "f".into(),
                resource_group: "rg".into(),
                location: "eastus".into(),
                tags: Default::default(),
                spot: Some(SpotProfile {
                    capacity: spot,
                    min_capacity: 0,
                    max_price_per_vm: Some(0.10),
                    eviction_policy: eviction,
                    allocation_strategy: strategy.into(),
                    maintain: true,
                }),
                regular: Some(RegularProfile { capacity: regular, min_capacity: 0, allocation_strategy: "LowestPrice".into() }),
                vm_sizes: ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]
                    .iter()
                    .map(|n| SizeProfile { name: n.to_string(), rank: None })
                    .collect(),
                compute_profile: serde_json::json!({}),
                provisioning_state: "Succeeded".into(),
                time_created: datetime!(2026-01-01 00:00 UTC),
                unique_id: "u".into(),
                vms: vec![],
                next_instance: Default::default(),
            },
        );
        world.seek_target(&key, false);
        (world, key)
    }

    fn sizes(world: &World, key: &(String, String), priority: Priority) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for vm in world.fleets[key].vms.iter().filter(|v| v.priority == priority) {
            *out.entry(vm.size.clone()).or_default() += 1;
        }
        out
    }

    #[test]
    fn vms_boot_after_their_latency() {
        let (mut world, key) = world_with_fleet(2, 1, "LowestPrice", EvictionPolicy::Delete);
        assert!(world.fleets[&key].vms.iter().all(|v| v.state == VmState::Creating));
        world.advance_to(datetime!(2026-01-01 00:01 UTC));
        assert!(world.fleets[&key].vms.iter().all(|v| v.state == VmState::Creating), "72 s minimum boot");
        world.advance_to(datetime!(2026-01-01 00:02 UTC));
        assert!(world.fleets[&key].vms.iter().all(|v| v.state == VmState::Running), "108 s maximum boot");
    }

    #[test]
    fn lowest_price_fills_the_cheapest_size() {
        let (world, key) = world_with_fleet(5, 3, "LowestPrice", EvictionPolicy::Delete);
        assert_eq!(sizes(&world, &key, Priority::Spot), BTreeMap::from([("Standard_D4s_v5".into(), 5)]));
        assert_eq!(sizes(&world, &key, Priority::Regular), BTreeMap::from([("Standard_D4s_v5".into(), 3)]));
    }

    #[test]
    fn price_capacity_optimized_spreads_as_pools_drain() {
        let (world, key) = world_with_fleet(20, 0, "PriceCapacityOptimized", EvictionPolicy::Delete);
        let got = sizes(&world, &key, Priority::Spot);
        assert_eq!(got.values().sum::<usize>(), 20);
        assert!(got.len() >= 2, "expected several sizes, got {got:?}");
    }

    #[test]
    fn max_price_excludes_expensive_sizes() {
        let (mut world, key) = world_with_fleet(0, 0, "CapacityOptimized", EvictionPolicy::Delete);
        world.fleets.get_mut(&key).unwrap().spot.as_mut().unwrap().max_price_per_vm = Some(0.045);
        world.fleets.get_mut(&key).unwrap().spot.as_mut().unwrap().capacity = 3;
        world.seek_target(&key, false);
        assert_eq!(sizes(&world, &key, Priority::Spot), BTreeMap::from([("Standard_D4s_v5".into(), 3)]));
    }

    #[test]
    fn lowering_the_target_deletes_nothing() {
        let (mut world, key) = world_with_fleet(6, 0, "LowestPrice", EvictionPolicy::Delete);
        world.fleets.get_mut(&key).unwrap().spot.as_mut().unwrap().capacity = 2;
        world.advance_to(datetime!(2026-01-01 00:10 UTC));
        assert_eq!(world.fleets[&key].counted(Priority::Spot), 6);
    }

    #[test]
    fn quota_stops_allocation_and_records_a_failure() {
        let (mut world, key) = world_with_fleet(0, 0, "LowestPrice", EvictionPolicy::Delete);
        world.config.family_vcpu_quota = 8;
        world.fleets.get_mut(&key).unwrap().regular.as_mut().unwrap().capacity = 10;
        world.seek_target(&key, false);
        // 2 × D4s_v5 (DSv5, 8 vCPUs) + 2 × E4s_v5 (ESv5, 8 vCPUs), then nothing fits.
        assert_eq!(world.fleets[&key].counted(Priority::Regular), 4);
        assert_eq!(world.events.last().unwrap().kind, "AllocationFailure");
    }

    #[test]
    fn evictions_follow_the_policy_and_are_deterministic() {
        let run = |policy| {
            let (mut world, key) = world_with_fleet(20, 0, "PriceCapacityOptimized", policy);
            world.config.eviction_multiplier = 200.0;
            world.advance_to(datetime!(2026-01-01 06:00 UTC));
            let evictions = world.events.iter().filter(|e| e.kind == "SpotEviction").count();
            let deallocated = world.fleets[&key].vms.iter().filter(|v| v.state == VmState::Deallocated).count();
            (evictions, deallocated, world.fleets[&key].counted(Priority::Spot))
        };
        let (evicted, deallocated, counted) = run(EvictionPolicy::Deallocate);
        assert!(evicted > 0);
        assert_eq!(deallocated, evicted, "deallocated VMs stay and are not replaced");
        assert_eq!(counted, 20);
        let (evicted_delete, deallocated_delete, counted_delete) = run(EvictionPolicy::Delete);
        assert!(evicted_delete > 0);
        assert_eq!(deallocated_delete, 0);
        assert_eq!(counted_delete, 20, "maintain replaces deleted VMs");
        assert_eq!(run(EvictionPolicy::Deallocate), (evicted, deallocated, counted), "same seed, same world");
    }
}
