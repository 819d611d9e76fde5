//! Graceful shutdown: on SIGTERM `serve` stops taking new work, lets the calls in flight finish,
//! ends the dashboard's live streams, and exits well within its grace period.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fleetpilot_e2e::{TempDir, free_port, wait_healthy};
use serde_json::{Value, json};

use super::bin;

#[tokio::test]
async fn sigterm_drains_calls_in_flight_and_ends_live_streams() -> Result<()> {
    let dir = TempDir::new("shutdown")?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--speed", "0", "--state"])
        .arg(dir.path().join("state.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let health = wait_healthy(&base).await?;
    let emulator = health["emulator"].as_str().context("emulator")?.to_string();
    // Every ARM answer takes 1.5 s: a read_fleet is in flight for seconds.
    reqwest::Client::new().post(format!("{emulator}/_emulator/faults")).json(&json!({"latency_ms": 1500})).send().await?;
    // A dashboard left open: a stream that never ends by itself.
    let mut events = reqwest::get(format!("{base}/api/events")).await?;
    let call = tokio::spawn({
        let base = base.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_fleet", "arguments": {"fleet": "cf-ml-scaling"}}});
            let response = reqwest::Client::new()
                .post(format!("{base}/mcp"))
                .header("accept", "application/json, text/event-stream")
                .json(&body)
                .send()
                .await?;
            anyhow::Ok((response.status().as_u16(), response.json::<Value>().await?))
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = child.id().context("pid")?;
    let signalled = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let (status, reply) = call.await??;
    assert_eq!(status, 200, "the call in flight was answered: {reply}");
    assert_eq!(reply["result"]["structuredContent"]["fleet"]["name"], "cf-ml-scaling", "{reply}");
    let exit = tokio::time::timeout(Duration::from_secs(9), child.wait()).await.context("serve did not exit within 9 s")??;
    assert!(exit.success(), "{exit:?}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(9), "{took:?}");
    // The live stream ended instead of holding the server open.
    let drained = tokio::time::timeout(Duration::from_secs(2), async { while let Ok(Some(_)) = events.chunk().await {} }).await;
    assert!(drained.is_ok(), "the event stream was not closed");
    Ok(())
}
