//! Configuration: `fleetpilot.toml` (optional) and flags, parsed in two stages — raw
//! (syntax, with serde) then validated and typed — before any socket is bound or Azure is
//! called. Errors name the key and the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fleetpilot_core::Secret;
use fleetpilot_guardrails::{Policies, Policy};
use fleetpilot_infra::CredentialConfig;
use serde::Deserialize;

/// The file as written, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub executor: RawExecutor,
    #[serde(default)]
    pub model: RawModel,
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub alerts: RawAlerts,
    pub azure: Option<RawAzure>,
    #[serde(default)]
    pub emulator: RawEmulator,
    #[serde(default)]
    pub policy: RawPolicy,
    /// What `fleetpilot provision` builds (the recipe's stack; every name overridable).
    #[serde(default)]
    pub stack: fleetpilot_infra::stack::StackConfig,
    #[serde(default)]
    pub dashboard: RawDashboard,
    #[serde(default)]
    pub auth: RawAuth,
    /// Services served by more than one fleet (one per region): `[services.NAME] fleets = [...]`.
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, RawService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// The fleets (in the default resource group) that serve it.
    pub fleets: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Browser origins allowed to call the HTTP surfaces cross-origin (CORS); empty: CORS off.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    /// Role of MCP callers over stdio (default `admin`: a local operator).
    pub stdio_role: Option<String>,
    /// Role of MCP callers over HTTP (default `operator`: may propose and apply, not approve).
    pub http_role: Option<String>,
    /// Role of fleetpilot's own agent (default `operator`).
    pub agent_role: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub path: Option<PathBuf>,
}

/// The model the agent uses; none means the built-in planner.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `none` (the built-in planner), `azure_openai` (by deployment, api-key) or `openai` (a v1 endpoint).
    pub kind: Option<String>,
    /// `https://<resource>.openai.azure.com` (azure_openai), or the v1 base URL (openai):
    /// `https://<resource>.openai.azure.com/openai/v1`, `https://api.openai.com/v1`, a local server.
    pub endpoint: Option<String>,
    /// azure_openai: the deployment.
    pub deployment: Option<String>,
    /// azure_openai: the API version.
    pub api_version: Option<String>,
    /// openai: the model (the deployment name on Azure's v1 endpoint).
    pub model: Option<String>,
    /// openai: `api_key`, `entra` (a bearer token from fleetpilot's credential) or `none`.
    pub auth: Option<String>,
    /// The environment variable holding the key (default AZURE_OPENAI_API_KEY).
    pub api_key_env: Option<String>,
    /// entra: the credential (as `azure.credential`; default developer_tools).
    pub credential: Option<String>,
    /// entra: the token scope (default https://cognitiveservices.azure.com/.default).
    pub token_scope: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_retries: Option<usize>,
    /// USD per million prompt tokens, for the cost of runs (default 0: unknown, reported as 0).
    pub usd_per_million_prompt_tokens: Option<f64>,
    /// USD per million completion tokens.
    pub usd_per_million_completion_tokens: Option<f64>,
}

/// Limits of every agent run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub max_turns: Option<u32>,
    pub max_tool_calls: Option<u32>,
    pub max_tokens: Option<u64>,
    pub max_seconds: Option<u64>,
    /// Apply allowed proposals without asking (autonomous runs); default true.
    pub auto_apply: Option<bool>,
    /// A fleetpilot MCP endpoint for the agent's tool calls instead of the in-process server
    /// (e.g. a central fleetpilot that holds the credentials and the audit).
    pub tools_url: Option<String>,
}

/// Autonomous runs on Azure Monitor alerts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// The webhook's secret (also FLEETPILOT_ALERTS_TOKEN); generated at start when unset.
    pub token: Option<String>,
    /// Fleet for alerts whose targets name no fleet (e.g. the ML workspace's CPU alert).
    pub fleet: Option<String>,
    /// Seconds between follow-up runs while an alert stays fired (300; 0 turns them off).
    pub follow_up_secs: Option<u64>,
}

/// Who may call the HTTP surfaces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// API keys, kept as SHA-256 digests.
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// Role of the single key in FLEETPILOT_API_KEY (`operator`).
    pub api_key_role: Option<String>,
    /// Microsoft Entra ID bearer tokens.
    pub entra: Option<RawEntra>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub name: String,
    /// `printf %s "$KEY" | sha256sum`
    pub sha256: String,
    pub role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntra {
    pub tenant_id: String,
    /// fleetpilot's app ID URI (`api://fleetpilot`); the client id may be added to `audiences`.
    pub audience: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub issuers: Vec<String>,
    /// App role value → fleetpilot role (default Fleet.Read/Operate/Approve/Admin).
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
}

