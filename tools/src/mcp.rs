//! The MCP server: fleetpilot's tools over stdio and streamable HTTP (rmcp).
//!
//! Tool failures a model should read — a guardrail denial, an unknown fleet — are tool
//! results with `isError: true` and a structured [`ToolError`]; protocol errors are only for
//! malformed requests.

use std::sync::Arc;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::access::Caller;
use crate::schema::{
    ApplyProposalInput, ApplyResult, ApproveProposalInput, EstimateCostInput, FleetList, FleetView, GetPolicyInput,
    ListFleetsInput, ListProposalsInput, PolicyView, ProposalList, ProposeScaleInput, QueryKqlInput, QueryKqlResult,
    ReadFleetInput, RejectProposalInput,
};
use crate::service::{FleetService, ToolError};

/// The MCP server handler. Cheap to clone (one per HTTP request in stateless mode).
#[derive(Clone)]
pub struct FleetTools {
    service: Arc<FleetService>,
    tool_router: ToolRouter<Self>,
    /// Who the caller is when the transport says nothing (stdio: the local operator).
    transport: &'static str,
}

/// Turn a tool's result into an MCP result.
///
/// Success: `structuredContent` in the tool's output shape. Failure: `isError: true`, the
/// [`ToolError`] as JSON text, and — when the failure concerns something that has the tool's
/// output shape (a denied proposal) — that as `structuredContent`, so clients that validate
/// even error results against the output schema accept it.
fn respond<T: Serialize>(
    result: Result<T, ToolError>,
    error_shape: impl FnOnce(&ToolError) -> Option<serde_json::Value>,
) -> Result<CallToolResult, McpError> {
    let internal = |e: serde_json::Error| McpError::internal_error(e.to_string(), None);
    match result {
        Ok(value) => Ok(CallToolResult::structured(serde_json::to_value(value).map_err(internal)?)),
        Err(error) => {
            let text = serde_json::to_string(&error).map_err(internal)?;
            let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
            result.structured_content = error_shape(&error);
            Ok(result)
        }
    }
}

/// A caller's result as JSON (for the audit), or its error.
fn to_value<T: Serialize>(result: Result<T, ToolError>) -> Result<Result<serde_json::Value, ToolError>, McpError> {
    match result {
        Ok(v) => Ok(Ok(serde_json::to_value(v).map_err(|e| McpError::internal_error(e.to_string(), None))?)),
        Err(e) => Ok(Err(e)),
    }
}

fn no_shape(_: &ToolError) -> Option<serde_json::Value> {
    None
}

fn proposal_shape(error: &ToolError) -> Option<serde_json::Value> {
    error.proposal.as_ref().and_then(|p| serde_json::to_value(p).ok())
}

fn apply_shape(error: &ToolError) -> Option<serde_json::Value> {
    let proposal = error.proposal.as_ref()?;
    serde_json::to_value(ApplyResult { result: error.code.clone(), proposal: (**proposal).clone() }).ok()
}

#[tool_router]
impl FleetTools {
    /// A handler for one transport (`stdio` or `http`).
    pub fn new(service: Arc<FleetService>, transport: &'static str) -> Self {
        Self::with_router(service, Self::tool_router(), transport)
    }

    /// The tool router (for the REST surface and the OpenAPI document).
    pub(crate) fn router() -> ToolRouter<Self> {
        Self::tool_router()
    }

    /// The names of every tool served, sorted.
    pub fn tool_names() -> Vec<String> {
        let mut names: Vec<String> = Self::tool_router().list_all().into_iter().map(|t| t.name.to_string()).collect();
        names.sort();
        names
    }

