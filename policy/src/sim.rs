//! A minute-level fleet model for comparing scaling policies on the same demand and the same
//! spot weather: VMs boot for `boot_minutes` before they serve; spot VMs are evicted at the
//! rate the weather says and cannot be replaced while the spot pool is dry; a minute meets the
//! SLA when demand stays under `sla_utilization` of the serving capacity. Prices are per VM
//! hour, spot and regular. Deterministic: the weather is drawn once from a seed and is the
//! same for every policy.

use serde::{Deserialize, Serialize};

/// The model's constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Requests one VM serves per minute at 100 % utilization.
    pub vm_rate: f64,
    /// Minutes from request to serving.
    pub boot_minutes: usize,
    /// A minute meets the SLA when demand ≤ this share of the serving capacity.
    pub sla_utilization: f64,
    /// Price of a regular VM per hour (USD).
    pub regular_usd_hour: f64,
    /// Price of a spot VM per hour (USD).
    pub spot_usd_hour: f64,
    /// Smallest regular target any policy may set (the guardrails' floor).
    pub min_regular: u32,
    /// Largest total.
    pub max_total: u32,
}

/// The spot market, minute by minute: the share of running spot VMs evicted, and whether new
/// spot VMs can be had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weather {
    /// Share of running spot VMs evicted in each minute.
    pub eviction: Vec<f64>,
    /// Whether spot capacity can be allocated in each minute.
    pub available: Vec<bool>,
}

impl Weather {
    /// Calm weather at `daily_rate` evictions a day (a share of spot VMs), with a storm about
    /// every `storm_every_minutes` that evicts `storm_minute_rate` a minute for 20–60 minutes
    /// and dries the pool meanwhile; drawn from `seed`.
    pub fn draw(minutes: usize, seed: u64, daily_rate: f64, storm_every_minutes: usize, storm_minute_rate: f64) -> Weather {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let calm = daily_rate / 1440.0;
        let mut eviction = vec![calm; minutes];
        let mut available = vec![true; minutes];
        let mut t = (next() * storm_every_minutes as f64) as usize;
        while t < minutes {
            let length = 20 + (next() * 40.0) as usize;
            for m in t..(t + length).min(minutes) {
                eviction[m] = storm_minute_rate;
                available[m] = false;
            }
            t += length + (storm_every_minutes as f64 * (0.5 + next())) as usize;
        }
        Weather { eviction, available }
    }
}

/// What a policy sees at the start of a minute (telemetry is one minute old).
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The minute.
    pub t: usize,
    /// Demand of every minute before this one.
    pub demand_history: &'a [f64],
    /// Serving VMs last minute (spot, regular).
    pub running: (u32, u32),
    /// Booting VMs now (spot, regular).
    pub booting: (u32, u32),
    /// Current targets (spot, regular).
    pub target: (u32, u32),
    /// Spot VMs evicted last minute.
    pub evicted: u32,
    /// Whether new spot VMs could be had last minute.
    pub spot_available: bool,
    /// The model's constants.
    pub config: &'a SimConfig,
}

impl Observation<'_> {
    /// Utilization last minute (0 when nothing served).
    pub fn utilization(&self) -> f64 {
        let capacity = f64::from(self.running.0 + self.running.1) * self.config.vm_rate;
        match self.demand_history.last() {
            Some(d) if capacity > 0.0 => d / capacity,
            Some(d) if *d > 0.0 => 10.0,
            _ => 0.0,
        }
    }
}

/// A scaling policy: each minute, the targets it wants.
pub trait Policy {
    /// The name in tables (`fleetpilot`, `hpa`, …).
    fn name(&self) -> &'static str;
    /// Targets (spot, regular) for this minute.
    fn decide(&mut self, obs: &Observation<'_>) -> (u32, u32);
}

/// One policy's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Policy name.
    pub policy: String,
    /// Total cost (USD).
    pub cost_usd: f64,
    /// Minutes meeting the SLA (%).
    pub sla_met_pct: f64,
    /// Demand not served (% of all demand).
    pub unserved_pct: f64,
    /// Changes of target.
    pub actions: u32,
    /// Opposite changes within `stabilization` minutes of each other.
    pub flaps: u32,
    /// Mean spare capacity while serving (% of capacity).
    pub mean_slack_pct: f64,
    /// Changes the guardrails refused.
    pub denied: u32,
    /// Serving VMs per minute (for plots).
    #[serde(skip)]
    pub serving: Vec<u32>,
    /// Evictions per minute (for plots).
    #[serde(skip)]
    pub evictions: Vec<u32>,
}