/// The web dashboard at `/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    /// Where the eval reports are (`target/evals`).
    pub evals_dir: Option<PathBuf>,
    /// Seconds between live updates (2).
    pub refresh_secs: Option<f64>,
}

/// How the executor talks to Azure.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecutor {
    /// Seconds the executor waits for a change to show before proposing its inverse (60).
    pub verify_timeout_secs: Option<u64>,
    /// Seconds a long-running operation may take before it counts as timed out (600).
    pub operation_timeout_secs: Option<u64>,
    /// Retries of a transient failure (429, 5xx, timeouts) after the first attempt (5).
    pub max_retries: Option<usize>,
    /// Longest `Retry-After` honoured, in seconds (120).
    pub max_retry_after_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAzure {
    #[serde(default = "default_arm_endpoint")]
    pub endpoint: String,
    pub subscription_id: String,
    pub resource_group: Option<String>,
    #[serde(default = "default_credential")]
    pub credential: String,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// Name of the environment variable that holds the client secret.
    pub client_secret_env: Option<String>,
    /// Log Analytics workspace (customer) id that `query_kql` queries.
    pub log_analytics_workspace: Option<String>,
    /// Azure ML workspace the job tools use (in `resource_group`).
    pub ml_workspace: Option<String>,
    /// Log Analytics query endpoint.
    #[serde(default = "default_logs_endpoint")]
    pub log_analytics_endpoint: String,
}

fn default_logs_endpoint() -> String {
    "https://api.loganalytics.io".into()
}

fn default_arm_endpoint() -> String {
    "https://management.azure.com".into()
}

fn default_credential() -> String {
    "developer_tools".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmulator {
    /// Log Analytics retention of the emulated workspace, in virtual hours.
    pub log_retention_hours: Option<u64>,
    /// Per-VM `Heartbeat` and `Perf` rows every minute.
    pub vm_telemetry: Option<bool>,
    pub seed: Option<u64>,
    pub speed: Option<f64>,
    pub scenario: Option<String>,
    pub listen: Option<String>,
    /// Faults injected from the start (see the emulator's `faults` module).
    #[serde(default)]
    pub faults: fleetpilot_emulator::faults::Faults,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Applies to every fleet without its own table; fields left out keep fleetpilot's defaults.
    #[serde(default)]
    pub default: toml::Table,
    /// Per fleet: fields left out fall back to `[policy.default]`.
    #[serde(default)]
    pub fleets: BTreeMap<String, toml::Table>,
    /// Dry-run for every fleet.
    #[serde(default)]
    pub dry_run: bool,
    /// Bounds on Azure ML jobs.
    #[serde(default)]
    pub jobs: fleetpilot_guardrails::JobPolicy,
    /// Freeze every fleet: every mutation is refused (`fleetpilot freeze on` does it at run time).
    #[serde(default)]
    pub freeze: bool,
    /// Tool calls one caller may make per minute.
    pub calls_per_caller_per_minute: Option<u32>,
}

/// Flags that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub state: Option<PathBuf>,
    pub seed: Option<u64>,
    pub speed: Option<f64>,
    pub scenario: Option<String>,
    pub emulator_listen: Option<String>,
    pub dry_run: bool,
}

/// Where Azure is.
#[derive(Debug, Clone)]
pub enum Target {
    /// The embedded emulator.
    Emulator(EmulatorSettings),
    /// Real Azure (or anything speaking ARM at `endpoint`).
    Azure { endpoint: String, subscription_id: String, credential: CredentialConfig, logs_endpoint: String, workspace: String },
}

