//! infra against the emulator over real HTTP on loopback, and against small scripted servers
//! for the retry paths.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fleetpilot_core::{Decision, FleetRef, FleetState, Plan, Proposal, ProposalStatus, ScaleTarget, Verdict, VmState};
use fleetpilot_emulator::{Emulator, EmulatorConfig, Scenario, WorldConfig};
use fleetpilot_infra::{
    Applied, ArmAzureApi, ArmClient, ArmConfig, AzureApi, AzureError, ExecuteError, Executor, Store, StoreError,
};
use serde_json::json;
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

mod faults;

struct Env {
    emulator: Arc<Emulator>,
    url: String,
    client: ArmClient,
    api: Arc<ArmAzureApi>,
    _cancel: tokio_util::sync::DropGuard,
}

async fn start(scenario: Scenario) -> Env {
    let config = EmulatorConfig {
        world: WorldConfig { retry_after_secs: 0, ..WorldConfig::default() },
        start: datetime!(2026-03-02 08:00 UTC),
        speed: 0.0,
        scenario,
    };
    let emulator = Emulator::new(config);
    let cancel = CancellationToken::new();
    let (addr, _task) =
        fleetpilot_emulator::spawn(emulator.clone(), "127.0.0.1:0".parse().unwrap(), cancel.clone()).await.unwrap();
    let subscription = emulator.lock_world().config.subscription_id.clone();
    let client = ArmClient::new(ArmConfig::new(format!("http://{addr}"), subscription)).unwrap();
    let api = Arc::new(ArmAzureApi::new(client.clone()));
    Env { emulator, url: format!("http://{addr}"), client, api, _cancel: cancel.drop_guard() }
}

fn reference() -> FleetRef {
    FleetRef { resource_group: "rg-ml-adaptive-scaling".into(), name: "cf-ml-scaling".into() }
}

fn proposal(id: &str, target: ScaleTarget) -> Proposal {
    Proposal {
        id: id.into(),
        fleet: reference(),
        requested_by: "test".into(),
        reason: "test".into(),
        created_at: datetime!(2026-03-02 08:00 UTC),
        observed_spot_capacity: 20,
        observed_regular_capacity: 10,
        target,
        verdict: allow(),
        plan: Plan::default(),
        cost: None,
        status: ProposalStatus::Proposed,
        outcome: None,
        review: None,
    }
}

fn allow() -> Verdict {
    Verdict { decision: Decision::Allow, violations: vec![], dry_run: false }
}

fn allow_all(_: &FleetState) -> Verdict {
    allow()
}

