//! Azure's wire formats and HTTP, and the deterministic executor.
//!
//! - [`arm`]: a REST client for Azure Resource Manager — credentials and a token cache,
//!   retries with backoff that honour `Retry-After`, long-running operations
//!   (`Azure-AsyncOperation` and `Location` polling), correlation ids.
//! - [`AzureApi`]: the typed seam the rest of fleetpilot uses; [`ArmAzureApi`] implements it
//!   over [`arm::ArmClient`].
//! - [`executor`]: carries out an allowed proposal, idempotently, with a journal in [`store`].
//! - [`stack`] and [`provision`]: the recipe's whole architecture as data, and its plan, apply
//!   and destroy (the executor for whole stacks).
//!
//! This crate does not know whether it talks to Azure or to the emulator: it sees a base URL
//! and a credential. It knows nothing of MCP, LLMs or guardrail policy.

pub mod api;
pub mod arm;
pub mod clock;
pub mod credential;
pub mod error;
pub mod executor;
pub mod provision;
pub mod stack;
pub mod store;

pub use api::{ArmAzureApi, AzureApi};
pub use arm::{ArmClient, ArmConfig, RetryConfig};
pub use clock::Clock;
pub use credential::CredentialConfig;
pub use error::AzureError;
pub use executor::{Applied, ExecuteError, Executor, ExecutorConfig, Recovered};
pub use store::{AuditFilter, AuditRecord, RunRecord, Store, StoreError};
