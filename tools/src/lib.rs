//! fleetpilot's typed tools: their inputs and outputs, the logic behind them, and serving
//! them over MCP (stdio and streamable HTTP).
//!
//! - [`service`]: what each tool does, independent of any protocol. Mutations go
//!   `propose_scale` → `guardrails::check` → journal; `apply_proposal` → executor, which
//!   re-reads and re-checks before acting. There is no other path to a change.
//! - [`schema`]: inputs and outputs, whose JSON schemas are what clients see.
//! - [`mcp`]: the rmcp server.
//!
//! This crate knows MCP; it does not know any LLM wire format.

pub mod access;
pub mod auth;
pub mod dashboard;
pub mod mcp;
pub mod metrics;
pub mod rest;
pub mod schema;
pub mod service;

pub use access::{Caller, Role};
pub use dashboard::{DashboardConfig, dashboard_router};
pub use mcp::{FleetTools, HttpConfig, http_router, serve_stdio};
pub use service::{Clock, FleetService, ToolError, ToolsConfig};
