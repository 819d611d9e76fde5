//! What a fleet costs per hour now, and what it would cost at a proposed capacity mix, from
//! the price table (Linux list prices, spot vs pay-as-you-go, per size).
//!
//! The model, stated so that an agent can reason about it:
//! - **Now**: every VM that is Creating or Running, at its size's price for its priority.
//!   Deallocated (evicted) spot VMs bill only their disks, which the table does not price.
//! - **Proposed**: each priority at its target capacity, all VMs running. VMs the fleet has
//!   keep their sizes. On scale-in the cheapest are assumed to go first, so a scale-in is
//!   never estimated cheaper than it can turn out. New VMs are priced at the cheapest size
//!   the fleet may use for that priority — what `LowestPrice` and `PriceCapacityOptimized`
//!   choose while capacity allows. A change of VM sizes prices every VM of a priority whose
//!   size leaves the list at the new list's cheapest.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FleetState, PriceTable, Priority, ScaleTarget, VmState};

/// A fleet's hourly cost now and at a target, in USD at list prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CostEstimate {
    /// What the fleet's Creating and Running VMs cost per hour now.
    pub current_hourly_usd: f64,
    /// What the fleet would cost per hour at the target, every VM running.
    pub proposed_hourly_usd: f64,
    /// `proposed - current`: positive costs more.
    pub delta_hourly_usd: f64,
    /// The delta over a 30-day month (730 hours), for budgets.
    pub delta_monthly_usd: f64,
    /// The proposed mix, one line per priority and size.
    pub lines: Vec<CostLine>,
    /// Sizes with no price in the table (counted as zero).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced_sizes: Vec<String>,
}

/// One priority and size of a mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CostLine {
    /// Spot or regular.
    pub priority: Priority,
    /// VM size.
    pub size: String,
    /// VMs of this size and priority.
    pub count: u32,
    /// Price of one VM per hour.
    pub unit_usd_hour: f64,
    /// `count × unit`.
    pub hourly_usd: f64,
}