#[derive(Debug, Clone)]
pub struct EmulatorSettings {
    pub log_retention_hours: u64,
    pub vm_telemetry: bool,
    pub seed: u64,
    pub speed: f64,
    pub scenario: fleetpilot_emulator::Scenario,
    pub listen: SocketAddr,
    pub faults: fleetpilot_emulator::faults::Faults,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    /// Origins answered with CORS headers (empty: no CORS headers, browsers refuse cross-origin).
    pub cors_allowed_origins: Vec<String>,
    pub state_path: PathBuf,
    pub target: Target,
    pub default_resource_group: String,
    pub ml_workspace: String,
    pub policies: Policies,
    pub stdio_role: fleetpilot_tools::Role,
    pub http_role: fleetpilot_tools::Role,
    pub agent_role: fleetpilot_tools::Role,
    pub verify_timeout: std::time::Duration,
    pub model: ModelSettings,
    pub agent: AgentSettings,
    /// Never printed: `check-config` shows `[redacted]`.
    pub alerts_token: Option<Secret>,
    pub alerts_fleet: String,
    /// Interval of follow-up runs while an alert stays fired (zero: none).
    pub alerts_follow_up: time::Duration,
    pub operation_timeout: std::time::Duration,
    pub retry: fleetpilot_infra::RetryConfig,
    /// The stack `fleetpilot provision` builds.
    pub stack: fleetpilot_infra::stack::StackConfig,
    /// The dashboard (its role is `http_role`).
    pub dashboard: fleetpilot_tools::DashboardConfig,
    /// Who may call the HTTP surfaces (never printed: the digests are not the keys, but still).
    pub auth: fleetpilot_tools::auth::AuthConfig,
    /// Services and the fleets that serve them: the agent plans such fleets together.
    pub services: Services,
}

/// Services served by several fleets (one per region): the built-in agent sizes such a
/// service as one and places its capacity across its fleets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Services(pub Vec<(String, Vec<String>)>);

impl Services {
    /// The services an emulator scenario declares: the multi-region scenario's `llm-conv` on
    /// its two fleets.
    pub fn of_scenario(scenario: fleetpilot_emulator::Scenario) -> Self {
        use fleetpilot_emulator::scenario::{REFERENCE_FLEET, WEST_FLEET};
        match scenario {
            fleetpilot_emulator::Scenario::MultiRegion => {
                Services(vec![("llm-conv".to_string(), vec![REFERENCE_FLEET.to_string(), WEST_FLEET.to_string()])])
            }
            _ => Services::default(),
        }
    }

    /// What a fleet's agent runs queue on: its service, when several fleets serve one (a run
    /// plans them all, so two at once would act twice), else the fleet.
    pub fn run_key(&self, fleet: &str) -> String {
        match self.0.iter().find(|(_, fleets)| fleets.iter().any(|f| f.eq_ignore_ascii_case(fleet))) {
            Some((service, _)) => format!("service:{service}"),
            None => fleet.to_ascii_lowercase(),
        }
    }

    /// The other fleets that serve the service `fleet` serves (none when it serves none).
    pub fn siblings_of(&self, fleet: &str) -> Vec<String> {
        self.0
            .iter()
            .find(|(_, fleets)| fleets.iter().any(|f| f.eq_ignore_ascii_case(fleet)))
            .map(|(_, fleets)| fleets.iter().filter(|f| !f.eq_ignore_ascii_case(fleet)).cloned().collect())
            .unwrap_or_default()
    }
}

/// `[services]`, checked: every service names at least one fleet, and a fleet serves at most
/// one service. Without any, the multi-region scenario's service is planned across its fleets.
fn services(raw: &std::collections::BTreeMap<String, RawService>, target: &Target) -> Result<Services> {
    let mut seen = std::collections::BTreeMap::new();
    let mut list = Vec::new();
    for (name, service) in raw {
        if service.fleets.is_empty() {
            bail!("`services.{name}.fleets` is empty; name the fleets that serve it");
        }
        for fleet in &service.fleets {
            if let Some(other) = seen.insert(fleet.to_ascii_lowercase(), name.clone()) {
                bail!("fleet {fleet:?} is listed by `services.{other}` and `services.{name}`; a fleet serves one service");
            }
        }
        list.push((name.clone(), service.fleets.clone()));
    }
    match target {
        Target::Emulator(settings) if list.is_empty() => Ok(Services::of_scenario(settings.scenario)),
        _ => Ok(Services(list)),
    }
}

/// Which model kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// The built-in planner.
    None,
    /// Azure OpenAI by deployment.
    AzureOpenai,
    /// A v1 chat-completions endpoint.
    Openai,
}

/// The validated `[model]`.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub kind: ModelKind,
    pub endpoint: String,
    pub deployment: String,
    pub api_version: String,
    pub model: String,
    pub auth: String,
    pub api_key_env: Option<String>,
    pub credential: CredentialConfig,
    pub token_scope: String,
    pub timeout_secs: u64,
    pub max_retries: usize,
    /// What the model's tokens cost.
    pub price: fleetpilot_agent::ModelPrice,
}

