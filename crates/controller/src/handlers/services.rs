//! `/api/v1/services`: create, read, update, roll back and remove services,
//! and read their tasks' output.

use super::parse_json;
use crate::wire::{Created, Rollback, ServiceStatus, ServiceWithStatus, UpdateService};
use crate::{error::ApiError, AppState};
use api::{Op, Service, ServiceMode, ServiceSpec, TaskState, UpdateState, UpdateStatus};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

/// Finds a service by id, name, or a unique id prefix (as the docker CLI does).
pub(crate) fn resolve<'a>(s: &'a api::State, key: &str) -> Result<&'a Service, ApiError> {
    if let Some(svc) = s.service(key).or_else(|| s.service_by_name(key)) {
        return Ok(svc);
    }
    let found: Vec<&Service> = s
        .services()
        .filter(|x| x.meta.id.starts_with(key))
        .collect();
    match found.len() {
        1 => Ok(found[0]),
        0 => Err(ApiError::NotFound(format!("service {key} not found"))),
        _ => Err(ApiError::bad(
            "id",
            format!("{key:?} matches more than one service: use the full id or the name"),
        )),
    }
}

pub(crate) fn status_of(s: &api::State, svc: &Service) -> ServiceStatus {
    let mut st = ServiceStatus::default();
    for t in s.tasks_by_service(&svc.meta.id) {
        if t.desired_state == TaskState::Running {
            st.desired_tasks += 1;
            if t.status.state == TaskState::Running {
                st.running_tasks += 1;
            }
        }
    }
    if let ServiceMode::Replicated { replicas } = svc.spec.mode {
        st.desired_tasks = replicas;
    }
    st
}

#[utoipa::path(get, path = "/api/v1/services", responses((status = 200, body = Vec<ServiceWithStatus>)), security(("bearer" = [])))]
pub async fn list(State(app): State<AppState>) -> Json<Vec<ServiceWithStatus>> {
    Json(app.store.view(|s| {
        s.services()
            .map(|svc| ServiceWithStatus {
                service_status: status_of(s, svc),
                service: svc.clone(),
            })
            .collect()
    }))
}

