//! Support for end-to-end tests: run the real `fleetpilot` binary on loopback and talk to it.
//!
//! The end-to-end tests themselves (`tests/e2e/`) are built as tests of the root package so
//! that Cargo builds the binary for them; the architecture rules are `tests/tidy.rs`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Serve `app` on a free loopback port for the rest of the test (a fake collector, model
/// endpoint or JWKS); its address.
///
/// # Errors
/// When no port can be bound.
pub async fn serve_loopback(app: axum::Router) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A free loopback port (bound and released; a small race that tests can live with).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Create a fresh directory under the system's temp dir.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn new(label: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("fleetpilot-{label}-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `fleetpilot serve` running on a free port; killed on drop.
#[derive(Debug)]
pub struct Server {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The embedded emulator's URL, from `/healthz`.
    pub emulator: String,
    _state: TempDir,
}

impl Server {
    /// Start `bin serve` with a paused virtual clock and a fresh state database, and wait
    /// (at most 20 s) until `/healthz` answers.
    ///
    /// # Errors
    /// When the binary does not start or never becomes healthy.
    pub async fn start(bin: &Path, extra: &[&str]) -> Result<Self> {
        let state = TempDir::new("serve")?;
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--speed", "0"])
            .arg("--state")
            .arg(state.path().join("state.db"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let health = wait_healthy(&base).await?;
        let emulator = health["emulator"].as_str().context("healthz names no emulator")?.to_string();
        Ok(Self { child, base, emulator, _state: state })
    }

    /// The server's state database.
    pub fn state_db(&self) -> PathBuf {
        self._state.path().join("state.db")
    }

    /// Stop the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Poll `/healthz` until it answers 200 (every 50 ms, for at most 20 s).
///
/// # Errors
/// When it never does.
pub async fn wait_healthy(base: &str) -> Result<serde_json::Value> {
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(response) = http.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            return Ok(response.json().await?);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{base}/healthz never answered")
}

/// Move the emulator's virtual clock forward.
///
/// # Errors
/// When the emulator does not answer.
pub async fn advance(emulator: &str, seconds: u64) -> Result<serde_json::Value> {
    let response = reqwest::Client::new()
        .post(format!("{emulator}/_emulator/clock"))
        .json(&serde_json::json!({ "advance_seconds": seconds }))
        .send()
        .await?
        .error_for_status()?;
    Ok(response.json().await?)
}

/// `fleetpilot emulator` running alone on a free port, with its clock paused; killed on drop.
#[derive(Debug)]
pub struct StandaloneEmulator {
    _child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl StandaloneEmulator {
    /// Start `bin emulator --scenario SCENARIO --speed 0` and wait until `/healthz` answers.
    ///
    /// # Errors
    /// When the binary does not start or never becomes healthy.
    pub async fn start(bin: &Path, scenario: &str) -> Result<Self> {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let child = tokio::process::Command::new(bin)
            .args(["emulator", "--scenario", scenario, "--speed", "0", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        wait_healthy(&url).await?;
        Ok(Self { _child: child, url })
    }
}
