//! Guardrail cases as data: each file under `test_data/check/` is one case.

use std::path::Path;

use fleetpilot_core::{EvictionPolicy, FleetRef, FleetState, PriorityState, ScaleTarget};
use serde::Deserialize;

use crate::{Change, Context, Policy, Recommendation, Telemetry, check};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    policy: Policy,
    observed: Observed,
    target: ScaleTarget,
    #[serde(default)]
    context: CaseContext,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Observed {
    spot: u32,
    regular: u32,
    /// Running VMs (spot + regular) for the anti-flapping check; defaults to the capacity.
    #[serde(default)]
    running: Option<u32>,
    /// Running spot VMs, when a case needs the split (overrides `running`'s).
    #[serde(default)]
    spot_running: Option<u32>,
    /// Running regular VMs, when a case needs the split (overrides `running`'s).
    #[serde(default)]
    regular_running: Option<u32>,
    #[serde(default)]
    location: Option<String>,
    /// The fleet's own spot minCapacity.
    #[serde(default)]
    spot_min_capacity: u32,
}

/// The history and telemetry of a case; times are seconds before `now`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CaseContext {
    /// RFC 3339; default 2026-01-01T12:00:00Z.
    now: String,
    changes: Vec<CaseChange>,
    recommendations: Vec<CaseRecommendation>,
    /// Absent means no telemetry could be read.
    telemetry_age_secs: Option<f64>,
    utilization_percent: Option<f64>,
    spent_today_usd: Option<f64>,
    /// No telemetry could be read.
    telemetry_missing: bool,
}

