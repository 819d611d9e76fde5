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
//! - `fleetpilot`: the largest of a reactive need (the peak of the last 5 minutes at 80 %, and
//!   the last 30 minutes' mean plus two standard deviations at the SLA's utilization) and the
//!   demand forecast's upper bound over the boot lead time (MSTL/ETS, refitted every 30
//!   minutes on 5-minute history); spot above the regular floor; regular backfill for the spot
//!   that is not serving while the pool is dry, released as spot returns (not within a
//!   stabilization window of growing it); scale-in only to the highest need of the 10-minute
//!   window, only when the forecast does not expect the demand back, and only when worth more
//!   than 20 % of the fleet.

use std::collections::VecDeque;

use crate::sim::{Observation, Policy};

fn need(demand: f64, rate: f64, utilization: f64) -> u32 {
    (demand / (rate * utilization)).ceil().max(0.0) as u32
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
    /// Minutes whose peak the reactive part covers.
    pub peak_window: usize,
    /// Minutes over which the burst size (standard deviation) is measured.
    pub spread_window: usize,
    /// Standard deviations of headroom above the recent mean.
    pub spread: f64,
    /// A scale-in smaller than this share of the fleet (at least one VM) is skipped.
    pub hysteresis: f64,
    needs: VecDeque<(usize, u32)>,
    forecast: Option<(usize, crate::DemandForecast)>,
    /// When the regular backfill last grew (its release waits a stabilization window).
    regular_raised_at: Option<usize>,
}

impl Default for Fleetpilot {
    fn default() -> Self {
        Self {
            target: 0.8,
            stabilization: 10,
            peak_window: 5,
            spread_window: 30,
            spread: 2.0,
            hysteresis: 0.2,
            needs: VecDeque::new(),
            forecast: None,
            regular_raised_at: None,
        }
    }
}

impl Fleetpilot {
    /// The forecast's upper bound on demand per minute over the next `minutes`.
    fn forecast_upper(&mut self, obs: &Observation<'_>, minutes: usize) -> Option<f64> {
        let h = obs.demand_history;
        let stale = self.forecast.as_ref().is_none_or(|(at, _)| obs.t - at >= 30);
        if stale && h.len() >= 60 {
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
        // Reactive: the recent peak, and the recent mean plus `spread` standard deviations (a
        // burst of the size seen lately is covered before it comes).
        let h = obs.demand_history;
        let recent = &h[h.len().saturating_sub(self.peak_window)..];
        let peak = recent.iter().copied().reduce(f64::max).unwrap_or(0.0);
        let window = &h[h.len().saturating_sub(self.spread_window)..];
        let mean = window.iter().sum::<f64>() / window.len().max(1) as f64;
        let sd = (window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / window.len().max(1) as f64).sqrt();
        let reactive = need(peak, c.vm_rate, self.target).max(need(mean + self.spread * sd, c.vm_rate, c.sla_utilization));
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
        (spot, regular)
    }
}