/// Decides whether a change of targets may happen (the guardrails): minute, from, to, and
/// what the fleet looks like.
pub type Guard<'a> = dyn FnMut(usize, (u32, u32), (u32, u32), &Observation<'_>) -> bool + 'a;

/// The model every policy is evaluated in: D4s_v5 prices, a 2-minute boot, the SLA at 95 %
/// utilization, a regular floor of one VM, and demand scaled so the trace's peak needs 40 VMs.
pub fn eval_config(demand: &[f64]) -> SimConfig {
    let prices = fleetpilot_core::PriceTable::embedded();
    let size = prices.get("Standard_D4s_v5");
    let peak = demand.iter().copied().fold(0.0, f64::max).max(1.0);
    SimConfig {
        vm_rate: peak / (40.0 * 0.95),
        boot_minutes: 2,
        sla_utilization: 0.95,
        regular_usd_hour: size.map_or(0.192, |s| s.price(fleetpilot_core::Priority::Regular)),
        spot_usd_hour: size.map_or(0.0405, |s| s.price(fleetpilot_core::Priority::Spot)),
        min_regular: 1,
        max_total: 200,
    }
}

/// The spot weather policies are evaluated in: calm spot evicts 2.5 % a day; a storm about
/// every two days evicts 5 % a minute for 20–60 minutes.
pub fn eval_weather(minutes: usize, seed: u64) -> Weather {
    Weather::draw(minutes, seed, 0.025, 2880, 0.05)
}

/// The fleet already serving when an evaluated trace starts (spot, regular): sized at 85 % for
/// the highest of its first five minutes (a trace's first minute is often partial), at least
/// two VMs, one of them the regular floor.
pub fn opening_fleet(demand: &[f64], config: &SimConfig) -> (u32, u32) {
    let opening = demand.iter().take(5).copied().fold(0.0, f64::max);
    let need = ((opening / (config.vm_rate * 0.85)).ceil() as u32).max(2);
    (need - 1, 1)
}

/// The guardrails policies are evaluated under: fleetpilot's defaults sized for the model
/// (bounds to its maximum, steps of 20 VMs, 60 changes an hour; autonomous, so no approvals),
/// and the anti-flapping check's scale-out threshold at the SLA's utilization, where these
/// fleets must scale out (the default 75 % is the recipe's alert, for fleets run at 60 %: it
/// would refuse every scale-in of a fleet sized for 95 %).
pub fn eval_rules(config: &SimConfig) -> fleetpilot_guardrails::Policy {
    fleetpilot_guardrails::Policy {
        min_regular: config.min_regular,
        max_spot: config.max_total,
        max_regular: config.max_total,
        max_step_up: 20,
        max_step_down: 20,
        allowed_vm_sizes: Vec::new(),
        approval_above_delta: None,
        max_changes_per_hour: 60,
        scale_out_utilization_percent: 100.0 * config.sla_utilization,
        ..fleetpilot_guardrails::Policy::default()
    }
}

/// A guard that allows everything (the bounds of [`SimConfig`] still hold).
pub fn unguarded() -> impl FnMut(usize, (u32, u32), (u32, u32), &Observation<'_>) -> bool {
    |_, _, _, _| true
}

