//! Demand forecasts with prediction intervals: MSTL (daily, or hourly, seasonality) with an
//! AutoETS trend when there is history for it (augurs), a plain AutoETS without enough for a
//! season, and the last value — with an interval as wide as the recent spread — with almost
//! none. The model used and why are part of the answer, so a caller can weigh it.
//!
//! A forecast is for adding capacity ahead of demand; a scale-in is never to be driven by a
//! forecast alone (the guardrails' anti-flapping and stabilization rules judge the present).

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One forecast step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ForecastPoint {
    /// Minutes after the last observation.
    pub offset_minutes: u32,
    /// The point forecast.
    pub mean: f64,
    /// Lower bound of the prediction interval (never below 0).
    pub lower: f64,
    /// Upper bound of the prediction interval.
    pub upper: f64,
}

/// A forecast and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DemandForecast {
    /// `mstl-ets` (with `seasonality_minutes`), `ets`, or `last-value`.
    pub model: String,
    /// The seasonal period used, in minutes (MSTL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub seasonality_minutes: Option<u32>,
    /// Minutes per step of history and forecast.
    pub step_minutes: u32,
    /// Observations the model saw.
    pub history_points: usize,
    /// The interval's level (e.g. 0.9).
    pub level: f64,
    /// One point per step ahead.
    pub points: Vec<ForecastPoint>,
    /// Why a simpler model was used, when it was.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl DemandForecast {
    /// The highest upper bound within `minutes` ahead (at least the first step).
    pub fn upper_within(&self, minutes: u32) -> Option<f64> {
        let mut points = self.points.iter().take_while(|p| p.offset_minutes <= minutes.max(self.step_minutes)).peekable();
        points.peek()?;
        points.map(|p| p.upper).reduce(f64::max)
    }
}

fn clean(history: &[f64]) -> Vec<f64> {
    // Gaps (NaN) carry the last value forward; negatives are counting errors.
    let mut last = history.iter().copied().find(|x| x.is_finite()).unwrap_or(0.0);
    history
        .iter()
        .map(|x| {
            if x.is_finite() {
                last = x.max(0.0);
            }
            last
        })
        .collect()
}

/// The `level` quantile of the absolute errors of `predicted` against `y` over (at most) the
/// last `window` points: an empirical interval half-width.
fn residual_width(y: &[f64], predicted: &[f64], window: usize, level: f64) -> f64 {
    let n = y.len().min(predicted.len());
    let from = n.saturating_sub(window);
    let mut r: Vec<f64> = (from..n).map(|i| (y[i] - predicted[i]).abs()).filter(|x| x.is_finite()).collect();
    if r.is_empty() {
        return 0.0;
    }
    r.sort_by(f64::total_cmp);
    r[((r.len() - 1) as f64 * level).round() as usize]
}

fn widen(mut points: Vec<ForecastPoint>, width: f64) -> Vec<ForecastPoint> {
    for p in &mut points {
        p.lower = p.lower.min((p.mean - width).max(0.0));
        p.upper = p.upper.max(p.mean + width);
    }
    points
}

fn points(forecast: &augurs::Forecast, step: u32) -> Vec<ForecastPoint> {
    forecast
        .point
        .iter()
        .enumerate()
        .map(|(i, mean)| {
            let (lower, upper) = match &forecast.intervals {
                Some(iv) => (iv.lower.get(i).copied().unwrap_or(*mean), iv.upper.get(i).copied().unwrap_or(*mean)),
                None => (*mean, *mean),
            };
            let mean = if mean.is_finite() { mean.max(0.0) } else { 0.0 };
            ForecastPoint {
                offset_minutes: (i as u32 + 1) * step,
                mean,
                lower: if lower.is_finite() { lower.max(0.0).min(mean) } else { 0.0 },
                upper: if upper.is_finite() { upper.max(mean) } else { mean },
            }
        })
        .collect()
}

