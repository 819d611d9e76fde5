//! Inference services: the queueing model on a hand-checked case, determinism, and the
//! reference service's load over a day.

use std::sync::Arc;

use fleetpilot_core::{EvictionPolicy, PriceTable};
use fleetpilot_emulator::kql::Catalog;
use fleetpilot_emulator::services::{ServiceSpec, ServiceState, serve_minute};
use fleetpilot_emulator::traces::{Replay, Trace, Unit};
use fleetpilot_emulator::world::{FleetRecord, RegularProfile, SizeProfile, World, WorldConfig};
use fleetpilot_emulator::{Scenario, logs, scenario};
use time::macros::datetime;

fn one_vm_fleet() -> (World, (String, String)) {
    let mut world = World::new(WorldConfig::default(), PriceTable::embedded(), datetime!(2026-01-01 00:00 UTC));
    let key = ("rg".to_string(), "f".to_string());
    world.fleets.insert(
        key.clone(),
        FleetRecord {
            name: "f".into(),
            resource_group: "rg".into(),
            location: "eastus".into(),
            tags: Default::default(),
            spot: None,
            regular: Some(RegularProfile { capacity: 1, min_capacity: 0, allocation_strategy: "LowestPrice".into() }),
            vm_sizes: vec![SizeProfile { name: "Standard_D4s_v5".into(), rank: None }],
            compute_profile: serde_json::json!({}),
            provisioning_state: "Succeeded".into(),
            time_created: datetime!(2026-01-01 00:00 UTC),
            unique_id: "u".into(),
            vms: vec![],
            next_instance: Default::default(),
        },
    );
    world.seek_target(&key, false);
    world.advance_to(datetime!(2026-01-01 00:05 UTC));
    let _ = EvictionPolicy::Delete;
    (world, key)
}

fn spec(trace: Vec<f64>, key: (String, String)) -> ServiceSpec {
    ServiceSpec {
        name: "s".into(),
        fleets: vec![key],
        replay: Replay {
            trace: Arc::new(Trace { name: "t".into(), unit: Unit::Requests, per_minute: trace, partial_edges: false }),
            time_scale: 1.0,
            amplitude: 1.0,
            looped: false,
        },
        service_time_ms: 1000.0,
        gpu_factor: 1.0,
        queue_limit: 50.0,
        sla_p95_ms: 5000.0,
        sla_served_fraction: 0.99,
        started: datetime!(2026-01-01 00:00 UTC),
    }
}

#[test]
fn a_hand_checked_minute_by_minute_case() {
    // One Standard_D4s_v5: 4 servers at 60 requests/min each = 240/min.
    let (world, key) = one_vm_fleet();
    let fleet = &world.fleets[&key];
    let spec = spec(vec![100.0, 300.0, 0.0], key.clone());
    let mut state = ServiceState::default();
    let at = |m: i64| datetime!(2026-01-01 00:00 UTC) + time::Duration::minutes(m);
    let r0 = serve_minute(&spec, &mut state, fleet, at(0));
    assert_eq!((r0.capacity, r0.served, r0.queued, r0.dropped), (240.0, 100.0, 0.0, 0.0));
    // M/M/4 with a = 100/60: Erlang C = 0.10249; p95 wait = ln(C/0.05)/(240-100) min = 307.6 ms;
    // p95 service = ln 20 / 60 min = 2995.7 ms.
    assert!((r0.latency_p95_ms - 3303.3).abs() < 1.0, "{}", r0.latency_p95_ms);
    assert!(r0.sla_met);
    let r1 = serve_minute(&spec, &mut state, fleet, at(1));
    // 300 arrive, 240 served, 60 left: 50 queued (the limit), 10 dropped.
    assert_eq!((r1.served, r1.queued, r1.dropped), (240.0, 50.0, 10.0));
    assert!(!r1.sla_met, "drops and saturation miss the SLA");
    let r2 = serve_minute(&spec, &mut state, fleet, at(2));
    assert_eq!((r2.arrivals, r2.served, r2.queued), (0.0, 50.0, 0.0));
    assert!((r0.cost_usd - 0.192 / 60.0).abs() < 1e-12, "one D4s_v5 at pay-as-you-go");
}

