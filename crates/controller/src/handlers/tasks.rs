//! `/api/v1/tasks`: tasks, filtered by service or node.

use crate::authn::Caller;
use crate::{error::ApiError, AppState};
use api::Task;
use auth::Operation;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TaskFilter {
    /// Service id, name or unique id prefix.
    pub service: Option<String>,
    /// Node id, hostname or unique id prefix.
    pub node: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tasks", params(TaskFilter),
    responses((status = 200, body = Vec<api::Task>), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<TaskFilter>,
) -> Result<Json<Vec<Task>>, ApiError> {
    let view = Operation::named("task.view");
    app.store.view(|s| {
        let service = f
            .service
            .as_deref()
            .map(|k| super::services::resolve(s, k))
            .transpose()?;
        let node = f
            .node
            .as_deref()
            .map(|k| super::nodes::resolve(s, k))
            .transpose()?;
        let tasks: Vec<Task> = match (service, node) {
            (Some(svc), _) => s.tasks_by_service(&svc.meta.id).cloned().collect(),
            (None, Some(n)) => s.tasks_by_node(&n.meta.id).cloned().collect(),
            (None, None) => s.tasks().cloned().collect(),
        };
        let node_id = node.map(|n| n.meta.id.clone());
        Ok(Json(
            tasks
                .into_iter()
                .filter(|t| node_id.is_none() || t.node_id == node_id)
                .filter(|t| caller.may(view, auth::scope::task_collection(s, t)))
                .collect(),
        ))
    })
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", params(("id" = String, Path, description = "task id or unique id prefix")),
    responses((status = 200, body = api::Task), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn inspect(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let allowed = |s: &api::State, t: &Task| -> Result<Json<Task>, ApiError> {
        caller.require(
            Operation::named("task.view"),
            auth::scope::task_collection(s, t),
        )?;
        Ok(Json(t.clone()))
    };
    app.store.view(|s| {
        if let Some(t) = s.task(&key) {
            return allowed(s, t);
        }
        let found: Vec<&Task> = s.tasks().filter(|t| t.meta.id.starts_with(&key)).collect();
        match found.len() {
            1 => allowed(s, found[0]),
            0 => Err(ApiError::NotFound(format!("task {key} not found"))),
            _ => Err(ApiError::bad(
                "id",
                format!("{key:?} matches more than one task: use the full id"),
            )),
        }
    })
}
