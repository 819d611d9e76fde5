//! A Compute Fleet as fleetpilot sees it: its capacity targets per priority and the VMs it holds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which pricing tier a VM runs at. Compute Fleet sets capacity for each separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Spot: cheap, evictable.
    Spot,
    /// Regular (Azure calls it Standard): on-demand, never evicted.
    Regular,
}

impl Priority {
    /// Both priorities, spot first.
    pub const ALL: [Priority; 2] = [Priority::Spot, Priority::Regular];

    /// The lowercase name, as used in names and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Spot => "spot",
            Priority::Regular => "regular",
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a fleet lives: resource group and name (the subscription is the client's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub struct FleetRef {
    /// Resource group that holds the fleet.
    pub resource_group: String,
    /// The fleet's name.
    pub name: String,
}

impl std::fmt::Display for FleetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.resource_group, self.name)
    }
}

/// The life of one VM in a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum VmState {
    /// Requested, booting; costs money, serves nothing yet.
    Creating,
    /// Booted and serving.
    Running,
    /// A spot VM evicted under the `Deallocate` policy: stopped, still counted towards the
    /// fleet's spot target, disks still billed.
    Deallocated,
    /// Being deleted.
    Deleting,
}

impl VmState {
    /// Whether the fleet counts this VM towards its target capacity.
    pub fn counts_towards_target(self) -> bool {
        matches!(self, VmState::Creating | VmState::Running | VmState::Deallocated)
    }
}

/// What Compute Fleet does with an evicted spot VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EvictionPolicy {
    /// The VM is deleted; with `maintain` the fleet replaces it.
    Delete,
    /// The VM is stopped and kept; it still counts towards the target.
    Deallocate,
}

/// One VM of a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Vm {
    /// ARM resource id of the VM (a scale set VM).
    pub id: String,
    /// The scale set the VM belongs to (ARM id).
    pub scale_set: String,
    /// Instance id within its scale set.
    pub instance_id: String,
    /// VM size, e.g. `Standard_D4s_v5`.
    pub size: String,
    /// Spot or regular.
    pub priority: Priority,
    /// Lifecycle state.
    pub state: VmState,
    /// Whether the VM is doing work that a deletion would interrupt (a running job).
    pub busy: bool,
    /// When the VM was requested.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: time::OffsetDateTime,
}

/// The observed configuration and population of one priority tier of a fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PriorityState {
    /// Target capacity in VMs.
    pub capacity: u32,
    /// Minimum capacity the fleet was created with.
    pub min_capacity: u32,
    /// Allocation strategy as Azure names it (`PriceCapacityOptimized`, `LowestPrice`, …).
    pub allocation_strategy: String,
    /// VMs that are booting.
    pub creating: u32,
    /// VMs that are running.
    pub running: u32,
    /// Spot VMs evicted and deallocated (they still count towards the target).
    pub deallocated: u32,
}

impl PriorityState {
    /// VMs that count towards the target: creating + running + deallocated.
    pub fn counted(&self) -> u32 {
        self.creating + self.running + self.deallocated
    }
}

/// A fleet as observed at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetState {
    /// Resource group and name.
    pub fleet: FleetRef,
    /// ARM resource id.
    pub id: String,
    /// Azure region.
    pub location: String,
    /// ARM provisioning state (`Succeeded`, `Creating`, `Updating`, …).
    pub provisioning_state: String,
    /// Spot tier.
    pub spot: PriorityState,
    /// Regular tier.
    pub regular: PriorityState,
    /// Maximum price per spot VM in USD per hour; -1 means up to the pay-as-you-go price.
    pub spot_max_price_per_vm: f64,
    /// What happens to evicted spot VMs.
    pub spot_eviction_policy: EvictionPolicy,
    /// Whether the fleet replaces evicted spot VMs.
    pub spot_maintain: bool,
    /// VM sizes the fleet may use, in the order given.
    pub vm_sizes: Vec<String>,
    /// The VMs, in a stable order (scale set, then instance id).
    pub vms: Vec<Vm>,
    /// When this state was read.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub observed_at: time::OffsetDateTime,
}

impl FleetState {
    /// The tier of one priority.
    pub fn tier(&self, priority: Priority) -> &PriorityState {
        match priority {
            Priority::Spot => &self.spot,
            Priority::Regular => &self.regular,
        }
    }

    /// Recount the per-tier VM counts from `vms`. Clients call this after filling `vms`.
    pub fn recount(&mut self) {
        for priority in Priority::ALL {
            let (mut creating, mut running, mut deallocated) = (0, 0, 0);
            for vm in self.vms.iter().filter(|vm| vm.priority == priority) {
                match vm.state {
                    VmState::Creating => creating += 1,
                    VmState::Running => running += 1,
                    VmState::Deallocated => deallocated += 1,
                    VmState::Deleting => {}
                }
            }
            let tier = match priority {
                Priority::Spot => &mut self.spot,
                Priority::Regular => &mut self.regular,
            };
            tier.creating = creating;
            tier.running = running;
            tier.deallocated = deallocated;
        }
    }
}

/// A fleet as listed: its identity and targets, without its VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetSummary {
    /// Resource group and name.
    pub fleet: FleetRef,
    /// ARM resource id.
    pub id: String,
    /// Azure region.
    pub location: String,
    /// ARM provisioning state.
    pub provisioning_state: String,
    /// Spot target capacity.
    pub spot_capacity: u32,
    /// Regular target capacity.
    pub regular_capacity: u32,
    /// VM sizes.
    pub vm_sizes: Vec<String>,
}
