//! The policies compared by `fleetpilot eval policies`: fleetpilot's own, and faithful
//! baselines of the anchors (see `../shared/notes/scaling-and-evals.md` §1–2):
//!
//! - `recipe-rule`: the source recipe's alert rule — average CPU above 75 % over 5 minutes adds
//!   5 spot VMs; nothing ever scales in.
//! - `hpa`: Kubernetes HPA defaults — `ceil(current × utilization / target)` with a 10 %
//!   tolerance, scale-up at most max(4, 100 %) per minute (four 15-s syncs), scale-down to the
//!   highest recommendation of the last 300 s; spot above the regular floor, nothing more.
//! - `static-peak`: regular VMs only, enough for the trace's peak at the SLA's utilization.
//! - `spothedge`: SkyServe/SpotHedge — reactive sizing, spot over-provisioned by 20 % above a
//!   regular floor, and on-demand (regular) fallback for whatever spot is not delivering.
//! - `fleetpilot`: the larger of a reactive bound (the current level plus the 98th percentile
//!   of how far demand rose above the level within the boot lead time over the last 4 hours —
//!   see [`reactive_bound`]) and the demand forecast's upper bound over the boot lead time
//!   (MSTL/ETS, refitted every 30 minutes on 5-minute history, once two days of it show the
//!   daily cycle), at the SLA's utilization; spot
//!   above the regular floor; regular backfill for the spot that is not serving while the pool
//!   is dry, released as spot returns (not within a stabilization window of growing it);
//!   scale-in only to the highest need of the 10-minute window, only when the forecast does
//!   not expect the demand back, only when worth more than 5 % of the fleet, and not below the
//!   fleet it took over until enough minutes of history can show the bound's quantile
//!   ([`warm_up_minutes`]: 50); each change cut to the guardrails' step limits
//!   ([`crate::planner::within_steps`]), which would refuse a larger one whole.

use std::collections::VecDeque;

use crate::sim::{Observation, Policy};

/// Minutes averaged for the current level of demand in the reactive bound.
pub const LEVEL_MINUTES: usize = 3;
/// Minutes of history whose rises give the reactive bound (four hours).
pub const ERROR_WINDOW_MINUTES: usize = 240;
/// Quantile of those rises the reactive bound covers.
pub const BOUND_QUANTILE: f64 = 0.98;

fn need(demand: f64, rate: f64, utilization: f64) -> u32 {
    (demand / (rate * utilization)).ceil().max(0.0) as u32
}

/// The reactive upper bound on demand over the next `horizon` minutes, distribution-free: the
/// level (mean of the last `level_minutes`) plus the `quantile` of how far the highest demand of
/// the `horizon` minutes after each of the last `window` minutes rose above the level then (an
/// empirical prediction interval, so bursty, Poisson-like and smooth traces each get the
/// headroom they show). Never above the window's own peak, moved up by the trend of the last
/// ten minutes ([`trend_rise`]: a climb reaches new peaks; with fewer minutes, no cap at all),
/// and never below the last two minutes.
pub fn reactive_bound(h: &[f64], horizon: usize, level_minutes: usize, window: usize, quantile: f64) -> f64 {
    let level = |end: usize| {
        let from = end.saturating_sub(level_minutes);
        if end == from { 0.0 } else { h[from..end].iter().sum::<f64>() / (end - from) as f64 }
    };
    let horizon = horizon.max(1);
    let first = h.len().saturating_sub(window + horizon).max(1);
    let mut errors: Vec<f64> = (first..(h.len() + 1).saturating_sub(horizon))
        .map(|i| h[i..i + horizon].iter().copied().fold(f64::MIN, f64::max) - level(i))
        .collect();
    let headroom = if errors.is_empty() {
        0.0
    } else {
        let k = ((errors.len() - 1) as f64 * quantile.clamp(0.0, 1.0)).round() as usize;
        *errors.select_nth_unstable_by(k, f64::total_cmp).1
    };
    let now = level(h.len());
    let seen = h[first - 1..].iter().copied().fold(0.0, f64::max);
    let latest = h[h.len().saturating_sub(2)..].iter().copied().fold(0.0, f64::max);
    // With fewer minutes than a trend needs, the peak of so few is no basis for a cap either.
    let cap = trend_rise(h).map_or(f64::INFINITY, |rise| seen + rise);
    (now + headroom.max(0.0)).min(cap).max(latest)
}

