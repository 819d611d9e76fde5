//! Inference services: demand from a trace, served by a fleet's running VMs, with a queue,
//! a latency estimate and an SLA, minute by minute.
//!
//! The latency model is M/M/c: each vCPU (or GPU) of a running VM is a server that takes
//! `service_time_ms` per request on average. With λ arrivals and c servers of rate μ, the
//! Erlang C formula gives the chance a request waits, C(c, λ/μ); waits are then exponential
//! with rate cμ − λ, so the 95th percentile of the wait is ln(C/0.05)/(cμ − λ) when C > 5 %
//! (else 0). The p95 latency is the p95 of one service time (ln 20/μ) plus that wait, plus
//! the time to drain the backlog carried from earlier minutes (queue / capacity). When
//! λ ≥ cμ the queue grows; what exceeds the queue limit is dropped.

use std::sync::Arc;

use fleetpilot_core::VmState;
use time::OffsetDateTime;

use crate::traces::Replay;
use crate::world::FleetRecord;

/// An inference service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Name.
    pub name: String,
    /// The fleets that serve it: (resource group, name), lowercase; one per region, usually.
    /// A load balancer in front of them routes each minute's arrivals in proportion to what
    /// each fleet's running VMs serve (evenly while none runs); each fleet keeps its own queue.
    pub fleets: Vec<(String, String)>,
    /// Its demand.
    pub replay: Replay,
    /// Mean time one vCPU takes for one request, in milliseconds.
    pub service_time_ms: f64,
    /// How many vCPUs' worth one GPU serves.
    pub gpu_factor: f64,
    /// Most requests carried to the next minute; the rest is dropped.
    pub queue_limit: f64,
    /// SLA: p95 latency at most this.
    pub sla_p95_ms: f64,
    /// SLA: at least this share of the minute's arrivals served (not dropped).
    pub sla_served_fraction: f64,
    /// When the replay started.
    pub started: OffsetDateTime,
}

/// One minute of one service, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LedgerRow {
    /// Start of the minute.
    #[serde(with = "time::serde::rfc3339")]
    pub minute: OffsetDateTime,
    /// Service.
    pub service: String,
    /// Fleet name.
    pub fleet: String,
    /// New requests this minute.
    pub arrivals: f64,
    /// What the running VMs can serve in a minute.
    pub capacity: f64,
    /// Served this minute.
    pub served: f64,
    /// Carried to the next minute.
    pub queued: f64,
    /// Dropped this minute.
    pub dropped: f64,
    /// served / capacity.
    pub utilization: f64,
    /// Estimated p95 latency, ms (infinite when nothing runs and work waits).
    pub latency_p95_ms: f64,
    /// Whether the minute met the SLA.
    pub sla_met: bool,
    /// Running VMs.
    pub running_vms: u32,
    /// vCPUs (or GPU-equivalents) serving.
    pub servers: f64,
    /// What the fleet's VMs (creating or running) cost this minute, USD.
    pub cost_usd: f64,
}

/// A service's state between minutes.
#[derive(Debug, Clone, Default)]
pub struct ServiceState {
    /// Requests waiting, by fleet (`resource group/name`).
    pub queues: std::collections::BTreeMap<String, f64>,
}

/// Erlang C: the probability that an arrival waits, with `c` servers and offered load `a`
/// (in Erlangs, a = λ/μ). Computed with the stable recurrence on Erlang B.
pub fn erlang_c(c: f64, a: f64) -> f64 {
    if c <= 0.0 {
        return 1.0;
    }
    if a >= c {
        return 1.0;
    }
    // Erlang B by recurrence on whole servers, then C from B.
    let n = c.floor().max(1.0) as u64;
    let mut b = 1.0;
    for k in 1..=n {
        b = a * b / (k as f64 + a * b);
    }
    let rho = a / n as f64;
    let c_prob = b / (1.0 - rho * (1.0 - b));
    c_prob.clamp(0.0, 1.0)
}

/// The p95 latency (ms) of a minute in which `servers` servers, each taking `service_time_ms`
/// per request on average, were offered `offered` requests, served `served` and left `queued`
/// waiting (see the module's documentation); infinite when nothing serves and work waits.
pub fn p95_latency_ms(servers: f64, service_time_ms: f64, offered: f64, served: f64, queued: f64) -> f64 {
    let mu = 60_000.0 / service_time_ms.max(1e-6);
    let capacity = servers * mu;
    if capacity <= 0.0 {
        return if offered > 0.0 { f64::INFINITY } else { 0.0 };
    }
    let service_p95_ms = 20f64.ln() / mu * 60_000.0;
    let lambda = served;
    let wait_ms = if lambda < capacity {
        let c = erlang_c(servers, lambda / mu);
        if c > 0.05 { (c / 0.05).ln() / (capacity - lambda) * 60_000.0 } else { 0.0 }
    } else {
        // Saturated: the wait is that of the work in line.
        60_000.0
    };
    service_p95_ms + wait_ms + queued / capacity * 60_000.0
}

/// Servers (vCPUs, or GPU-equivalents) of a fleet's running VMs, how many run, and what its
/// creating or running VMs cost this minute.
fn servers_of(spec: &ServiceSpec, fleet: &FleetRecord) -> (f64, u32, f64) {
    let (mut servers, mut running, mut cost) = (0.0, 0, 0.0);
    for vm in &fleet.vms {
        let Some(size) = vm.info.as_deref() else { continue };
        if matches!(vm.state, VmState::Creating | VmState::Running) {
            cost += size.price(vm.priority) / 60.0;
        }
        if vm.state == VmState::Running {
            running += 1;
            servers += if size.gpus > 0 { f64::from(size.gpus) * spec.gpu_factor } else { f64::from(size.vcpus) };
        }
    }
    (servers, running, cost)
}

