//! The controller (UCP's ucp-controller): berth's HTTPS API.
//!
//! [`app`] builds the whole axum router over an [`AppState`]; tests call it with
//! `oneshot`, without a socket. [`serve`] runs it behind TLS. The controller
//! never talks to the orchestrator or to agents: it validates a request, writes
//! the change to the store in one batch, and reads the store to answer.

pub mod audit;
pub mod authn;
pub mod bundle;
pub mod error;
mod handlers;
pub mod lockout;
pub mod openapi;
pub mod password;
pub mod registry_access;
pub mod registry_auth;
pub mod registry_store;
mod router;
pub mod tls;
pub mod wire;

pub use api::auth::OWNER_LABEL;
pub use error::ApiError;
pub use handlers::cluster::ca_status;
pub use handlers::identity::{builtin_collection_ops, check_name, new_user_ops};
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

/// The auth worker's side of logins and syncs (ucp-auth-worker): LDAP,
/// implemented by the node's wiring over the `authworker` crate, so that
/// the controller does not depend on a directory client.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Checks `password` for `name` against the directory; the user (made
    /// just in time if the settings say so) when it is right, `None` when
    /// it is wrong or the name is unknown there.
    async fn login(
        &self,
        store: &store::Store,
        name: &str,
        password: &str,
    ) -> Result<Option<api::auth::User>, ApiError>;
    /// Runs a sync now; its report as JSON.
    async fn sync(&self, dry_run: bool) -> Result<serde_json::Value, ApiError>;
    /// The last sync's outcome as JSON.
    fn status(&self) -> serde_json::Value;
}

/// Everything a request handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: store::Store,
    pub logs: Arc<dyn LogSource>,
    /// The admin credential, as the SHA-256 of the token (the token itself is never kept).
    pub admin_token_sha256: [u8; 32],
    /// Decisions of the latest auth state, rebuilt when it changes.
    pub authz: Arc<auth::AuthorizerCache>,
    pub hasher: password::Hasher,
    pub lockout: Arc<lockout::Lockout>,
    /// LDAP, where the node runs an auth worker.
    pub ldap: Option<Arc<dyn Directory>>,
    /// This manager's audit log; `None` keeps none.
    pub audit: Option<audit::AuditLog>,
    /// Where this manager's API is reached (`host:port`), for the bundles
    /// it makes.
    pub api_host: String,
}

/// Rebuilds the decisions in the background as soon as the store's auth
/// objects change (a store watch), so a request rarely pays for the
/// rebuild (49 ms at 10,000 users) itself; a request that comes before the
/// rebuild is done still builds its own, so a decision is never stale.
pub fn spawn_authz_refresh(app: &AppState) -> tokio::task::JoinHandle<()> {
    let store = app.store.clone();
    let cache = app.authz.clone();
    tokio::spawn(async move {
        let mut changes = store.watch();
        loop {
            // Most changes are tasks': only a moved auth index costs a copy.
            let known = cache.index();
            let state = store.view(|s| (known != Some(s.auth_index())).then(|| s.clone()));
            if let Some(state) = state {
                let built =
                    tokio::task::spawn_blocking(move || auth::Authorizer::new(&state)).await;
                if let Ok(a) = built {
                    cache.offer(std::sync::Arc::new(a));
                }
            }
            match changes.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

impl AppState {
    pub fn new(
        store: store::Store,
        logs: Arc<dyn LogSource>,
        admin_token_sha256: [u8; 32],
    ) -> AppState {
        AppState {
            store,
            logs,
            admin_token_sha256,
            authz: Default::default(),
            hasher: Default::default(),
            lockout: Default::default(),
            ldap: None,
            audit: None,
            api_host: String::new(),
        }
    }
}
