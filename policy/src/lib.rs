//! fleetpilot's scaling policy: demand forecasting, the built-in agent's decision (capacity,
//! spot/regular mix, backfill, VM sizes), the policies compared in evals (fleetpilot's and the
//! baselines'), a minute-level fleet model to compare them on, and the perfect-foresight oracle.
//!
//! Pure and deterministic: series in, forecasts out; no IO, no clock, no randomness.

pub mod forecast;
pub mod oracle;
pub mod placement;
pub mod planner;
pub mod policies;
pub mod sim;
pub mod sizes;

pub use forecast::{DemandForecast, ForecastPoint, forecast};