#[test]
fn no_running_vm_means_infinite_latency_and_drops() {
    let (mut world, key) = one_vm_fleet();
    world.fleets.get_mut(&key).unwrap().vms.clear();
    let spec = spec(vec![100.0], key.clone());
    let mut state = ServiceState::default();
    let row = serve_minute(&spec, &mut state, &world.fleets[&key], datetime!(2026-01-01 00:00 UTC));
    assert_eq!((row.capacity, row.served, row.queued, row.dropped), (0.0, 0.0, 50.0, 50.0));
    assert!(row.latency_p95_ms.is_infinite());
}

fn reference_day(seed: u64) -> Vec<fleetpilot_emulator::services::LedgerRow> {
    let mut world =
        World::new(WorldConfig { seed, ..WorldConfig::default() }, PriceTable::embedded(), datetime!(2026-01-01 00:00 UTC));
    Scenario::Reference.install(&mut world);
    world.advance_to(datetime!(2026-01-02 00:00 UTC));
    world.ledger.clone()
}

#[test]
fn the_reference_service_over_a_day_is_deterministic_and_loads_the_fleet() {
    let day = reference_day(7);
    assert_eq!(day.len(), 1440);
    assert_eq!(day, reference_day(7), "same seed, same ledger");
    let mean: f64 = day.iter().map(|r| r.utilization).sum::<f64>() / day.len() as f64;
    let peak = day.iter().map(|r| r.utilization).fold(0.0, f64::max);
    eprintln!("reference service: mean utilization {mean:.3}, peak {peak:.3}");
    assert!(mean > 0.3 && mean < 0.8, "mean utilization {mean}");
    assert!(peak > 0.8, "the peaks should press the fleet: {peak}");
    assert_eq!(day[0].service, "llm-conv");
    assert_eq!(day[0].fleet, scenario::REFERENCE_FLEET);
}

#[test]
fn per_vm_telemetry_can_be_turned_off_without_losing_fleet_and_service_metrics() {
    let hour = |vm_telemetry: bool| {
        let mut world = World::new(
            WorldConfig { vm_telemetry, ..WorldConfig::default() },
            PriceTable::embedded(),
            datetime!(2026-01-01 00:00 UTC),
        );
        Scenario::Reference.install(&mut world);
        world.advance_to(datetime!(2026-01-01 01:00 UTC));
        // Metrics of the first 50 minutes are all in by now (their delay is at most 4 minutes).
        let window = (logs::ticks(datetime!(2026-01-01 00:00 UTC)), logs::ticks(datetime!(2026-01-01 00:50 UTC)));
        let metrics = world.logs.snapshot(Some(window)).table("AzureMetrics").map_or(0, |t| t.rows);
        (world.logs.rows("Heartbeat"), world.logs.rows("Perf"), metrics, world.ledger.clone())
    };
    let (heartbeats, perf, metrics, ledger) = hour(true);
    // Ingestion delays are drawn per row, so the counts at a given instant differ slightly.
    let ratio = perf as f64 / heartbeats.max(1) as f64;
    assert!(heartbeats > 0 && (1.9..2.1).contains(&ratio), "one Heartbeat and two Perf rows per VM minute: {heartbeats}, {perf}");
    let (no_heartbeats, no_perf, same_metrics, same_ledger) = hour(false);
    assert_eq!((no_heartbeats, no_perf), (0, 0));
    assert_eq!(same_metrics, metrics, "fleet and service metrics are written either way");
    assert_eq!(same_ledger, ledger, "telemetry does not change the world");
}

fn multi_region_world(seed: u64) -> World {
    let mut world =
        World::new(WorldConfig { seed, ..WorldConfig::default() }, PriceTable::embedded(), datetime!(2026-01-01 00:00 UTC));
    Scenario::MultiRegion.install(&mut world);
    world
}