/// Minutes the trend of [`trend_rise`] is fitted on.
pub const TREND_MINUTES: usize = 10;

/// How far demand climbs in [`TREND_MINUTES`] by the least-squares trend of the last
/// [`TREND_MINUTES`] minutes, when that trend is a climb the minutes show: a slope at least two
/// standard errors above zero. Bursts between troughs, however tall, are noise around a level,
/// not a climb: 0. `None` with fewer minutes than that.
pub fn trend_rise(h: &[f64]) -> Option<f64> {
    let m = TREND_MINUTES;
    let y = h.get(h.len().checked_sub(m)?..)?;
    let xm = (m as f64 - 1.0) / 2.0;
    let ym = y.iter().sum::<f64>() / m as f64;
    let sxx: f64 = (0..m).map(|x| (x as f64 - xm).powi(2)).sum();
    let slope = y.iter().enumerate().map(|(x, v)| (x as f64 - xm) * (v - ym)).sum::<f64>() / sxx;
    let residual = y.iter().enumerate().map(|(x, v)| (v - ym - slope * (x as f64 - xm)).powi(2)).sum::<f64>() / (m as f64 - 2.0);
    let standard_error = (residual / sxx).sqrt();
    Some(if slope > 0.0 && slope >= 2.0 * standard_error { slope * m as f64 } else { 0.0 })
}

/// Minutes of history the reactive bound needs before it may cut below the fleet a policy
/// took over: the rises of fewer minutes than `1 / (1 − quantile)` cannot show the quantile
/// (the largest of n rises is exceeded by the next one with probability 1/(n+1)), 50 at the
/// 98th percentile.
pub fn warm_up_minutes(quantile: f64) -> usize {
    (1.0 / (1.0 - quantile.clamp(0.0, 0.999))).round() as usize
}

/// The recipe's rule.
#[derive(Debug, Default)]
pub struct RecipeRule;

impl Policy for RecipeRule {
    fn name(&self) -> &'static str {
        "recipe-rule"
    }
    fn decide(&mut self, obs: &Observation<'_>) -> (u32, u32) {
        let h = obs.demand_history;
        let capacity = f64::from(obs.running.0 + obs.running.1) * obs.config.vm_rate;
        let window = &h[h.len().saturating_sub(5)..];
        let avg =
            if window.is_empty() || capacity <= 0.0 { 0.0 } else { window.iter().sum::<f64>() / window.len() as f64 / capacity };
        // Evaluated every minute; one action per evaluation.
        if avg > 0.75 { (obs.target.0 + 5, obs.target.1) } else { obs.target }
    }
}

/// Kubernetes HPA with its defaults.
#[derive(Debug)]
pub struct Hpa {
    target: f64,
    recommendations: VecDeque<(usize, u32)>,
}

impl Default for Hpa {
    fn default() -> Self {
        Self { target: 0.7, recommendations: VecDeque::new() }
    }
}

impl Policy for Hpa {
    fn name(&self) -> &'static str {
        "hpa"
    }
    fn decide(&mut self, obs: &Observation<'_>) -> (u32, u32) {
        let current = obs.target.0 + obs.target.1;
        if self.recommendations.is_empty() {
            // The controller has been running: what is there was its recommendation.
            self.recommendations.push_back((obs.t, current));
        }
        let ratio = obs.utilization() / self.target;
        let mut desired = if (ratio - 1.0).abs() <= 0.1 { current } else { (f64::from(current) * ratio).ceil() as u32 };
        desired = desired.min(current + 4.max(current)).max(1);
        self.recommendations.push_back((obs.t, desired));
        while self.recommendations.front().is_some_and(|(t, _)| obs.t - t >= 5) {
            self.recommendations.pop_front();
        }
        if desired < current {
            desired = self.recommendations.iter().map(|(_, d)| *d).max().unwrap_or(desired).min(current);
        }
        let regular = obs.config.min_regular;
        (desired.saturating_sub(regular), regular)
    }
}