/// The validated `[agent]`.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub budgets: fleetpilot_agent::runner::Budgets,
    pub auto_apply: bool,
    pub tools_url: Option<String>,
}

fn model_settings(raw: &RawModel) -> Result<ModelSettings> {
    let kind = match raw.kind.as_deref().unwrap_or("none") {
        "none" | "planner" => ModelKind::None,
        "azure_openai" => ModelKind::AzureOpenai,
        "openai" => ModelKind::Openai,
        other => bail!("`model.kind` = {other:?} is unknown; use none (the built-in planner), azure_openai or openai"),
    };
    let need = |v: &Option<String>, key: &str| -> Result<String> {
        v.clone()
            .filter(|s| !s.trim().is_empty())
            .with_context(|| format!("`model.{key}` is required with model.kind = {:?}", raw.kind.as_deref().unwrap_or("")))
    };
    let (endpoint, deployment, model) = match kind {
        ModelKind::None => (String::new(), String::new(), String::new()),
        ModelKind::AzureOpenai => (need(&raw.endpoint, "endpoint")?, need(&raw.deployment, "deployment")?, String::new()),
        ModelKind::Openai => (need(&raw.endpoint, "endpoint")?, String::new(), need(&raw.model, "model")?),
    };
    if kind != ModelKind::None && !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        bail!("`model.endpoint` = {endpoint:?} is not a URL");
    }
    let credential = match raw.credential.as_deref().unwrap_or("developer_tools") {
        "developer_tools" => CredentialConfig::DeveloperTools,
        "managed_identity" => CredentialConfig::ManagedIdentity { client_id: None },
        "workload_identity" => CredentialConfig::WorkloadIdentity,
        other => bail!("`model.credential` = {other:?} is unknown; use developer_tools, managed_identity or workload_identity"),
    };
    let price_of = |v: Option<f64>, key: &str| -> Result<f64> {
        match v {
            Some(p) if !p.is_finite() || p < 0.0 => bail!("`model.{key}` = {p} must be a price in USD, 0 or more"),
            v => Ok(v.unwrap_or(0.0)),
        }
    };
    let price = fleetpilot_agent::ModelPrice {
        prompt_per_million: price_of(raw.usd_per_million_prompt_tokens, "usd_per_million_prompt_tokens")?,
        completion_per_million: price_of(raw.usd_per_million_completion_tokens, "usd_per_million_completion_tokens")?,
    };
    Ok(ModelSettings {
        kind,
        endpoint,
        deployment,
        api_version: raw.api_version.clone().unwrap_or_else(|| "2024-10-21".into()),
        model,
        auth: raw.auth.clone().unwrap_or_else(|| "api_key".into()),
        api_key_env: raw.api_key_env.clone(),
        credential,
        token_scope: raw.token_scope.clone().unwrap_or_else(|| "https://cognitiveservices.azure.com/.default".into()),
        timeout_secs: raw.timeout_secs.unwrap_or(120),
        max_retries: raw.max_retries.unwrap_or(4),
        price,
    })
}

/// Read `path` if given, else `fleetpilot.toml` in the working directory if it exists.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config> {
    let raw = match path {
        Some(p) => read(p)?,
        None if Path::new("fleetpilot.toml").exists() => read(Path::new("fleetpilot.toml"))?,
        None => RawConfig::default(),
    };
    validate(raw, overrides)
}

fn read(path: &Path) -> Result<RawConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

fn parse_addr(value: &str, key: &str) -> Result<SocketAddr> {
    value.parse().with_context(|| format!("`{key}` = {value:?} is not an address; write it as IP:PORT, e.g. 127.0.0.1:8080"))
}

/// Merge TOML tables: `over` wins field by field.
fn merged(base: &toml::Table, over: &toml::Table) -> toml::Table {
    let mut out = base.clone();
    for (k, v) in over {
        out.insert(k.clone(), v.clone());
    }
    out
}

fn policy_from(table: toml::Table, key: &str) -> Result<Policy> {
    let policy: Policy = toml::Value::Table(table).try_into().with_context(|| format!("`{key}` is not a valid policy"))?;
    if policy.min_spot > policy.max_spot {
        bail!(
            "`{key}`: min_spot ({}) is above max_spot ({}); lower min_spot or raise max_spot",
            policy.min_spot,
            policy.max_spot
        );
    }
    if policy.min_regular > policy.max_regular {
        bail!(
            "`{key}`: min_regular ({}) is above max_regular ({}); lower min_regular or raise max_regular",
            policy.min_regular,
            policy.max_regular
        );
    }
    Ok(policy)
}