#[test]
fn a_service_on_two_regions_splits_its_demand_by_capacity() {
    let mut world = multi_region_world(7);
    world.advance_to(datetime!(2026-01-01 06:00 UTC));
    let ledger = world.ledger.clone();
    assert_eq!(ledger.len(), 2 * 360, "one row per fleet and minute");
    let fleets: std::collections::BTreeSet<&str> = ledger.iter().map(|r| r.fleet.as_str()).collect();
    assert_eq!(fleets, [scenario::REFERENCE_FLEET, scenario::WEST_FLEET].into_iter().collect());
    // The workspace's CPU rule covers the service; each fleet has the recipe's spot rule.
    let rules: Vec<&str> = world.alert_rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rules, ["ml-scaling-trigger", "scaling-efficiency-alert", "scaling-efficiency-alert-westus2"]);
    assert!(world.alert_rules[2].scope.ends_with(scenario::WEST_FLEET), "{}", world.alert_rules[2].scope);
    // The demand is the reference's scaled to 42 VMs; each fleet gets its share of capacity,
    // so both run at the same utilization while neither saturates.
    let mut reference =
        World::new(WorldConfig { seed: 7, ..WorldConfig::default() }, PriceTable::embedded(), datetime!(2026-01-01 00:00 UTC));
    Scenario::Reference.install(&mut reference);
    reference.advance_to(datetime!(2026-01-01 06:00 UTC));
    for (minute, pair) in ledger.chunks(2).enumerate() {
        let arrivals = pair[0].arrivals + pair[1].arrivals;
        let expected = reference.ledger[minute].arrivals * 42.0 / 30.0;
        assert!((arrivals - expected).abs() < 1e-6 * expected.max(1.0), "minute {minute}: {arrivals} vs {expected}");
        let share = pair[0].arrivals / arrivals;
        let capacity_share = pair[0].capacity / (pair[0].capacity + pair[1].capacity);
        assert!((share - capacity_share).abs() < 1e-9, "minute {minute}: routed {share}, capacity {capacity_share}");
        if pair.iter().all(|r| r.queued == 0.0) {
            assert!((pair[0].utilization - pair[1].utilization).abs() < 1e-9, "minute {minute}");
        }
    }
    assert_eq!(ledger, {
        let mut again = multi_region_world(7);
        again.advance_to(datetime!(2026-01-01 06:00 UTC));
        again.ledger
    });
}

#[test]
fn a_storm_confined_to_a_region_evicts_only_there_and_each_region_has_its_own_pool() {
    let mut world = multi_region_world(3);
    world.set_faults(fleetpilot_emulator::faults::Faults {
        eviction_multiplier: Some(20_000.0),
        eviction_regions: vec!["EastUS".into()],
        ..Default::default()
    });
    world.advance_to(datetime!(2026-01-01 00:30 UTC));
    let evicted = |fleet: &str| world.events.iter().filter(|e| e.kind == "SpotEviction" && e.fleet == fleet).count();
    assert!(evicted(scenario::REFERENCE_FLEET) >= 10, "the storm evicts in eastus");
    assert_eq!(evicted(scenario::WEST_FLEET), 0, "westus2 keeps the configured rate");
    // Pools are regional: a fleet in westus2 gets the full pool although eastus has used it.
    let mut world = World::new(
        WorldConfig { spot_pool_base: 4, ..WorldConfig::default() },
        PriceTable::embedded(),
        datetime!(2026-01-01 00:00 UTC),
    );
    Scenario::MultiRegion.install(&mut world);
    let spot_running = |w: &World, name: &str| {
        let fleet = w.fleets.values().find(|f| f.name == name).unwrap();
        fleet.vms.iter().filter(|v| v.priority == fleetpilot_core::Priority::Spot).count()
    };
    // Three sizes of band 0–5 % at 4 VMs each: 12 spot VMs per region.
    assert_eq!(spot_running(&world, scenario::REFERENCE_FLEET), 12);
    assert_eq!(spot_running(&world, scenario::WEST_FLEET), 10);
}

#[test]
fn work_waiting_at_a_fleet_with_nothing_running_fails_over() {
    let (world, key) = one_vm_fleet();
    let serving = world.fleets[&key].clone();
    let mut dark = serving.clone();
    dark.name = "dark".into();
    dark.vms.clear();
    let spec = spec(vec![0.0, 0.0], key);
    let mut state = ServiceState::default();
    state.queues.insert("rg/dark".into(), 30.0);
    let rows =
        fleetpilot_emulator::services::serve_fleets(&spec, &mut state, &[&serving, &dark], datetime!(2026-01-01 00:00 UTC));
    // The dark fleet's 30 waiting requests are served by the fleet that runs (4 vCPUs at 60 a
    // minute each), instead of waiting where nothing can serve them.
    assert_eq!((rows[0].served, rows[1].queued), (30.0, 0.0), "{rows:?}");
    assert_eq!(state.queues.get("rg/dark").copied().unwrap_or(0.0), 0.0);
}
