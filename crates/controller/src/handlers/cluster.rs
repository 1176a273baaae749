//! `/api/v1/cluster`: the join tokens, shown and rotated as `docker swarm
//! join-token` does. (The cluster's keys are never served.)

use super::parse_json;
use crate::wire::{JoinTokens, RotateJoinToken};
use crate::{error::ApiError, AppState};
use api::Op;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;

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
