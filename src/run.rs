//! Wiring: build the Azure client (or the embedded emulator), the store and the tools, and
//! serve them until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use axum::routing::get;
use fleetpilot_core::PriceTable;
use fleetpilot_emulator::{Emulator, EmulatorConfig, WorldConfig};
use fleetpilot_infra::{ArmAzureApi, ArmClient, ArmConfig, Store};
use fleetpilot_tools::{FleetService, HttpConfig, ToolsConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EmulatorSettings, Target};

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs go to stderr (stdout belongs to MCP over stdio). `RUST_LOG` overrides the level.
///
/// With an OTLP endpoint (`--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`, to which
/// `/v1/traces` is appended, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, used as is and winning
/// over the other two) the spans — tool calls, agent runs and turns, executor
/// actions, Azure requests — are also exported over OTLP/HTTP (protobuf), in batches, to a
/// collector or to Application Insights' OTLP ingestion. `OTEL_EXPORTER_OTLP_HEADERS` adds headers
/// (an ingestion key), `OTEL_SERVICE_NAME` renames the service (default `fleetpilot`). Keep the
/// returned guard alive: dropping it flushes the spans still buffered.
pub fn init_tracing(format: LogFormat, default_level: &str, otlp_endpoint: Option<&str>) -> Option<Telemetry> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rmcp logs every session and stateless request at info: noise beside our own lines.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default_level},rmcp=warn")));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    // The traces-only variable wins over the general endpoint (flag or variable), as the OTLP
    // specification orders them; it is used as is, the general one gets `/v1/traces`.
    let traces_env =
        std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let url = traces_env.or_else(|| otlp_endpoint.map(str::trim).filter(|v| !v.is_empty()).map(traces_url));
    let (provider, failed) = match url.as_deref().map(otlp_provider) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    // Spans go out at info whatever the log level: a quiet log must not blind the traces.
    // `OTEL_TRACES_FILTER` (EnvFilter syntax) narrows or widens them.
    let mut bad_filter = None;
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        let filter = match std::env::var("OTEL_TRACES_FILTER") {
            Ok(f) => tracing_subscriber::EnvFilter::try_new(&f).unwrap_or_else(|e| {
                bad_filter = Some(format!("{f:?}: {e}"));
                tracing_subscriber::EnvFilter::new("info")
            }),
            Err(_) => tracing_subscriber::EnvFilter::new("info"),
        };
        tracing_opentelemetry::layer().with_tracer(p.tracer("fleetpilot")).with_filter(filter)
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if let Some(e) = failed {
        tracing::error!(error = %e, "cannot export spans over OTLP; logging only");
    }
    if let Some(why) = bad_filter {
        tracing::warn!(filter = %why, "OTEL_TRACES_FILTER is not a valid filter; exporting spans at info");
    }
    provider.map(|provider| {
        tracing::info!(endpoint = %url.unwrap_or_default(), "exporting spans over OTLP");
        Telemetry { provider }
    })
}

/// The OTLP/HTTP traces URL of a collector's base endpoint, as the OTLP specification derives it
/// from `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_string() } else { format!("{base}/v1/traces") }
}

/// A tracer provider exporting to the OTLP/HTTP traces `url`, in batches.
fn otlp_provider(url: &str) -> Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    anyhow::ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "the OTLP endpoint {url:?} is not an http(s) URL (e.g. http://localhost:4318)"
    );
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .context("cannot build the OTLP span exporter")?;
    let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "fleetpilot".into());
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Exports spans while alive; flushes what is buffered when dropped.
pub struct Telemetry {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
            eprintln!("warning: spans not all exported at exit: {e}");
        }
    }
}

/// What the tools run against.
pub(crate) struct Backend {
    pub(crate) service: Arc<FleetService>,
    pub(crate) emulator_url: Option<String>,
}

/// The embedded emulator's URL, subscription, Log Analytics workspace and clock.
struct EmulatorAt {
    url: String,
    subscription: String,
    workspace: String,
    clock: fleetpilot_tools::Clock,
}