/// The last value, with an interval as wide as the recent spread.
fn last_value(history: &[f64], step: u32, horizon: usize, level: f64, note: &str) -> DemandForecast {
    let recent = &history[history.len().saturating_sub(30)..];
    let last = recent.last().copied().unwrap_or(0.0);
    let (lo, hi) = recent.iter().fold((last, last), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    let spread = (hi - lo).max(0.2 * last);
    DemandForecast {
        model: "last-value".into(),
        seasonality_minutes: None,
        step_minutes: step,
        history_points: history.len(),
        level,
        points: (1..=horizon)
            .map(|i| ForecastPoint {
                offset_minutes: i as u32 * step,
                mean: last,
                lower: (last - spread).max(0.0),
                upper: last + spread,
            })
            .collect(),
        note: note.into(),
    }
}

fn ets(y: &[f64], step: u32, horizon: usize, level: f64, note: String) -> Option<DemandForecast> {
    let f = AutoETS::non_seasonal().fit(y).and_then(|fit| fit.predict(horizon, level)).ok()?;
    Some(DemandForecast {
        model: "ets".into(),
        seasonality_minutes: None,
        step_minutes: step,
        history_points: y.len(),
        level,
        points: points(&f, step),
        note,
    })
}

/// Forecast `horizon` steps of a series sampled every `step_minutes` (oldest first), with
/// prediction intervals at `level` (0.5–0.99).
pub fn forecast(history: &[f64], step_minutes: u32, horizon: usize, level: f64) -> DemandForecast {
    let step = step_minutes.max(1);
    let level = level.clamp(0.5, 0.99);
    let y = clean(history);
    if y.len() < 12 {
        return last_value(&y, step, horizon, level, "fewer than 12 observations: the last value, with the recent spread");
    }
    let daily = (1440 / step) as usize;
    let hourly = (60 / step) as usize;
    let period = if daily >= 2 && y.len() >= 2 * daily {
        Some(daily)
    } else if hourly >= 2 && y.len() >= 3 * hourly {
        Some(hourly)
    } else {
        None
    };
    if let Some(p) = period {
        let fit_and_predict = |series: &[f64], h: usize| {
            MSTLModel::new(vec![p], AutoETS::non_seasonal().into_trend_model()).fit(series).and_then(|fit| fit.predict(h, level))
        };
        match fit_and_predict(&y, horizon) {
            Ok(f) => {
                // Interval width from a backtest: forecast the last season from the history
                // before it and take the `level` quantile of the absolute errors (the model's own
                // intervals leave out the seasonal components' error and come out too narrow).
                let width = if y.len() >= 3 * p {
                    let cut = y.len() - p;
                    fit_and_predict(&y[..cut], p).map(|b| residual_width(&y[cut..], &b.point, p, level)).unwrap_or(0.0)
                } else {
                    0.0
                };
                return DemandForecast {
                    model: "mstl-ets".into(),
                    seasonality_minutes: Some(p as u32 * step),
                    step_minutes: step,
                    history_points: y.len(),
                    level,
                    points: widen(points(&f, step), width),
                    note: if p == daily {
                        String::new()
                    } else {
                        "less than two days of history: hourly seasonality only".into()
                    },
                };
            }
            Err(e) => {
                if let Some(f) = ets(&y, step, horizon, level, format!("the seasonal model failed ({e}); trend and level only")) {
                    return f;
                }
            }
        }
    }
    ets(&y, step, horizon, level, "not enough history for a season: trend and level only".into())
        .unwrap_or_else(|| last_value(&y, step, horizon, level, "the models failed: the last value, with the recent spread"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daily sine with a little deterministic noise, at 5-minute steps.
    fn daily(days: usize) -> Vec<f64> {
        (0..days * 288)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                // Noise in [-6, 6), from a multiplicative hash (no short period to fit).
                let noise = ((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as f64 / 64.0 * 12.0 - 6.0;
                100.0 + 60.0 * phase.sin() + noise
            })
            .collect()
    }

    #[test]
    fn a_daily_pattern_is_forecast_with_its_season() {
        let history = daily(4);
        let f = forecast(&history, 5, 288, 0.9);
        assert_eq!((f.model.as_str(), f.seasonality_minutes), ("mstl-ets", Some(1440)));
        assert_eq!(f.points.len(), 288);
        // The next day repeats the pattern: the forecast follows the truth within a few units.
        let truth = daily(5);
        let error: f64 =
            f.points.iter().zip(&truth[4 * 288..]).map(|(p, t)| (p.mean - t).abs()).sum::<f64>() / f.points.len() as f64;
        assert!(error < 10.0, "mean absolute error {error}");
        // The interval brackets the truth most of the time.
        let inside = f.points.iter().zip(&truth[4 * 288..]).filter(|(p, t)| p.lower <= **t && **t <= p.upper).count();
        assert!(inside as f64 / 288.0 > 0.75, "{inside} of 288 inside the 90 % interval");
        assert!(f.points.iter().all(|p| p.lower <= p.mean && p.mean <= p.upper && p.lower >= 0.0));
    }

    #[test]
    fn little_history_falls_back_and_says_so() {
        let f = forecast(&[5.0, 6.0, 7.0], 1, 10, 0.9);
        assert_eq!(f.model, "last-value");
        assert!(f.note.contains("fewer than 12"));
        assert_eq!(f.points[0].mean, 7.0);
        assert!(f.points[0].upper > 7.0);
        let f = forecast(&(0..40).map(|i| 50.0 + f64::from(i)).collect::<Vec<_>>(), 5, 6, 0.9);
        assert!(f.model == "ets" || f.model == "mstl-ets", "{}", f.model);
        assert!(f.points[5].mean > 80.0, "a rising series keeps rising: {:?}", f.points[5]);
        assert_eq!(forecast(&[], 1, 3, 0.9).points.len(), 3);
    }

    #[test]
    fn gaps_and_negatives_do_not_break_it() {
        let mut history = daily(3);
        history[100] = f64::NAN;
        history[200] = -5.0;
        let f = forecast(&history, 5, 12, 0.8);
        assert!(f.points.iter().all(|p| p.mean.is_finite() && p.upper.is_finite()));
        assert!(f.upper_within(30).is_some_and(|u| u >= f.points[0].mean));
    }
}
