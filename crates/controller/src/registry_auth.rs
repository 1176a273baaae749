//! The registry served by a manager (DTR beside UCP): `/v2/` over the
//! Raft store's metadata and this manager's blob store, behind Docker's
//! token authentication with the cluster's identities — `/auth/token`
//! takes a user's password (the directory's for an LDAP user, with the
//! login's lockout) or one of its API tokens, and grants what
//! [`crate::registry_access`] allows; the tokens are signed with the key in
//! the cluster object, so any manager verifies another's.

use crate::authn::{token_hash, API_TOKEN_PREFIX};
use crate::registry_access::{granted, RepoAction};
use crate::AppState;
use api::auth::{TokenPurpose, User};
use api::{Kind, Object, Timestamp};
use async_trait::async_trait;
use registry::token::{
    endpoint, Authority, Login, Principal, Refused, ResourceScope, Signer, SigningKey, TokenAccess,
    TokenService, Verifier,
};
use std::path::Path;
use std::sync::Arc;

/// The `service` of the registry's tokens (their audience), and their issuer.
pub const SERVICE: &str = "berth-registry";
pub const ISSUER: &str = "berth";

struct ClusterAuthority {
    app: AppState,
}

fn user_named(app: &AppState, name: &str) -> Option<User> {
    app.store
        .view(|s| match s.auth_by_key(&api::auth::account_key(name)) {
            Some(Object::User(u)) => Some(u.clone()),
            _ => None,
        })
}

#[async_trait]
impl Authority for ClusterAuthority {
    async fn authenticate(&self, login: &Login) -> Result<Option<Principal>, Refused> {
        let Some(creds) = &login.credentials else {
            return Ok(None);
        };
        let name = creds.user.trim().to_lowercase();
        if creds.secret.starts_with(API_TOKEN_PREFIX) {
            // An API token: its user must be the one named.
            let key = api::auth::token_secret_key(&hex::encode(token_hash(&creds.secret)));
            let user = self.app.store.view(|s| match s.auth_by_key(&key) {
                Some(Object::Token(t))
                    if t.purpose == TokenPurpose::Api
                        && t.expires_at.is_none_or(|e| e > Timestamp::now()) =>
                {
                    match s.auth_object(Kind::User, &t.user_id) {
                        Some(Object::User(u)) => Some(u.clone()),
                        _ => None,
                    }
                }
                _ => None,
            });
            return match user {
                Some(u) if u.name == name && !u.disabled => Ok(Some(Principal { name: u.name })),
                _ => Err(Refused::BadCredentials),
            };
        }
        let addr = login.client.map(|a| a.ip());
        match crate::handlers::session::check_password(&self.app, &name, &creds.secret, addr).await
        {
            Ok((user, _)) => Ok(Some(Principal { name: user.name })),
            Err(crate::ApiError::TooManyRequests { .. }) => Err(Refused::TooManyAttempts),
            Err(e @ (crate::ApiError::Unavailable(_) | crate::ApiError::OutcomeUnknown(_))) => {
                Err(Refused::Unavailable(e.to_string()))
            }
            Err(_) => Err(Refused::BadCredentials),
        }
    }

    async fn grant(
        &self,
        principal: Option<&Principal>,
        requested: &[ResourceScope],
    ) -> Vec<ResourceScope> {
        let user = principal.and_then(|p| user_named(&self.app, &p.name));
        self.app.store.view(|s| {
            requested
                .iter()
                .filter_map(|r| match r.resource_type.as_str() {
                    "repository" => {
                        let wanted: Vec<RepoAction> = r
                            .actions
                            .iter()
                            .filter_map(|a| RepoAction::parse(a))
                            .collect();
                        let got = granted(s, user.as_ref(), &r.name, &wanted);
                        let names: Vec<&str> = got.iter().map(|a| a.as_str()).collect();
                        Some(ResourceScope::new("repository", &r.name, &names))
                    }
                    // The catalog lists every repository: admins only.
                    "registry"
                        if r.name == "catalog"
                            && user.as_ref().is_some_and(|u| u.admin && !u.disabled) =>
                    {
                        Some(ResourceScope::new("registry", "catalog", &["*"]))
                    }
                    _ => None,
                })
                .collect()
        })
    }
}

/// What a manager needs to serve the registry.
pub struct RegistryParts {
    /// The signing key (the cluster object's `registry_key_pem`).
    pub key_pem: String,
    /// Where the blobs are kept (the data dir's `registry/`).
    pub blob_root: std::path::PathBuf,
}

/// `/v2/…` and `/auth/token` for `app`'s cluster, to merge into the API's
/// router. The token realm is this manager's own address (`app.api_host`).
pub async fn router(app: &AppState, parts: RegistryParts) -> Result<axum::Router, String> {
    let key = SigningKey::from_pkcs8_pem(&parts.key_pem)
        .map_err(|e| format!("the registry's signing key is unusable: {e}"))?;
    let verifier = Arc::new(Verifier::new(ISSUER, SERVICE, [key.public_key().clone()]));
    let signer = Arc::new(Signer::new(key, ISSUER));
    let blobs = registry::FsBlobStore::open(parts.blob_root.clone())
        .await
        .map_err(|e| {
            format!(
                "opening the registry's blob store in {}: {e}",
                parts.blob_root.display()
            )
        })?;
    let realm = format!("https://{}/auth/token", app.api_host);
    let reg = registry::Registry::new(
        Arc::new(blobs),
        Arc::new(crate::registry_store::RaftMetadata::new(app.store.clone())),
        Arc::new(TokenAccess::new(verifier, realm)),
    );
    let tokens = TokenService::new(
        signer,
        Arc::new(ClusterAuthority { app: app.clone() }),
        SERVICE,
    )
    .with_basic_realm("berth");
    Ok(registry::app(reg).route("/auth/token", endpoint(tokens)))
}

/// Where a manager keeps its registry's blobs, in its data dir.
pub fn blob_root(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("registry")
}
