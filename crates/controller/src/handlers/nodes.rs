//! `/api/v1/nodes`: the nodes of the cluster.

use crate::{error::ApiError, AppState};
use api::Node;
use axum::extract::{Path, State};
use axum::Json;

#[utoipa::path(get, path = "/api/v1/nodes", responses((status = 200, body = Vec<api::Node>)), security(("bearer" = [])))]
pub async fn list(State(app): State<AppState>) -> Json<Vec<Node>> {
    Json(app.store.view(|s| s.nodes().cloned().collect()))
}

#[utoipa::path(get, path = "/api/v1/nodes/{id}", params(("id" = String, Path, description = "node id, unique id prefix or hostname")),
    responses((status = 200, body = api::Node), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn inspect(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Node>, ApiError> {
    app.store.view(|s| resolve(s, &key).cloned()).map(Json)
}

/// Finds a node by id, hostname, or a unique id prefix (as the docker CLI does).
pub(crate) fn resolve<'a>(s: &'a api::State, key: &str) -> Result<&'a Node, ApiError> {
    if let Some(n) = s.node(key) {
        return Ok(n);
    }
    let by_name: Vec<&Node> = s
        .nodes()
        .filter(|n| n.description.hostname == key)
        .collect();
    if by_name.len() == 1 {
        return Ok(by_name[0]);
    }
    let by_prefix: Vec<&Node> = s.nodes().filter(|n| n.meta.id.starts_with(key)).collect();
    match (by_name.len(), by_prefix.len()) {
        (0, 1) => Ok(by_prefix[0]),
        (0, 0) => Err(ApiError::NotFound(format!("node {key} not found"))),
        _ => Err(ApiError::bad(
            "id",
            format!("{key:?} matches more than one node: use the full id"),
        )),
    }
}
