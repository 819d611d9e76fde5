//! Guardrail cases as data: each file under `test_data/check/` is one case.

use std::path::Path;

use fleetpilot_core::{EvictionPolicy, FleetRef, FleetState, PriorityState, ScaleTarget};
use serde::Deserialize;

use crate::{Policy, check};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    policy: Policy,
    observed: Observed,
    target: ScaleTarget,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Observed {
    spot: u32,
    regular: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    bounds: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

fn observed(o: &Observed) -> FleetState {
    FleetState {
        fleet: FleetRef { resource_group: "rg".into(), name: "f".into() },
        id: "id".into(),
        location: "eastus".into(),
        provisioning_state: "Succeeded".into(),
        spot: PriorityState { capacity: o.spot, ..Default::default() },
        regular: PriorityState { capacity: o.regular, ..Default::default() },
        spot_max_price_per_vm: -1.0,
        spot_eviction_policy: EvictionPolicy::Delete,
        spot_maintain: true,
        vm_sizes: vec!["Standard_D4s_v5".into()],
        vms: vec![],
        observed_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

/// Runs one case file and returns a description of any mismatch.
fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    let verdict = check(&case.target, &observed(&case.observed), &case.policy);
    let decision = serde_json::to_value(verdict.decision).unwrap();
    let bounds: Vec<String> = verdict.violations.iter().map(|v| v.bound.clone()).collect();
    if decision != case.expect.decision.as_str() || bounds != case.expect.bounds || verdict.dry_run != case.expect.dry_run {
        return Err(format!(
            "expected {} {:?} (dry_run {}), got {decision} {bounds:?} (dry_run {}): {:#?}",
            case.expect.decision, case.expect.bounds, case.expect.dry_run, verdict.dry_run, verdict.violations
        ));
    }
    Ok(())
}

#[test]
fn check_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/check");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    assert!(paths.len() >= 10, "expected the case files under {}", dir.display());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.file_name().unwrap().to_string_lossy())))
        .collect();
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_violation_is_listed_not_only_the_first() {
    let target = ScaleTarget {
        spot_capacity: Some(100),
        regular_capacity: Some(0),
        vm_sizes: Some(vec!["Standard_NC24ads_A100_v4".into()]),
    };
    let verdict = check(&target, &observed(&Observed { spot: 20, regular: 10 }), &Policy::default());
    let bounds: Vec<&str> = verdict.violations.iter().map(|v| v.bound.as_str()).collect();
    assert_eq!(bounds, ["max_spot", "min_regular", "max_step_up", "allowed_vm_sizes", "approval_above_delta"]);
}

fn job_check(instance_count: u32, active: usize, price: f64) -> Vec<String> {
    use fleetpilot_core::ml::{MlCompute, MlJob, MlJobSpec};
    let spec = MlJobSpec { name: "j".into(), compute: "cc".into(), instance_count, ..Default::default() };
    let compute = MlCompute {
        name: "cc".into(),
        vm_size: "Standard_D4s_v3".into(),
        min_nodes: 0,
        max_nodes: 3,
        current_nodes: 0,
        idle_nodes: 0,
        running_nodes: 0,
    };
    let jobs: Vec<MlJob> = (0..active)
        .map(|i| MlJob {
            name: format!("a{i}"),
            display_name: String::new(),
            experiment_name: String::new(),
            status: "Running".into(),
            compute: "CC".into(),
            command: String::new(),
            instance_count: 1,
        })
        .chain(std::iter::once(MlJob {
            name: "done".into(),
            display_name: String::new(),
            experiment_name: String::new(),
            status: "Completed".into(),
            compute: "cc".into(),
            command: String::new(),
            instance_count: 1,
        }))
        .collect();
    let policy = crate::JobPolicy { max_concurrent_jobs_per_compute: 2, max_nodes_per_job: 4, max_job_usd_per_hour: 1.0 };
    crate::check_job(&spec, &compute, &jobs, price, &policy).violations.into_iter().map(|v| v.bound).collect()
}

#[test]
fn job_guardrails_list_every_reason() {
    assert!(job_check(1, 1, 0.2).is_empty(), "a small job on a quiet compute is allowed; finished jobs do not count");
    assert_eq!(job_check(1, 2, 0.2), ["max_concurrent_jobs_per_compute"]);
    assert_eq!(job_check(5, 0, 0.1), ["max_nodes_per_job", "compute_max_nodes"]);
    assert_eq!(job_check(2, 0, 0.6), ["max_job_usd_per_hour"]);
}