/// The guardrails as a [`Guard`]: every change is checked with `guardrails::check` against
/// the fleet as the model has it, the history of changes and recommendations, and fresh
/// telemetry of last minute's utilization; anything but `allow` is refused (autonomous runs
/// do not wait for approvals).
pub fn guardrails(rules: fleetpilot_guardrails::Policy) -> impl FnMut(usize, (u32, u32), (u32, u32), &Observation<'_>) -> bool {
    use fleetpilot_core::{EvictionPolicy, FleetRef, FleetState, PriorityState, ScaleTarget};
    use fleetpilot_guardrails::{Change, Context, Recommendation, Telemetry};
    let prices = fleetpilot_core::PriceTable::embedded();
    let epoch = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let mut changes: Vec<Change> = Vec::new();
    let mut recommendations: Vec<Recommendation> = Vec::new();
    move |t, from, to, obs| {
        let now = epoch + time::Duration::minutes(t as i64);
        let horizon = now - time::Duration::hours(1);
        changes.retain(|c| c.at > horizon);
        recommendations.retain(|r| r.at > horizon);
        let observed = FleetState {
            fleet: FleetRef { resource_group: "eval".into(), name: "eval".into() },
            id: "eval".into(),
            location: "eastus".into(),
            provisioning_state: "Succeeded".into(),
            spot: PriorityState { capacity: from.0, running: obs.running.0, ..Default::default() },
            regular: PriorityState { capacity: from.1, running: obs.running.1, ..Default::default() },
            spot_max_price_per_vm: -1.0,
            spot_eviction_policy: EvictionPolicy::Delete,
            spot_maintain: true,
            vm_sizes: vec!["Standard_D4s_v5".into()],
            vms: Vec::new(),
            observed_at: now,
        };
        let target = ScaleTarget { spot_capacity: Some(to.0), regular_capacity: Some(to.1), vm_sizes: None };
        let ctx = Context {
            now,
            prices: &prices,
            changes: &changes,
            recommendations: &recommendations,
            telemetry: Some(Telemetry { age_secs: 60.0, utilization_percent: Some(100.0 * obs.utilization().min(10.0)) }),
            spent_today_usd: None,
        };
        let verdict = fleetpilot_guardrails::check(&target, &observed, &rules, &ctx);
        recommendations.push(Recommendation { at: now, total: to.0 + to.1 });
        let allowed = verdict.decision == fleetpilot_core::Decision::Allow;
        if allowed {
            changes.push(Change { at: now, from_total: from.0 + from.1, to_total: to.0 + to.1 });
        }
        allowed
    }
}

/// The fleet at the start of a minute, as a [`FleetModel`] reports it to the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FleetNow {
    /// Serving VMs (spot, regular).
    pub running: (u32, u32),
    /// Booting VMs (spot, regular).
    pub booting: (u32, u32),
    /// Spot VMs evicted last minute.
    pub evicted: u32,
    /// Whether new spot VMs could be had last minute.
    pub spot_available: bool,
}

/// One minute carried out, as a [`FleetModel`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Minute {
    /// Requests that arrived.
    pub demand: f64,
    /// Requests the serving VMs could serve.
    pub capacity: f64,
    /// What the minute cost (USD): every VM booting or serving.
    pub cost_usd: f64,
    /// Whether the minute met the SLA.
    pub sla_met: bool,
    /// Requests not served.
    pub unserved: f64,
    /// Serving VMs.
    pub serving: u32,
    /// Spot VMs evicted.
    pub evicted: u32,
}

/// Where a policy's targets are carried out, minute by minute: [`ModelFleet`] (this module's
/// model) or the emulator's world (`fleetpilot eval policies --engine emulator`).
pub trait FleetModel {
    /// The fleet at the start of minute `t`.
    fn now(&self, t: usize) -> FleetNow;
    /// Carry out minute `t` towards `target` (spot, regular): boots, evictions, orders and
    /// deletions, serving; what happened.
    fn minute(&mut self, t: usize, target: (u32, u32)) -> Minute;
}

/// The minute-level model: VMs boot for `boot_minutes` (billed meanwhile); the weather's share
/// of running spot is evicted each minute and replaced only while the pool has spot; surplus is
/// deleted at once, booting VMs first.
#[derive(Debug)]
pub struct ModelFleet<'a> {
    demand: &'a [f64],
    weather: &'a Weather,
    config: &'a SimConfig,
    running: (u32, u32),
    /// Booting VMs by the minute they start serving.
    spot_boot: Vec<u32>,
    reg_boot: Vec<u32>,
    evicted_last: u32,
    eviction_carry: f64,
}

impl<'a> ModelFleet<'a> {
    /// A fleet serving `demand` in `weather`, with `initial` (spot, regular) VMs serving.
    pub fn new(demand: &'a [f64], weather: &'a Weather, config: &'a SimConfig, initial: (u32, u32)) -> Self {
        let slots = demand.len() + config.boot_minutes.max(1) + 1;
        Self {
            demand,
            weather,
            config,
            running: initial,
            spot_boot: vec![0; slots],
            reg_boot: vec![0; slots],
            evicted_last: 0,
            eviction_carry: 0.0,
        }
    }

    fn lead(&self) -> usize {
        self.config.boot_minutes.max(1)
    }
}