async fn start_emulator(settings: &EmulatorSettings, cancel: &CancellationToken) -> Result<EmulatorAt> {
    let emulator = Emulator::new(EmulatorConfig {
        world: WorldConfig {
            seed: settings.seed,
            retry_after_secs: 0,
            logs: fleetpilot_emulator::logs::LogConfig {
                retention: std::time::Duration::from_secs(settings.log_retention_hours * 3600),
                ..Default::default()
            },
            vm_telemetry: settings.vm_telemetry,
            ..WorldConfig::default()
        },
        speed: settings.speed,
        scenario: settings.scenario,
        ..EmulatorConfig::default()
    });
    let (subscription, workspace) = {
        let mut world = emulator.lock_world();
        if settings.faults != fleetpilot_emulator::faults::Faults::default() {
            world.set_faults(settings.faults.clone());
        }
        (world.config.subscription_id.clone(), world.config.logs.workspace_id.clone())
    };
    let clock = {
        let emulator = emulator.clone();
        fleetpilot_tools::Clock::from_fn(move || emulator.clock.now())
    };
    let (addr, _task) = fleetpilot_emulator::spawn(emulator, settings.listen, cancel.child_token())
        .await
        .with_context(|| format!("cannot bind the embedded emulator to {}", settings.listen))?;
    Ok(EmulatorAt { url: format!("http://{addr}"), subscription, workspace, clock })
}

/// Client configurations for the emulator at `url`: ARM, and Log Analytics on the same host.
pub(crate) fn emulator_configs(url: &str, subscription: &str) -> (ArmConfig, ArmConfig) {
    let mut logs = ArmConfig::new(url.to_string(), subscription.to_string());
    logs.token_scope = fleetpilot_infra::arm::LOG_ANALYTICS_SCOPE.into();
    (ArmConfig::new(url.to_string(), subscription.to_string()), logs)
}

/// The Azure API over an ARM and a Log Analytics client.
pub(crate) fn azure_api(arm: ArmConfig, logs: ArmConfig) -> Result<Arc<ArmAzureApi>> {
    Ok(Arc::new(
        ArmAzureApi::new(ArmClient::new(arm).context("cannot build the Azure client")?)
            .with_logs(ArmClient::new(logs).context("cannot build the Log Analytics client")?),
    ))
}

pub(crate) async fn backend(config: &Config, cancel: &CancellationToken) -> Result<Backend> {
    if let Some(dir) = config.state_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    }
    let store = Arc::new(
        Store::open(&config.state_path)
            .with_context(|| format!("cannot open the state database {}", config.state_path.display()))?,
    );
    // The guardrails' windows (cooldown, stabilization, changes an hour, approval expiry) run on
    // the world's clock: the embedded emulator's (`--speed` × real time), or the system's.
    let (arm, logs, workspace, emulator_url, clock) = match &config.target {
        Target::Emulator(settings) => {
            let at = start_emulator(settings, cancel).await?;
            tracing::info!(
                url = %at.url,
                speed = settings.speed,
                seed = settings.seed,
                workspace = %at.workspace,
                "embedded Azure emulator listening (ARM and Log Analytics)"
            );
            let (arm, logs) = emulator_configs(&at.url, &at.subscription);
            (arm, logs, at.workspace, Some(at.url), at.clock)
        }
        Target::Azure { endpoint, subscription_id, credential, logs_endpoint, workspace } => {
            let mut arm = ArmConfig::new(endpoint.clone(), subscription_id.clone());
            arm.credential = credential.clone();
            let mut logs = ArmConfig::new(logs_endpoint.clone(), subscription_id.clone());
            logs.credential = credential.clone();
            logs.token_scope = fleetpilot_infra::arm::LOG_ANALYTICS_SCOPE.into();
            tracing::info!(endpoint = %endpoint, subscription = %subscription_id, workspace = %workspace, "using Azure Resource Manager and Log Analytics");
            (arm, logs, workspace.clone(), None, fleetpilot_tools::Clock::system())
        }
    };
    let (mut arm, mut logs) = (arm, logs);
    for c in [&mut arm, &mut logs] {
        c.retry = config.retry.clone();
        c.operation_timeout = config.operation_timeout;
    }
    let api = azure_api(arm, logs)?;
    let tools = ToolsConfig {
        default_resource_group: config.default_resource_group.clone(),
        policies: config.policies.clone(),
        prices: PriceTable::embedded(),
        default_workspace: workspace,
        ml_workspace: fleetpilot_core::ml::WorkspaceRef {
            resource_group: config.default_resource_group.clone(),
            workspace: config.ml_workspace.clone(),
        },
        clock,
        executor: fleetpilot_infra::ExecutorConfig { verify_timeout: config.verify_timeout, ..Default::default() },
        stdio_role: config.stdio_role,
        http_role: config.http_role,
        agent_role: config.agent_role,
    };
    tracing::info!(path = %config.state_path.display(), "state database open");
    let service = Arc::new(FleetService::new(api, store, tools));
    // Settle what a crash interrupted before taking any call.
    match service.recover().await {
        Ok(recovered) if !recovered.is_empty() => {
            tracing::warn!(count = recovered.len(), "settled changes interrupted by a restart");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot settle interrupted changes now; they stay journalled for the next start"),
    }
    // Proposals approved from a terminal (`fleetpilot proposals approve`) are applied here.
    let applier = service.clone();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    applier.apply_approved().await;
                }
            }
        }
    });
    Ok(Backend { service, emulator_url })
}