    /// A handler sharing an already built router (HTTP builds a handler per request).
    fn with_router(service: Arc<FleetService>, tool_router: ToolRouter<Self>, transport: &'static str) -> Self {
        Self { service, tool_router, transport }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Caller {
        let client = ctx.client_info().map(|info| info.name).unwrap_or_else(|| "unknown".into());
        // Over HTTP the authentication middleware has said who this is.
        let authenticated = ctx.extensions.get::<http::request::Parts>().and_then(|p| p.extensions.get::<Caller>());
        let label = if self.transport == "rest" { "rest".to_string() } else { format!("mcp-{}:{client}", self.transport) };
        if let Some(who) = authenticated.filter(|_| matches!(self.transport, "http" | "rest")) {
            let id = if who.id == "anonymous" { label } else { format!("{}/{label}", who.id) };
            return Caller { id, role: who.role };
        }
        let config = self.service.config();
        let role = match self.transport {
            "stdio" => config.stdio_role,
            "agent" => config.agent_role,
            _ => config.http_role,
        };
        Caller { id: format!("mcp-{}:{client}", self.transport), role }
    }

    /// Admit, run, audit and answer one tool call.
    async fn run<T: Serialize>(
        &self,
        tool: &'static str,
        caller: &Caller,
        arguments: serde_json::Value,
        shape: fn(&ToolError) -> Option<serde_json::Value>,
        call: impl std::future::Future<Output = Result<T, ToolError>>,
    ) -> Result<CallToolResult, McpError> {
        let span = tracing::info_span!(
            "tool.call",
            tool,
            caller = %caller.id,
            transport = %self.transport,
            outcome = tracing::field::Empty
        );
        let result = match self.service.admit(caller, tool) {
            Ok(()) => to_value(call.instrument(span.clone()).await)?,
            Err(refused) => {
                tracing::warn!(tool, caller = %caller.id, code = %refused.code, "call refused");
                Err(refused)
            }
        };
        span.record("outcome", result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok"));
        self.service.audit_call(caller, tool, &arguments, &result);
        respond(result, shape)
    }

    #[tool(
        description = "List the Compute Fleets in a resource group, or in the whole subscription, with their target capacities.",
        annotations(title = "List fleets", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<FleetList>()
    )]
    async fn list_fleets(
        &self,
        Parameters(input): Parameters<ListFleetsInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("list_fleets", &caller, arguments, no_shape, self.service.list_fleets(input)).await
    }

    #[tool(
        description = "Read one Compute Fleet as it is now: spot and regular target capacities, every VM with its size, priority and state (Creating, Running, Deallocated), and what it costs per hour.",
        annotations(title = "Read fleet", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<FleetView>()
    )]
    async fn read_fleet(
        &self,
        Parameters(input): Parameters<ReadFleetInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("read_fleet", &caller, arguments, no_shape, self.service.read_fleet(input)).await
    }