#[tokio::test]
async fn create_read_patch_delete_a_fleet_with_long_running_operations() {
    let env = start(Scenario::Empty).await;
    let sub = env.client.subscription_path();
    let rg = env
        .client
        .put(&format!("{sub}/resourcegroups/rg-test?api-version=2025-04-01"), &json!({"location": "eastus"}))
        .await
        .unwrap();
    assert_eq!(rg["name"], "rg-test");
    let fleet_path = format!("{sub}/resourceGroups/rg-test/providers/Microsoft.AzureFleet/fleets/f1?api-version=2024-11-01");
    let body = json!({
        "location": "eastus",
        "properties": {
            "spotPriorityProfile": {"capacity": 3, "minCapacity": 1, "evictionPolicy": "Delete", "allocationStrategy": "LowestPrice", "maintain": true},
            "regularPriorityProfile": {"capacity": 2, "minCapacity": 1, "allocationStrategy": "LowestPrice"},
            "vmSizesProfile": [{"name": "Standard_D4s_v5"}, {"name": "Standard_D8s_v5"}, {"name": "Standard_E4s_v5"}],
            "computeProfile": {"baseVirtualMachineProfile": {}}
        }
    });
    let created = env.client.put(&fleet_path, &body).await.unwrap();
    assert_eq!(created["properties"]["provisioningState"], "Succeeded", "PUT waits for Azure-AsyncOperation, then GETs");

    let fleet = FleetRef { resource_group: "rg-test".into(), name: "f1".into() };
    let listed = env.api.list_fleets(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fleet, fleet);
    let state = env.api.read_fleet(&fleet).await.unwrap();
    assert_eq!((state.spot.creating, state.regular.creating), (3, 2));

    env.emulator.clock.advance(Duration::from_secs(180));
    let state = env.api.read_fleet(&fleet).await.unwrap();
    assert_eq!((state.spot.running, state.regular.running), (3, 2));

    env.api.update_fleet(&fleet, Some(5), None, None).await.unwrap();
    let state = env.api.read_fleet(&fleet).await.unwrap();
    assert_eq!((state.spot.capacity, state.spot.counted()), (5, 5));

    env.client.delete(&fleet_path).await.unwrap();
    env.client.delete(&fleet_path).await.unwrap();
    let err = env.api.read_fleet(&fleet).await.unwrap_err();
    assert!(matches!(&err, AzureError::Api { status: 404, code, .. } if code == "ResourceNotFound"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn executor_scales_out_then_in_and_is_idempotent() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    let executor = Executor::new(env.api.clone(), store.clone());

    let out = proposal("p-out", ScaleTarget { spot_capacity: Some(24), ..Default::default() });
    let Applied::Done(outcome, plan) = executor.apply(&out, false, &allow_all).await.unwrap() else { panic!("expected Done") };
    assert!(outcome.verified, "{outcome:?}");
    assert_eq!(plan.actions.len(), 1);
    let state = env.api.read_fleet(&reference()).await.unwrap();
    assert_eq!((state.spot.capacity, state.spot.creating, state.spot.running), (24, 4, 20));

    // The same proposal again: nothing happens.
    let again = executor.apply(&out, false, &allow_all).await.unwrap();
    assert!(matches!(again, Applied::AlreadyApplied(_)), "{again:?}");
    assert_eq!(env.api.read_fleet(&reference()).await.unwrap().spot.counted(), 24);

    // Scale in: the booting VMs go first, then the newest running ones.
    let scale_in = proposal("p-in", ScaleTarget { spot_capacity: Some(18), ..Default::default() });
    let Applied::Done(outcome, _) = executor.apply(&scale_in, false, &allow_all).await.unwrap() else { panic!() };
    assert!(outcome.verified, "{outcome:?}");
    let state = env.api.read_fleet(&reference()).await.unwrap();
    assert_eq!((state.spot.capacity, state.spot.creating, state.spot.running), (18, 0, 18));
    let phases: Vec<String> = store.journal_of("p-in").unwrap().into_iter().map(|e| e.phase).collect();
    assert_eq!(phases, ["intent", "step", "step", "outcome"]);
}

#[tokio::test]
async fn executor_refuses_when_the_recheck_denies_and_changes_nothing() {
    let env = start(Scenario::Reference).await;
    let executor = Executor::new(env.api.clone(), Arc::new(Store::open_in_memory().unwrap()));
    let deny = |_: &FleetState| Verdict { decision: Decision::Deny, violations: vec![], dry_run: false };
    let p = proposal("p-deny", ScaleTarget { spot_capacity: Some(30), ..Default::default() });
    let err = executor.apply(&p, false, &deny).await.unwrap_err();
    assert!(matches!(err, ExecuteError::Refused(_)));
    let needs = |_: &FleetState| Verdict { decision: Decision::NeedsApproval, violations: vec![], dry_run: false };
    assert!(matches!(executor.apply(&p, false, &needs).await.unwrap_err(), ExecuteError::Refused(_)));
    assert_eq!(env.api.read_fleet(&reference()).await.unwrap().spot.capacity, 20);

    let dry = |_: &FleetState| Verdict { decision: Decision::Allow, violations: vec![], dry_run: true };
    let Applied::DryRun(plan) = executor.apply(&p, false, &dry).await.unwrap() else { panic!() };
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(env.api.read_fleet(&reference()).await.unwrap().spot.capacity, 20);
}

#[tokio::test]
async fn deallocated_spot_vms_are_deleted_before_running_ones() {
    let env = start(Scenario::Reference).await;
    {
        let mut world = env.emulator.lock_world();
        let fleet = world.fleets.values_mut().next().unwrap();
        for vm in fleet.vms.iter_mut().filter(|v| v.priority == fleetpilot_core::Priority::Spot).take(2) {
            vm.state = VmState::Deallocated;
        }
    }
    let executor = Executor::new(env.api.clone(), Arc::new(Store::open_in_memory().unwrap()));
    let p = proposal("p-dealloc", ScaleTarget { spot_capacity: Some(18), ..Default::default() });
    executor.apply(&p, false, &allow_all).await.unwrap();
    let state = env.api.read_fleet(&reference()).await.unwrap();
    assert_eq!((state.spot.deallocated, state.spot.running), (0, 18));
}

/// A server that answers 429 (with `Retry-After: 1`) `failures` times, then 200.
async fn flaky(failures: u32, status: u16) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n < failures {
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("retry-after", "1")],
                    axum::Json(json!({"error": {"code": "TooManyRequests", "message": "slow down"}})),
                )
            } else {
                (axum::http::StatusCode::OK, [("retry-after", "0")], axum::Json(json!({"ok": true})))
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let (url, calls) = flaky(1, 429).await;
    let client = ArmClient::new(ArmConfig::new(url, "s")).unwrap();
    let started = Instant::now();
    let body: serde_json::Value = client.get("/x").await.unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}, Retry-After said 1 s", started.elapsed());
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let (url, calls) = flaky(10, 400).await;
    let client = ArmClient::new(ArmConfig::new(url, "s")).unwrap();
    let err = client.get::<serde_json::Value>("/x").await.unwrap_err();
    assert!(matches!(&err, AzureError::Api { status: 400, code, .. } if code == "TooManyRequests"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_give_up_after_the_configured_count() {
    let (url, calls) = flaky(100, 503).await;
    let mut config = ArmConfig::new(url, "s");
    config.retry.max_retries = 2;
    config.retry.max_retry_after = Duration::from_millis(10);
    let client = ArmClient::new(config).unwrap();
    let err = client.get::<serde_json::Value>("/x").await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn store_survives_reopen() {
    let dir = std::env::temp_dir().join(format!("fleetpilot-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    let _ = std::fs::remove_file(&path);
    {
        let store = Store::open(&path).unwrap();
        store.save_proposal(&proposal("p1", ScaleTarget::default())).unwrap();
        store.journal("p1", "intent", &json!({"plan": []})).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.proposal("p1").unwrap().unwrap().id, "p1");
    assert_eq!(store.journal_of("p1").unwrap().len(), 1);
    assert_eq!(store.proposals(Some("CF-ML-SCALING"), None, 10).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A crash between the PATCH and the deletions leaves the capacity lowered and the surplus VMs
/// in place, and an intent with no outcome. Start-up recovery plans only what is left and
/// finishes the job; applying the proposal afterwards does nothing.
#[tokio::test]
async fn recovery_finishes_a_change_interrupted_after_the_patch() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    let target = ScaleTarget { spot_capacity: Some(15), ..Default::default() };
    let p = proposal("p-partial", target.clone());
    store.save_proposal(&p).unwrap();
    store.journal("p-partial", "intent", &json!({"fleet": reference(), "target": target})).unwrap();
    env.client
        .patch(
            &format!("{}/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.AzureFleet/fleets/cf-ml-scaling?api-version=2024-11-01", env.client.subscription_path()),
            &json!({"properties": {"spotPriorityProfile": {"capacity": 15}}}),
        )
        .await
        .unwrap();
    let executor = Executor::new(env.api.clone(), store.clone());
    // Until recovery settles it, the executor refuses to touch it.
    assert!(matches!(executor.apply(&p, false, &allow_all).await, Err(ExecuteError::Store(StoreError::Unfinished(_)))));
    let recovered = executor.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].result, "finished");
    assert!(recovered[0].outcome.verified);
    assert_eq!(recovered[0].outcome.performed, ["deleted 5 spot VMs"]);
    let state = env.api.read_fleet(&reference()).await.unwrap();
    assert_eq!((state.spot.capacity, state.spot.counted()), (15, 15));
    assert!(matches!(executor.apply(&p, false, &allow_all).await.unwrap(), Applied::AlreadyApplied(_)));
    assert!(store.unfinished().unwrap().is_empty());
}

/// A crash after the intent but before the PATCH: the change never reached Azure. Recovery
/// marks it failed (permanent) and changes nothing.
#[tokio::test]
async fn recovery_fails_a_change_that_never_reached_azure() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    let target = ScaleTarget { spot_capacity: Some(25), ..Default::default() };
    store.save_proposal(&proposal("p-early", target.clone())).unwrap();
    store.journal("p-early", "intent", &json!({"fleet": reference(), "target": target})).unwrap();
    let executor = Executor::new(env.api.clone(), store.clone());
    let recovered = executor.recover().await.unwrap();
    assert_eq!(recovered[0].result, "failed");
    assert_eq!(recovered[0].outcome.error_class.as_deref(), Some("permanent"));
    assert_eq!(env.api.read_fleet(&reference()).await.unwrap().spot.capacity, 20);
    let journal = store.journal_of("p-early").unwrap();
    assert_eq!(journal.last().unwrap().body["recovered"], true);
    assert!(executor.recover().await.unwrap().is_empty(), "settled once");
}
