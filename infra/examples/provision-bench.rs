//! Wall time of a full `provision apply` of the recipe's stack (19 resources) on the emulator
//! with its default latencies (every long-running operation answers `Retry-After: 1`),
//! sequential (one resource at a time) against parallel (dependency order, independent
//! resources at once). Each run starts from an empty emulator; runs alternate between the
//! modes so that both see the same machine.
//!
//! ```text
//! cargo run --release -p fleetpilot-infra --example provision-bench -- [RUNS] [PARALLELISM]
//! ```

use std::sync::Arc;
use std::time::Duration;

use fleetpilot_emulator::{Emulator, EmulatorConfig, Scenario};
use fleetpilot_infra::provision::{Provisioner, Quiet};
use fleetpilot_infra::stack::{StackConfig, StackInputs};
use fleetpilot_infra::{ArmClient, ArmConfig};
use tokio_util::sync::CancellationToken;

async fn one_apply(parallelism: usize) -> (Duration, usize) {
    let emulator = Emulator::new(EmulatorConfig { scenario: Scenario::Empty, ..EmulatorConfig::default() });
    let subscription = emulator.lock_world().config.subscription_id.clone();
    let cancel = CancellationToken::new();
    let (addr, _task) =
        fleetpilot_emulator::spawn(emulator, "127.0.0.1:0".parse().expect("address"), cancel.clone()).await.expect("bind");
    let url = format!("http://{addr}");
    let stack = StackConfig::default().resources(&StackInputs {
        subscription_id: subscription.clone(),
        alerts_token: "bench-token-0123456789abcdef".into(),
        project_endpoint: format!("{url}/api/projects/aifproj-adaptive"),
        tool_names: vec!["apply_proposal".into(), "read_fleet".into()],
    });
    let client = || ArmClient::new(ArmConfig::new(url.clone(), subscription.clone())).expect("client");
    let provisioner = Provisioner::new(client(), client(), &stack.secrets);
    let plan = provisioner.plan(&stack).await.expect("plan");
    let report = provisioner.apply(&stack, &plan, parallelism, Arc::new(Quiet)).await;
    assert!(report.succeeded(), "apply failed: {:?}", report.outcomes);
    let after = provisioner.plan(&stack).await.expect("re-plan");
    assert!(after.is_empty(), "the stack did not converge");
    cancel.cancel();
    (report.elapsed, plan.changes.len())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let runs = args.first().copied().unwrap_or(3).max(1);
    let parallelism = args.get(1).copied().unwrap_or(8).max(2);
    let (mut sequential, mut parallel) = (Vec::new(), Vec::new());
    let mut resources = 0;
    for run in 0..runs {
        // Alternate which mode goes first.
        let order = if run % 2 == 0 { [1, parallelism] } else { [parallelism, 1] };
        for p in order {
            let (took, n) = one_apply(p).await;
            resources = n;
            if p == 1 { sequential.push(took.as_secs_f64()) } else { parallel.push(took.as_secs_f64()) }
        }
    }
    let (s, p) = (median(sequential.clone()), median(parallel.clone()));
    println!("full apply of {resources} resources on the emulator (default latencies), {runs} runs each, median wall time:");
    println!("  sequential (parallelism 1):           {s:6.2} s   runs {sequential:.2?}");
    println!("  parallel   (parallelism {parallelism:>2}):          {p:6.2} s   runs {parallel:.2?}");
    println!("  speed-up: {:.2}x", s / p);
}
