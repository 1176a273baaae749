//! The manager's auth worker (ucp-auth-worker) as the controller sees it:
//! logins checked against LDAP (users made just in time), syncs on demand
//! and their status, over the `authworker` crate. The worker's periodic
//! sync and token cleanup run on the leader only.

use controller::ApiError;

pub(super) struct LdapDirectory {
    pub(super) worker: authworker::WorkerHandle,
}

fn unreachable(e: authworker::DirectoryError) -> ApiError {
    ApiError::Unavailable(format!(
        "the LDAP directory could not check the password: {e}"
    ))
}

#[async_trait::async_trait]
impl controller::Directory for LdapDirectory {
    async fn login(
        &self,
        store: &store::Store,
        name: &str,
        password: &str,
    ) -> Result<Option<api::auth::User>, ApiError> {
        let Some(config) = store.view(|s| s.cluster().and_then(|c| c.auth.ldap.clone())) else {
            return Ok(None);
        };
        let Some(found) = authworker::authenticate(&config, name, password)
            .await
            .map_err(unreachable)?
        else {
            return Ok(None);
        };
        match authworker::provision(store, &config, &found).await {
            Ok(user) => Ok(Some(user)),
            // The password was right, but the name is not (or not yet) a
            // berth user this directory may sign in: as a wrong password.
            Err(
                e @ (authworker::ProvisionError::JitDisabled { .. }
                | authworker::ProvisionError::NameTaken { .. }
                | authworker::ProvisionError::BadName(_)),
            ) => {
                tracing::info!(user = %name, reason = %e, "LDAP login not admitted");
                Ok(None)
            }
            Err(authworker::ProvisionError::Store(e)) => Err(e.into()),
        }
    }

    async fn sync(&self, dry_run: bool) -> Result<serde_json::Value, ApiError> {
        match self.worker.sync_now(dry_run).await {
            Ok(report) => {
                serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))
            }
            Err(authworker::SyncError::NotConfigured) => Err(ApiError::bad(
                "ldap",
                "LDAP is not configured: set it with `berth auth ldap set`",
            )),
            Err(authworker::SyncError::Directory(e)) => {
                Err(ApiError::Unavailable(format!("the LDAP sync failed: {e}")))
            }
            Err(e @ authworker::SyncError::Store { .. }) => {
                Err(ApiError::Unavailable(format!("the LDAP sync failed: {e}")))
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.worker.status()).unwrap_or_default()
    }
}