impl FleetModel for ModelFleet<'_> {
    fn now(&self, t: usize) -> FleetNow {
        let ahead = t + self.lead() + 1;
        let booting = |b: &[u32]| b[t..ahead].iter().sum::<u32>();
        FleetNow {
            running: self.running,
            booting: (booting(&self.spot_boot), booting(&self.reg_boot)),
            evicted: self.evicted_last,
            spot_available: t == 0 || self.weather.available[t - 1],
        }
    }

    fn minute(&mut self, t: usize, target: (u32, u32)) -> Minute {
        let (lead, config) = (self.lead(), self.config);
        // Orders land `boot_minutes` ahead, so nothing boots past this minute's window.
        let ahead = t + lead + 1;
        let (mut spot_run, mut reg_run) = self.running;
        // Boots that finish now join the serving VMs.
        spot_run += std::mem::take(&mut self.spot_boot[t]);
        reg_run += std::mem::take(&mut self.reg_boot[t]);
        // Evictions: the weather's share of running spot VMs.
        self.eviction_carry += f64::from(spot_run) * self.weather.eviction[t];
        let evicted = (self.eviction_carry.floor() as u32).min(spot_run);
        self.eviction_carry -= f64::from(evicted);
        spot_run -= evicted;
        self.evicted_last = evicted;
        // Converge to the targets: order what is missing, delete the surplus (booting first).
        let converge = |run: &mut u32, boot: &mut Vec<u32>, want: u32, can_order: bool| {
            let have = *run + boot[t + 1..ahead].iter().sum::<u32>();
            if have < want && can_order {
                boot[t + lead] += want - have;
            } else if have > want {
                let mut extra = have - want;
                for slot in boot[t + 1..ahead].iter_mut().rev() {
                    let take = (*slot).min(extra);
                    *slot -= take;
                    extra -= take;
                }
                *run -= extra.min(*run);
            }
        };
        converge(&mut spot_run, &mut self.spot_boot, target.0, self.weather.available[t]);
        converge(&mut reg_run, &mut self.reg_boot, target.1, true);
        let spot_billed = spot_run + self.spot_boot[t + 1..ahead].iter().sum::<u32>();
        let reg_billed = reg_run + self.reg_boot[t + 1..ahead].iter().sum::<u32>();
        self.running = (spot_run, reg_run);
        let capacity = f64::from(spot_run + reg_run) * config.vm_rate;
        let d = self.demand[t];
        Minute {
            demand: d,
            capacity,
            cost_usd: (f64::from(spot_billed) * config.spot_usd_hour + f64::from(reg_billed) * config.regular_usd_hour) / 60.0,
            sla_met: d <= config.sla_utilization * capacity || d == 0.0,
            unserved: (d - capacity).max(0.0),
            serving: spot_run + reg_run,
            evicted,
        }
    }
}

/// Run `policy` over `demand` (requests per minute) and `weather` in the [`ModelFleet`], from
/// `initial` targets (spot, regular) already running. See [`drive`].
#[allow(clippy::too_many_arguments)]
pub fn run(
    policy: &mut dyn Policy,
    demand: &[f64],
    weather: &Weather,
    config: &SimConfig,
    initial: (u32, u32),
    stabilization: usize,
    guard: &mut Guard<'_>,
) -> Outcome {
    let mut fleet = ModelFleet::new(demand, weather, config, initial);
    drive(policy, &mut fleet, demand.len(), config, initial, stabilization, guard)
}

