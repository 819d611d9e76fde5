//! Faults the emulator can inject, switchable at start (`[emulator.faults]` in fleetpilot's
//! configuration) and at run time (`GET|POST /_emulator/faults`), so that clients — the
//! executor first — can be tested against what Azure does on a bad day.
//!
//! Count-based faults (`throttle_requests`, `server_error_requests`) answer that many of the
//! next ARM requests with the fault and then stop, which keeps tests deterministic.

use serde::{Deserialize, Serialize};

/// What becomes of long-running operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LroFault {
    /// They succeed on their first status poll.
    #[default]
    None,
    /// They end `Failed` with an `InternalOperationError`.
    Fail,
    /// They stay `InProgress` for ever (clients must time out).
    Hang,
}

/// The faults in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer this many of the next ARM requests `429 TooManyRequests` with `Retry-After`.
    pub throttle_requests: u32,
    /// `Retry-After` seconds sent with a 429.
    pub throttle_retry_after_secs: u32,
    /// Answer this many of the next ARM requests with `server_error_status`.
    pub server_error_requests: u32,
    /// 500 or 503 (anything 5xx); 503 when unset.
    pub server_error_status: u16,
    /// Apply the two request faults above only to writes (PUT, PATCH, DELETE, POST).
    pub only_writes: bool,
    /// Long-running operations fail or hang.
    pub lro: LroFault,
    /// Sizes a fleet write may not use: `409 SkuNotAvailable`.
    pub sku_unavailable: Vec<String>,
    /// Fleet writes that add capacity fail with the quota error (`409 OperationNotAllowed`).
    pub quota_exceeded: bool,
    /// Multiplies every eviction probability while set. The bands are per day, so a storm that
    /// evicts most spot VMs within minutes is in the thousands (10,000 at the 0–5 % band).
    pub eviction_multiplier: Option<f64>,
    /// Confine `eviction_multiplier` to fleets in these regions (empty: every region).
    pub eviction_regions: Vec<String>,
    /// No telemetry is written while set (a gap in every table).
    pub telemetry_gap: bool,
    /// Seconds added to every row's ingestion delay.
    pub telemetry_delay_secs: u64,
    /// Milliseconds added to every ARM response.
    pub latency_ms: u64,
    /// Fleet writes are accepted (202) but change nothing: the change never shows.
    pub ignore_fleet_writes: bool,
    /// Multiplies every service's demand while set (a surge above 1, a lull below).
    pub demand_multiplier: Option<f64>,
}

impl Faults {
    /// Take one request fault for a request, if any is due: `(status, code, retry_after)`.
    pub fn take_request_fault(&mut self, is_write: bool) -> Option<(u16, &'static str, Option<u32>)> {
        if self.only_writes && !is_write {
            return None;
        }
        if self.throttle_requests > 0 {
            self.throttle_requests -= 1;
            return Some((429, "TooManyRequests", Some(self.throttle_retry_after_secs.max(1))));
        }
        if self.server_error_requests > 0 {
            self.server_error_requests -= 1;
            let status = if (500..600).contains(&self.server_error_status) { self.server_error_status } else { 503 };
            let code = if status == 503 { "ServiceUnavailable" } else { "InternalServerError" };
            return Some((status, code, None));
        }
        None
    }

    /// Whether a size is made unavailable.
    pub fn sku_blocked(&self, size: &str) -> bool {
        self.sku_unavailable.iter().any(|s| s.eq_ignore_ascii_case(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_faults_are_counted_and_run_out() {
        let mut f = Faults { throttle_requests: 1, server_error_requests: 2, server_error_status: 500, ..Faults::default() };
        assert_eq!(f.take_request_fault(false), Some((429, "TooManyRequests", Some(1))));
        assert_eq!(f.take_request_fault(true), Some((500, "InternalServerError", None)));
        assert_eq!(f.take_request_fault(true), Some((500, "InternalServerError", None)));
        assert_eq!(f.take_request_fault(true), None);
        let mut writes = Faults { server_error_requests: 1, only_writes: true, ..Faults::default() };
        assert_eq!(writes.take_request_fault(false), None);
        assert_eq!(writes.take_request_fault(true), Some((503, "ServiceUnavailable", None)));
    }
}
