//! fleetpilot's scaling policy: demand forecasting, and (as it lands) the decisions built on it.
//!
//! Pure and deterministic: series in, forecasts out; no IO, no clock, no randomness.

pub mod forecast;

pub use forecast::{DemandForecast, ForecastPoint, forecast};
