//! `/api/v1/services`: create, read, update, roll back and remove services,
//! and read their tasks' output.

use super::parse_json;
use crate::authn::Caller;
use crate::wire::{Created, Rollback, ServiceStatus, ServiceWithStatus, UpdateService};
use crate::{error::ApiError, AppState};
use api::auth::COLLECTION_LABEL;
use api::{Op, Service, ServiceMode, ServiceSpec, TaskState, UpdateState, UpdateStatus};
use auth::Operation;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

/// Decides where a service being created or updated lives, and whether the
/// caller may put it there: its collection comes from its label (kept from
/// the previous spec when the update drops it; a new service's default is
/// the caller's private collection), must exist, and the caller needs
/// `create` there (or `update` where it stays). The owner label is written
/// by the API alone. A task that runs on the host unconfined (every `exec`
/// task) also takes `service.privileged`.
fn place(
    s: &api::State,
    caller: &Caller,
    spec: &mut ServiceSpec,
    previous: Option<&ServiceSpec>,
) -> Result<Vec<Op>, ApiError> {
    let prev_collection = previous.and_then(|p| p.labels.get(COLLECTION_LABEL).cloned());
    let wanted = match spec.labels.get(COLLECTION_LABEL) {
        Some(c) => auth::collection::normalize(c)
            .map_err(|e| ApiError::bad(format!("labels.{COLLECTION_LABEL}"), e.to_string()))?,
        None => match &prev_collection {
            Some(c) => c.clone(),
            None if previous.is_some() => api::auth::ROOT_COLLECTION.to_string(),
            None => api::auth::private_collection(&caller.name),
        },
    };
    let mut ops = Vec::new();
    let private = api::auth::private_collection(&caller.name);
    if s.auth_by_key(&api::auth::collection_key(&wanted)).is_none() && wanted == private {
        // The caller's own collection is made on first use (a user made
        // before it, or the admin token of a cluster without users).
        ops = super::identity::builtin_collection_ops(s);
        ops.push(Op::Create(
            api::auth::Collection {
                meta: api::Meta::new(api::new_id()),
                path: private,
            }
            .into(),
        ));
    } else if s.auth_by_key(&api::auth::collection_key(&wanted)).is_none() {
        return Err(ApiError::NotFound(format!(
            "collection {wanted} does not exist (create it with `berth collection create {wanted}`)"
        )));
    }
    match previous {
        None => caller.require(Operation::named("service.create"), &wanted)?,
        Some(p) => {
            let from = auth::scope::service_collection_of(p);
            caller.require(Operation::named("service.update"), from)?;
            if from != wanted {
                caller.require(Operation::named("service.create"), &wanted)?;
            }
        }
    }
    if spec.task_template.runtime == api::Runtime::Exec {
        caller.require(Operation::named("service.privileged"), &wanted).map_err(|_| {
            ApiError::Forbidden(format!(
                "{} may not run exec tasks in {wanted}: they run unconfined on the host, which takes service.privileged (Full Control), not Restricted Control",
                caller.name
            ))
        })?;
    }
    spec.labels.insert(COLLECTION_LABEL.into(), wanted);
    // The admin token of a cluster without users is no user: it owns nothing.
    let caller_owner = (!caller.user_id.is_empty()).then(|| caller.name.clone());
    // The owner stays the creator while that user exists; whoever changes
    // a service whose owner is gone takes it over.
    let owner = match previous.and_then(|p| p.labels.get(auth::scope::OWNER_LABEL)) {
        Some(o) if s.auth_by_key(&api::auth::account_key(o)).is_some() => Some(o.clone()),
        Some(_) => caller_owner,
        None if previous.is_some() => None,
        None => caller_owner,
    };
    match owner {
        Some(o) => spec.labels.insert(auth::scope::OWNER_LABEL.into(), o),
        None => spec.labels.remove(auth::scope::OWNER_LABEL),
    };
    Ok(ops)
}

/// A 403 unless the caller may `op` on the service.
fn require_on(caller: &Caller, svc: &Service, op: &'static str) -> Result<(), ApiError> {
    caller.require(Operation::named(op), auth::scope::service_collection(svc))
}

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
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<ServiceWithStatus>> {
    let view = Operation::named("service.view");
    Json(app.store.view(|s| {
        s.services()
            .filter(|svc| caller.may(view, auth::scope::service_collection(svc)))
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
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Json<ServiceWithStatus>, ApiError> {
    app.store.view(|s| {
        let svc = resolve(s, &key)?;
        require_on(&caller, svc, "service.view")?;
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
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let mut spec: ServiceSpec = parse_json(&body)?;
    api::validate::service_spec(&spec)?;
    let mut ops = app.store.view(|s| place(s, &caller, &mut spec, None))?;
    let id = api::new_id();
    let service = Service::new(&id, spec);
    ops.push(Op::Create(service.into()));
    let change = app.store.update(ops).await?;
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
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Created>, ApiError> {
    let mut req: UpdateService = parse_json(&body)?;
    api::validate::service_spec(&req.spec)?;
    let (mut svc, mut ops) = app.store.view(|s| {
        let svc = resolve(s, &key)?;
        let ops = place(s, &caller, &mut req.spec, Some(&svc.spec))?;
        Ok::<_, ApiError>((svc.clone(), ops))
    })?;
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
    ops.push(Op::Update(svc.into()));
    let change = app.store.update(ops).await?;
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
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Created>, ApiError> {
    let req: Rollback = parse_json(&body)?;
    let mut svc = app.store.view(|s| resolve(s, &key).cloned())?;
    require_on(&caller, &svc, "service.update")?;
    if let Some(p) = &svc.previous_spec {
        // Rolling back moves the service to where its previous spec was.
        let mut back = p.clone();
        app.store
            .view(|s| place(s, &caller, &mut back, Some(&svc.spec)))?;
    }
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
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let svc = app.store.view(|s| resolve(s, &key).cloned())?;
    require_on(&caller, &svc, "service.delete")?;
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
    Extension(caller): Extension<Caller>,
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
        require_on(&caller, svc, "service.logs")?;
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