    #[tool(
        description = "Estimate what a fleet costs per hour now and at a capacity mix (spot and regular target capacities, VM sizes), from list prices: current, proposed and delta per hour, the delta per month, and the proposed mix per size and priority. Existing VMs keep their sizes; new VMs are priced at the cheapest allowed size; a scale-in is assumed to remove the cheapest VMs first. Changes nothing.",
        annotations(title = "Estimate cost", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<fleetpilot_core::CostEstimate>()
    )]
    async fn estimate_cost(
        &self,
        Parameters(input): Parameters<EstimateCostInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("estimate_cost", &caller, arguments, no_shape, self.service.estimate_cost(input)).await
    }

    #[tool(
        description = "Show the guardrail policy of a fleet: capacity bounds per priority, step limits, allowed VM sizes, the approval threshold and dry-run.",
        annotations(title = "Get policy", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<PolicyView>()
    )]
    async fn get_policy(
        &self,
        Parameters(input): Parameters<GetPolicyInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("get_policy", &caller, arguments, no_shape, async { self.service.get_policy(input) }).await
    }

    #[tool(
        description = "Propose a scale change for a fleet (new spot and/or regular target capacity, or VM sizes) with a reason. Checks it against the guardrails and records it; changes nothing in Azure. Returns the proposal with its verdict (allow, needs_approval, deny), every violated bound, and the plan. A denial is an error result.",
        annotations(title = "Propose scale change", read_only_hint = true, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = schema_for_output::<fleetpilot_core::Proposal>()
    )]
    async fn propose_scale(
        &self,
        Parameters(input): Parameters<ProposeScaleInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("propose_scale", &caller, arguments, proposal_shape, self.service.propose_scale(input, &caller.id)).await
    }

    #[tool(
        description = "Apply a proposal by id. Re-reads the fleet and re-checks the guardrails, then changes capacity (deleting surplus idle VMs on scale-in), waits for Azure and verifies the result. Applying the same proposal again does nothing. A proposal that needs approval or is denied is an error result.",
        annotations(title = "Apply proposal", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<ApplyResult>()
    )]
    async fn apply_proposal(
        &self,
        Parameters(input): Parameters<ApplyProposalInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("apply_proposal", &caller, arguments, apply_shape, self.service.apply_proposal(input)).await
    }

    #[tool(
        description = "Run a read-only KQL query against the Log Analytics workspace (AzureMetrics, AzureActivity, Heartbeat, Perf, ComputeFleetEvents_CL, …). Returns the result tables; a query error is an error result that quotes the line and position, so the query can be fixed. Use a timespan (PT1H, P1D) or a where clause on TimeGenerated to keep queries small.",
        annotations(title = "Query logs (KQL)", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<QueryKqlResult>()
    )]
    async fn query_kql(
        &self,
        Parameters(input): Parameters<QueryKqlInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("query_kql", &caller, arguments, no_shape, self.service.query_kql(input)).await
    }

    #[tool(
        description = "Submit an Azure ML command job (the fields of a command job YAML: command, code, environment, compute, display_name, experiment_name, inputs, instance_count) to the workspace's compute cluster. Checked first against the job guardrails (active jobs per compute, nodes per job, node cost); a denial is an error result listing every reason. Returns the job with its status (it then queues for nodes).",
        annotations(title = "Submit ML job", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<fleetpilot_core::ml::MlJob>()
    )]
    async fn submit_ml_job(
        &self,
        Parameters(input): Parameters<crate::schema::SubmitMlJobInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("submit_ml_job", &caller, arguments, no_shape, self.service.submit_job(input)).await
    }

    #[tool(
        description = "Read an Azure ML job: status (NotStarted, Queued, Preparing, Running, Completed, Failed, Canceled), compute, command.",
        annotations(title = "Get ML job", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<fleetpilot_core::ml::MlJob>()
    )]
    async fn get_ml_job(
        &self,
        Parameters(input): Parameters<crate::schema::MlJobNameInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("get_ml_job", &caller, arguments, no_shape, self.service.get_ml_job(input)).await
    }

    #[tool(
        description = "Cancel an Azure ML job; its nodes are released. Returns the job with its status.",
        annotations(title = "Cancel ML job", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<fleetpilot_core::ml::MlJob>()
    )]
    async fn cancel_ml_job(
        &self,
        Parameters(input): Parameters<crate::schema::MlJobNameInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("cancel_ml_job", &caller, arguments, no_shape, self.service.cancel_job(input)).await
    }

    #[tool(
        description = "List recorded proposals, newest first, optionally for one fleet or one status (proposed, needs_approval, denied, dry_run, applied, failed).",
        annotations(title = "List proposals", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<ProposalList>()
    )]
    async fn list_proposals(
        &self,
        Parameters(input): Parameters<ListProposalsInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("list_proposals", &caller, arguments, no_shape, async { self.service.list_proposals(input) }).await
    }

    #[tool(
        description = "Approve a proposal that needs a human's approval (status needs_approval), as a person with the approver role. The proposal is then applied at once: the fleet is re-read and the guardrails re-checked against the state now (a hard bound still denies). Records who approved and when.",
        annotations(title = "Approve proposal", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<ApplyResult>()
    )]
    async fn approve_proposal(
        &self,
        Parameters(input): Parameters<ApproveProposalInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("approve_proposal", &caller, arguments, apply_shape, self.service.approve_proposal(input, &caller.id)).await
    }

    #[tool(
        description = "Reject a proposal that is not applied (needs_approval, proposed or approved), as a person with the approver role; it will never be applied. Records who rejected it, when and why.",
        annotations(title = "Reject proposal", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<fleetpilot_core::Proposal>()
    )]
    async fn reject_proposal(
        &self,
        Parameters(input): Parameters<RejectProposalInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        let result = async { self.service.reject_proposal(input, &caller.id) };
        self.run("reject_proposal", &caller, arguments, proposal_shape, result).await
    }

    #[tool(
        description = "List agent runs (started by alerts or chats), newest first: trigger, status, the agent's account, proposals made, tool calls and tokens.",
        annotations(title = "List agent runs", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<crate::schema::RunList>()
    )]
    async fn list_runs(
        &self,
        Parameters(input): Parameters<crate::schema::ListRunsInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("list_runs", &caller, arguments, no_shape, async { self.service.list_runs(input) }).await
    }

    #[tool(
        description = "Read one agent run by id, optionally with its transcript (JSON lines: model turns, tool calls and results, timings, tokens).",
        annotations(title = "Get agent run", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<fleetpilot_infra::RunRecord>()
    )]
    async fn get_run(
        &self,
        Parameters(input): Parameters<crate::schema::GetRunInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("get_run", &caller, arguments, no_shape, async { self.service.get_run(input) }).await
    }

    #[tool(
        description = "Forecast a fleet metric (default RequestsArrived, per step) from its Log Analytics history: MSTL with daily (or hourly) seasonality and an ETS trend, with prediction intervals; simpler models, said so in `model` and `note`, when history is short. Use the upper bound over the VMs' boot time to add capacity ahead of demand; never scale in on a forecast alone.",
        annotations(title = "Forecast demand", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<crate::schema::ForecastDemandResult>()
    )]
    async fn forecast_demand(
        &self,
        Parameters(input): Parameters<crate::schema::ForecastDemandInput>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&ctx);
        let arguments = serde_json::to_value(&input).unwrap_or_default();
        self.run("forecast_demand", &caller, arguments, no_shape, self.service.forecast_demand(input)).await
    }
}

