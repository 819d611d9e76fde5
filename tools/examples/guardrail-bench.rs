//! Figures for the guardrails and the executor, rerunnable by anyone:
//!
//! ```text
//! cargo run --release -p fleetpilot-tools --example guardrail-bench
//! ```
//!
//! 1. `guardrails::check` latency (p50, p99) with a week of history: a change every 10
//!    minutes and a recommendation every minute for 7 days.
//! 2. Reading that history from the state database (a week of proposals, one a minute).
//! 3. Executor overhead per action, excluding Azure: `Executor::apply` against an in-process
//!    Azure that answers at once, with the journal on disk (SQLite WAL, synchronous=FULL) —
//!    re-read, re-check, plan, journal intent, act, verify, journal outcome.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use fleetpilot_core::logs::LogQueryResult;
use fleetpilot_core::ml::{MlCompute, MlJob, MlJobSpec, WorkspaceRef};
use fleetpilot_core::{
    Decision, EvictionPolicy, FleetRef, FleetState, FleetSummary, Plan, PriceTable, PriorityState, Proposal, ProposalStatus,
    ScaleTarget, Verdict,
};
use fleetpilot_guardrails::{Change, Context, Policy, Recommendation, Telemetry, check};
use fleetpilot_infra::{AzureApi, AzureError, Executor, ExecutorConfig, Store};
use time::{Duration, OffsetDateTime};

