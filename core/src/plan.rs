//! Turning a target into actions: what the executor must do to move a fleet from what it is
//! to what was asked. Pure, so that the same inputs always give the same plan.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FleetState, Priority, ScaleTarget, Vm, VmState};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// PATCH the fleet's target capacity for one priority.
    SetCapacity {
        /// Which tier.
        priority: Priority,
        /// Capacity before.
        from: u32,
        /// Capacity after.
        to: u32,
    },
    /// PATCH the fleet's VM sizes.
    SetVmSizes {
        /// Sizes before.
        from: Vec<String>,
        /// Sizes after.
        to: Vec<String>,
    },
    /// Delete surplus VMs. Compute Fleet does not do this itself when a target is lowered.
    DeleteVms {
        /// Which tier.
        priority: Priority,
        /// ARM ids of the VMs to delete, in the order chosen.
        vm_ids: Vec<String>,
    },
}

/// The actions that take a fleet to a target, in the order they must run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// Steps, in order: capacity and size changes first, then deletions (deleting first would
    /// let the fleet replace what was just deleted).
    pub actions: Vec<Action>,
    /// Surplus VMs left in place because they are busy (running a job).
    pub busy_kept: u32,
}

impl Plan {
    /// A plan that does nothing: the fleet is already at its target.
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Compute the plan that takes `observed` to `target`.
///
/// # Guarantees
/// - Deterministic: the same inputs give the same plan.
/// - Idempotent: planning again from the state this plan leads to gives an empty plan.
/// - Never deletes a busy VM; surplus busy VMs are counted in `busy_kept`.
/// - Victims are chosen idle-first: deallocated, then creating, then running, newest first.
pub fn plan(observed: &FleetState, target: &ScaleTarget) -> Plan {
    let mut actions = Vec::new();
    let mut busy_kept = 0;
    if let Some(sizes) = &target.vm_sizes
        && !same_sizes(sizes, &observed.vm_sizes)
    {
        actions.push(Action::SetVmSizes { from: observed.vm_sizes.clone(), to: sizes.clone() });
    }
    let mut deletions = Vec::new();
    for priority in Priority::ALL {
        let wanted = match priority {
            Priority::Spot => target.spot_capacity,
            Priority::Regular => target.regular_capacity,
        };
        let Some(to) = wanted else { continue };
        let tier = observed.tier(priority);
        if tier.capacity != to {
            actions.push(Action::SetCapacity { priority, from: tier.capacity, to });
        }
        let counted = tier.counted();
        if counted > to {
            let surplus = (counted - to) as usize;
            let victims = choose_victims(&observed.vms, priority, surplus);
            busy_kept += (surplus - victims.len()) as u32;
            if !victims.is_empty() {
                deletions.push(Action::DeleteVms { priority, vm_ids: victims });
            }
        }
    }
    actions.extend(deletions);
    Plan { actions, busy_kept }
}

fn same_sizes(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// Pick up to `count` idle VMs of a priority to delete, least useful first.
fn choose_victims(vms: &[Vm], priority: Priority, count: usize) -> Vec<String> {
    let rank = |vm: &Vm| match vm.state {
        VmState::Deallocated => 0,
        VmState::Creating => 1,
        VmState::Running => 2,
        VmState::Deleting => 3,
    };
    let mut candidates: Vec<&Vm> =
        vms.iter().filter(|vm| vm.priority == priority && !vm.busy && vm.state.counts_towards_target()).collect();
    // Newest first within a state: the oldest VMs are the warmest.
    candidates.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.created_at.cmp(&a.created_at)).then(a.id.cmp(&b.id)));
    candidates.into_iter().take(count).map(|vm| vm.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EvictionPolicy, FleetRef, PriorityState};
    use time::macros::datetime;

    fn vm(n: u32, priority: Priority, state: VmState, busy: bool) -> Vm {
        Vm {
            id: format!("vm{n}"),
            scale_set: "ss".into(),
            instance_id: n.to_string(),
            size: "Standard_D4s_v5".into(),
            priority,
            state,
            busy,
            created_at: datetime!(2026-01-01 00:00 UTC) + time::Duration::minutes(n as i64),
        }
    }

    fn fleet(spot_capacity: u32, regular_capacity: u32, vms: Vec<Vm>) -> FleetState {
        let mut state = FleetState {
            fleet: FleetRef { resource_group: "rg".into(), name: "f".into() },
            id: "id".into(),
            location: "eastus".into(),
            provisioning_state: "Succeeded".into(),
            spot: PriorityState { capacity: spot_capacity, ..Default::default() },
            regular: PriorityState { capacity: regular_capacity, ..Default::default() },
            spot_max_price_per_vm: -1.0,
            spot_eviction_policy: EvictionPolicy::Delete,
            spot_maintain: true,
            vm_sizes: vec!["Standard_D4s_v5".into()],
            vms,
            observed_at: datetime!(2026-01-01 01:00 UTC),
        };
        state.recount();
        state
    }

    fn check(observed: &FleetState, target: ScaleTarget, expect: &str) {
        let plan = plan(observed, &target);
        let got = serde_json::to_string(&plan).unwrap();
        assert_eq!(got, expect);
    }

    #[test]
    fn scale_out_is_one_patch() {
        let f = fleet(2, 1, vec![vm(1, Priority::Spot, VmState::Running, false)]);
        check(
            &f,
            ScaleTarget { spot_capacity: Some(5), ..Default::default() },
            r#"{"actions":[{"kind":"set_capacity","priority":"spot","from":2,"to":5}],"busy_kept":0}"#,
        );
    }

    #[test]
    fn scale_in_deletes_idle_newest_first_and_keeps_busy() {
        let f = fleet(
            4,
            0,
            vec![
                vm(1, Priority::Spot, VmState::Running, false),
                vm(2, Priority::Spot, VmState::Running, true),
                vm(3, Priority::Spot, VmState::Running, false),
                vm(4, Priority::Spot, VmState::Creating, false),
            ],
        );
        check(
            &f,
            ScaleTarget { spot_capacity: Some(1), ..Default::default() },
            r#"{"actions":[{"kind":"set_capacity","priority":"spot","from":4,"to":1},{"kind":"delete_vms","priority":"spot","vm_ids":["vm4","vm3","vm1"]}],"busy_kept":0}"#,
        );
        check(
            &f,
            ScaleTarget { spot_capacity: Some(0), ..Default::default() },
            r#"{"actions":[{"kind":"set_capacity","priority":"spot","from":4,"to":0},{"kind":"delete_vms","priority":"spot","vm_ids":["vm4","vm3","vm1"]}],"busy_kept":1}"#,
        );
    }

    #[test]
    fn deallocated_go_first() {
        let f =
            fleet(2, 0, vec![vm(1, Priority::Spot, VmState::Deallocated, false), vm(2, Priority::Spot, VmState::Running, false)]);
        check(
            &f,
            ScaleTarget { spot_capacity: Some(1), ..Default::default() },
            r#"{"actions":[{"kind":"set_capacity","priority":"spot","from":2,"to":1},{"kind":"delete_vms","priority":"spot","vm_ids":["vm1"]}],"busy_kept":0}"#,
        );
    }

    #[test]
    fn at_target_is_a_noop() {
        let f = fleet(1, 1, vec![vm(1, Priority::Spot, VmState::Running, false)]);
        let p = plan(
            &f,
            &ScaleTarget { spot_capacity: Some(1), regular_capacity: Some(1), vm_sizes: Some(vec!["standard_d4s_v5".into()]) },
        );
        assert!(p.is_noop(), "{p:?}");
    }
}
