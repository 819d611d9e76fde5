//! Offline evals of fleetpilot's agent against recorded incidents: the incident format
//! ([`incident`]), the checks and their summaries ([`score`]), and the reports ([`report`]).
//! The runner that steps the emulator lives in the binary (`fleetpilot eval incidents`).

pub mod incident;
pub mod report;
pub mod score;

pub use incident::{Action, Category, Checks, Incident, Split, Trigger};
pub use score::{Baseline, IncidentResult, PolicyRun, Regret, Step, Summary, Trial, TrialRecord};

/// τ-bench's pass^k: the chance that `k` independent trials of a task all succeed, estimated
/// from `successes` out of `trials` as C(successes, k) / C(trials, k). Reliability, not
/// best-of-k. Returns `None` when `k` is 0 or larger than `trials`.
pub fn pass_hat_k(successes: u32, trials: u32, k: u32) -> Option<f64> {
    if k == 0 || k > trials || successes > trials {
        return None;
    }
    if successes < k {
        return Some(0.0);
    }
    // C(c,k)/C(n,k) = prod_{i=0}^{k-1} (c-i)/(n-i)
    Some((0..k).map(|i| f64::from(successes - i) / f64::from(trials - i)).product())
}

#[cfg(test)]
mod tests {
    use super::pass_hat_k;

    #[test]
    fn pass_hat_k_matches_its_definition() {
        assert_eq!(pass_hat_k(4, 4, 4), Some(1.0));
        assert_eq!(pass_hat_k(3, 4, 1), Some(0.75));
        assert_eq!(pass_hat_k(3, 4, 2), Some(0.5)); // C(3,2)/C(4,2) = 3/6
        assert_eq!(pass_hat_k(1, 4, 2), Some(0.0));
        assert_eq!(pass_hat_k(1, 4, 5), None);
        assert_eq!(pass_hat_k(1, 4, 0), None);
    }
}