/// Static regular-only provisioning for the peak.
#[derive(Debug)]
pub struct StaticPeak {
    vms: u32,
}

impl StaticPeak {
    /// Enough regular VMs for `peak` requests a minute at the SLA's utilization.
    pub fn new(peak: f64, rate: f64, sla_utilization: f64) -> Self {
        Self { vms: need(peak, rate, sla_utilization).max(1) }
    }
}

impl Policy for StaticPeak {
    fn name(&self) -> &'static str {
        "static-peak"
    }
    fn decide(&mut self, _: &Observation<'_>) -> (u32, u32) {
        (0, self.vms)
    }
}

/// The built-in agent's planner ([`crate::planner::decide`]) deciding every minute from what
/// its tools would show: CPU as last minute's utilization, demand rising when the last 5
/// minutes' arrivals are 2 % above the 10 before, the demand bound of the per-minute arrivals,
/// the fleet's targets, serving and booting VMs, and the guardrail rules' limits. No forecast: the agent only uses one that has seen two
/// days, and its growth is what the planner multiplies by.
#[derive(Debug)]
pub struct AgentPlanner {
    limits: crate::planner::Limits,
    band: crate::planner::Band,
    prices: fleetpilot_core::PriceTable,
}

impl AgentPlanner {
    /// The planner under `rules` (the evaluation's guardrail policy), with its default band.
    pub fn new(rules: &fleetpilot_guardrails::Policy) -> Self {
        Self {
            limits: crate::planner::Limits::from(rules),
            band: crate::planner::Band::default(),
            prices: fleetpilot_core::PriceTable::embedded(),
        }
    }
}

impl Policy for AgentPlanner {
    fn name(&self) -> &'static str {
        "agent-planner"
    }
    fn decide(&mut self, obs: &Observation<'_>) -> (u32, u32) {
        use crate::planner::{Decision, FleetView, Signals, Tier};
        let h = obs.demand_history;
        if h.is_empty() {
            return obs.target;
        }
        let mean = |w: &[f64]| if w.is_empty() { 0.0 } else { w.iter().sum::<f64>() / w.len() as f64 };
        let recent = mean(&h[h.len().saturating_sub(5)..]);
        let earlier = mean(&h[h.len().saturating_sub(15)..h.len().saturating_sub(5)]);
        let fleet = FleetView {
            spot: Tier { capacity: obs.target.0, running: obs.running.0, creating: obs.booting.0, min_capacity: 0 },
            regular: Tier { capacity: obs.target.1, running: obs.running.1, creating: obs.booting.1, min_capacity: 0 },
            vm_sizes: Vec::new(),
            location: String::new(),
        };
        let signals = Signals {
            cpu: Some(100.0 * obs.utilization().min(1.0)),
            growth: None,
            rising: recent > earlier * 1.02,
            window_vms: Some(f64::from(obs.running.0 + obs.running.1)),
            // What a VM serves, as the agent reads it from served requests, CPU and VMs.
            demand_need: crate::planner::demand_need(h, obs.config.vm_rate, obs.config.boot_minutes),
        };
        match crate::planner::decide(&fleet, &self.limits, &signals, &self.band, &self.prices) {
            Decision::Hold(_) => obs.target,
            Decision::Scale { spot, regular, .. } => (spot, regular),
        }
    }
}

/// SkyServe / SpotHedge.
#[derive(Debug, Default)]
pub struct SpotHedge;

impl Policy for SpotHedge {
    fn name(&self) -> &'static str {
        "spothedge"
    }
    fn decide(&mut self, obs: &Observation<'_>) -> (u32, u32) {
        let demand = obs.demand_history.last().copied().unwrap_or(0.0);
        let wanted = need(demand, obs.config.vm_rate, 0.7).max(1);
        let floor = obs.config.min_regular;
        let spot = ((f64::from(wanted.saturating_sub(floor))) * 1.2).ceil() as u32;
        // On-demand fallback: regular covers what spot is not delivering.
        let spot_delivering = obs.running.0 + if obs.spot_available { obs.booting.0 } else { 0 };
        let regular = floor.max(wanted.saturating_sub(spot_delivering));
        (spot, regular)
    }
}