/// Serve one minute of a service on one fleet (its only one): returns the ledger row and
/// updates the queue.
pub fn serve_minute(spec: &ServiceSpec, state: &mut ServiceState, fleet: &FleetRecord, minute: OffsetDateTime) -> LedgerRow {
    serve_fleets(spec, state, &[fleet], minute).remove(0)
}

/// Serve one minute of a service on its fleets: the minute's arrivals are split in proportion
/// to each fleet's servers (evenly while none has any), and each fleet serves its share from
/// its own queue; the queue of a fleet with nothing running moves to those that serve. One
/// ledger row per fleet, in the order given; `fleets` must not be empty.
pub fn serve_fleets(
    spec: &ServiceSpec,
    state: &mut ServiceState,
    fleets: &[&FleetRecord],
    minute: OffsetDateTime,
) -> Vec<LedgerRow> {
    let elapsed = (minute - spec.started).as_seconds_f64() / 60.0;
    let demand = spec.replay.demand_at(elapsed).max(0.0);
    let each: Vec<(f64, u32, f64)> = fleets.iter().map(|f| servers_of(spec, f)).collect();
    let all: f64 = each.iter().map(|e| e.0).sum();
    let key = |fleet: &FleetRecord| format!("{}/{}", fleet.resource_group.to_ascii_lowercase(), fleet.name);
    // Work waiting at a fleet with nothing running fails over to the fleets that serve.
    let mut stranded = 0.0;
    if all > 0.0 {
        for (fleet, e) in fleets.iter().zip(&each) {
            if e.0 <= 0.0 {
                stranded += state.queues.remove(&key(fleet)).unwrap_or(0.0);
            }
        }
    }
    fleets
        .iter()
        .zip(each)
        .map(|(fleet, (servers, running, cost))| {
            let share = if all > 0.0 { servers / all } else { 1.0 / fleets.len() as f64 };
            let queue = state.queues.entry(key(fleet)).or_default();
            *queue += stranded * share;
            serve_share(spec, queue, fleet, minute, demand * share, (servers, running, cost))
        })
        .collect()
}

fn serve_share(
    spec: &ServiceSpec,
    queue: &mut f64,
    fleet: &FleetRecord,
    minute: OffsetDateTime,
    arrivals: f64,
    (servers, running, cost): (f64, u32, f64),
) -> LedgerRow {
    let mu = 60_000.0 / spec.service_time_ms.max(1e-6);
    let capacity = servers * mu;
    let offered = arrivals + *queue;
    let served = offered.min(capacity);
    let backlog = offered - served;
    let queued = backlog.min(spec.queue_limit);
    let dropped = backlog - queued;
    *queue = queued;
    let utilization = if capacity > 0.0 { served / capacity } else { 0.0 };
    let latency_p95_ms = p95_latency_ms(servers, spec.service_time_ms, offered, served, queued);
    let served_fraction = if arrivals > 0.0 { 1.0 - (dropped / arrivals).min(1.0) } else { 1.0 };
    let sla_met = latency_p95_ms <= spec.sla_p95_ms && served_fraction >= spec.sla_served_fraction;
    LedgerRow {
        minute,
        service: spec.name.clone(),
        fleet: fleet.name.clone(),
        arrivals,
        capacity,
        served,
        queued,
        dropped,
        utilization,
        latency_p95_ms,
        sla_met,
        running_vms: running,
        servers,
        cost_usd: cost,
    }
}

/// The default service of `fleetpilot serve`: the Azure LLM conversation trace (CC-BY 4.0),
/// its hour stretched over a day, scaled so the reference fleet runs at about 60 % on average.
///
/// # Panics
/// Never: the embedded trace is checked by a unit test.
pub fn reference_service(started: OffsetDateTime) -> ServiceSpec {
    let trace = crate::traces::parse("azure_llm_2023_conv", crate::traces::embedded::AZURE_LLM_CONV, &Default::default())
        .expect("embedded trace parses");
    let minutes = trace.per_minute.len() as f64;
    ServiceSpec {
        name: "llm-conv".into(),
        fleets: vec![(
            crate::scenario::REFERENCE_RESOURCE_GROUP.to_ascii_lowercase(),
            crate::scenario::REFERENCE_FLEET.to_string(),
        )],
        replay: Replay { trace: Arc::new(trace), time_scale: 24.0 * 60.0 / minutes, amplitude: 8.0, looped: true },
        service_time_ms: 2_000.0,
        gpu_factor: 8.0,
        queue_limit: 5_000.0,
        // The service time alone has a p95 of ln 20 × 2 s ≈ 6 s: the SLA leaves room for queueing.
        sla_p95_ms: 10_000.0,
        sla_served_fraction: 0.999,
        started,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_erlang(c: f64, a: f64, expect: f64) {
        assert!((erlang_c(c, a) - expect).abs() < 1e-3, "C({c}, {a}) = {} not {expect}", erlang_c(c, a));
    }

    #[test]
    fn erlang_c_matches_published_values() {
        // Textbook values: C(1, 0.5) = 0.5; C(2, 1) = 1/3; C(10, 8) ≈ 0.409.
        check_erlang(1.0, 0.5, 0.5);
        check_erlang(2.0, 1.0, 1.0 / 3.0);
        check_erlang(10.0, 8.0, 0.4092);
        check_erlang(5.0, 6.0, 1.0);
    }
}