/// `fleetpilot serve`.
pub async fn serve(config: Config) -> Result<()> {
    let started = Instant::now();
    if !config.auth.enabled() && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "serve would listen on {} with no authentication: configure [auth] (api_keys or entra) or FLEETPILOT_API_KEY, \
             or listen on a loopback address (127.0.0.1) for development",
            config.listen
        );
    }
    if !config.auth.enabled() {
        tracing::warn!(
            "no authentication configured: development mode, every HTTP caller is anonymous with the {} role (loopback only)",
            config.http_role.as_str()
        );
    }
    let authenticator = fleetpilot_tools::auth::Authenticator::new(config.auth.clone());
    let draining = CancellationToken::new();
    let cancel = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}; pass --listen with a free address", config.listen))?;
    let local: SocketAddr = listener.local_addr()?;
    let backend = backend(&config, &cancel).await?;
    let health = json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "emulator": backend.emulator_url});
    let http = HttpConfig {
        allowed_hosts: config.allowed_hosts.clone(),
        allowed_origins: config.allowed_origins.clone(),
        ..HttpConfig::default()
    };
    // Autonomous mode: alerts posted to /alerts start agent runs.
    let generated = config.alerts_token.is_none();
    let token = config
        .alerts_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_else(|| format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()));
    let agent = Arc::new(crate::autonomy::AgentContext {
        service: backend.service.clone(),
        model: crate::autonomy::build_model(&config.model)?,
        budgets: config.agent.budgets,
        default_fleet: config.alerts_fleet.clone(),
        auto_apply: config.agent.auto_apply,
        tools_url: config.agent.tools_url.clone(),
        price: config.model.price,
        services: config.services.clone(),
    });
    let model_name = agent.model.as_ref().map_or_else(|| "the built-in planner".to_string(), |m| m.name());
    let autonomy = crate::autonomy::Autonomy::new(agent, token.clone(), config.alerts_follow_up);
    if config.alerts_follow_up > time::Duration::ZERO {
        tokio::spawn(autonomy.clone().follow_up_until(cancel.child_token()));
    }
    let webhook = format!("http://{local}/alerts?token={token}");
    if let Some(url) = &backend.emulator_url {
        // The emulator's alert rules notify this endpoint, closing the loop by themselves.
        let _ =
            reqwest::Client::new().post(format!("{url}/_emulator/alerts/webhook")).json(&json!({"url": webhook})).send().await;
    }
    if generated {
        tracing::warn!(webhook = %webhook, "no alert token configured (alerts.token or FLEETPILOT_ALERTS_TOKEN); generated one: give this URL to the action group");
    } else {
        tracing::info!(webhook = %format!("http://{local}/alerts?token=…"), "alerts endpoint ready");
    }
    tracing::info!(model = %model_name, "agent ready for alerts");
    let alerts = axum::Router::new().route("/alerts", axum::routing::post(crate::autonomy::alerts_endpoint)).with_state(autonomy);
    let dashboard = fleetpilot_tools::dashboard_router(
        backend.service.clone(),
        fleetpilot_tools::DashboardConfig { cancel: draining.child_token(), ..config.dashboard.clone() },
    );
    let metrics = fleetpilot_tools::metrics::router(backend.service.clone());
    let rest = fleetpilot_tools::rest::rest_router(backend.service.clone(), http.clone(), cancel.child_token());
    let app = fleetpilot_tools::http_router(backend.service, http, cancel.child_token())
        .merge(dashboard)
        .merge(rest)
        .merge(metrics)
        .merge(fleetpilot_tools::auth::routes(authenticator.clone()))
        .merge(alerts)
        .route("/healthz", get(move || std::future::ready(axum::Json(health.clone()))))
        .layer(axum::middleware::from_fn_with_state(authenticator, fleetpilot_tools::auth::middleware));
    // Outermost, so that a browser's preflight is answered before authentication asks for a
    // credential it never sends.
    let app = match cors_layer(&config.cors_allowed_origins)? {
        Some(cors) => app.layer(cors),
        None => app,
    };
    tracing::info!(
        mcp = %format!("http://{local}/mcp"),
        dashboard = %format!("http://{local}/"),
        healthz = %format!("http://{local}/healthz"),
        startup_ms = started.elapsed().as_millis() as u64,
        "fleetpilot listening"
    );
    // On a signal: stop accepting, end the live streams, let the calls in flight finish (the
    // emulator and the tool service stay up meanwhile), then stop everything. Past the grace
    // period whatever is left (a slow Azure call, a client holding a connection) is cut: the
    // journal makes that safe.
    let signalled = draining.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!(grace_secs = SHUTDOWN_GRACE.as_secs(), "shutting down: draining calls in flight");
        signalled.cancel();
    });
    let drained = async {
        draining.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.context("server failed")?,
        () = drained => tracing::warn!("grace period over: stopping with connections still open"),
    }
    cancel.cancel();
    Ok(())
}