/// fleetpilot's policy.
#[derive(Debug)]
pub struct Fleetpilot {
    /// Utilization the reactive part sizes for.
    pub target: f64,
    /// Minutes a scale-in waits (the highest need of the window wins).
    pub stabilization: usize,
    /// Minutes averaged for the current level of demand.
    pub level_minutes: usize,
    /// Minutes of history whose errors give the reactive bound.
    pub error_window: usize,
    /// Quantile of those errors covered.
    pub quantile: f64,
    /// A scale-in smaller than this share of the fleet (at least one VM) is skipped.
    pub hysteresis: f64,
    needs: VecDeque<(usize, u32)>,
    forecast: Option<(usize, crate::DemandForecast)>,
    /// When the regular backfill last grew (its release waits a stabilization window).
    regular_raised_at: Option<usize>,
    /// Minutes of history before a scale-in may go below the opening fleet.
    pub warm_up: usize,
    /// The fleet's size when the policy took over.
    opening: Option<u32>,
    /// The guardrails whose step limits each change is cut to; `None`: no limit.
    pub rules: Option<fleetpilot_guardrails::Policy>,
}

impl Default for Fleetpilot {
    fn default() -> Self {
        Self {
            target: 0.8,
            stabilization: 10,
            level_minutes: LEVEL_MINUTES,
            error_window: ERROR_WINDOW_MINUTES,
            quantile: BOUND_QUANTILE,
            hysteresis: 0.05,
            needs: VecDeque::new(),
            forecast: None,
            regular_raised_at: None,
            warm_up: warm_up_minutes(BOUND_QUANTILE),
            opening: None,
            rules: None,
        }
    }
}

impl Fleetpilot {
    /// The policy under `rules`: its changes within their step limits (a larger one would be
    /// refused whole, and the fleet left where it was).
    pub fn under(rules: &fleetpilot_guardrails::Policy) -> Self {
        Self { rules: Some(rules.clone()), ..Self::default() }
    }

    /// The forecast's upper bound on demand per minute over the next `minutes`.
    fn forecast_upper(&mut self, obs: &Observation<'_>, minutes: usize) -> Option<f64> {
        let h = obs.demand_history;
        let stale = self.forecast.as_ref().is_none_or(|(at, _)| obs.t - at >= 30);
        // Only a forecast that has seen the daily cycle twice may lead capacity (as the agent's
        // planner requires): with less history its bounds are guesses about the next hour, and
        // the reactive bound covers that better.
        if stale && h.len() >= 2 * 1440 {
            // 5-minute means of the last 3 days.
            let from = h.len().saturating_sub(3 * 1440);
            let steps: Vec<f64> = h[from..].chunks(5).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
            self.forecast = Some((obs.t, crate::forecast(&steps, 5, 12, 0.9)));
        }
        let (at, f) = self.forecast.as_ref()?;
        let ahead = (obs.t - at + minutes) as u32;
        f.points
            .iter()
            .filter(|p| p.offset_minutes as usize >= obs.t - at && p.offset_minutes <= ahead + 5)
            .map(|p| p.upper)
            .reduce(f64::max)
    }
}

