//! `GET /api/v1/info`: what this manager knows of the cluster.

use crate::{error::ApiError, wire::Info, AppState};
use axum::extract::State;
use axum::Json;

#[utoipa::path(get, path = "/api/v1/info", responses((status = 200, body = Info)), security(("bearer" = [])))]
pub async fn get(State(app): State<AppState>) -> Result<Json<Info>, ApiError> {
    let leader = app.store.is_leader();
    let info = app.store.view(|s| Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        cluster_name: s.cluster().map(|c| c.name.clone()).unwrap_or_default(),
        index: s.index(),
        leader,
        nodes: s.nodes().count(),
        services: s.services().count(),
        tasks: s.task_count(),
    });
    Ok(Json(info))
}
