//! The built-in planner: a deterministic [`ChatModel`] that investigates and acts the way the
//! system prompt asks a model to — read the fleet and its policy, query its telemetry, decide,
//! estimate the cost, propose, apply when allowed — and writes a short account. It is what
//! runs when no model endpoint is configured, and the baseline evals compare models with.
//!
//! Its decision is [`fleetpilot_policy::planner::decide`] (target tracking on CPU utilization,
//! the forecast leading scale-outs only, spot above the regular floor, regular backfill while
//! spot is short, the VM sizes the fleet lists), within the policy's bounds and step limits.
//! The guardrails still have the last word on every proposal.

use serde_json::{Value, json};

use crate::{ChatError, ChatModel, Message, Reply, Role, TextSink, ToolCall, ToolSpec, Turn, Usage};

/// What the planner is asked to look after.
#[derive(Debug, Clone)]
pub struct PlannerConfig {
    /// Fleet name.
    pub fleet: String,
    /// Its resource group (empty: the server's default).
    pub resource_group: String,
    /// Apply an allowed proposal without asking anyone.
    pub auto_apply: bool,
    /// Utilization the fleet is sized for (percent).
    pub target_utilization: f64,
    /// Scale out above this utilization.
    pub scale_out_above: f64,
    /// Scale in below this utilization.
    pub scale_in_below: f64,
    /// Why the run started (quoted in the reason of a proposal).
    pub trigger: String,
    /// VM sizes and prices, for choosing the sizes a fleet lists.
    pub prices: std::sync::Arc<fleetpilot_core::PriceTable>,
    /// The other fleets (in the same resource group) that serve the same service, one per
    /// region usually: the service is sized as one and its capacity placed across them
    /// ([`fleetpilot_policy::placement`]).
    pub siblings: Vec<String>,
}

impl PlannerConfig {
    /// Defaults for a fleet: 60 % target, act above 70 % and below 40 %.
    pub fn new(fleet: impl Into<String>, resource_group: impl Into<String>, trigger: impl Into<String>) -> Self {
        Self {
            fleet: fleet.into(),
            resource_group: resource_group.into(),
            auto_apply: true,
            target_utilization: 60.0,
            scale_out_above: 70.0,
            scale_in_below: 40.0,
            trigger: trigger.into(),
            prices: std::sync::Arc::new(fleetpilot_core::PriceTable::embedded()),
            siblings: Vec::new(),
        }
    }

    /// The fleets it plans: its own first, then its siblings.
    fn fleets(&self) -> Vec<&str> {
        std::iter::once(self.fleet.as_str()).chain(self.siblings.iter().map(String::as_str)).collect()
    }
}

/// A tool call's id for the `i`-th fleet of a run (the fleet's own has no suffix).
fn id_for(base: &str, i: usize) -> String {
    if i == 0 { base.to_string() } else { format!("{base}-{i}") }
}

/// The planner.
#[derive(Debug, Clone)]
pub struct Planner {
    config: PlannerConfig,
}

impl Planner {
    /// A planner for one fleet.
    pub fn new(config: PlannerConfig) -> Self {
        Self { config }
    }
}

use fleetpilot_policy::placement::{ServicePlan, Site, plan_service};
use fleetpilot_policy::planner::{Band, FleetView, Limits, Tier};
pub use fleetpilot_policy::planner::{Decision, Signals};

/// Decide from the fleet (as `read_fleet` returns it), its policy (as `get_policy` returns it),
/// the average CPU utilization of its VMs over the last minutes, and `growth`: the forecast's
/// upper bound on demand over the next minutes relative to demand now (when there is one).
/// The forecast can only add capacity: a scale-in is never driven by it.
pub fn decide(fleet: &Value, policy: &Value, cpu: Option<f64>, growth: Option<f64>, config: &PlannerConfig) -> Decision {
    decide_with_trend(fleet, policy, Signals { cpu, growth, ..Signals::default() }, config)
}

/// [`decide`] with every signal: also whether demand is rising now (the last 5 minutes'
/// arrivals above the 10 before), how many VMs ran, on average, over the window the CPU was
/// averaged on, and the VMs the demand's reactive bound needs ([`demand_need_of`]).
/// The decision is [`fleetpilot_policy::planner::decide`]'s; this reads its inputs from the
/// tools' JSON (a limit the policy does not state is no limit).
pub fn decide_with_trend(fleet: &Value, policy: &Value, signals: Signals, config: &PlannerConfig) -> Decision {
    fleetpilot_policy::planner::decide(&view_of(fleet), &limits_of(policy), &signals, &band_of(config), &config.prices)
}