impl Policy for Fleetpilot {
    fn name(&self) -> &'static str {
        "fleetpilot"
    }
    fn decide(&mut self, obs: &Observation<'_>) -> (u32, u32) {
        let c = obs.config;
        let h = obs.demand_history;
        let bound = reactive_bound(h, c.boot_minutes + 1, self.level_minutes, self.error_window, self.quantile);
        let reactive = need(bound, c.vm_rate, c.sla_utilization);
        let lead = c.boot_minutes + 2;
        let predicted = self.forecast_upper(obs, lead).map_or(0, |u| need(u, c.vm_rate, c.sla_utilization));
        let raw = reactive.max(predicted).max(1);
        if self.needs.is_empty() {
            // What runs when the policy takes over was the last recommendation.
            self.needs.push_back((obs.t, obs.target.0 + obs.target.1));
        }
        self.needs.push_back((obs.t, raw));
        while self.needs.front().is_some_and(|(t, _)| obs.t - t >= self.stabilization) {
            self.needs.pop_front();
        }
        // Scale out at once; scale in only to the window's highest need, and only when the
        // forecast does not expect the demand back within the window (anti-flapping).
        let mut total = self.needs.iter().map(|(_, n)| *n).max().unwrap_or(raw);
        let current = obs.target.0 + obs.target.1;
        // Warm-up: until the bound has seen `warm_up` minutes, too few rises to show its
        // quantile, no cut below what ran when the policy took over.
        let opening = *self.opening.get_or_insert(current);
        if h.len() < self.warm_up {
            total = total.max(opening.min(current));
        }
        if total < current {
            let window = self.stabilization;
            let coming_back = self.forecast_upper(obs, window).map_or(0, |u| need(u, c.vm_rate, self.target));
            total = total.max(coming_back.min(current));
            // Hysteresis: a scale-in worth less than the margin is not worth a flap.
            let margin = ((f64::from(current) * self.hysteresis).ceil() as u32).max(1);
            if current - total < margin {
                total = current;
            }
        }
        let floor = c.min_regular;
        let spot = total.saturating_sub(floor);
        // Backfill: while the spot pool is dry, regular covers the spot that is not serving; as
        // spot returns and boots, the regular VMs above the floor are released.
        let mut regular = if obs.spot_available {
            floor.max(obs.target.1.min(total.saturating_sub(obs.running.0)))
        } else {
            floor.max(total.saturating_sub(obs.running.0))
        };
        if regular > obs.target.1 {
            self.regular_raised_at = Some(obs.t);
        } else if regular < obs.target.1 && self.regular_raised_at.is_some_and(|at| obs.t - at < self.stabilization) {
            regular = obs.target.1;
        }
        match &self.rules {
            Some(rules) => {
                let (up, down) = rules.step_limits(obs.target.0 + obs.target.1);
                crate::planner::within_steps(obs.target, (spot, regular), up, down)
            }
            None => (spot, regular),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reactive_bound;

    #[test]
    fn the_reactive_bound_covers_the_bursts_the_window_has_shown() {
        // Flat demand: no headroom beyond the level.
        assert_eq!(reactive_bound(&[10.0; 60], 3, 3, 240, 0.98), 10.0);
        // A burst to 30 every 10 minutes from a level of 10: the bound covers it, and not more.
        let bursty: Vec<f64> = (0..120).map(|t| if t % 10 == 0 { 30.0 } else { 10.0 }).collect();
        let b = reactive_bound(&bursty, 3, 3, 240, 0.98);
        assert!((b - 30.0).abs() < 1e-9, "{b}");
        // With a lower quantile the rare burst is not covered.
        assert!(reactive_bound(&bursty, 3, 3, 240, 0.5) < 30.0);
        // A steady climb reaches new peaks: the cap moves with the rise.
        let climb: Vec<f64> = (0..60).map(|t| 100.0 + 5.0 * t as f64).collect();
        assert!(reactive_bound(&climb, 3, 3, 240, 0.98) > climb[59], "a climb is anticipated");
        // No history: nothing to go on.
        assert_eq!(reactive_bound(&[], 3, 3, 240, 0.98), 0.0);
        // Tall bursts between troughs are no climb: the bound stays at the peak the window
        // showed (a 3-minute level that went from a trough to a burst is not a trend).
        let bursts = [0.0, 35.0, 11.0, 10.0, 1.0, 3.0, 3.0, 31.0, 27.0, 6.0, 0.0, 0.0, 38.0, 23.0, 0.0, 1.0, 22.0, 23.0];
        assert_eq!(reactive_bound(&bursts, 3, 3, 240, 0.98), 38.0);
        // Five minutes are too few for a trend, and their peak is no cap: level plus headroom.
        let b = reactive_bound(&[10.0, 10.0, 30.0, 10.0, 10.0], 3, 3, 240, 0.98);
        assert!((b - (50.0 / 3.0 + 20.0)).abs() < 1e-9, "{b}");
    }

    #[test]
    fn no_cut_below_the_opening_fleet_in_the_warm_up() {
        use crate::sim::{SimConfig, Weather, run};
        let c = SimConfig { max_total: 60, ..crate::sim::tests::config() };
        // Bursts to 300 a minute every 7 minutes over a trough of 20, the fourth to 330: a
        // new peak, which the fleet opened with (36 VMs, 85 % of the first burst) covers.
        let d: Vec<f64> = (0..60)
            .map(|t| {
                if t == 23 {
                    330.0
                } else if t % 7 == 2 {
                    300.0
                } else {
                    20.0
                }
            })
            .collect();
        let calm = Weather::draw(d.len(), 1, 0.0, usize::MAX, 0.0);
        let mut allow = |_: usize, _: (u32, u32), _: (u32, u32), _: &crate::sim::Observation<'_>| true;
        let warm = run(&mut super::Fleetpilot::default(), &d, &calm, &c, (35, 1), 10, &mut allow);
        assert!(warm.serving[..50].iter().all(|s| *s >= 36), "{:?}", &warm.serving[..50]);
        assert_eq!(warm.sla_met_pct, 100.0);
        // Without the warm-up, three rises are all the bound goes on: it cuts to the peak seen
        // and the new peak finds the fleet short.
        let cold =
            run(&mut super::Fleetpilot { warm_up: 0, ..super::Fleetpilot::default() }, &d, &calm, &c, (35, 1), 10, &mut allow);
        assert!(cold.serving[..23].iter().any(|s| *s < 35), "{:?}", &cold.serving[..23]);
        assert!(cold.sla_met_pct < 100.0);
    }

    #[test]
    fn a_change_is_cut_to_the_step_limits_regular_first() {
        use crate::planner::within_steps;
        // A backfill and a scale-out at once: the backfill goes first.
        assert_eq!(within_steps((10, 1), (30, 11), 20, 20), (20, 11));
        // Releasing a backfill while spot grows: each direction has its own limit.
        assert_eq!(within_steps((10, 15), (40, 1), 20, 10), (30, 5));
        // A cut: regular first, then spot.
        assert_eq!(within_steps((30, 5), (5, 1), 20, 20), (14, 1));
        // Within the limits nothing changes.
        assert_eq!(within_steps((10, 2), (12, 1), 20, 20), (12, 1));
        // A percentage of the fleet, when smaller, is the limit (at least one VM).
        let rules = fleetpilot_guardrails::Policy {
            max_step_up: 20,
            max_step_up_percent: Some(50.0),
            max_step_down: 20,
            max_step_down_percent: Some(5.0),
            ..fleetpilot_guardrails::Policy::default()
        };
        assert_eq!(rules.step_limits(30), (15, 1));
        assert_eq!(rules.step_limits(100), (20, 5));
    }

    #[test]
    fn a_trend_is_a_slope_the_minutes_show() {
        use super::trend_rise;
        // A steady climb of 5 a minute: 50 in ten minutes.
        let climb: Vec<f64> = (0..30).map(|t| 100.0 + 5.0 * t as f64).collect();
        assert!((trend_rise(&climb).unwrap() - 50.0).abs() < 1e-9);
        // A noisy climb still shows; noise alone does not.
        let noisy: Vec<f64> = (0..10).map(|t| 100.0 + 5.0 * t as f64 + if t % 2 == 0 { 6.0 } else { -6.0 }).collect();
        assert!(trend_rise(&noisy).unwrap() > 30.0);
        let flat: Vec<f64> = (0..10).map(|t| if t % 3 == 0 { 40.0 } else { 5.0 } + t as f64 * 0.5).collect();
        assert_eq!(trend_rise(&flat), Some(0.0));
        // A fall is no rise; too few minutes is no basis.
        let fall: Vec<f64> = climb.iter().rev().copied().collect();
        assert_eq!(trend_rise(&fall), Some(0.0));
        assert_eq!(trend_rise(&climb[..9]), None);
    }
}
