//! What exists in the emulated world at start.

use fleetpilot_core::EvictionPolicy;

use crate::world::{FleetRecord, RegularProfile, ResourceGroup, SizeProfile, SpotProfile, World};

/// The source recipe's compute profile (`recipe/artefacts/compute-profile.json`).
const RECIPE_COMPUTE_PROFILE: &str = include_str!("../data/compute-profile.json");

/// A starting world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// Nothing at all: clients create what they need.
    Empty,
    /// The source recipe's reference deployment, already running: resource group
    /// `rg-ml-adaptive-scaling` in `eastus` with fleet `cf-ml-scaling` (spot 20, min 2, max price
    /// 0.10, PriceCapacityOptimized, Deallocate; regular 10, min 1, LowestPrice) over
    /// Standard_D4s_v5, Standard_D8s_v5 and Standard_E4s_v5; serving the `llm-conv` inference
    /// service, whose demand replays the Azure LLM conversation trace of 2023 over each day.
    #[default]
    Reference,
    /// The reference deployment and a second fleet in `westus2`, `cf-ml-scaling-westus2`
    /// (spot 10, min 1; regular 2, min 1; the same sizes), in the same resource group: both
    /// serve `llm-conv`, whose load balancer routes by capacity; its demand is scaled to the
    /// 42 VMs as the reference's is to 30. Each region has its own spot pool and weather.
    MultiRegion,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "empty" => Ok(Scenario::Empty),
            "reference" => Ok(Scenario::Reference),
            "multi-region" => Ok(Scenario::MultiRegion),
            other => Err(format!("unknown scenario '{other}' (expected 'reference', 'multi-region' or 'empty')")),
        }
    }
}

/// Resource group of the reference deployment.
pub const REFERENCE_RESOURCE_GROUP: &str = "rg-ml-adaptive-scaling";
/// Azure ML workspace of the reference deployment.
pub const REFERENCE_WORKSPACE: &str = "mlw-adaptive-scaling";
/// Fleet of the reference deployment.
pub const REFERENCE_FLEET: &str = "cf-ml-scaling";
/// The second fleet of the multi-region scenario.
pub const WEST_FLEET: &str = "cf-ml-scaling-westus2";

impl Scenario {
    /// Put the scenario's resources into `world`.
    pub fn install(self, world: &mut World) {
        if self == Scenario::Empty {
            return;
        }
        let subscription = world.config.subscription_id.clone();
        world.resource_groups.insert(
            REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(),
            ResourceGroup { name: REFERENCE_RESOURCE_GROUP.into(), location: "eastus".into(), tags: Default::default() },
        );
        let compute_profile: serde_json::Value = serde_json::from_str(
            &RECIPE_COMPUTE_PROFILE
                .replace("${SUBSCRIPTION_ID}", &subscription)
                .replace("${RESOURCE_GROUP}", REFERENCE_RESOURCE_GROUP),
        )
        .unwrap_or_default();
        let key = (REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(), REFERENCE_FLEET.to_string());
        running_fleet(
            world,
            (REFERENCE_FLEET, "eastus", "8f0c1a52-6b1e-4d7c-9a3e-5d2f4b7c9e10"),
            (20, 10),
            compute_profile.clone(),
        );
        let mut service = crate::services::reference_service(world.now);
        if self == Scenario::MultiRegion {
            running_fleet(world, (WEST_FLEET, "westus2", "3b7e2d94-0c5a-4f18-8e6b-1a9d4c2f7e53"), (10, 2), compute_profile);
            service.fleets.push((REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(), WEST_FLEET.to_string()));
            service.replay.amplitude *= 42.0 / 30.0;
        }
        world.services.push((service, Default::default()));
        // The recipe's metric alert rules on the workspace and the fleet.
        let workspace_id =
            crate::wire::workspace_id(&world.config.subscription_id, REFERENCE_RESOURCE_GROUP, REFERENCE_WORKSPACE);
        if let Some(fleet) = world.fleets.get(&key) {
            let fleet_id = crate::wire::fleet_id(&world.config.subscription_id, fleet);
            world.alert_rules = crate::alerts::recipe_rules(&workspace_id, &fleet_id);
        }
        // The second region's fleet gets the recipe's fleet rule too (the workspace's CPU
        // rule already covers the service on both).
        let west = (REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(), WEST_FLEET.to_string());
        if let Some(fleet) = world.fleets.get(&west) {
            let west_id = crate::wire::fleet_id(&world.config.subscription_id, fleet);
            for mut rule in crate::alerts::recipe_rules(&workspace_id, &west_id) {
                if rule.scope.eq_ignore_ascii_case(&west_id) {
                    rule.name = format!("{}-westus2", rule.name);
                    world.alert_rules.push(rule);
                }
            }
        }
        // The recipe's ML workspace and its AmlCompute cluster (min 0, max 10 nodes).
        world.ml.insert(
            (REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(), REFERENCE_WORKSPACE.to_string()),
            crate::aml::Workspace {
                name: REFERENCE_WORKSPACE.into(),
                resource_group: REFERENCE_RESOURCE_GROUP.into(),
                location: "eastus".into(),
                kind: "Default".into(),
                hub_id: None,
                friendly_name: REFERENCE_WORKSPACE.into(),
                properties: Default::default(),
                tags: Default::default(),
                computes: std::collections::BTreeMap::from([(
                    "compute-cluster".to_string(),
                    crate::aml::Compute {
                        name: "compute-cluster".into(),
                        location: "eastus".into(),
                        vm_size: "Standard_D4s_v3".into(),
                        vm_priority: "Dedicated".into(),
                        min_nodes: 0,
                        max_nodes: 10,
                        idle_before_scale_down: 120,
                        nodes: Vec::new(),
                        next_node: 0,
                    },
                )]),
                jobs: std::collections::BTreeMap::new(),
            },
        );
    }
}

/// A fleet of the recipe's shape in the reference resource group, its VMs booted:
/// `(spot, regular)` VMs, spot at most 0.10 USD/h with Deallocate, minimum 2 spot (1 for a
/// fleet of fewer than 20) and 1 regular.
fn running_fleet(
    world: &mut World,
    (name, location, unique_id): (&str, &str, &str),
    (spot, regular): (u32, u32),
    compute_profile: serde_json::Value,
) {
    let key = (REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(), name.to_string());
    world.fleets.insert(
        key.clone(),
        FleetRecord {
            name: name.into(),
            resource_group: REFERENCE_RESOURCE_GROUP.into(),
            location: location.into(),
            tags: Default::default(),
            spot: Some(SpotProfile {
                capacity: spot,
                min_capacity: if spot >= 20 { 2 } else { 1 },
                max_price_per_vm: Some(0.10),
                eviction_policy: EvictionPolicy::Deallocate,
                allocation_strategy: "PriceCapacityOptimized".into(),
                maintain: true,
            }),
            regular: Some(RegularProfile { capacity: regular, min_capacity: 1, allocation_strategy: "LowestPrice".into() }),
            vm_sizes: ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]
                .iter()
                .map(|n| SizeProfile { name: (*n).into(), rank: None })
                .collect(),
            compute_profile,
            provisioning_state: "Succeeded".into(),
            time_created: world.now,
            unique_id: unique_id.into(),
            vms: Vec::new(),
            next_instance: Default::default(),
        },
    );
    world.seek_target(&key, false);
    // The deployment exists already: its VMs have booted.
    if let Some(fleet) = world.fleets.get_mut(&key) {
        for vm in &mut fleet.vms {
            vm.state = fleetpilot_core::VmState::Running;
            vm.ready_at = vm.created_at;
        }
    }
}
