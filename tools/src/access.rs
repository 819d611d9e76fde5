//! Who may call what, how often, and the audit of every call.
//!
//! Each tool needs a [`Role`]; a caller's role comes from how it connected (configuration
//! now; authenticated principals map their roles onto these). Calls per caller per minute are
//! limited with governor's GCRA, on the service's injectable [`Clock`]. Every call — allowed
//! or not — is written to the audit table with its arguments (secrets redacted), verdict and
//! result.

use std::num::NonZeroU32;
use std::str::FromStr;

use governor::clock::Clock as _;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::service::{Clock, ToolError};

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read fleets, policies, proposals, telemetry; estimate cost.
    Reader,
    /// Also propose and apply changes, submit and cancel jobs (all through the guardrails).
    Operator,
    /// Also approve and reject proposals that need a human.
    Approver,
    /// Everything.
    Admin,
}

impl Role {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "operator" => Ok(Role::Operator),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}; use reader, operator, approver or admin")),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Identity as recorded (`mcp-http:claude-desktop`, `cli:alice`, …).
    pub id: String,
    /// What it may do.
    pub role: Role,
}

/// The role each tool needs.
pub fn required_role(tool: &str) -> Role {
    match tool {
        "propose_scale" | "apply_proposal" | "submit_ml_job" | "cancel_ml_job" => Role::Operator,
        "approve_proposal" | "reject_proposal" => Role::Approver,
        _ => Role::Reader,
    }
}

/// governor's clock over the service's clock (nanoseconds since the Unix epoch).
#[derive(Debug, Clone)]
struct GovClock(Clock);

impl governor::clock::Clock for GovClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(u64::try_from(self.0.now().unix_timestamp_nanos()).unwrap_or(0))
    }
}

type Keyed =
    RateLimiter<String, governor::state::keyed::HashMapStateStore<String>, GovClock, governor::middleware::NoOpMiddleware<Nanos>>;

/// Calls per caller per minute.
pub struct CallLimiter {
    limiter: Keyed,
    clock: GovClock,
    per_minute: u32,
}

impl std::fmt::Debug for CallLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLimiter").field("per_minute", &self.per_minute).finish()
    }
}

impl CallLimiter {
    /// A limiter allowing `per_minute` calls per caller per minute (bursts up to that many).
    pub fn new(per_minute: u32, clock: Clock) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let clock = GovClock(clock);
        Self { limiter: RateLimiter::hashmap_with_clock(Quota::per_minute(n), clock.clone()), clock, per_minute }
    }

    /// Admit one call of `caller`, or say how long to wait.
    ///
    /// # Errors
    /// `rate_limited` (retryable) when the caller is over its rate.
    pub fn admit(&self, caller: &str) -> Result<(), ToolError> {
        self.limiter.check_key(&caller.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ToolError {
                retryable: true,
                ..ToolError::new(
                    "rate_limited",
                    format!(
                        "{caller} is over its limit of {} tool calls a minute; try again in {:.1} s",
                        self.per_minute,
                        wait.as_secs_f64()
                    ),
                )
            }
        })
    }
}

/// A copy of `value` with secret-looking fields redacted (see [`fleetpilot_core::redact_json`]).
pub fn redact(value: &serde_json::Value) -> serde_json::Value {
    fleetpilot_core::redact_json(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Approver > Role::Operator && Role::Operator > Role::Reader);
        assert_eq!("Approver".parse::<Role>(), Ok(Role::Approver));
        assert!("root".parse::<Role>().is_err());
        assert_eq!(required_role("approve_proposal"), Role::Approver);
        assert_eq!(required_role("apply_proposal"), Role::Operator);
        assert_eq!(required_role("read_fleet"), Role::Reader);
    }

    #[test]
    fn the_limit_is_per_caller_and_refills_with_the_clock() {
        use std::sync::atomic::{AtomicI64, Ordering};
        let now = std::sync::Arc::new(AtomicI64::new(1_800_000_000));
        let at = now.clone();
        let clock = Clock::from_fn(move || {
            time::OffsetDateTime::from_unix_timestamp(at.load(Ordering::SeqCst)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        });
        let limiter = CallLimiter::new(3, clock);
        for _ in 0..3 {
            assert!(limiter.admit("a").is_ok());
        }
        let refused = limiter.admit("a").unwrap_err();
        assert_eq!(refused.code, "rate_limited");
        assert!(refused.retryable);
        assert!(limiter.admit("b").is_ok(), "another caller has its own budget");
        now.fetch_add(20, Ordering::SeqCst);
        assert!(limiter.admit("a").is_ok(), "one call comes back every 20 s at 3 a minute");
        assert!(limiter.admit("a").is_err());
    }
}