#[tool_handler(router = self.tool_router, name = "fleetpilot", version = "0.1.0", instructions = "fleetpilot scales Azure Compute Fleets safely. Read with list_fleets, read_fleet and \
get_policy; look at telemetry with query_kql. To change capacity, call propose_scale with a reason: it checks the change against the fleet's guardrails \
and records a proposal without changing anything. Then call apply_proposal with the proposal id: it re-reads the \
fleet, re-checks the guardrails and carries the change out. A denial comes back as an error result listing every \
violated bound; change the proposal to fit them rather than retrying it.")]
impl ServerHandler for FleetTools {}

/// Serve the tools over stdio until the client closes the stream.
///
/// # Errors
/// When the transport fails to start or breaks.
pub async fn serve_stdio(service: Arc<FleetService>) -> std::io::Result<()> {
    let running = FleetTools::new(service, "stdio")
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    running.waiting().await.map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}

/// Settings of the HTTP transport.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Host header values accepted (DNS-rebinding protection); loopback names by default.
    pub allowed_hosts: Vec<String>,
    /// Origin header values accepted; empty means Origin is not checked.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted.
    pub max_request_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            max_request_body_bytes: 1024 * 1024,
        }
    }
}

/// The streamable HTTP service of the tools for one transport label (`http`, `rest`).
pub(crate) fn mcp_service(
    service: Arc<FleetService>,
    config: HttpConfig,
    cancel: CancellationToken,
    transport: &'static str,
) -> StreamableHttpService<FleetTools, LocalSessionManager> {
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.allowed_hosts)
        .with_json_response(true)
        .with_legacy_session_mode(false)
        .with_max_request_body_bytes(config.max_request_body_bytes)
        .with_cancellation_token(cancel);
    if !config.allowed_origins.is_empty() {
        mcp_config = mcp_config.with_allowed_origins(config.allowed_origins);
    }
    let router = FleetTools::tool_router();
    StreamableHttpService::new(
        move || Ok(FleetTools::with_router(service.clone(), router.clone(), transport)),
        LocalSessionManager::default().into(),
        mcp_config,
    )
}

/// An axum router serving the tools at `/mcp` (streamable HTTP, stateless, JSON responses).
pub fn http_router(service: Arc<FleetService>, config: HttpConfig, cancel: CancellationToken) -> axum::Router {
    axum::Router::new().nest_service("/mcp", mcp_service(service, config, cancel, "http"))
}
