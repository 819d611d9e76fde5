//! The executor under each fault the emulator injects: it retries what is transient, stops on
//! what is permanent, and the journal says which.

use std::sync::Arc;
use std::time::Duration;

use fleetpilot_core::ScaleTarget;
use fleetpilot_emulator::Scenario;
use fleetpilot_emulator::faults::{Faults, LroFault};
use fleetpilot_infra::{
    Applied, ArmAzureApi, ArmClient, ArmConfig, AzureApi, ExecuteError, Executor, ExecutorConfig, RetryConfig, Store,
};

use super::{Env, allow_all, proposal, reference, start};

/// An executor whose client retries quickly (Retry-After capped at 10 ms) and gives up on
/// long-running operations after 300 ms, so fault tests stay fast.
fn executor(env: &Env, store: &Arc<Store>, verify_timeout: Duration) -> Executor {
    let subscription = env.emulator.lock_world().config.subscription_id.clone();
    let mut config = ArmConfig::new(env.url.clone(), subscription);
    config.retry = RetryConfig {
        max_retries: 3,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_millis(10),
    };
    config.operation_timeout = Duration::from_millis(300);
    config.default_poll = Duration::from_millis(20);
    let api = Arc::new(ArmAzureApi::new(ArmClient::new(config).unwrap()));
    Executor::with_config(api, store.clone(), ExecutorConfig { verify_timeout, verify_poll: Duration::from_millis(50) })
}

fn set(env: &Env, faults: Faults) {
    env.emulator.lock_world().set_faults(faults);
}

fn last_outcome(store: &Store, id: &str) -> serde_json::Value {
    let journal = store.journal_of(id).unwrap();
    let outcome = journal.iter().rev().find(|e| e.phase == "outcome").expect("an outcome is journalled");
    outcome.body.clone()
}

async fn spot_capacity(env: &Env) -> u32 {
    env.api.read_fleet(&reference()).await.unwrap().spot.capacity
}

#[tokio::test]
async fn throttling_is_retried_and_the_change_lands() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    set(&env, Faults { throttle_requests: 2, throttle_retry_after_secs: 30, ..Faults::default() });
    let p = proposal("p-429", ScaleTarget { spot_capacity: Some(22), ..Default::default() });
    let Applied::Done(outcome, _) = executor(&env, &store, Duration::from_secs(2)).apply(&p, false, &allow_all).await.unwrap()
    else {
        panic!("applied")
    };
    assert!(outcome.verified && outcome.error.is_none());
    assert_eq!(spot_capacity(&env).await, 22);
    assert_eq!(env.emulator.lock_world().faults.throttle_requests, 0, "both throttled requests were retried");
}

#[tokio::test]
async fn server_errors_past_the_retries_fail_as_transient() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    // Reads succeed; every write answers 503.
    set(&env, Faults { server_error_requests: 100, only_writes: true, ..Faults::default() });
    let p = proposal("p-503", ScaleTarget { spot_capacity: Some(22), ..Default::default() });
    let err = executor(&env, &store, Duration::from_secs(2)).apply(&p, false, &allow_all).await.unwrap_err();
    let ExecuteError::Azure(e) = err else { panic!("an Azure error") };
    assert!(e.is_transient());
    assert_eq!(env.emulator.lock_world().faults.server_error_requests, 96, "one attempt and three retries");
    let outcome = last_outcome(&store, "p-503");
    assert_eq!(outcome["error_class"], "transient");
    assert!(outcome["error"].as_str().unwrap().contains("503"), "{outcome}");
    assert_eq!(spot_capacity(&env).await, 20);
}

#[tokio::test]
async fn quota_and_unavailable_sizes_are_permanent_and_not_retried() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    set(&env, Faults { quota_exceeded: true, ..Faults::default() });
    let p = proposal("p-quota", ScaleTarget { spot_capacity: Some(30), ..Default::default() });
    let ExecuteError::Azure(e) = executor(&env, &store, Duration::from_secs(2)).apply(&p, false, &allow_all).await.unwrap_err()
    else {
        panic!("an Azure error")
    };
    assert!(!e.is_transient());
    assert_eq!(last_outcome(&store, "p-quota")["error_class"], "permanent");
    assert!(last_outcome(&store, "p-quota")["error"].as_str().unwrap().contains("quota"));

    set(&env, Faults { sku_unavailable: vec!["Standard_D8s_v5".into()], ..Faults::default() });
    let sizes = vec!["Standard_D4s_v5".to_string(), "Standard_D8s_v5".to_string()];
    let p = proposal("p-sku", ScaleTarget { vm_sizes: Some(sizes), ..Default::default() });
    let err = executor(&env, &store, Duration::from_secs(2)).apply(&p, false, &allow_all).await.unwrap_err();
    assert!(matches!(err, ExecuteError::Azure(ref e) if !e.is_transient()));
    let outcome = last_outcome(&store, "p-sku");
    assert_eq!(outcome["error_class"], "permanent");
    assert!(outcome["error"].as_str().unwrap().contains("SkuNotAvailable"), "{outcome}");
}

