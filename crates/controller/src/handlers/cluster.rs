//! `/api/v1/cluster`: the join tokens, shown and rotated as `docker swarm
//! join-token` does, and the cluster root CA, shown and rotated as `docker
//! swarm ca [--rotate]` does. (The cluster's keys are never served.)

use super::parse_json;
use crate::wire::{
    CaRotationStatus, CaStatus, ClusterSettings, JoinTokens, RotateJoinToken, UpdateCluster,
};
use crate::{error::ApiError, AppState};
use api::Op;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use std::time::Duration;

fn tokens(app: &AppState) -> Result<JoinTokens, ApiError> {
    let sec = app
        .store
        .view(|s| s.cluster().and_then(|c| c.security.clone()))
        .ok_or_else(|| {
            ApiError::Unavailable("this manager has not caught up with the cluster yet".into())
        })?;
    Ok(JoinTokens {
        worker: sec.join_tokens.worker,
        manager: sec.join_tokens.manager,
        managers: app.store.manager_addrs(),
    })
}

#[utoipa::path(get, path = "/api/v1/cluster/join-tokens",
    responses((status = 200, body = JoinTokens), (status = 503, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn join_tokens(State(app): State<AppState>) -> Result<Json<JoinTokens>, ApiError> {
    tokens(&app).map(Json)
}

#[utoipa::path(post, path = "/api/v1/cluster/join-tokens/rotate", request_body = RotateJoinToken,
    responses((status = 200, body = JoinTokens), (status = 400, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_join_token(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<JoinTokens>, ApiError> {
    let req: RotateJoinToken = parse_json(&body)?;
    for _ in 0..5 {
        let cluster = app.store.view(|s| s.cluster().cloned());
        let Some(mut cluster) = cluster else {
            return Err(ApiError::Unavailable("the store holds no cluster".into()));
        };
        let Some(sec) = cluster.security.as_mut() else {
            return Err(ApiError::Unavailable(
                "the cluster has no join tokens".into(),
            ));
        };
        let digest = ca::digest_of_pem(&sec.root_ca.cert_pem).map_err(|e| {
            tracing::error!(error = %e, "the cluster root CA in the store is unreadable");
            ApiError::Unavailable("the cluster root CA is unreadable".into())
        })?;
        let fresh = ca::JoinToken::generate(&digest).to_string();
        match req.role.as_str() {
            "worker" => sec.join_tokens.worker = fresh,
            "manager" => sec.join_tokens.manager = fresh,
            other => {
                return Err(ApiError::bad(
                    "role",
                    format!("{other:?} is not a role: worker or manager"),
                ))
            }
        }
        match app.store.update(vec![Op::Update(cluster.into())]).await {
            Ok(_) => return tokens(&app).map(Json),
            Err(store::StoreError::Apply(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the cluster keeps changing under this rotation; try again".into(),
    ))
}

fn security(app: &AppState) -> Result<api::ClusterSecurity, ApiError> {
    app.store
        .view(|s| s.cluster().and_then(|c| c.security.clone()))
        .ok_or_else(|| {
            ApiError::Unavailable("this manager has not caught up with the cluster yet".into())
        })
}

/// The CA's state as every manager can tell it from its copy of the store.
pub fn ca_status(state: &api::State) -> Option<Result<CaStatus, String>> {
    let sec = state.cluster()?.security.as_ref()?;
    let d = |pem: &str| {
        ca::digest_of_pem(pem)
            .map(|d| d.to_string())
            .map_err(|e| e.to_string())
    };
    let root_digest = match d(&sec.root_ca.cert_pem) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    let rotation = match &sec.root_rotation {
        None => None,
        Some(r) => {
            let new_root_digest = match d(&r.new_root.cert_pem) {
                Ok(d) => d,
                Err(e) => return Some(Err(e)),
            };
            let mut waiting_for: Vec<String> = state
                .nodes()
                .filter(|n| n.status.cert_root != new_root_digest)
                .map(|n| n.description.hostname.clone())
                .collect();
            waiting_for.sort();
            let nodes = state.nodes().count();
            Some(CaRotationStatus {
                new_root_digest,
                nodes,
                renewed: nodes - waiting_for.len(),
                waiting_for,
            })
        }
    };
    Some(Ok(CaStatus {
        trust_pem: sec.trust_pem(),
        root_digest,
        rotation,
    }))
}

fn status(app: &AppState) -> Result<CaStatus, ApiError> {
    match app.store.view(ca_status) {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => {
            tracing::error!(error = %e, "a root CA certificate in the store is unreadable");
            Err(ApiError::Unavailable(
                "the cluster root CA is unreadable".into(),
            ))
        }
        None => Err(ApiError::Unavailable(
            "this manager has not caught up with the cluster yet".into(),
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/cluster/ca",
    responses((status = 200, body = CaStatus), (status = 503, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn ca(State(app): State<AppState>) -> Result<Json<CaStatus>, ApiError> {
    status(&app).map(Json)
}

/// Starts a rotation of the cluster root CA: a new root, cross-signed by the
/// old one, signs every certificate from now on; nodes renew theirs as they
/// learn of it, and the managers end the rotation once every node has.
#[utoipa::path(post, path = "/api/v1/cluster/ca/rotate",
    responses((status = 200, body = CaStatus), (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_ca(State(app): State<AppState>) -> Result<Json<CaStatus>, ApiError> {
    let sec = security(&app)?;
    if sec.root_rotation.is_some() {
        return Err(ApiError::Conflict(
            "a root CA rotation is under way already: `berth ca` shows its progress".into(),
        ));
    }
    let old = ca::RootCa::from_stored(&ca::StoredRootCa {
        cert_pem: sec.root_ca.cert_pem.clone(),
        key_pem: sec.root_ca.key_pem.clone(),
    })
    .map_err(|e| {
        tracing::error!(error = %e, "the cluster root CA in the store is unusable");
        ApiError::Unavailable("the cluster root CA is unusable".into())
    })?;
    // Same name as the old root, as Swarm does: peers tell them apart by key.
    let new = ca::RootCa::generate(
        "berth cluster root CA",
        ca::DEFAULT_ROOT_CA_VALIDITY,
        std::time::SystemTime::now(),
    )
    .and_then(|new| old.cross_sign(&new).map(|cross| (new, cross)));
    let (new, cross_signed_pem) = new.map_err(|e| {
        tracing::error!(error = %e, "making the new root CA");
        ApiError::Unavailable("could not make the new root CA".into())
    })?;
    let stored = new.to_stored();
    let rotation = api::RootRotation {
        new_root: api::CaKeys {
            cert_pem: stored.cert_pem,
            key_pem: stored.key_pem,
        },
        cross_signed_pem,
    };
    let Some(mut cluster) = app.store.view(|s| s.cluster().cloned()) else {
        return Err(ApiError::Unavailable("the store holds no cluster".into()));
    };
    match cluster.security.as_mut() {
        // Written against the version read: a concurrent rotation or token
        // change makes this one fail with 409 instead of overwriting it.
        Some(sec) if sec.root_rotation.is_none() => sec.root_rotation = Some(rotation),
        _ => {
            return Err(ApiError::Conflict(
                "the cluster's security changed concurrently; try again".into(),
            ))
        }
    }
    app.store.update(vec![Op::Update(cluster.into())]).await?;
    tracing::info!(new_root = %new.digest(), "cluster root CA rotation started");
    status(&app).map(Json)
}

fn settings(app: &AppState) -> Result<ClusterSettings, ApiError> {
    app.store
        .view(|s| {
            s.cluster().map(|c| ClusterSettings {
                name: c.name.clone(),
                version: c.meta.version,
                task_history_limit: c.task_history_limit,
                dispatcher_heartbeat: c.heartbeat_period,
                cert_expiry: c.node_cert_validity,
                gossip_key_rotation: c.gossip_key_rotation,
            })
        })
        .ok_or_else(|| ApiError::Unavailable("the store holds no cluster".into()))
}

#[utoipa::path(get, path = "/api/v1/cluster",
    responses((status = 200, body = ClusterSettings), (status = 503, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn inspect(State(app): State<AppState>) -> Result<Json<ClusterSettings>, ApiError> {
    settings(&app).map(Json)
}

/// A duration field of an update, within its bounds.
fn bounded(field: &str, text: &str, min: Duration, max: Duration) -> Result<Duration, ApiError> {
    let d = api::duration::parse(text).map_err(|e| ApiError::bad(field, e))?;
    if d < min || d > max {
        return Err(ApiError::bad(
            field,
            format!(
                "{field} {text} is out of bounds: between {} and {}",
                api::duration::format(min),
                api::duration::format(max)
            ),
        ));
    }
    Ok(d)
}

/// Changes the cluster's settings, as `docker swarm update` does. Nodes
/// take a new heartbeat period at their next registration, and a new
/// certificate expiry at their next renewal.
#[utoipa::path(post, path = "/api/v1/cluster/update", request_body = UpdateCluster,
    responses((status = 200, body = ClusterSettings), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<ClusterSettings>, ApiError> {
    let req: UpdateCluster = parse_json(&body)?;
    // Everything is checked before anything is written.
    let heartbeat = req
        .dispatcher_heartbeat
        .as_deref()
        .map(|t| {
            bounded(
                "dispatcher_heartbeat",
                t,
                Duration::from_millis(500),
                Duration::from_secs(3600),
            )
        })
        .transpose()?;
    let expiry = req
        .cert_expiry
        .as_deref()
        .map(|t| {
            bounded(
                "cert_expiry",
                t,
                Duration::from_secs(3600),
                Duration::from_secs(10 * 365 * 24 * 3600),
            )
        })
        .transpose()?;
    // Zero never rotates; otherwise long enough for the three steps of a
    // rotation, a grace apart (the manager's grace is a quarter of it at most).
    let rotation = req
        .gossip_key_rotation
        .as_deref()
        .map(|t| match api::duration::parse(t) {
            Ok(d) if d.is_zero() => Ok(d),
            _ => bounded(
                "gossip_key_rotation",
                t,
                Duration::from_secs(10 * 60),
                Duration::from_secs(365 * 24 * 3600),
            ),
        })
        .transpose()?;
    if let Some(n) = req.task_history_limit {
        if n > 1000 {
            return Err(ApiError::bad(
                "task_history_limit",
                format!("{n} is more than 1000"),
            ));
        }
    }
    let Some(mut cluster) = app.store.view(|s| s.cluster().cloned()) else {
        return Err(ApiError::Unavailable("the store holds no cluster".into()));
    };
    if let Some(v) = req.version {
        if v != cluster.meta.version {
            return Err(ApiError::Conflict(format!(
                "the cluster was changed since version {v} (it is at {}): read it again and retry",
                cluster.meta.version
            )));
        }
    }
    if let Some(h) = heartbeat {
        cluster.heartbeat_period = h;
    }
    if let Some(e) = expiry {
        cluster.node_cert_validity = e;
    }
    if let Some(n) = req.task_history_limit {
        cluster.task_history_limit = n;
    }
    if let Some(r) = rotation {
        cluster.gossip_key_rotation = r;
    }
    match app.store.update(vec![Op::Update(cluster.into())]).await {
        Ok(_) => settings(&app).map(Json),
        Err(store::StoreError::Apply(_)) => Err(ApiError::Conflict(
            "the cluster changed concurrently: read it again and retry".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /ca` (no credential, as UCP's): the cluster root CA's certificate(s)
/// in PEM, which every manager's API certificate chains to. A client pins
/// it on first contact after comparing its fingerprint
/// (`berth ca fingerprint`) with the one the admin shared.
pub async fn trust_pem(State(app): State<AppState>) -> Result<String, ApiError> {
    app.store
        .view(|s| {
            s.cluster()
                .and_then(|c| c.security.as_ref())
                .map(|sec| sec.trust_pem())
        })
        .ok_or_else(|| {
            ApiError::Unavailable("this manager has not caught up with the cluster yet".into())
        })
}

/// `GET /api/v1/auth/settings` (admins): sessions, lockout, audit and LDAP,
/// with the LDAP reader's password hidden.
pub async fn auth_settings(
    State(app): State<AppState>,
) -> Result<Json<api::auth::AuthSettings>, ApiError> {
    let mut settings = app
        .store
        .view(|s| s.cluster().map(|c| c.auth.clone()))
        .ok_or_else(|| ApiError::Unavailable("the store holds no cluster".into()))?;
    if let Some(l) = settings.ldap.as_mut() {
        if !l.reader_password.is_empty() {
            l.reader_password = REDACTED.into();
        }
    }
    Ok(Json(settings))
}

/// What a hidden secret reads as; sent back unchanged, it keeps the stored one.
pub const REDACTED: &str = "<redacted>";

/// `POST /api/v1/auth/settings` (admins): replaces the settings whole. An
/// LDAP reader password of `<redacted>` keeps the stored one.
pub async fn set_auth_settings(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<api::auth::AuthSettings>, ApiError> {
    let mut req: api::auth::AuthSettings = parse_json(&body)?;
    if req.session_lifetime < Duration::from_secs(60) {
        return Err(ApiError::bad(
            "session_lifetime",
            "a session must last at least a minute",
        ));
    }
    if req.session_max_lifetime < req.session_lifetime {
        return Err(ApiError::bad(
            "session_max_lifetime",
            "the maximum lifetime must be at least the session lifetime",
        ));
    }
    if let Some(l) = &req.ldap {
        if l.servers.is_empty() {
            return Err(ApiError::bad(
                "ldap.servers",
                "name at least one LDAP server (ldap://host:389)",
            ));
        }
        for (i, url) in l.servers.iter().enumerate() {
            if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
                return Err(ApiError::bad(
                    format!("ldap.servers[{i}]"),
                    format!("{url:?} is not an LDAP URL (ldap://host:port or ldaps://host:port)"),
                ));
            }
        }
        if l.user_base_dn.trim().is_empty() {
            return Err(ApiError::bad(
                "ldap.user_base_dn",
                "name where users are searched",
            ));
        }
        if l.username_attr.trim().is_empty() {
            return Err(ApiError::bad(
                "ldap.username_attr",
                "name the attribute that holds user names",
            ));
        }
    }
    for _ in 0..5 {
        let Some(mut cluster) = app.store.view(|s| s.cluster().cloned()) else {
            return Err(ApiError::Unavailable("the store holds no cluster".into()));
        };
        if let (Some(new), Some(old)) = (req.ldap.as_mut(), cluster.auth.ldap.as_ref()) {
            if new.reader_password == REDACTED {
                new.reader_password = old.reader_password.clone();
            }
        }
        cluster.auth = req.clone();
        match app.store.update(vec![Op::Update(cluster.into())]).await {
            Ok(_) => return auth_settings(State(app)).await,
            Err(store::StoreError::Apply(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the cluster keeps changing; try again".into(),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct SyncQuery {
    #[serde(default)]
    pub dry_run: bool,
}

fn directory(app: &AppState) -> Result<&std::sync::Arc<dyn crate::Directory>, ApiError> {
    app.ldap.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "this manager runs no auth worker (LDAP is not available here)".into(),
        )
    })
}

/// `POST /api/v1/auth/ldap/sync[?dry_run=true]` (admins).
pub async fn ldap_sync(
    State(app): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<SyncQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    directory(&app)?.sync(q.dry_run).await.map(Json)
}

/// `GET /api/v1/auth/ldap/status` (admins).
pub async fn ldap_status(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(directory(&app)?.status()))
}