/// Rounded to 1/10,000 of a dollar, as the tools report money.
fn round_usd(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// USD per hour of the VMs that count towards the targets now.
pub fn hourly_cost(state: &FleetState, prices: &PriceTable) -> f64 {
    let total: f64 = state
        .vms
        .iter()
        .filter(|vm| matches!(vm.state, VmState::Creating | VmState::Running))
        .filter_map(|vm| prices.get(&vm.size).map(|size| size.price(vm.priority)))
        .sum();
    round_usd(total)
}

/// The cost of `state` now and at `target` (see the module's model).
pub fn estimate(state: &FleetState, target: &ScaleTarget, prices: &PriceTable) -> CostEstimate {
    let sizes: &[String] = target.vm_sizes.as_deref().unwrap_or(&state.vm_sizes);
    let mut unpriced: Vec<String> = Vec::new();
    let mut price_of = |size: &str, priority: Priority| match prices.get(size) {
        Some(info) => info.price(priority),
        None => {
            if !unpriced.iter().any(|s| s.eq_ignore_ascii_case(size)) {
                unpriced.push(size.to_string());
            }
            0.0
        }
    };
    let mut mix: BTreeMap<(Priority, String), u32> = BTreeMap::new();
    for priority in [Priority::Spot, Priority::Regular] {
        let capacity = match priority {
            Priority::Spot => target.spot_capacity.unwrap_or(state.spot.capacity),
            Priority::Regular => target.regular_capacity.unwrap_or(state.regular.capacity),
        };
        // The cheapest size the fleet may use for new VMs of this priority.
        let cheapest = sizes
            .iter()
            .map(|s| (price_of(s, priority), s.clone()))
            .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        // VMs that count towards the target keep their size while it stays allowed.
        let mut kept: Vec<(f64, String)> = state
            .vms
            .iter()
            .filter(|vm| vm.priority == priority && vm.state != VmState::Deleting)
            .filter(|vm| sizes.iter().any(|s| s.eq_ignore_ascii_case(&vm.size)))
            .map(|vm| (price_of(&vm.size, priority), vm.size.clone()))
            .collect();
        // Scale-in removes the cheapest first: the estimate errs high.
        kept.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        kept.truncate(capacity as usize);
        let new = capacity as usize - kept.len();
        for (_, size) in kept {
            *mix.entry((priority, size)).or_default() += 1;
        }
        if new > 0 {
            let size = cheapest.map_or_else(|| "(no size allowed)".to_string(), |(_, s)| s);
            *mix.entry((priority, size)).or_default() += new as u32;
        }
    }
    let lines: Vec<CostLine> = mix
        .into_iter()
        .map(|((priority, size), count)| {
            let unit = prices.get(&size).map_or(0.0, |i| i.price(priority));
            CostLine { priority, size, count, unit_usd_hour: unit, hourly_usd: round_usd(unit * f64::from(count)) }
        })
        .collect();
    let current = hourly_cost(state, prices);
    let proposed = round_usd(lines.iter().map(|l| l.unit_usd_hour * f64::from(l.count)).sum());
    let delta = round_usd(proposed - current);
    CostEstimate {
        current_hourly_usd: current,
        proposed_hourly_usd: proposed,
        delta_hourly_usd: delta,
        delta_monthly_usd: (delta * 730.0 * 100.0).round() / 100.0,
        lines,
        unpriced_sizes: unpriced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EvictionPolicy, FleetRef, PriorityState, Vm};

    fn vm(size: &str, priority: Priority, state: VmState, i: u32) -> Vm {
        Vm {
            id: format!("vm-{i}"),
            scale_set: "ss".into(),
            instance_id: i.to_string(),
            size: size.into(),
            priority,
            state,
            busy: false,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn tier(capacity: u32) -> PriorityState {
        PriorityState {
            capacity,
            min_capacity: 0,
            allocation_strategy: "LowestPrice".into(),
            creating: 0,
            running: 0,
            deallocated: 0,
        }
    }

    fn fleet(vms: Vec<Vm>, spot: u32, regular: u32) -> FleetState {
        FleetState {
            fleet: FleetRef { resource_group: "rg".into(), name: "f".into() },
            id: "id".into(),
            location: "eastus".into(),
            provisioning_state: "Succeeded".into(),
            spot: tier(spot),
            regular: tier(regular),
            spot_max_price_per_vm: -1.0,
            spot_eviction_policy: EvictionPolicy::Delete,
            spot_maintain: true,
            vm_sizes: vec!["Standard_D4s_v5".into(), "Standard_D8s_v5".into()],
            vms,
            observed_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_scale_out_prices_new_vms_at_the_cheapest_allowed_size() {
        let prices = PriceTable::embedded();
        let d4 = prices.get("Standard_D4s_v5").unwrap().clone();
        let d8 = prices.get("Standard_D8s_v5").unwrap().clone();
        let state = fleet(
            vec![
                vm("Standard_D8s_v5", Priority::Spot, VmState::Running, 0),
                vm("Standard_D4s_v5", Priority::Regular, VmState::Running, 1),
                vm("Standard_D4s_v5", Priority::Spot, VmState::Deallocated, 2),
            ],
            2,
            1,
        );
        let target = ScaleTarget { spot_capacity: Some(4), regular_capacity: None, vm_sizes: None };
        let e = estimate(&state, &target, &prices);
        let now = d8.spot_usd_hour + d4.payg_usd_hour;
        assert!((e.current_hourly_usd - now).abs() < 1e-3, "{e:?}");
        // The D8 and the evicted D4 keep their sizes; two new VMs at D4 spot.
        let proposed = d8.spot_usd_hour + 3.0 * d4.spot_usd_hour + d4.payg_usd_hour;
        assert!((e.proposed_hourly_usd - proposed).abs() < 1e-3, "{e:?}");
        assert!((e.delta_hourly_usd - (proposed - now)).abs() < 1e-3);
        assert_eq!(e.lines.iter().map(|l| l.count).sum::<u32>(), 5);
    }

    #[test]
    fn a_scale_in_keeps_the_dearest_vms_so_it_errs_high() {
        let prices = PriceTable::embedded();
        let d8 = prices.get("Standard_D8s_v5").unwrap().clone();
        let state = fleet(
            vec![
                vm("Standard_D4s_v5", Priority::Regular, VmState::Running, 0),
                vm("Standard_D8s_v5", Priority::Regular, VmState::Running, 1),
            ],
            0,
            2,
        );
        let target = ScaleTarget { spot_capacity: None, regular_capacity: Some(1), vm_sizes: None };
        let e = estimate(&state, &target, &prices);
        assert!((e.proposed_hourly_usd - d8.payg_usd_hour).abs() < 1e-3, "{e:?}");
        assert!(e.delta_hourly_usd < 0.0);
    }

    #[test]
    fn a_size_change_reprices_vms_whose_size_leaves_the_list() {
        let prices = PriceTable::embedded();
        let e4 = prices.get("Standard_E4s_v5").unwrap().clone();
        let state = fleet(vec![vm("Standard_D4s_v5", Priority::Spot, VmState::Running, 0)], 1, 0);
        let target = ScaleTarget { spot_capacity: None, regular_capacity: None, vm_sizes: Some(vec!["Standard_E4s_v5".into()]) };
        let e = estimate(&state, &target, &prices);
        assert_eq!(e.lines.len(), 1);
        assert_eq!(e.lines[0].size, "Standard_E4s_v5");
        assert!((e.proposed_hourly_usd - e4.spot_usd_hour).abs() < 1e-3);
        let unknown = ScaleTarget { spot_capacity: None, regular_capacity: None, vm_sizes: Some(vec!["Standard_Nope".into()]) };
        assert_eq!(estimate(&state, &unknown, &prices).unpriced_sizes, vec!["Standard_Nope".to_string()]);
    }
}
