//! Emulator speed in stepped mode: 7 virtual days at one-minute telemetry with 1,000 VMs,
//! 10 inference services and 1,000 Azure ML jobs.
//!
//! ```text
//! cargo run --release -p fleetpilot-emulator --example world-bench -- [DAYS] [--no-vm-telemetry]
//! ```

use std::sync::Arc;
use std::time::Instant;

use fleetpilot_core::{EvictionPolicy, PriceTable};
use fleetpilot_emulator::aml::{Compute, Job, JobStatus, Workspace};
use fleetpilot_emulator::services::ServiceSpec;
use fleetpilot_emulator::traces::{Replay, embedded, parse};
use fleetpilot_emulator::world::{FleetRecord, RegularProfile, SizeProfile, SpotProfile, World, WorldConfig};
use time::macros::datetime;

mod support;
use support::peak_rss_mib;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let days: i64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(7);
    let vm_telemetry = !args.iter().any(|a| a == "--no-vm-telemetry");
    let start = datetime!(2026-01-05 00:00 UTC);
    let config = WorldConfig {
        tick: std::time::Duration::from_secs(60),
        family_vcpu_quota: 100_000,
        spot_vcpu_quota: 100_000,
        spot_pool_base: 10_000,
        vm_telemetry,
        ..WorldConfig::default()
    };
    let mut world = World::new(config, PriceTable::embedded(), start);
    let sizes: Vec<SizeProfile> = ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]
        .iter()
        .map(|n| SizeProfile { name: (*n).into(), rank: None })
        .collect();
    for f in 0..10 {
        let key = ("rg".to_string(), format!("fleet-{f}"));
        world.fleets.insert(
            key.clone(),
            FleetRecord {
                name: key.1.clone(),
                resource_group: "rg".into(),
                location: "eastus".into(),
                tags: Default::default(),
                spot: Some(SpotProfile {
                    capacity: 60,
                    min_capacity: 0,
                    max_price_per_vm: None,
                    eviction_policy: EvictionPolicy::Delete,
                    allocation_strategy: "PriceCapacityOptimized".into(),
                    maintain: true,
                }),
                regular: Some(RegularProfile { capacity: 40, min_capacity: 0, allocation_strategy: "LowestPrice".into() }),
                vm_sizes: sizes.clone(),
                compute_profile: serde_json::json!({}),
                provisioning_state: "Succeeded".into(),
                time_created: start,
                unique_id: format!("u{f}"),
                vms: vec![],
                next_instance: Default::default(),
            },
        );
        world.seek_target(&key, false);
        let trace = parse("conv", embedded::AZURE_LLM_CONV, &Default::default()).expect("trace");
        let len = trace.per_minute.len() as f64;
        world.services.push((
            ServiceSpec {
                name: format!("svc-{f}"),
                fleets: vec![key],
                replay: Replay { trace: Arc::new(trace), time_scale: 1440.0 / len, amplitude: 30.0, looped: true },
                service_time_ms: 2000.0,
                gpu_factor: 8.0,
                queue_limit: 10_000.0,
                sla_p95_ms: 5000.0,
                sla_served_fraction: 0.999,
                started: start,
            },
            Default::default(),
        ));
    }
    let mut jobs = std::collections::BTreeMap::new();
    for j in 0..1000 {
        let name = format!("job-{j}");
        let mut env = serde_json::Map::new();
        env.insert("FLEETPILOT_DURATION_SECONDS".into(), serde_json::json!(format!("{}", 600 + (j * 37) % 3000)));
        jobs.insert(
            name.clone(),
            Job {
                name: name.clone(),
                display_name: name.clone(),
                experiment_name: "bench".into(),
                command: "python train.py".into(),
                environment_id: "azureml:env@latest".into(),
                code_id: None,
                compute: "cluster".into(),
                instance_count: 1,
                inputs: serde_json::json!({}),
                environment_variables: env,
                tags: Default::default(),
                timeout_secs: None,
                status: JobStatus::NotStarted,
                created: start,
                stage_ends: None,
                duration_secs: 600 + ((j * 37) % 3000) as u64,
            },
        );
    }
    world.ml.insert(
        ("rg".into(), "ws".into()),
        Workspace {
            name: "ws".into(),
            resource_group: "rg".into(),
            location: "eastus".into(),
            kind: "Default".into(),
            hub_id: None,
            friendly_name: "ws".into(),
            properties: Default::default(),
            tags: Default::default(),
            computes: std::collections::BTreeMap::from([(
                "cluster".into(),
                Compute {
                    name: "cluster".into(),
                    location: "eastus".into(),
                    vm_size: "Standard_D4s_v3".into(),
                    vm_priority: "Dedicated".into(),
                    min_nodes: 0,
                    max_nodes: 20,
                    idle_before_scale_down: 120,
                    nodes: vec![],
                    next_node: 0,
                },
            )]),
            jobs,
        },
    );
    let vms: usize = world.fleets.values().map(|f| f.vms.len()).sum();
    let started = Instant::now();
    world.advance_to(start + time::Duration::days(days));
    let secs = started.elapsed().as_secs_f64();
    let minutes = (days * 1440) as f64;
    // Per-VM rows are generated when read: what a query over the last hour of them costs.
    let snapshot = world.logs.snapshot(None);
    let query = "Heartbeat | where TimeGenerated > ago(1h) | summarize vms = dcount(Computer)";
    let options = fleetpilot_emulator::kql::Options { now: fleetpilot_emulator::logs::ticks(world.now), ..Default::default() };
    let q = Instant::now();
    let result = fleetpilot_emulator::kql::run(query, &snapshot, &options).expect("query");
    let query_secs = q.elapsed().as_secs_f64();
    let vms_seen = result.columns.first().and_then(|c| c.values.first().cloned());
    let done = world.ml.values().flat_map(|w| w.jobs.values()).filter(|j| j.status == JobStatus::Completed).count();
    println!("query `{query}`: {query_secs:.2} s -> {vms_seen:?}");
    println!(
        "{days} virtual days, {vms} VMs (per-VM telemetry {}), {} services, 1000 jobs ({done} completed): {secs:.2} s wall, {:.0} virtual minutes per second; ledger {} rows; peak RSS {:.0} MiB",
        if vm_telemetry { "on" } else { "off" },
        world.services.len(),
        minutes / secs,
        world.ledger.len(),
        peak_rss_mib()
    );
}
