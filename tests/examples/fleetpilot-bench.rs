//! Benchmark of the MCP HTTP surface, against a bare axum JSON echo route as the ceiling.
//!
//! ```text
//! cargo build --release --bin fleetpilot
//! cargo run --release -p fleetpilot-e2e --example fleetpilot-bench -- target/release/fleetpilot [SECONDS] [CLIENTS]
//! ```
//!
//! Measures, in one run on this machine:
//! - time from spawning `fleetpilot serve` to the first `/healthz` 200 (median of 5 starts),
//!   and its resident memory after 2 s idle;
//! - `read_fleet` and `propose_scale` over MCP streamable HTTP on loopback with CLIENTS
//!   concurrent clients (default 50) for SECONDS each (default 10): calls per second, p50, p99;
//! - the same load on a bare axum JSON echo route served by a separate process (this binary
//!   re-run with `--echo-server`), as the ceiling of the machine and the HTTP stack.
//!
//! ```text
//! cargo run --release -p fleetpilot-e2e --example fleetpilot-bench -- target/release/fleetpilot --soak [SECONDS] [SESSIONS]
//! ```
//!
//! The soak: SESSIONS (default 500) concurrent MCP clients for SECONDS (default 300), each
//! cycling read_fleet, get_policy, list_proposals and estimate_cost; calls per second, p50, p99,
//! errors, and the server's resident memory every 10 s (growth from the first sample after a
//! minute of warm-up to the last); the echo ceiling with the same clients for 30 s first.
//! With `--auth` after SESSIONS every session is its own caller with its own API key (SESSIONS
//! keys in `[[auth.api_keys]]`, sent as `Authorization: Bearer`), so each call is authenticated,
//! counted against its own principal's (lifted) rate limit and audited under its own principal;
//! without it the server runs in development mode (one anonymous caller).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetpilot_e2e::{TempDir, free_port, wait_healthy};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--echo-server") {
        return echo_server(args.get(2).context("port")?.parse()?).await;
    }
    let bin = PathBuf::from(args.get(1).context("usage: fleetpilot-bench PATH-TO-fleetpilot [SECONDS] [CLIENTS]")?);
    if args.get(2).map(String::as_str) == Some("--soak") {
        let seconds: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(300);
        let sessions: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(500);
        let authenticated = args.get(5).map(String::as_str) == Some("--auth");
        return soak(&bin, seconds, sessions, authenticated).await;
    }
    let seconds: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let clients: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(50);

    let (startup, rss_kib) = startup(&bin).await?;
    println!(
        "startup to /healthz OK: median {:.1} ms over 5 starts; idle RSS {:.1} MiB",
        startup.as_secs_f64() * 1000.0,
        rss_kib as f64 / 1024.0
    );

    // The ceiling: a bare axum JSON echo route in its own process.
    let echo_port = free_port()?;
    let mut echo = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--echo-server", &echo_port.to_string()])
        .kill_on_drop(true)
        .spawn()?;
    let echo_url = format!("http://127.0.0.1:{echo_port}/echo");
    wait_port(echo_port).await?;
    let echo_body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_fleet", "arguments": {"fleet": "cf-ml-scaling"}}});
    let echo_stats = load(&echo_url, echo_body, clients, seconds).await?;
    let _ = echo.kill().await;

    let state = TempDir::new("bench")?;
    let port = free_port()?;
    let mut server = spawn_serve(&bin, port, &state.path().join("state.db"))?;
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await?;
    let mcp = format!("{base}/mcp");
    let health: Value = reqwest::get(format!("{base}/healthz")).await?.json().await?;
    let emulator = health["emulator"].as_str().context("emulator url")?.to_string();
    let arm_get = load_get(
        &format!(
            "{emulator}/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.AzureFleet/fleets/cf-ml-scaling?api-version=2024-11-01"
        ),
        clients,
        seconds,
    )
    .await?;
    let policy = load(&mcp, tool_call("get_policy", json!({"fleet": "cf-ml-scaling"})), clients, seconds).await?;
    let read = load(&mcp, tool_call("read_fleet", json!({"fleet": "cf-ml-scaling"})), clients, seconds).await?;
    let propose = load(
        &mcp,
        tool_call("propose_scale", json!({"fleet": "cf-ml-scaling", "spot_capacity": 22, "reason": "benchmark"})),
        clients,
        seconds,
    )
    .await?;
    let _ = server.kill().await;

    println!("{clients} concurrent clients, {seconds} s each, loopback, one machine:");
    println!("{:<28} {:>10} {:>10} {:>10} {:>8}", "target", "calls/s", "p50 ms", "p99 ms", "errors");
    for (name, s) in [
        ("axum JSON echo (ceiling)", &echo_stats),
        ("emulator GET fleet (ARM)", &arm_get),
        ("MCP get_policy (no Azure)", &policy),
        ("MCP read_fleet", &read),
        ("MCP propose_scale", &propose),
    ] {
        println!("{name:<28} {:>10.0} {:>10.2} {:>10.2} {:>8}", s.rate, s.p50_ms, s.p99_ms, s.errors);
    }
    println!(
        "ratio to the ceiling: get_policy {:.3}, read_fleet {:.3}, propose_scale {:.3}",
        policy.rate / echo_stats.rate,
        read.rate / echo_stats.rate,
        propose.rate / echo_stats.rate
    );
    Ok(())
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