/// Validate and type a raw configuration.
pub fn validate(raw: RawConfig, overrides: &Overrides) -> Result<Config> {
    let listen =
        parse_addr(overrides.listen.as_deref().or(raw.server.listen.as_deref()).unwrap_or("127.0.0.1:8080"), "server.listen")?;
    let state_path = overrides.state.clone().or(raw.state.path).unwrap_or_else(|| PathBuf::from(".fleetpilot/fleetpilot.db"));
    let mut allowed_hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    allowed_hosts.extend(raw.server.allowed_hosts);
    // Browsers send origins lower-cased and without a trailing slash: compare them so.
    let cors_allowed_origins: Vec<String> =
        raw.server.cors_allowed_origins.iter().map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase()).collect();
    for origin in &cors_allowed_origins {
        let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.trim_end_matches('/').contains(['*', ' '])
            && origin.split("://").nth(1).is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
        if !ok {
            bail!(
                "`server.cors_allowed_origins` entry {origin:?} is not an origin: write scheme://host[:port], \
                 e.g. https://ai.azure.com (no path, no wildcard)"
            );
        }
    }
    // A cross-origin caller allowed by CORS must also pass the MCP transport's Origin check.
    let mut allowed_origins = raw.server.allowed_origins;
    if !allowed_origins.is_empty() {
        allowed_origins.extend(cors_allowed_origins.iter().filter(|o| !allowed_origins.contains(o)).cloned().collect::<Vec<_>>());
    }

    let default_table = raw.policy.default.clone();
    let default_policy = {
        let base = toml::Table::try_from(Policy::default()).context("default policy")?;
        policy_from(merged(&base, &default_table), "policy.default")?
    };
    let mut fleets = BTreeMap::new();
    for (name, table) in &raw.policy.fleets {
        let base = toml::Table::try_from(&default_policy).context("default policy")?;
        fleets.insert(name.clone(), policy_from(merged(&base, table), &format!("policy.fleets.{name}"))?);
    }
    let mut policies = Policies::new(default_policy, fleets).with_global_dry_run(raw.policy.dry_run || overrides.dry_run);
    policies.jobs = raw.policy.jobs.clone();
    policies = policies.with_global_freeze(raw.policy.freeze);
    if let Some(n) = raw.policy.calls_per_caller_per_minute {
        if n == 0 {
            bail!("`policy.calls_per_caller_per_minute` must be at least 1");
        }
        policies.calls_per_caller_per_minute = n;
    }
    let role = |value: &Option<String>, key: &str, default: fleetpilot_tools::Role| -> Result<fleetpilot_tools::Role> {
        value.as_deref().map_or(Ok(default), |v| parse_role(v, key))
    };
    let stdio_role = role(&raw.server.stdio_role, "server.stdio_role", fleetpilot_tools::Role::Admin)?;
    let http_role = role(&raw.server.http_role, "server.http_role", fleetpilot_tools::Role::Operator)?;
    let agent_role = role(&raw.server.agent_role, "server.agent_role", fleetpilot_tools::Role::Operator)?;
    let verify_timeout = std::time::Duration::from_secs(raw.executor.verify_timeout_secs.unwrap_or(60));
    let model = model_settings(&raw.model)?;
    let defaults = fleetpilot_agent::runner::Budgets::default();
    let agent = AgentSettings {
        budgets: fleetpilot_agent::runner::Budgets {
            max_turns: raw.agent.max_turns.unwrap_or(defaults.max_turns),
            max_tool_calls: raw.agent.max_tool_calls.unwrap_or(defaults.max_tool_calls),
            max_tokens: raw.agent.max_tokens.unwrap_or(defaults.max_tokens),
            wall_clock: raw.agent.max_seconds.map_or(defaults.wall_clock, std::time::Duration::from_secs),
        },
        auto_apply: raw.agent.auto_apply.unwrap_or(true),
        tools_url: match raw.agent.tools_url.clone().filter(|u| !u.trim().is_empty()) {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                bail!("`agent.tools_url` = {u:?} is not an http(s) URL of a fleetpilot MCP endpoint")
            }
            other => other,
        },
    };
    let alerts_token = std::env::var("FLEETPILOT_ALERTS_TOKEN").ok().filter(|t| !t.is_empty()).or(raw.alerts.token.clone());
    if alerts_token.as_ref().is_some_and(|t| t.len() < 16) {
        bail!(
            "the alert token (alerts.token or FLEETPILOT_ALERTS_TOKEN) is shorter than 16 characters; use a long random string"
        );
    }
    let alerts_fleet = raw.alerts.fleet.clone().unwrap_or_else(|| "cf-ml-scaling".into());
    let operation_timeout = std::time::Duration::from_secs(raw.executor.operation_timeout_secs.unwrap_or(600));
    let mut retry = fleetpilot_infra::RetryConfig::default();
    if let Some(n) = raw.executor.max_retries {
        retry.max_retries = n;
    }
    if let Some(secs) = raw.executor.max_retry_after_secs {
        retry.max_retry_after = std::time::Duration::from_secs(secs);
    }

    let mut stack = raw.stack;
    if let Some(tenant) = raw.azure.as_ref().and_then(|a| a.tenant_id.clone())
        && stack.tenant_id == fleetpilot_infra::stack::StackConfig::default().tenant_id
    {
        stack.tenant_id = tenant;
    }
    stack.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let auth = auth_config(&raw.auth, http_role)?;
    let refresh = raw.dashboard.refresh_secs.unwrap_or(2.0);
    if !(0.1..=3600.0).contains(&refresh) {
        bail!("`dashboard.refresh_secs` = {refresh} is out of range; use 0.1 to 3600");
    }
    let dashboard = fleetpilot_tools::DashboardConfig {
        role: http_role,
        evals_dir: raw.dashboard.evals_dir.clone().unwrap_or_else(|| PathBuf::from("target/evals")),
        refresh: std::time::Duration::from_secs_f64(refresh),
        ..Default::default()
    };
    let mut ml_workspace = fleetpilot_emulator::scenario::REFERENCE_WORKSPACE.to_string();
    let (target, default_resource_group) = match raw.azure {
        None => {
            let scenario = overrides.scenario.as_deref().or(raw.emulator.scenario.as_deref()).unwrap_or("reference");
            let scenario = scenario.parse().map_err(|e: String| anyhow::anyhow!("`emulator.scenario`: {e}"))?;
            let speed = overrides.speed.or(raw.emulator.speed).unwrap_or(60.0);
            if !(0.0..=100_000.0).contains(&speed) {
                bail!("`emulator.speed` = {speed} is out of range; use 0 (paused) to 100000");
            }
            let emulator_listen = parse_addr(
                overrides.emulator_listen.as_deref().or(raw.emulator.listen.as_deref()).unwrap_or("127.0.0.1:0"),
                "emulator.listen",
            )?;
            let settings = EmulatorSettings {
                log_retention_hours: raw.emulator.log_retention_hours.unwrap_or(48),
                vm_telemetry: raw.emulator.vm_telemetry.unwrap_or(true),
                seed: overrides.seed.or(raw.emulator.seed).unwrap_or(42),
                speed,
                scenario,
                listen: emulator_listen,
                faults: raw.emulator.faults.clone(),
            };
            (Target::Emulator(settings), fleetpilot_emulator::scenario::REFERENCE_RESOURCE_GROUP.to_string())
        }
        Some(azure) => {
            if azure.subscription_id.trim().is_empty() {
                bail!("`azure.subscription_id` is empty; set it to the subscription that holds your fleets");
            }
            let credential = match azure.credential.as_str() {
                "developer_tools" => CredentialConfig::DeveloperTools,
                "managed_identity" => CredentialConfig::ManagedIdentity { client_id: azure.client_id.clone() },
                "workload_identity" => CredentialConfig::WorkloadIdentity,
                "client_secret" => {
                    let tenant_id =
                        azure.tenant_id.clone().context("`azure.tenant_id` is required with credential = \"client_secret\"")?;
                    let client_id =
                        azure.client_id.clone().context("`azure.client_id` is required with credential = \"client_secret\"")?;
                    let var = azure.client_secret_env.clone().unwrap_or_else(|| "AZURE_CLIENT_SECRET".into());
                    let secret = std::env::var(&var)
                        .with_context(|| format!("the client secret is read from ${var}, which is not set"))?;
                    CredentialConfig::ClientSecret { tenant_id, client_id, secret: Secret::new(secret) }
                }
                "none" => CredentialConfig::None,
                other => bail!(
                    "`azure.credential` = {other:?} is unknown; use developer_tools, managed_identity, workload_identity, client_secret or none"
                ),
            };
            let rg = azure.resource_group.clone().unwrap_or_default();
            ml_workspace = azure.ml_workspace.clone().unwrap_or_default();
            let target = Target::Azure {
                endpoint: azure.endpoint,
                subscription_id: azure.subscription_id,
                credential,
                logs_endpoint: azure.log_analytics_endpoint,
                workspace: azure.log_analytics_workspace.unwrap_or_default(),
            };
            (target, rg)
        }
    };
    let services = services(&raw.services, &target)?;
    Ok(Config {
        services,
        listen,
        allowed_hosts,
        allowed_origins,
        cors_allowed_origins,
        state_path,
        target,
        default_resource_group,
        ml_workspace,
        policies,
        stdio_role,
        http_role,
        agent_role,
        verify_timeout,
        model,
        agent,
        alerts_token: alerts_token.map(Secret::new),
        alerts_fleet,
        alerts_follow_up: time::Duration::seconds(raw.alerts.follow_up_secs.unwrap_or(300) as i64),
        operation_timeout,
        retry,
        stack,
        dashboard,
        auth,
    })
}