#[tokio::test]
async fn failed_and_hung_operations_are_classified() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    set(&env, Faults { lro: LroFault::Fail, ..Faults::default() });
    let p = proposal("p-lro-fail", ScaleTarget { spot_capacity: Some(21), ..Default::default() });
    let err = executor(&env, &store, Duration::from_secs(2)).apply(&p, false, &allow_all).await.unwrap_err();
    assert!(matches!(err, ExecuteError::Azure(ref e) if !e.is_transient()), "{err:?}");
    assert_eq!(last_outcome(&store, "p-lro-fail")["error_class"], "permanent");

    set(&env, Faults { lro: LroFault::Hang, ..Faults::default() });
    let p = proposal("p-lro-hang", ScaleTarget { spot_capacity: Some(23), ..Default::default() });
    let err = executor(&env, &store, Duration::from_secs(2)).apply(&p, false, &allow_all).await.unwrap_err();
    assert!(matches!(err, ExecuteError::Azure(ref e) if e.is_transient()), "a hung operation times out: {err:?}");
    let outcome = last_outcome(&store, "p-lro-hang");
    assert_eq!(outcome["error_class"], "transient");
    assert!(outcome["error"].as_str().unwrap().contains("did not finish"), "{outcome}");
}

#[tokio::test]
async fn a_change_that_never_shows_is_unverified_and_its_inverse_is_proposed() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    set(&env, Faults { ignore_fleet_writes: true, ..Faults::default() });
    let p = proposal("p-lost", ScaleTarget { spot_capacity: Some(24), ..Default::default() });
    store.save_proposal(&p).unwrap();
    let Applied::Done(outcome, _) =
        executor(&env, &store, Duration::from_millis(300)).apply(&p, false, &allow_all).await.unwrap()
    else {
        panic!("done")
    };
    assert!(!outcome.verified);
    let body = last_outcome(&store, "p-lost");
    let inverse_id = body["inverse_proposal"].as_str().expect("an inverse proposal");
    let inverse = store.proposal(inverse_id).unwrap().expect("saved");
    assert_eq!(inverse.status, fleetpilot_core::ProposalStatus::Proposed);
    assert_eq!((inverse.target.spot_capacity, inverse.target.regular_capacity), (Some(20), Some(10)));
    assert_eq!(inverse.requested_by, "executor");
    assert_eq!(body["before"]["spot_capacity"], serde_json::Value::Null, "before is on the intent, after on the outcome");
    let intent = store.journal_of("p-lost").unwrap().into_iter().find(|e| e.phase == "intent").unwrap();
    assert_eq!(intent.body["before"]["spot_capacity"], 20);
    assert_eq!(body["after"]["spot_capacity"], 20);
}

#[tokio::test]
async fn slow_responses_slow_the_executor_down_but_not_out() {
    let env = start(Scenario::Reference).await;
    let store = Arc::new(Store::open_in_memory().unwrap());
    set(&env, Faults { latency_ms: 40, ..Faults::default() });
    let started = std::time::Instant::now();
    let p = proposal("p-slow", ScaleTarget { spot_capacity: Some(21), ..Default::default() });
    let applied = executor(&env, &store, Duration::from_secs(2)).apply(&p, false, &allow_all).await.unwrap();
    assert!(matches!(applied, Applied::Done(ref o, _) if o.verified));
    assert!(started.elapsed() >= Duration::from_millis(120), "read, patch, poll and verify each waited");
}

#[tokio::test]
async fn eviction_storms_and_telemetry_gaps_and_delays() {
    let env = start(Scenario::Reference).await;
    let (subscription, workspace) = {
        let world = env.emulator.lock_world();
        (world.config.subscription_id.clone(), world.config.logs.workspace_id.clone())
    };
    let mut logs = ArmConfig::new(env.url.clone(), subscription.clone());
    logs.token_scope = fleetpilot_infra::arm::LOG_ANALYTICS_SCOPE.into();
    let api = ArmAzureApi::new(ArmClient::new(ArmConfig::new(env.url.clone(), subscription)).unwrap())
        .with_logs(ArmClient::new(logs).unwrap());
    let count = async |q: &str| {
        let result = api.query_logs(&workspace, q, Some("P1D")).await.unwrap();
        result.tables[0].rows[0][0].as_i64().unwrap_or(0)
    };
    let advance = |secs: u64| {
        env.emulator.clock.advance(Duration::from_secs(secs));
        env.emulator.with_world(|_| ());
    };
    // A storm: spot VMs are evicted far above the published bands.
    let evictions = || env.emulator.lock_world().events.iter().filter(|e| e.kind == "SpotEviction").count();
    let calm = evictions();
    set(&env, Faults { eviction_multiplier: Some(20_000.0), ..Faults::default() });
    advance(600);
    assert!(evictions() >= calm + 5, "{} evictions in a storm", evictions() - calm);
    // A gap: nothing is written while it lasts.
    set(&env, Faults { telemetry_gap: true, ..Faults::default() });
    advance(900);
    assert_eq!(count("AzureMetrics | where TimeGenerated > ago(10m) | count").await, 0, "no rows during the gap");
    // A delay: rows are written but become visible only after the extra delay.
    set(&env, Faults { telemetry_delay_secs: 1800, ..Faults::default() });
    advance(600);
    assert_eq!(count("AzureMetrics | where TimeGenerated > ago(10m) | count").await, 0, "delayed rows are not visible yet");
    advance(1800);
    assert!(
        count("AzureMetrics | where TimeGenerated between (ago(40m) .. ago(30m)) | count").await > 0,
        "the delayed rows arrived"
    );
}