fn spawn_serve(bin: &Path, port: u16, state: &Path) -> Result<tokio::process::Child> {
    spawn_serve_with(bin, port, state, &[])
}

/// `serve` with these API keys (none: development mode).
fn spawn_serve_with(bin: &Path, port: u16, state: &Path, keys: &[String]) -> Result<tokio::process::Child> {
    // The per-caller rate limit would turn a load test into a test of the limiter (in
    // development mode every client is the same anonymous caller): lift it.
    let config = state.with_extension("toml");
    let mut text = String::from("[policy]\ncalls_per_caller_per_minute = 100000000\n");
    for (i, key) in keys.iter().enumerate() {
        let digest = fleetpilot_tools::auth::key_digest(key);
        text.push_str(&format!("\n[[auth.api_keys]]\nname = \"bench-{i}\"\nsha256 = \"{digest}\"\nrole = \"operator\"\n"));
    }
    std::fs::write(&config, text)?;
    Ok(tokio::process::Command::new(bin)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--speed", "0", "--state"])
        .arg(state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

async fn startup(bin: &Path) -> Result<(Duration, u64)> {
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    let mut rss = 0;
    for run in 0..5 {
        let state = TempDir::new("bench-start")?;
        let port = free_port()?;
        let started = Instant::now();
        let mut child = spawn_serve(bin, port, &state.path().join("state.db"))?;
        let url = format!("http://127.0.0.1:{port}/healthz");
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("serve did not become healthy");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(started.elapsed());
        if run == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss = rss_kib(child.id().context("pid")?);
        }
        let _ = child.kill().await;
    }
    times.sort();
    Ok((times[times.len() / 2], rss))
}

/// Like [`load`], with GET requests.
async fn load_get(url: &str, clients: usize, seconds: u64) -> Result<Stats> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match http.get(&url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    Ok(stats(all, errors, started.elapsed().as_secs_f64()))
}

fn stats(mut all: Vec<Duration>, errors: usize, elapsed: f64) -> Stats {
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Stats { rate: all.len() as f64 / elapsed, p50_ms: pct(0.50), p99_ms: pct(0.99), errors }
}

struct Stats {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// `clients` workers, each with its own connection, POSTing `body` back to back for `seconds`.
async fn load(url: &str, body: Value, clients: usize, seconds: u64) -> Result<Stats> {
    load_mix(url, vec![body], clients, seconds, &[]).await
}

/// Like [`load`], each worker cycling through `bodies` (starting at its own offset), and
/// sending `keys[worker]` as its bearer credential when keys are given.
async fn load_mix(url: &str, bodies: Vec<Value>, clients: usize, seconds: u64, keys: &[String]) -> Result<Stats> {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(bodies.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let url = url.to_string();
        let bodies = bodies.clone();
        let bearer = keys.get(worker % keys.len().max(1)).map(|k| format!("Bearer {k}"));
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = worker;
            while Instant::now() < deadline {
                let body = &bodies[n % bodies.len()];
                n += 1;
                let t = Instant::now();
                let mut request = http.post(&url);
                if let Some(bearer) = &bearer {
                    request = request.header("authorization", bearer);
                }
                let response = request
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-11-25")
                    .body(body.clone())
                    .send()
                    .await;
                // A tool error (refused, rate-limited) is an error too, though it is a 200.
                let ok = match response {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.is_ok_and(|b| !b.windows(14).any(|w| w == b"\"isError\":true"))
                    }
                    _ => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            Ok::<_, anyhow::Error>((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await??;
        all.extend(latencies);
        errors += e;
    }
    Ok(stats(all, errors, started.elapsed().as_secs_f64()))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn soak(bin: &Path, seconds: u64, sessions: usize, authenticated: bool) -> Result<()> {
    let echo_port = free_port()?;
    let mut echo = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--echo-server", &echo_port.to_string()])
        .kill_on_drop(true)
        .spawn()?;
    wait_port(echo_port).await?;
    let calls = vec![
        tool_call("read_fleet", json!({"fleet": "cf-ml-scaling"})),
        tool_call("get_policy", json!({"fleet": "cf-ml-scaling"})),
        tool_call("list_proposals", json!({"limit": 20})),
        tool_call("estimate_cost", json!({"fleet": "cf-ml-scaling", "spot_capacity": 24})),
    ];
    let keys: Vec<String> = if authenticated {
        (0..sessions).map(|i| format!("fp-bench-{i}-{:016x}", (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
    } else {
        Vec::new()
    };
    let ceiling =
        load_mix(&format!("http://127.0.0.1:{echo_port}/echo"), calls.clone(), sessions, seconds.min(30), &keys).await?;
    let _ = echo.kill().await;

    let state = TempDir::new("soak")?;
    let port = free_port()?;
    let mut server = spawn_serve_with(bin, port, &state.path().join("state.db"), &keys)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await?;
    if authenticated {
        // The keys are needed: a call without one is refused.
        let refused = reqwest::Client::new()
            .post(format!("{base}/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&calls[0])
            .send()
            .await?;
        anyhow::ensure!(refused.status() == 401, "a call without a key was answered {}", refused.status());
    }
    let pid = server.id().context("pid")?;
    let sampler = tokio::spawn(async move {
        let started = Instant::now();
        let mut samples = Vec::new();
        loop {
            samples.push((started.elapsed().as_secs(), rss_kib(pid)));
            if started.elapsed() > Duration::from_secs(seconds) {
                return samples;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
    let soak = load_mix(&format!("{base}/mcp"), calls, sessions, seconds, &keys).await?;
    let samples = sampler.await?;
    let _ = server.kill().await;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let warm = samples.iter().find(|(t, _)| *t >= 60).or(samples.first()).map_or(0, |s| s.1);
    let last = samples.last().map_or(0, |s| s.1);
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let who = if authenticated { "each with its own API key" } else { "development mode, anonymous" };
    println!(
        "soak: {sessions} concurrent MCP clients ({who}) for {seconds} s (read_fleet, get_policy, list_proposals, estimate_cost):"
    );
    println!("{:<28} {:>10} {:>10} {:>10} {:>8}", "target", "calls/s", "p50 ms", "p99 ms", "errors");
    println!(
        "{:<28} {:>10.0} {:>10.2} {:>10.2} {:>8}",
        "axum JSON echo (ceiling)", ceiling.rate, ceiling.p50_ms, ceiling.p99_ms, ceiling.errors
    );
    println!("{:<28} {:>10.0} {:>10.2} {:>10.2} {:>8}", "fleetpilot MCP", soak.rate, soak.p50_ms, soak.p99_ms, soak.errors);
    println!(
        "RSS MiB: after warm-up {:.1}, last {:.1}, max {:.1}, growth {:+.1}; every 10 s: {}",
        mib(warm),
        mib(last),
        mib(max),
        mib(last) - mib(warm),
        samples.iter().map(|(t, k)| format!("{t}s={:.0}", mib(*k))).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

async fn wait_port(port: u16) -> Result<()> {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("port {port} never opened")
}

async fn echo_server(port: u16) -> Result<()> {
    let app =
        axum::Router::new().route("/echo", axum::routing::post(|axum::Json(v): axum::Json<Value>| async move { axum::Json(v) }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