fn parse_role(value: &str, key: &str) -> Result<fleetpilot_tools::Role> {
    value.parse().map_err(|e: String| anyhow::anyhow!("`{key}`: {e}"))
}

/// `[auth]` and FLEETPILOT_API_KEY, checked.
fn auth_config(raw: &RawAuth, http_role: fleetpilot_tools::Role) -> Result<fleetpilot_tools::auth::AuthConfig> {
    use fleetpilot_tools::auth::{ApiKey, AuthConfig, EntraConfig, key_digest};
    let mut api_keys = Vec::new();
    for (i, k) in raw.api_keys.iter().enumerate() {
        let digest = k.sha256.trim().to_ascii_lowercase();
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("`auth.api_keys[{i}].sha256` is not a SHA-256 digest (64 hex digits): printf %s \"$KEY\" | sha256sum");
        }
        api_keys.push(ApiKey {
            name: k.name.clone(),
            sha256: digest,
            role: parse_role(&k.role, &format!("auth.api_keys[{i}].role"))?,
        });
    }
    if let Some(key) = std::env::var("FLEETPILOT_API_KEY").ok().filter(|k| !k.is_empty()) {
        if key.len() < 16 {
            bail!("FLEETPILOT_API_KEY is shorter than 16 characters; use a long random string");
        }
        let role =
            raw.api_key_role.as_deref().map_or(Ok(fleetpilot_tools::Role::Operator), |r| parse_role(r, "auth.api_key_role"))?;
        api_keys.push(ApiKey { name: "env".into(), sha256: key_digest(&key), role });
    }
    let entra = match &raw.entra {
        None => None,
        Some(e) => {
            if e.tenant_id.trim().is_empty() || e.audience.trim().is_empty() {
                bail!("`auth.entra` needs tenant_id and audience (fleetpilot's app ID URI)");
            }
            let mut config = EntraConfig::for_tenant(e.tenant_id.trim(), e.audience.trim());
            config.audiences.extend(e.audiences.iter().cloned());
            if let Some(uri) = &e.jwks_uri {
                config.jwks_uri = uri.clone();
            }
            if !e.issuers.is_empty() {
                config.issuers = e.issuers.clone();
            }
            if !e.roles.is_empty() {
                config.roles = e
                    .roles
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), parse_role(v, &format!("auth.entra.roles.{k}"))?)))
                    .collect::<Result<_>>()?;
            }
            Some(config)
        }
    };
    Ok(AuthConfig { api_keys, entra, anonymous_role: Some(http_role) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str, expect_err: Option<&str>) -> Option<Config> {
        let raw: RawConfig = match toml::from_str(toml_text) {
            Ok(raw) => raw,
            Err(e) => {
                let want = expect_err.unwrap_or_else(|| panic!("unexpected parse error: {e}"));
                assert!(e.to_string().contains(want), "{e}");
                return None;
            }
        };
        match (validate(raw, &Overrides::default()), expect_err) {
            (Ok(config), None) => Some(config),
            (Err(e), Some(want)) => {
                assert!(format!("{e:#}").contains(want), "{e:#}");
                None
            }
            (Ok(_), Some(want)) => panic!("expected an error containing {want:?}"),
            (Err(e), None) => panic!("unexpected error: {e:#}"),
        }
    }

    #[test]
    fn empty_config_is_the_embedded_default() {
        let config = check("", None).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(matches!(config.target, Target::Emulator(_)));
        assert_eq!(config.default_resource_group, "rg-ml-adaptive-scaling");
        assert_eq!(config.policies.for_fleet("cf-ml-scaling"), Policy::default());
    }

    #[test]
    fn fleet_policies_fall_back_to_the_default_table() {
        let config = check("[policy.default]\nmax_spot = 30\n[policy.fleets.a]\nmax_step_up = 2\n", None).unwrap();
        let a = config.policies.for_fleet("A");
        assert_eq!((a.max_spot, a.max_step_up), (30, 2));
        assert_eq!(config.policies.for_fleet("b").max_spot, 30);
    }

    #[test]
    fn errors_name_the_key() {
        check("[server]\nlisten = \"nowhere\"\n", Some("`server.listen`"));
        check("[policy.default]\nmin_spot = 5\nmax_spot = 2\n", Some("min_spot (5) is above max_spot (2)"));
        check("[policy.fleets.x]\nmax_spott = 2\n", Some("`policy.fleets.x` is not a valid policy"));
        check("[azure]\nsubscription_id = \"s\"\ncredential = \"magic\"\n", Some("`azure.credential`"));
        check("[emulator]\nspeed = -1.0\n", Some("`emulator.speed`"));
        check("[nonsense]\n", Some("unknown field"));
        check("[model]\nusd_per_million_prompt_tokens = -1.0\n", Some("`model.usd_per_million_prompt_tokens`"));
        check("[server]\ncors_allowed_origins = [\"https://ai.azure.com/path\"]\n", Some("is not an origin"));
        check("[server]\ncors_allowed_origins = [\"*\"]\n", Some("is not an origin"));
    }

    #[test]
    fn cors_origins_also_pass_the_transports_origin_check() {
        let config = check("[server]\ncors_allowed_origins = [\"https://AI.azure.com/\"]\n", None).unwrap();
        assert_eq!(config.cors_allowed_origins, ["https://ai.azure.com"], "as browsers send it");
        assert!(config.allowed_origins.is_empty(), "no Origin check configured: none added");
        let config = check(
            "[server]\nallowed_origins = [\"https://console.example\"]\ncors_allowed_origins = [\"https://ai.azure.com\"]\n",
            None,
        )
        .unwrap();
        assert_eq!(config.allowed_origins, ["https://console.example", "https://ai.azure.com"]);
        let priced = check("[model]\nusd_per_million_prompt_tokens = 2.5\nusd_per_million_completion_tokens = 10\n", None);
        let price = priced.unwrap().model.price;
        assert_eq!((price.prompt_per_million, price.completion_per_million), (2.5, 10.0));
    }

    #[test]
    fn global_dry_run_reaches_every_fleet() {
        let config = check("[policy]\ndry_run = true\n", None).unwrap();
        assert!(config.policies.for_fleet("anything").dry_run);
    }

    #[test]
    fn services_name_the_fleets_planned_together() {
        let config = check("[services.llm]\nfleets = [\"east\", \"West\", \"north\"]\n", None).unwrap();
        assert_eq!(config.services.siblings_of("west"), ["east", "north"]);
        assert_eq!(config.services.siblings_of("elsewhere"), Vec::<String>::new());
        assert_eq!(
            (config.services.run_key("EAST"), config.services.run_key("north")),
            ("service:llm".into(), "service:llm".into())
        );
        assert_eq!(config.services.run_key("Elsewhere"), "elsewhere");
        check("[services.llm]\nfleets = []\n", Some("`services.llm.fleets` is empty"));
        check("[services.a]\nfleets = [\"f\"]\n[services.b]\nfleets = [\"F\"]\n", Some("a fleet serves one service"));
        check("[services.a]\nfleet = [\"f\"]\n", Some("unknown field"));
        // The multi-region scenario declares its service unless the configuration does.
        let raw: RawConfig = toml::from_str("").unwrap();
        let overrides = Overrides { scenario: Some("multi-region".into()), ..Overrides::default() };
        let config = validate(raw, &overrides).unwrap();
        assert_eq!(config.services.siblings_of("cf-ml-scaling"), ["cf-ml-scaling-westus2"]);
        assert!(check("", None).unwrap().services.0.is_empty(), "the reference scenario has one fleet");
    }
}