/// What `read_fleet` returned, as the planner sees a fleet.
fn view_of(fleet: &Value) -> FleetView {
    let n = |path: &str| fleet.pointer(path).and_then(Value::as_u64).unwrap_or(0) as u32;
    let tier = |priority: &str| Tier {
        capacity: n(&format!("/{priority}/capacity")),
        running: n(&format!("/{priority}/running")),
        creating: n(&format!("/{priority}/creating")),
        min_capacity: n(&format!("/{priority}/min_capacity")),
    };
    FleetView {
        spot: tier("spot"),
        regular: tier("regular"),
        vm_sizes: names(fleet.get("vm_sizes")),
        location: fleet.get("location").and_then(Value::as_str).unwrap_or_default().to_string(),
    }
}

fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

/// What `get_policy` returned, as limits (a limit the policy does not state is no limit).
fn limits_of(policy: &Value) -> Limits {
    let p = |key: &str| policy.pointer(&format!("/policy/{key}")).and_then(Value::as_u64).map(|x| x as u32);
    let pf = |key: &str| policy.pointer(&format!("/policy/{key}")).and_then(Value::as_f64);
    Limits {
        min_spot: p("min_spot"),
        max_spot: p("max_spot"),
        min_regular: p("min_regular"),
        max_regular: p("max_regular"),
        max_step_up: p("max_step_up"),
        max_step_down: p("max_step_down"),
        max_step_up_percent: pf("max_step_up_percent"),
        max_step_down_percent: pf("max_step_down_percent"),
        approval_above_delta: p("approval_above_delta"),
        allowed_vm_sizes: names(policy.pointer("/policy/allowed_vm_sizes")),
    }
}

fn band_of(config: &PlannerConfig) -> Band {
    Band { target: config.target_utilization, scale_out_above: config.scale_out_above, scale_in_below: config.scale_in_below }
}

/// The service's telemetry from the first query's rows (`ResourceId, cpu, arrivals, newest,
/// recent, earlier, vms`, one row per fleet): CPU averaged over all the VMs (each fleet's
/// weighted by its VMs), the rest summed. `(cpu, recent, earlier, vms)`.
fn service_telemetry(table: &Value) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let rows = table.pointer("/tables/0/rows").and_then(Value::as_array).cloned().unwrap_or_default();
    let cell = |row: &Value, i: usize| row.get(i).and_then(Value::as_f64).filter(|x| x.is_finite());
    let sum = |i: usize| rows.iter().filter_map(|r| cell(r, i)).reduce(|a, b| a + b);
    let weighted: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((cell(r, 1)?, cell(r, 6).unwrap_or(1.0)))).collect();
    let weight: f64 = weighted.iter().map(|(_, w)| w).sum();
    let cpu = match weighted.len() {
        0 => None,
        1 => Some(weighted[0].0),
        _ if weight > 0.0 => Some(weighted.iter().map(|(c, w)| c * w).sum::<f64>() / weight),
        _ => Some(weighted.iter().map(|(c, _)| c).sum::<f64>() / weighted.len() as f64),
    };
    (cpu, sum(4), sum(5), sum(6))
}

/// The demand bound's need from the per-minute query's table (`minute, arrivals, served, cpu,
/// vms`): the arrivals, and what one VM serves a minute at full CPU (the median over the
/// minutes with at least 10 % CPU of served ÷ CPU ÷ VMs). The boot lead is the emulator's and
/// Compute Fleet's usual two to three minutes: two.
pub fn demand_need_of(table: &Value) -> Option<u32> {
    let rows = table.pointer("/tables/0/rows")?.as_array()?;
    let cell = |row: &Value, i: usize| row.get(i).and_then(Value::as_f64).filter(|x| x.is_finite());
    let arrivals: Vec<f64> = rows.iter().filter_map(|r| cell(r, 1)).collect();
    let mut rates: Vec<f64> = rows
        .iter()
        .filter_map(|r| match (cell(r, 2), cell(r, 3), cell(r, 4)) {
            (Some(served), Some(cpu), Some(vms)) if cpu >= 10.0 && vms > 0.0 => Some(served / (cpu / 100.0) / vms),
            _ => None,
        })
        .collect();
    if rates.is_empty() {
        return None;
    }
    let mid = rates.len() / 2;
    let rate = *rates.select_nth_unstable_by(mid, f64::total_cmp).1;
    fleetpilot_policy::planner::demand_need(&arrivals, rate, 2)
}

/// Tool results in the conversation, by call id (parsed JSON, and whether it is an error).
fn result_of(conversation: &[Message], id: &str) -> Option<(Value, bool)> {
    conversation.iter().find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(id)).map(|m| {
        let v: Value = serde_json::from_str(&m.content).unwrap_or_else(|_| Value::String(m.content.clone()));
        let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
        (v, is_error)
    })
}

fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
    ToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }
}

fn calls(list: Vec<ToolCall>) -> Result<Reply, ChatError> {
    Ok(Reply { turn: Turn::ToolCalls { calls: list }, text: String::new(), usage: Usage::default() })
}

fn answer(text: String, sink: TextSink<'_>) -> Result<Reply, ChatError> {
    sink(&text);
    Ok(Reply { turn: Turn::Answer, text, usage: Usage::default() })
}

fn error_text(v: &Value) -> String {
    let e = v.get("error").unwrap_or(v);
    let message = e.get("message").and_then(Value::as_str).unwrap_or("").to_string();
    if message.is_empty() { e.to_string() } else { message }
}

#[async_trait::async_trait]
impl ChatModel for Planner {
    fn name(&self) -> String {
        "planner".into()
    }

    async fn next_turn(&self, conversation: &[Message], _tools: &[ToolSpec], sink: TextSink<'_>) -> Result<Reply, ChatError> {
        let c = &self.config;
        let fleets = c.fleets();
        // 1. Look: the fleets and their policies (the run's own fleet first).
        let Some((fleet, fleet_err)) = result_of(conversation, "planner-read_fleet") else {
            let mut list = Vec::new();
            for (i, name) in fleets.iter().enumerate() {
                list.push(call(
                    &id_for("planner-read_fleet", i),
                    "read_fleet",
                    json!({"fleet": name, "resource_group": c.resource_group}),
                ));
                list.push(call(&id_for("planner-get_policy", i), "get_policy", json!({"fleet": name})));
            }
            return calls(list);
        };
        if fleet_err {
            return answer(format!("I could not read fleet {}: {}. Nothing was changed.", c.fleet, error_text(&fleet)), sink);
        }
        // Siblings that could not be read are left out of the plan (and said so).
        let mut sites = Vec::new();
        let mut unread = Vec::new();
        for (i, name) in fleets.iter().enumerate() {
            let read =
                if i == 0 { Some((fleet.clone(), false)) } else { result_of(conversation, &id_for("planner-read_fleet", i)) };
            match read {
                Some((f, false)) => {
                    let policy = result_of(conversation, &id_for("planner-get_policy", i)).map(|(v, _)| v).unwrap_or(Value::Null);
                    sites.push((i, f, policy));
                }
                Some((f, true)) => unread.push(format!("{name} ({})", error_text(&f))),
                None => unread.push(format!("{name} (not read)")),
            }
        }
        // 2. The telemetry that explains the trigger, over every fleet planned.
        let Some((telemetry, telemetry_err)) = result_of(conversation, "planner-query_kql") else {
            let ids: Vec<String> = sites
                .iter()
                .map(|(_, f, _)| Value::String(f.get("id").and_then(Value::as_str).unwrap_or_default().to_string()).to_string())
                .collect();
            let ids = ids.join(", ");
            let query = format!(
                "AzureMetrics | where TimeGenerated > ago(15m) and ResourceId in~ ({ids}) | summarize cpu = avgif(Average, MetricName == 'Percentage CPU' and TimeGenerated > ago(10m)), arrivals = avgif(Average, MetricName == 'RequestsArrived'), newest = max(TimeGenerated), recent = avgif(Average, MetricName == 'RequestsArrived' and TimeGenerated > ago(5m)), earlier = avgif(Average, MetricName == 'RequestsArrived' and TimeGenerated <= ago(5m)), vms = avgif(Average, MetricName == 'RunningVMs' and TimeGenerated > ago(10m)) by ResourceId"
            );
            // Per-minute arrivals of the last four hours, and what a VM serves at full CPU
            // (the fleets' CPU averaged: a load balancer routing by capacity evens it out; a
            // fleet with nothing running reports 0 % and is left out).
            let demand_query = format!(
                "AzureMetrics | where TimeGenerated > ago(4h) and ResourceId in~ ({ids}) | summarize arrivals = sumif(Average, MetricName == 'RequestsArrived'), served = sumif(Average, MetricName == 'RequestsServed'), cpu = avgif(Average, MetricName == 'Percentage CPU' and Average > 0), vms = sumif(Average, MetricName == 'RunningVMs') by minute = bin(TimeGenerated, 1m) | order by minute asc"
            );
            return calls(vec![
                call("planner-query_kql", "query_kql", json!({"query": query, "timespan": "PT1H"})),
                call("planner-query_demand", "query_kql", json!({"query": demand_query, "timespan": "PT4H"})),
                call(
                    "planner-forecast_demand",
                    "forecast_demand",
                    json!({"fleet": c.fleet, "resource_group": c.resource_group, "metric": "RequestsArrived", "history": "P7D", "step_minutes": 5, "horizon_minutes": 30, "level": 0.9}),
                ),
            ]);
        };
        let (cpu, recent, earlier, vms) = if telemetry_err { (None, None, None, None) } else { service_telemetry(&telemetry) };
        // Growth the forecast expects over the next 15 minutes (its upper bound over demand now).
        let growth = result_of(conversation, "planner-forecast_demand").and_then(|(f, is_error)| {
            // Only a forecast that has seen the daily cycle (two days of history) may lead a
            // scale-out; with less, its bounds are guesses about the next hour.
            if is_error || f.get("seasonality_minutes").and_then(Value::as_u64).is_none_or(|m| m < 1440) {
                return None;
            }
            let now = f.get("last_value").and_then(Value::as_f64).filter(|v| *v > 0.0)?;
            let upper = f
                .get("points")?
                .as_array()?
                .iter()
                .filter(|p| p["offset_minutes"].as_u64().is_some_and(|m| m <= 15))
                .filter_map(|p| p["upper"].as_f64())
                .reduce(f64::max)?;
            Some(upper / now)
        });
        // Rising: the last 5 minutes' arrivals 2 % above the 10 minutes before.
        let rising = matches!((recent, earlier), (Some(recent), Some(earlier)) if recent > earlier * 1.02);
        let demand_need = result_of(conversation, "planner-query_demand")
            .filter(|(_, is_error)| !is_error)
            .and_then(|(table, _)| demand_need_of(&table));
        let signals = Signals { cpu, growth, rising, window_vms: vms, demand_need };
        let placed: Vec<Site> = sites
            .iter()
            .map(|(i, f, policy)| Site { name: fleets[*i].to_string(), fleet: view_of(f), limits: limits_of(policy) })
            .collect();
        let left_out = if unread.is_empty() { String::new() } else { format!(" (left out, unreadable: {})", unread.join(", ")) };
        let (targets, why) = match plan_service(&placed, &signals, &band_of(c), &c.prices) {
            ServicePlan::Hold(why) if placed.len() == 1 => {
                return answer(format!("Fleet {}{left_out}: {why}. I left it as it is.", c.fleet), sink);
            }
            ServicePlan::Hold(why) => {
                let names: Vec<&str> = placed.iter().map(|s| s.name.as_str()).collect();
                return answer(format!("Fleets {}{left_out}: {why}. I left them as they are.", names.join(", ")), sink);
            }
            ServicePlan::Change { targets, why } => (targets, format!("{why}{left_out}")),
        };
        // One change per fleet whose targets move, named by the fleet's index in the run.
        let changes: Vec<(usize, Value)> = targets
            .iter()
            .map(|t| {
                let i = sites[t.site].0;
                let mut target = json!({"fleet": fleets[i], "resource_group": c.resource_group, "spot_capacity": t.spot, "regular_capacity": t.regular});
                if let Some(sizes) = &t.vm_sizes {
                    target["vm_sizes"] = json!(sizes);
                }
                (i, target)
            })
            .collect();
        // 3. What it costs.
        let costs: Vec<Option<Value>> =
            changes.iter().map(|(i, _)| result_of(conversation, &id_for("planner-estimate_cost", *i)).map(|r| r.0)).collect();
        if costs.iter().any(Option::is_none) {
            return calls(
                changes.iter().map(|(i, t)| call(&id_for("planner-estimate_cost", *i), "estimate_cost", t.clone())).collect(),
            );
        }
        let deltas: Vec<f64> = costs
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.get("delta_hourly_usd")).and_then(Value::as_f64).unwrap_or(0.0))
            .collect();
        let delta: f64 = deltas.iter().sum();
        // 4. Propose.
        let proposals: Vec<Option<(Value, bool)>> =
            changes.iter().map(|(i, _)| result_of(conversation, &id_for("planner-propose_scale", *i))).collect();
        if proposals.iter().any(Option::is_none) {
            return calls(
                changes
                    .iter()
                    .zip(&deltas)
                    .map(|((i, t), d)| {
                        let mut args = t.clone();
                        args["reason"] = json!(format!("{why}; cost {d:+.2} USD/h. Trigger: {}", c.trigger));
                        call(&id_for("planner-propose_scale", *i), "propose_scale", args)
                    })
                    .collect(),
            );
        }
        // What became of each proposal.
        let mut outcomes: Vec<(usize, String, Outcome)> = Vec::new();
        for ((i, _), proposal) in changes.iter().zip(proposals.into_iter().flatten()) {
            let (proposal, proposal_err) = proposal;
            let view = proposal.get("error").and_then(|e| e.get("proposal")).unwrap_or(&proposal);
            let id = view.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let outcome = if proposal_err {
                Outcome::Refused(error_text(&proposal))
            } else if proposal.pointer("/verdict/decision").and_then(Value::as_str) == Some("needs_approval") {
                Outcome::NeedsApproval
            } else if !c.auto_apply {
                Outcome::Allowed
            } else {
                match result_of(conversation, &id_for("planner-apply_proposal", *i)) {
                    None => Outcome::ToApply,
                    Some((applied, true)) => Outcome::ApplyFailed(error_text(&applied)),
                    Some((applied, false)) => Outcome::Applied {
                        result: applied.get("result").and_then(Value::as_str).unwrap_or("applied").to_string(),
                        verified: applied.pointer("/proposal/outcome/verified").and_then(Value::as_bool).unwrap_or(false),
                    },
                }
            };
            outcomes.push((*i, id, outcome));
        }
        // 5. Apply what is allowed: the fleets that grow first; a fleet that shrinks while
        // another grows (spot moving between regions) only once every growing fleet has its
        // change, so the service never gives up capacity it has not secured elsewhere.
        let grows: Vec<bool> = targets
            .iter()
            .map(|t| {
                let f = &placed[t.site].fleet;
                t.spot + t.regular >= f.spot.capacity + f.regular.capacity
            })
            .collect();
        let growth_secured = outcomes.iter().zip(&grows).all(|(o, g)| !g || matches!(o.2, Outcome::Applied { .. }));
        let any_growth = grows.iter().any(|g| *g);
        let to_apply: Vec<ToolCall> = outcomes
            .iter()
            .zip(&grows)
            .filter(|(o, g)| matches!(o.2, Outcome::ToApply) && (**g || !any_growth || growth_secured))
            .map(|((i, id, _), _)| call(&id_for("planner-apply_proposal", *i), "apply_proposal", json!({"proposal_id": id})))
            .collect();
        if !to_apply.is_empty() {
            return calls(to_apply);
        }
        for o in &mut outcomes {
            if matches!(o.2, Outcome::ToApply) {
                o.2 = Outcome::HeldBack;
            }
        }
        if let [(_, id, outcome)] = outcomes.as_slice() {
            return answer(outcome.sentence(&why, id, delta), sink);
        }
        let lines: Vec<String> = outcomes
            .iter()
            .zip(&deltas)
            .map(|((i, id, outcome), d)| format!("- {}: {}", fleets[*i], outcome.sentence("", id, *d).trim_start_matches(". ")))
            .collect();
        answer(format!("{why}.\n{}", lines.join("\n")), sink)
    }
}