impl Default for CaseContext {
    fn default() -> Self {
        Self {
            now: "2026-01-01T12:00:00Z".into(),
            changes: Vec::new(),
            recommendations: Vec::new(),
            telemetry_age_secs: Some(60.0),
            utilization_percent: Some(30.0),
            spent_today_usd: None,
            telemetry_missing: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseChange {
    ago_secs: i64,
    from: u32,
    to: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRecommendation {
    ago_secs: i64,
    total: u32,
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
        location: o.location.clone().unwrap_or_else(|| "eastus".into()),
        provisioning_state: "Succeeded".into(),
        spot: PriorityState {
            capacity: o.spot,
            min_capacity: o.spot_min_capacity,
            running: o.spot_running.unwrap_or_else(|| o.running.map_or(o.spot, |r| r.min(o.spot))),
            ..Default::default()
        },
        regular: PriorityState {
            capacity: o.regular,
            running: o.regular_running.unwrap_or_else(|| o.running.map_or(o.regular, |r| r.saturating_sub(o.spot.min(r)))),
            ..Default::default()
        },
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
    let c = &case.context;
    let now = time::OffsetDateTime::parse(&c.now, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("bad context.now: {e}"))?;
    let ago = |s: i64| now - time::Duration::seconds(s);
    let changes: Vec<Change> =
        c.changes.iter().map(|x| Change { at: ago(x.ago_secs), from_total: x.from, to_total: x.to }).collect();
    let recommendations: Vec<Recommendation> =
        c.recommendations.iter().map(|x| Recommendation { at: ago(x.ago_secs), total: x.total }).collect();
    let prices = fleetpilot_core::PriceTable::embedded();
    let ctx = Context {
        now,
        prices: &prices,
        changes: &changes,
        recommendations: &recommendations,
        telemetry: c
            .telemetry_age_secs
            .filter(|_| !c.telemetry_missing)
            .map(|age_secs| Telemetry { age_secs, utilization_percent: c.utilization_percent }),
        spent_today_usd: c.spent_today_usd,
    };
    let verdict = check(&case.target, &observed(&case.observed), &case.policy, &ctx);
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
    let prices = fleetpilot_core::PriceTable::embedded();
    let ctx = Context::bare(time::OffsetDateTime::UNIX_EPOCH, &prices);
    let verdict = check(
        &target,
        &observed(&Observed {
            spot: 20,
            regular: 10,
            running: None,
            spot_running: None,
            regular_running: None,
            location: None,
            spot_min_capacity: 0,
        }),
        &Policy::default(),
        &ctx,
    );
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

/// The guardrails' promises, over any sequence of proposals, approvals and clock steps.
mod properties {
    use proptest::prelude::*;
    use time::{Duration, OffsetDateTime};

    use super::{Observed, observed};
    use crate::{Change, Context, Policy, Recommendation, Telemetry, check};
    use fleetpilot_core::{Decision, PriceTable, ScaleTarget};

    #[derive(Debug, Clone)]
    enum Op {
        Propose { spot: i64, regular: i64 },
        Approve(usize),
        Wait(i64),
        Load(f64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Mostly steps near the limits, sometimes far outside them.
            5 => (-8i64..10, -4i64..5).prop_map(|(spot, regular)| Op::Propose { spot, regular }),
            1 => (-60i64..60, -30i64..30).prop_map(|(spot, regular)| Op::Propose { spot, regular }),
            2 => (0usize..8).prop_map(Op::Approve),
            3 => prop_oneof![1i64..120, 1i64..1200, 3600i64..30_000].prop_map(Op::Wait),
            1 => (0.0f64..100.0).prop_map(Op::Load),
        ]
    }

    fn policy() -> Policy {
        Policy {
            min_regular: 2,
            max_spot: 40,
            max_regular: 20,
            max_step_up: 8,
            max_step_down: 6,
            budget_usd_per_hour: Some(4.0),
            budget_usd_per_day: Some(60.0),
            max_changes_per_hour: 4,
            approval_above_delta: Some(5),
            allowed_vm_sizes: Vec::new(),
            ..Policy::default()
        }
    }

    struct Sim {
        now: OffsetDateTime,
        spot: u32,
        regular: u32,
        load: f64,
        changes: Vec<Change>,
        recommendations: Vec<Recommendation>,
        pending: Vec<(ScaleTarget, OffsetDateTime)>,
        spent_today: f64,
        /// The hourly rate when the day began: a fleet left alone spends 24 times that.
        day_start_rate: f64,
    }

    impl Sim {
        fn hourly(&self, prices: &PriceTable) -> f64 {
            let d4 = prices.get("Standard_D4s_v5").expect("priced");
            f64::from(self.spot) * d4.price(fleetpilot_core::Priority::Spot)
                + f64::from(self.regular) * d4.price(fleetpilot_core::Priority::Regular)
        }

        fn check(&self, target: &ScaleTarget, policy: &Policy, prices: &PriceTable) -> fleetpilot_core::Verdict {
            let state = observed(&Observed {
                spot: self.spot,
                regular: self.regular,
                running: None,
                spot_running: None,
                regular_running: None,
                location: None,
                spot_min_capacity: 0,
            });
            // Utilization of the serving VMs: the load (in VMs' worth of work) over the VMs.
            let total = f64::from(self.spot + self.regular).max(1.0);
            let ctx = Context {
                now: self.now,
                prices,
                changes: &self.changes,
                recommendations: &self.recommendations,
                telemetry: Some(Telemetry { age_secs: 30.0, utilization_percent: Some(100.0 * self.load / total) }),
                spent_today_usd: Some(self.spent_today),
            };
            check(target, &state, policy, &ctx)
        }

        fn apply(&mut self, target: &ScaleTarget) {
            let (from, before) = (self.spot + self.regular, (self.spot, self.regular));
            self.spot = target.spot_capacity.unwrap_or(self.spot);
            self.regular = target.regular_capacity.unwrap_or(self.regular);
            let to = self.spot + self.regular;
            // A target equal to the fleet changes nothing, and is no change (as the executor journals it).
            if (self.spot, self.regular) != before {
                self.changes.push(Change { at: self.now, from_total: from, to_total: to });
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn no_sequence_breaks_a_promise(ops in proptest::collection::vec(op(), 1..120)) {
            let prices = PriceTable::embedded();
            let policy = policy();
            let mut sim = Sim {
                now: OffsetDateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::hours(1),
                spot: 10,
                regular: 5,
                load: 5.0,
                changes: Vec::new(),
                recommendations: Vec::new(),
                pending: Vec::new(),
                spent_today: 0.0,
                day_start_rate: 0.0,
            };
            sim.spent_today = sim.hourly(&prices) * 1.0;
            sim.day_start_rate = sim.hourly(&prices);
            for op in ops {
                match op {
                    Op::Propose { spot, regular } => {
                        let spot = (i64::from(sim.spot) + spot).max(0) as u32;
                        let regular = (i64::from(sim.regular) + regular).max(0) as u32;
                        let target = ScaleTarget { spot_capacity: Some(spot), regular_capacity: Some(regular), vm_sizes: None };
                        let verdict = sim.check(&target, &policy, &prices);
                        if verdict.decision != Decision::Deny {
                            sim.recommendations.push(Recommendation { at: sim.now, total: spot + regular });
                        }
                        match verdict.decision {
                            Decision::Allow => sim.apply(&target),
                            Decision::NeedsApproval => sim.pending.push((target, sim.now)),
                            Decision::Deny => {}
                        }
                    }
                    Op::Approve(i) => {
                        if i < sim.pending.len() {
                            let (target, at) = sim.pending.remove(i);
                            // Approval re-runs the check now; an expired proposal is not applied.
                            let fresh = (sim.now - at).whole_seconds() < policy.approval_ttl_secs as i64;
                            if fresh && sim.check(&target, &policy, &prices).decision != Decision::Deny {
                                sim.apply(&target);
                            }
                        }
                    }
                    Op::Wait(secs) => {
                        let before = sim.now;
                        sim.now += Duration::seconds(secs);
                        let rate = sim.hourly(&prices);
                        if sim.now.date() != before.date() {
                            let midnight = sim.now.replace_time(time::Time::MIDNIGHT);
                            sim.spent_today = rate * (sim.now - midnight).as_seconds_f64() / 3600.0;
                            sim.day_start_rate = rate;
                        } else {
                            sim.spent_today += rate * secs as f64 / 3600.0;
                        }
                    }
                    Op::Load(l) => sim.load = l * f64::from(sim.spot + sim.regular) / 100.0,
                }
                // Bounds.
                prop_assert!(sim.spot <= policy.max_spot && sim.regular <= policy.max_regular);
                prop_assert!(sim.regular >= policy.min_regular && sim.spot >= policy.min_spot);
                // Budgets.
                prop_assert!(sim.hourly(&prices) <= 4.0 + 1e-6, "hourly cost {}", sim.hourly(&prices));
                // No change makes the day cost more than the budget (a fleet left alone as the
                // day began spends what it spends; the guardrails then allow only cuts). Prices
                // are rounded to 1/10,000 USD an hour: a cent a day of slack.
                let allowed = 60.0f64.max(24.0 * sim.day_start_rate);
                prop_assert!(sim.spent_today <= allowed + 0.01, "spent {} today; allowed {allowed}", sim.spent_today);
                // Change rate: no hour holds more than the limit.
                for c in &sim.changes {
                    let within = sim.changes.iter().filter(|d| d.at >= c.at && (d.at - c.at).whole_seconds() < 3600).count();
                    prop_assert!(within <= policy.max_changes_per_hour as usize, "{within} changes in an hour");
                }
                // No scale-in and scale-out within one stabilization window.
                for (i, a) in sim.changes.iter().enumerate() {
                    for b in &sim.changes[i + 1..] {
                        let close = (b.at - a.at).whole_seconds() < policy.stabilization_secs as i64;
                        let opposite = (a.is_in() && b.is_out()) || (a.is_out() && b.is_in());
                        prop_assert!(!(close && opposite), "{a:?} then {b:?}");
                    }
                }
            }
        }
    }
}