fn fleet(spot: u32, regular: u32) -> FleetState {
    FleetState {
        fleet: FleetRef { resource_group: "rg".into(), name: "f".into() },
        id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureFleet/fleets/f".into(),
        location: "eastus".into(),
        provisioning_state: "Succeeded".into(),
        spot: PriorityState { capacity: spot, running: spot, ..Default::default() },
        regular: PriorityState { capacity: regular, running: regular, ..Default::default() },
        spot_max_price_per_vm: -1.0,
        spot_eviction_policy: EvictionPolicy::Delete,
        spot_maintain: true,
        vm_sizes: vec!["Standard_D4s_v5".into()],
        vms: Vec::new(),
        observed_at: OffsetDateTime::UNIX_EPOCH,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// An Azure that answers at once: the fleet's capacities, in memory.
#[derive(Debug)]
struct InstantAzure(Mutex<FleetState>);

#[async_trait]
impl AzureApi for InstantAzure {
    async fn list_fleets(&self, _: Option<&str>) -> Result<Vec<FleetSummary>, AzureError> {
        Ok(Vec::new())
    }
    fn fleet_id(&self, fleet: &FleetRef) -> String {
        format!("/subscriptions/s/resourceGroups/{}/providers/Microsoft.AzureFleet/fleets/{}", fleet.resource_group, fleet.name)
    }
    async fn read_fleet(&self, _: &FleetRef) -> Result<FleetState, AzureError> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn update_fleet(
        &self,
        _: &FleetRef,
        spot: Option<u32>,
        regular: Option<u32>,
        _: Option<&[String]>,
    ) -> Result<(), AzureError> {
        let mut f = self.0.lock().unwrap();
        if let Some(s) = spot {
            f.spot.capacity = s;
            f.spot.running = s;
        }
        if let Some(r) = regular {
            f.regular.capacity = r;
            f.regular.running = r;
        }
        Ok(())
    }
    async fn delete_vms(&self, _: &[String]) -> Result<(), AzureError> {
        Ok(())
    }
    async fn submit_ml_job(&self, _: &WorkspaceRef, _: &MlJobSpec) -> Result<MlJob, AzureError> {
        Err(AzureError::Decode { url: "bench".into(), reason: "not used".into() })
    }
    async fn get_ml_job(&self, _: &WorkspaceRef, _: &str) -> Result<MlJob, AzureError> {
        Err(AzureError::Decode { url: "bench".into(), reason: "not used".into() })
    }
    async fn cancel_ml_job(&self, _: &WorkspaceRef, _: &str) -> Result<(), AzureError> {
        Ok(())
    }
    async fn list_ml_jobs(&self, _: &WorkspaceRef) -> Result<Vec<MlJob>, AzureError> {
        Ok(Vec::new())
    }
    async fn get_ml_compute(&self, _: &WorkspaceRef, _: &str) -> Result<MlCompute, AzureError> {
        Err(AzureError::Decode { url: "bench".into(), reason: "not used".into() })
    }
    async fn query_logs(&self, _: &str, _: &str, _: Option<&str>) -> Result<LogQueryResult, AzureError> {
        Err(AzureError::Decode { url: "bench".into(), reason: "not used".into() })
    }
}

fn proposal(i: usize, at: OffsetDateTime, spot: u32) -> Proposal {
    Proposal {
        id: format!("p-{i}"),
        fleet: FleetRef { resource_group: "rg".into(), name: "f".into() },
        requested_by: "bench".into(),
        reason: "bench".into(),
        created_at: at,
        observed_spot_capacity: 20,
        observed_regular_capacity: 10,
        target: ScaleTarget { spot_capacity: Some(spot), ..Default::default() },
        verdict: Verdict { decision: Decision::Allow, violations: Vec::new(), dry_run: false },
        plan: Plan::default(),
        cost: None,
        status: ProposalStatus::Proposed,
        outcome: None,
        review: None,
    }
}

#[tokio::main]
async fn main() {
    let prices = PriceTable::embedded();
    let now = OffsetDateTime::now_utc();
    // 1. The pure check over a week of history.
    let changes: Vec<Change> = (0..7 * 24 * 6)
        .map(|i| Change { at: now - Duration::minutes(10 * i + 5), from_total: 30, to_total: if i % 2 == 0 { 31 } else { 29 } })
        .collect();
    let recommendations: Vec<Recommendation> =
        (0..7 * 24 * 60).map(|i| Recommendation { at: now - Duration::minutes(i), total: 28 + (i % 5) as u32 }).collect();
    let policy = Policy { budget_usd_per_hour: Some(50.0), budget_usd_per_day: Some(1000.0), ..Policy::default() };
    let ctx = Context {
        now,
        prices: &prices,
        changes: &changes,
        recommendations: &recommendations,
        telemetry: Some(Telemetry { age_secs: 60.0, utilization_percent: Some(40.0) }),
        spent_today_usd: Some(100.0),
    };
    let observed = fleet(20, 10);
    let targets = [
        ScaleTarget { spot_capacity: Some(24), ..Default::default() },
        ScaleTarget { spot_capacity: Some(18), ..Default::default() },
        ScaleTarget { regular_capacity: Some(12), vm_sizes: Some(vec!["Standard_D8s_v5".into()]), ..Default::default() },
    ];
    let mut times = Vec::new();
    let mut denied = 0;
    for i in 0..30_000 {
        let started = Instant::now();
        let verdict = check(&targets[i % 3], &observed, &policy, &ctx);
        times.push(started.elapsed().as_secs_f64() * 1e6);
        denied += usize::from(verdict.decision == Decision::Deny);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "guardrails::check, a week of history ({} changes, {} recommendations): p50 {:.1} µs, p99 {:.1} µs over {} checks ({denied} denied)",
        changes.len(),
        recommendations.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len()
    );

    // 2. The history the service reads from SQLite, with a week of proposals stored.
    let dir = std::env::temp_dir().join(format!("fleetpilot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("state.db")).unwrap());
    {
        let started = Instant::now();
        for i in 0..7 * 24 * 60 {
            store.save_proposal(&proposal(i, now - Duration::minutes(i as i64), 20 + (i % 7) as u32)).unwrap();
        }
        println!("stored a week of proposals (10,080) in {:.1} s", started.elapsed().as_secs_f64());
    }
    let mut times = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let history = store.fleet_proposals_since("f", now - Duration::minutes(65)).unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert!((60..=70).contains(&history.len()));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "history read (the last 65 minutes of a week): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );

    // 3. Executor overhead per action.
    let api = Arc::new(InstantAzure(Mutex::new(fleet(20, 10))));
    let executor = Executor::with_config(
        api,
        store.clone(),
        ExecutorConfig { verify_timeout: std::time::Duration::from_secs(1), verify_poll: std::time::Duration::from_millis(1) },
    );
    let allow = |_: &FleetState| Verdict { decision: Decision::Allow, violations: Vec::new(), dry_run: false };
    let mut times = Vec::new();
    for i in 0..500 {
        let p = proposal(100_000 + i, now, 20 + (i % 2) as u32 * 4);
        let started = Instant::now();
        executor.apply(&p, false, &allow).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "executor overhead per action (instant Azure, journal on disk, WAL + synchronous=FULL): p50 {:.2} ms, p99 {:.2} ms over {} actions",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