/// What became of one proposal.
enum Outcome {
    Refused(String),
    NeedsApproval,
    Allowed,
    ToApply,
    ApplyFailed(String),
    Applied {
        result: String,
        verified: bool,
    },
    /// Allowed, but not applied: the fleets it gives capacity up to did not get theirs.
    HeldBack,
}

impl Outcome {
    /// `why` followed by what happened to proposal `id` (costing `delta` USD an hour).
    fn sentence(&self, why: &str, id: &str, delta: f64) -> String {
        match self {
            Outcome::Refused(e) => format!("{why}. I proposed it ({id}) but the guardrails refused: {e}. Nothing was changed."),
            Outcome::NeedsApproval => {
                format!("{why}. Proposal {id} needs a human's approval ({delta:+.2} USD/h); it waits for an approver.")
            }
            Outcome::Allowed | Outcome::ToApply => {
                format!("{why}. Proposal {id} is allowed ({delta:+.2} USD/h); apply it when you agree.")
            }
            Outcome::ApplyFailed(e) => format!("{why}. Applying {id} failed: {e}."),
            Outcome::HeldBack => format!(
                "{why}. Proposal {id} is allowed ({delta:+.2} USD/h) but not applied: it gives up capacity that the other fleets' changes, not all applied, were to take over; apply it once they are."
            ),
            Outcome::Applied { result, verified } => format!(
                "{why}. Applied {id} ({result}{}; {delta:+.2} USD/h).",
                if *verified { ", verified" } else { ", not yet verified" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(spot: u32, regular: u32) -> Value {
        json!({"id": "/f", "spot": {"capacity": spot, "running": spot}, "regular": {"capacity": regular, "running": regular}})
    }

    fn policy() -> Value {
        json!({"policy": {"min_spot": 0, "max_spot": 40, "min_regular": 1, "max_regular": 20, "max_step_up": 10, "max_step_down": 10, "approval_above_delta": 8}})
    }

    fn config() -> PlannerConfig {
        PlannerConfig::new("f", "rg", "test")
    }

    fn window(cpu: f64, vms: f64) -> Signals {
        Signals { cpu: Some(cpu), window_vms: Some(vms), ..Signals::default() }
    }

    fn rising(cpu: f64) -> Signals {
        Signals { cpu: Some(cpu), rising: true, ..Signals::default() }
    }

    #[test]
    fn holds_inside_the_band_and_without_telemetry() {
        assert!(matches!(decide(&fleet(20, 10), &policy(), Some(55.0), None, &config()), Decision::Hold(_)));
        assert!(matches!(decide(&fleet(20, 10), &policy(), None, None, &config()), Decision::Hold(_)));
    }

    #[test]
    fn scales_out_on_spot_within_the_step_and_approval_limits() {
        // 30 VMs at 90 % want 45; the approval threshold (8) caps the step.
        let Decision::Scale { spot, regular, .. } = decide(&fleet(20, 10), &policy(), Some(90.0), None, &config()) else {
            panic!()
        };
        assert_eq!((spot, regular), (28, 10));
    }

    #[test]
    fn scales_in_regular_above_its_floor_first_then_spot() {
        // 30 VMs at 20 % want 10; the step (8) allows 22: regular goes first, to its floor.
        let Decision::Scale { spot, regular, .. } = decide(&fleet(20, 10), &policy(), Some(20.0), None, &config()) else {
            panic!()
        };
        assert_eq!((spot, regular), (20, 2));
        // Regular at its floor: spot goes.
        let Decision::Scale { spot, regular, .. } = decide(&fleet(20, 1), &policy(), Some(10.0), None, &config()) else {
            panic!()
        };
        assert_eq!((spot, regular), (12, 1), "21 → 13 VMs, all from spot");
    }

    #[test]
    fn never_goes_below_the_fleets_own_min_capacity() {
        let mut f = fleet(3, 1);
        f["spot"]["min_capacity"] = json!(2);
        let Decision::Scale { spot, regular, .. } = decide(&f, &policy(), Some(5.0), None, &config()) else { panic!() };
        assert_eq!((spot, regular), (2, 1), "spot stops at the fleet's minCapacity");
    }

    #[test]
    fn backfills_spot_that_is_not_serving_with_regular() {
        // An eviction storm: 12 of 20 spot VMs gone and not replaced.
        let mut f = fleet(20, 10);
        f["spot"]["running"] = json!(8);
        let Decision::Scale { spot, regular, why, .. } = decide(&f, &policy(), Some(80.0), None, &config()) else { panic!() };
        assert_eq!((spot, regular), (20, 16), "18 serving at 80 % need 24 at 60 %: regular +6, spot target kept");
        assert!(why.contains("backfilling"), "{why}");
        // A hair above the target (CPU lags the change just made): no second backfill.
        assert!(matches!(decide(&f, &policy(), Some(61.0), None, &config()), Decision::Hold(_)));
        // Spot booting again counts as delivering: no backfill.
        f["spot"]["creating"] = json!(12);
        assert!(!matches!(decide(&f, &policy(), Some(55.0), None, &config()), Decision::Scale { .. }));
        // Low CPU while spot is short: the cut goes to spot (the VMs serving nothing), never
        // to the regular VMs that serve.
        f["spot"]["creating"] = json!(0);
        let Decision::Scale { spot, regular, .. } = decide(&f, &policy(), Some(20.0), None, &config()) else { panic!() };
        assert_eq!((spot, regular), (12, 10));
    }

    #[test]
    fn the_load_is_cpu_times_the_vms_that_produced_it() {
        // 45 VMs run now, but the 10-minute average of 70 % was made by 38 on average: 38 × 70 /
        // 60 = 45 VMs are needed, which is what runs: no scale-out on a lagging average.
        let mut f = fleet(36, 10);
        f["spot"]["running"] = json!(35);
        let d = decide_with_trend(&f, &policy(), window(70.5, 38.0), &config());
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
        // A storm: 10 serve now, 22 on average over the window, at 66 %: the load needs 25.
        let mut f = fleet(20, 10);
        f["spot"]["running"] = json!(0);
        let Decision::Scale { regular, why, .. } = decide_with_trend(&f, &policy(), window(66.0, 22.0), &config()) else {
            panic!()
        };
        assert!(regular > 10 && why.contains("backfilling"), "{why}");
    }

    #[test]
    fn no_scale_in_while_demand_rises() {
        let low = decide_with_trend(&fleet(20, 10), &policy(), rising(20.0), &config());
        assert!(matches!(low, Decision::Hold(ref why) if why.contains("rising")), "{low:?}");
        // A rise does not stop a scale-out.
        let high = decide_with_trend(&fleet(20, 10), &policy(), rising(90.0), &config());
        assert!(matches!(high, Decision::Scale { .. }), "{high:?}");
    }

    #[test]
    fn a_forecast_rise_scales_out_ahead_but_never_drives_a_scale_in() {
        // CPU 60 % (in band) but demand is forecast to grow 50 %: 30 VMs → 45 wanted, +8 (approval cap).
        let Decision::Scale { spot, regular, why, .. } = decide(&fleet(20, 10), &policy(), Some(60.0), Some(1.5), &config())
        else {
            panic!()
        };
        assert_eq!((spot, regular), (28, 10));
        assert!(why.contains("forecast to grow up to 50 %"), "{why}");
        // A forecast of falling demand changes nothing; below the band the forecast is not
        // consulted at all: the scale-in is the reactive one, with or without a forecast.
        assert!(matches!(decide(&fleet(20, 10), &policy(), Some(60.0), Some(0.5), &config()), Decision::Hold(_)));
        assert_eq!(
            decide(&fleet(20, 10), &policy(), Some(30.0), Some(2.0), &config()),
            decide(&fleet(20, 10), &policy(), Some(30.0), None, &config())
        );
    }

    #[test]
    fn the_demand_bound_is_read_from_the_per_minute_query() {
        // 60 minutes at 1,000 a minute with a burst to 2,000 every 15; a VM serves 100 at full
        // CPU (served 1,000 at 40 % on 25 VMs); a minute still being ingested has nulls.
        let mut rows: Vec<Value> = (0..60)
            .map(|m| {
                let arrivals = if m % 15 == 0 { 2_000.0 } else { 1_000.0 };
                json!([format!("2026-03-02T00:{m:02}:00Z"), arrivals, 1_000.0, 40.0, 25.0])
            })
            .collect();
        rows.push(json!(["2026-03-02T01:00:00Z", null, 1_000.0, null, 25.0]));
        let table = json!({"tables": [{"name": "PrimaryResult", "columns": [], "rows": rows}]});
        assert_eq!(demand_need_of(&table), Some(23), "the 2,000 burst at 90 % of 100 a VM");
        // Nothing to go on: no CPU, or no rows.
        let idle = json!({"tables": [{"rows": [["2026-03-02T00:00:00Z", 10.0, 10.0, 0.0, 5.0]]}]});
        assert_eq!(demand_need_of(&idle), None);
        assert_eq!(demand_need_of(&json!({"tables": []})), None);
    }

    #[test]
    fn overflows_into_regular_when_spot_is_at_its_maximum() {
        let Decision::Scale { spot, regular, .. } = decide(&fleet(40, 5), &policy(), Some(90.0), None, &config()) else {
            panic!()
        };
        assert_eq!((spot, regular), (40, 13));
    }

    #[test]
    fn the_service_telemetry_weighs_each_fleets_cpu_by_its_vms() {
        // East: 30 VMs at 80 %; west: 10 at 40 %: the service runs at 70 %.
        let table = json!({"tables": [{"rows": [
            ["/EAST", 80.0, 900.0, "2026-03-02T00:14:00Z", 950.0, 900.0, 30.0],
            ["/WEST", 40.0, 300.0, "2026-03-02T00:14:00Z", 320.0, 300.0, 10.0],
        ]}]});
        assert_eq!(service_telemetry(&table), (Some(70.0), Some(1270.0), Some(1200.0), Some(40.0)));
        // One fleet: its own numbers; none: nothing.
        let one = json!({"tables": [{"rows": [["/EAST", 55.0, 900.0, null, 950.0, 900.0, 30.0]]}]});
        assert_eq!(service_telemetry(&one), (Some(55.0), Some(950.0), Some(900.0), Some(30.0)));
        assert_eq!(service_telemetry(&json!({"tables": [{"rows": []}]})), (None, None, None, None));
    }

    /// Drives the planner to its answer against scripted tools; returns the answer and every
    /// call made, in order.
    fn drive(planner: &Planner, tools: impl Fn(&ToolCall) -> Value) -> (String, Vec<ToolCall>) {
        let mut conversation = vec![Message::text(Role::User, "look")];
        let mut made = Vec::new();
        for _ in 0..10 {
            let reply = futures::executor::block_on(planner.next_turn(&conversation, &[], &|_: &str| {})).expect("turn");
            match reply.turn {
                Turn::Answer => return (reply.text, made),
                Turn::ToolCalls { calls } => {
                    for c in calls {
                        conversation.push(Message {
                            role: Role::Tool,
                            content: tools(&c).to_string(),
                            tool_calls: Vec::new(),
                            tool_call_id: Some(c.id.clone()),
                        });
                        made.push(c);
                    }
                }
            }
        }
        panic!("no answer in 10 turns");
    }

    /// East lost 12 of its 20 spot VMs to a storm; west is calm. `west_verdict` is what the
    /// guardrails say to west's proposal.
    fn two_regions(west_verdict: &'static str) -> impl Fn(&ToolCall) -> Value {
        move |c: &ToolCall| {
            let args: Value = serde_json::from_str(&c.arguments).unwrap_or_default();
            let fleet = args["fleet"].as_str().unwrap_or_default().to_string();
            match c.name.as_str() {
                "read_fleet" if fleet == "east" => json!({"id": "/EAST", "location": "eastus",
                    "spot": {"capacity": 20, "running": 8}, "regular": {"capacity": 2, "running": 2}}),
                "read_fleet" => json!({"id": "/WEST", "location": "westus2",
                    "spot": {"capacity": 10, "running": 10}, "regular": {"capacity": 1, "running": 1}}),
                "get_policy" => policy(),
                "query_kql" if args["query"].as_str().unwrap_or_default().contains("by ResourceId") => {
                    json!({"tables": [{"rows": [["/EAST", 80.0, 500.0, null, 500.0, 500.0, 10.0], ["/WEST", 80.0, 500.0, null, 500.0, 500.0, 11.0]]}]})
                }
                "query_kql" | "forecast_demand" => json!({"tables": []}),
                "estimate_cost" => json!({"delta_hourly_usd": 0.1}),
                "propose_scale" => {
                    let decision = if fleet == "west" { west_verdict } else { "allow" };
                    json!({"id": format!("p-{fleet}"), "verdict": {"decision": decision}})
                }
                "apply_proposal" => json!({"result": "applied", "proposal": {"outcome": {"verified": true}}}),
                other => panic!("unexpected tool {other}"),
            }
        }
    }

    fn sibling_config() -> PlannerConfig {
        let mut c = PlannerConfig::new("east", "rg", "test");
        c.siblings = vec!["west".into()];
        c
    }

    #[test]
    fn a_service_on_two_fleets_is_read_together_and_changed_fleet_by_fleet() {
        let (text, made) = drive(&Planner::new(sibling_config()), two_regions("allow"));
        let names = |tool: &str| made.iter().filter(|c| c.name == tool).count();
        assert_eq!((names("read_fleet"), names("get_policy"), names("propose_scale"), names("apply_proposal")), (2, 2, 2, 2));
        let query = made.iter().find(|c| c.id == "planner-query_kql").unwrap();
        assert!(query.arguments.contains(r#"in~ (\"/EAST\", \"/WEST\")"#), "{}", query.arguments);
        // West's growth is applied before east gives its undelivered spot up.
        let applied: Vec<&str> = made.iter().filter(|c| c.name == "apply_proposal").map(|c| c.id.as_str()).collect();
        assert_eq!(applied, ["planner-apply_proposal-1", "planner-apply_proposal"]);
        assert!(text.contains("7 spot in west (westus2), whose spot serves, taken 7 from east (eastus)"), "{text}");
        assert!(text.contains("- east: Applied p-east"), "{text}");
    }

    #[test]
    fn a_fleet_gives_up_spot_only_once_the_other_fleet_has_taken_it() {
        let (text, made) = drive(&Planner::new(sibling_config()), two_regions("needs_approval"));
        assert!(made.iter().all(|c| c.name != "apply_proposal"), "{made:?}");
        assert!(text.contains("- west: Proposal p-west needs a human's approval"), "{text}");
        assert!(text.contains("- east: Proposal p-east is allowed (+0.10 USD/h) but not applied"), "{text}");
    }

    #[test]
    fn a_sibling_that_cannot_be_read_is_left_out_and_said_so() {
        let tools = two_regions("allow");
        let (text, made) = drive(&Planner::new(sibling_config()), |c: &ToolCall| {
            if c.id == "planner-read_fleet-1" {
                json!({"is_error": true, "error": {"code": "not_found", "message": "fleet west not found"}})
            } else {
                tools(c)
            }
        });
        assert!(made.iter().filter(|c| c.name == "propose_scale").all(|c| c.arguments.contains(r#""fleet":"east""#)), "{made:?}");
        assert!(text.contains("left out, unreadable: west (fleet west not found)"), "{text}");
    }
}