/// Run `policy` for `minutes` on `fleet`, from `initial` targets (spot, regular). Targets are
/// held to the bounds of `config` every minute, and a change happens only when `guard` allows
/// it; opposite changes within `stabilization` minutes of each other count as flaps.
pub fn drive(
    policy: &mut dyn Policy,
    fleet: &mut dyn FleetModel,
    minutes: usize,
    config: &SimConfig,
    initial: (u32, u32),
    stabilization: usize,
    guard: &mut Guard<'_>,
) -> Outcome {
    let mut target = initial;
    let (mut cost, mut met, mut unserved, mut total_demand, mut slack_sum, mut slack_n) = (0.0, 0usize, 0.0, 0.0, 0.0, 0usize);
    let (mut actions, mut flaps, mut denied) = (0u32, 0u32, 0u32);
    let mut last_moves: Vec<(usize, i8)> = Vec::new();
    let mut history = Vec::with_capacity(minutes);
    let mut serving = Vec::with_capacity(minutes);
    let mut evictions = Vec::with_capacity(minutes);
    for t in 0..minutes {
        let now = fleet.now(t);
        let obs = Observation {
            t,
            demand_history: &history,
            running: now.running,
            booting: now.booting,
            target,
            evicted: now.evicted,
            spot_available: now.spot_available,
            config,
        };
        let (mut s, mut r) = policy.decide(&obs);
        r = r.max(config.min_regular);
        let total = (s + r).min(config.max_total);
        s = total.saturating_sub(r);
        r = total - s;
        if (s, r) != target && !guard(t, target, (s, r), &obs) {
            denied += 1;
            (s, r) = target;
        }
        if (s, r) != target {
            actions += 1;
            let dir = ((s + r) as i64 - (target.0 + target.1) as i64).signum() as i8;
            if dir != 0 {
                if last_moves.iter().any(|(at, d)| *d == -dir && t - at < stabilization) {
                    flaps += 1;
                }
                last_moves.push((t, dir));
                last_moves.retain(|(at, _)| t - at < stabilization);
            }
            target = (s, r);
        }
        let m = fleet.minute(t, target);
        cost += m.cost_usd;
        met += usize::from(m.sla_met);
        unserved += m.unserved;
        total_demand += m.demand;
        if m.capacity > 0.0 {
            slack_sum += (1.0 - m.demand / m.capacity).max(0.0);
            slack_n += 1;
        }
        history.push(m.demand);
        serving.push(m.serving);
        evictions.push(m.evicted);
    }
    Outcome {
        policy: policy.name().into(),
        cost_usd: (cost * 100.0).round() / 100.0,
        sla_met_pct: 100.0 * met as f64 / minutes.max(1) as f64,
        unserved_pct: if total_demand > 0.0 { 100.0 * unserved / total_demand } else { 0.0 },
        actions,
        flaps,
        mean_slack_pct: if slack_n > 0 { 100.0 * slack_sum / slack_n as f64 } else { 0.0 },
        denied,
        serving,
        evictions,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policies::{Fleetpilot, Hpa, RecipeRule, SpotHedge, StaticPeak};

    /// The model the policy crate's tests run on: 10 requests a minute a VM, D4s_v5 prices.
    pub(crate) fn config() -> SimConfig {
        SimConfig {
            vm_rate: 10.0,
            boot_minutes: 2,
            sla_utilization: 0.95,
            regular_usd_hour: 0.192,
            spot_usd_hour: 0.04,
            min_regular: 1,
            max_total: 30,
        }
    }

    /// A day of a rising-and-falling demand with spikes.
    fn demand() -> Vec<f64> {
        (0..600).map(|t| 50.0 + 40.0 * ((t as f64) / 90.0).sin().abs() + if t % 97 == 0 { 120.0 } else { 0.0 }).collect()
    }

    /// The guardrails, and a check that every change they allowed is one they would allow.
    fn guard(max_total: u32) -> impl FnMut(usize, (u32, u32), (u32, u32), &Observation<'_>) -> bool {
        let mut inner = guardrails(eval_rules(&config()));
        move |t, from, to, obs| {
            let allowed = inner(t, from, to, obs);
            if allowed {
                let (up, down) = ((to.0 + to.1).saturating_sub(from.0 + from.1), (from.0 + from.1).saturating_sub(to.0 + to.1));
                assert!(to.0 + to.1 <= max_total && to.1 >= 1 && up <= 20 && down <= 20, "{from:?} -> {to:?}");
            }
            allowed
        }
    }

    #[test]
    fn every_policy_stays_within_the_guardrails_and_the_runs_are_repeatable() {
        let d = demand();
        let weather = Weather::draw(d.len(), 1, 0.025, 200, 0.05);
        assert!(weather.available.iter().any(|a| !a), "the test weather has a storm");
        let c = config();
        let mut policies: Vec<Box<dyn Policy>> = vec![
            Box::new(Fleetpilot::default()),
            Box::new(RecipeRule),
            Box::new(Hpa::default()),
            Box::new(StaticPeak::new(170.0, c.vm_rate, c.sla_utilization)),
            Box::new(SpotHedge),
        ];
        for p in &mut policies {
            let a = run(p.as_mut(), &d, &weather, &c, (5, 1), 5, &mut guard(c.max_total));
            assert!(a.serving.iter().all(|s| *s <= c.max_total), "{} went past the maximum", a.policy);
            assert!(a.cost_usd > 0.0 && (0.0..=100.0).contains(&a.sla_met_pct));
        }
        let first = run(&mut Fleetpilot::default(), &d, &weather, &c, (5, 1), 5, &mut guard(c.max_total));
        let again = run(&mut Fleetpilot::default(), &d, &weather, &c, (5, 1), 5, &mut guard(c.max_total));
        assert_eq!(first.flaps, 0, "the guardrails refuse reversals within the window");
        assert_eq!(first, again);
        let (oracle, _) = crate::oracle::oracle(&d, &weather, &c);
        assert!(oracle <= first.cost_usd, "the oracle is a lower bound: {oracle} vs {}", first.cost_usd);
    }
}
