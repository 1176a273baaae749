//! The controller (UCP's ucp-controller): berth's HTTPS API.
//!
//! [`app`] builds the whole axum router over an [`AppState`]; tests call it with
//! `oneshot`, without a socket. [`serve`] runs it behind TLS. The controller
//! never talks to the orchestrator or to agents: it validates a request, writes
//! the change to the store in one batch, and reads the store to answer.

pub mod auth;
pub mod error;
mod handlers;
pub mod openapi;
mod router;
pub mod tls;
pub mod wire;

pub use error::ApiError;
pub use handlers::cluster::ca_status;
pub use router::app;
pub use tls::serve;

use std::sync::Arc;

/// Where task output comes from: the agent that ran the task. On a single node
/// that is the local agent; across nodes a call to the task's node.
#[async_trait::async_trait]
pub trait LogSource: Send + Sync + 'static {
    async fn task_logs(
        &self,
        task: &api::Task,
        tail: Option<usize>,
        since: Option<api::Timestamp>,
    ) -> Result<Vec<api::dispatch::LogLine>, String>;
}

/// Everything a request handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: store::Store,
    pub logs: Arc<dyn LogSource>,
    /// The admin credential, as the SHA-256 of the token (the token itself is never kept).
    pub admin_token_sha256: [u8; 32],
}