#[utoipa::path(get, path = "/api/v1/services/{id}", params(("id" = String, Path, description = "service id, name or unique id prefix")),
    responses((status = 200, body = ServiceWithStatus), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn inspect(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<ServiceWithStatus>, ApiError> {
    app.store.view(|s| {
        let svc = resolve(s, &key)?;
        Ok(Json(ServiceWithStatus {
            service_status: status_of(s, svc),
            service: svc.clone(),
        }))
    })
}

#[utoipa::path(post, path = "/api/v1/services", request_body = api::ServiceSpec,
    responses((status = 201, body = Created), (status = 400, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let spec: ServiceSpec = parse_json(&body)?;
    api::validate::service_spec(&spec)?;
    let id = api::new_id();
    let service = Service::new(&id, spec);
    let change = app.store.update(vec![Op::Create(service.into())]).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id,
            version: change.index,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/services/{id}/update", params(("id" = String, Path, description = "service id, name or unique id prefix")),
    request_body = UpdateService,
    responses((status = 200, body = Created), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    State(app): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Created>, ApiError> {
    let req: UpdateService = parse_json(&body)?;
    api::validate::service_spec(&req.spec)?;
    let mut svc = app.store.view(|s| resolve(s, &key).cloned())?;
    if req.spec.name != svc.spec.name {
        return Err(ApiError::bad("spec.name", "a service cannot be renamed"));
    }
    if req.version != svc.meta.version {
        return Err(ApiError::Conflict(format!(
            "service {} was changed since version {} (it is at {}): read it again and retry",
            svc.spec.name, req.version, svc.meta.version
        )));
    }
    if req.spec == svc.spec {
        return Ok(Json(Created {
            id: svc.meta.id,
            version: svc.meta.version,
        }));
    }
    let previous = std::mem::replace(&mut svc.spec, req.spec);
    // As docker keeps PreviousSpec: every update can be rolled back, a scale too.
    let template_changed = previous.task_template != svc.spec.task_template;
    svc.previous_spec = Some(previous);
    // Only a change of what the tasks run starts a rolling update; a change of
    // the replica count alone is the orchestrator's business.
    if template_changed {
        svc.spec_version += 1;
        svc.update_status = None;
    }
    let id = svc.meta.id.clone();
    let change = app.store.update(vec![Op::Update(svc.into())]).await?;
    Ok(Json(Created {
        id,
        version: change.index,
    }))
}

#[utoipa::path(post, path = "/api/v1/services/{id}/rollback", params(("id" = String, Path, description = "service id, name or unique id prefix")),
    request_body = Rollback,
    responses((status = 200, body = Created), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn rollback(
    State(app): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Created>, ApiError> {
    let req: Rollback = parse_json(&body)?;
    let mut svc = app.store.view(|s| resolve(s, &key).cloned())?;
    if req.version != svc.meta.version {
        return Err(ApiError::Conflict(format!(
            "service {} was changed since version {}: read it again and retry",
            svc.spec.name, req.version
        )));
    }
    let Some(previous) = svc.previous_spec.take() else {
        return Err(ApiError::bad(
            "id",
            format!(
                "service {} has no previous spec to roll back to",
                svc.spec.name
            ),
        ));
    };
    let current = std::mem::replace(&mut svc.spec, previous);
    let template_changed = current.task_template != svc.spec.task_template;
    svc.previous_spec = Some(current);
    if !template_changed {
        // Nothing for the updater to roll: the rollback of a scale is a scale.
        let id = svc.meta.id.clone();
        let change = app.store.update(vec![Op::Update(svc.into())]).await?;
        return Ok(Json(Created {
            id,
            version: change.index,
        }));
    }
    svc.spec_version += 1;
    svc.update_status = Some(UpdateStatus {
        state: UpdateState::RollbackStarted,
        started_at: api::Timestamp::now(),
        completed_at: None,
        message: "manually requested rollback".into(),
    });
    let id = svc.meta.id.clone();
    let change = app.store.update(vec![Op::Update(svc.into())]).await?;
    Ok(Json(Created {
        id,
        version: change.index,
    }))
}

#[utoipa::path(delete, path = "/api/v1/services/{id}", params(("id" = String, Path, description = "service id, name or unique id prefix")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn remove(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let svc = app.store.view(|s| resolve(s, &key).cloned())?;
    // The orchestrator sees the service gone and stops its tasks; the reaper
    // deletes them once they have stopped.
    app.store
        .update(vec![Op::Delete {
            kind: api::Kind::Service,
            id: svc.meta.id,
            version: Some(svc.meta.version),
        }])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// Only the last N lines of each task.
    pub tail: Option<usize>,
    /// Only lines after this time (RFC 3339).
    pub since: Option<String>,
    /// Only this task (id or unique prefix).
    pub task: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/services/{id}/logs", params(("id" = String, Path, description = "service id, name or unique id prefix"), LogsQuery),
    responses((status = 200, body = Vec<api::dispatch::LogLine>), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn logs(
    State(app): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Vec<api::dispatch::LogLine>>, ApiError> {
    let since = match q.since.as_deref() {
        None => None,
        Some(s) => Some(
            humantime_rfc3339(s)
                .ok_or_else(|| ApiError::bad("since", format!("{s:?} is not an RFC 3339 time")))?,
        ),
    };
    let tasks: Vec<api::Task> = app.store.view(|s| {
        let svc = resolve(s, &key)?;
        Ok::<_, ApiError>(
            s.tasks_by_service(&svc.meta.id)
                .filter(|t| q.task.as_deref().is_none_or(|k| t.meta.id.starts_with(k)))
                .filter(|t| t.status.state >= TaskState::Starting)
                .cloned()
                .collect(),
        )
    })?;
    let mut lines = Vec::new();
    for t in &tasks {
        match app.logs.task_logs(t, q.tail, since).await {
            Ok(l) => lines.extend(l),
            // A task whose node no longer has its output is reported, not fatal.
            Err(e) => tracing::debug!(task = %t.meta.id, error = %e, "no logs for task"),
        }
    }
    lines.sort_by_key(|l| l.time);
    Ok(Json(lines))
}

fn humantime_rfc3339(s: &str) -> Option<api::Timestamp> {
    serde_json::from_value::<api::Timestamp>(serde_json::Value::String(s.to_string())).ok()
}