/// CORS for the configured browser origins (an AI Foundry portal, an internal console); none
/// configured: no CORS headers at all, so browsers keep other origins out. Credentials travel as
/// `Authorization` headers, never cookies, across origins.
fn cors_layer(origins: &[String]) -> Result<Option<tower_http::cors::CorsLayer>> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).with_context(|| format!("CORS origin {o:?}")))
        .collect::<Result<Vec<_>>>()?;
    let mcp_session = HeaderName::from_static("mcp-session-id");
    Ok(Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("last-event-id"),
                mcp_session.clone(),
                HeaderName::from_static("mcp-protocol-version"),
            ])
            .expose_headers([mcp_session, header::WWW_AUTHENTICATE])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// How long `serve` waits for calls in flight after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `fleetpilot mcp`: the tools over stdio.
pub async fn mcp_stdio(config: Config) -> Result<()> {
    let cancel = CancellationToken::new();
    let backend = backend(&config, &cancel).await?;
    tracing::info!("serving MCP on stdio");
    let result = fleetpilot_tools::serve_stdio(backend.service).await.context("MCP stdio transport failed");
    cancel.cancel();
    result
}

/// `fleetpilot emulator`.
pub async fn emulator(listen: &str, speed: f64, seed: u64, scenario: &str) -> Result<()> {
    let addr: SocketAddr = listen.parse().with_context(|| format!("--listen {listen:?} is not an address (IP:PORT)"))?;
    let scenario = scenario.parse().map_err(|e: String| anyhow::anyhow!("--scenario: {e}"))?;
    let settings = EmulatorSettings {
        log_retention_hours: 48,
        vm_telemetry: true,
        seed,
        speed,
        scenario,
        listen: addr,
        faults: Default::default(),
    };
    let cancel = CancellationToken::new();
    let at = start_emulator(&settings, &cancel).await?;
    tracing::info!(
        url = %at.url,
        subscription = %at.subscription,
        workspace = %at.workspace,
        speed,
        seed,
        "Azure emulator listening: ARM at the root, Log Analytics at /v1/workspaces/<workspace>/query, /healthz, /_emulator/clock"
    );
    shutdown_signal().await;
    cancel.cancel();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
