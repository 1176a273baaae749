//! `/api/v1/nodes`: the nodes of the cluster.

use super::parse_json;
use crate::authn::Caller;
use crate::wire::{Created, UpdateNode};
use crate::{error::ApiError, AppState};
use api::{Node, NodeRole, NodeState, Op};
use auth::Operation;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

#[utoipa::path(get, path = "/api/v1/nodes", responses((status = 200, body = Vec<api::Node>)), security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<Node>> {
    let view = Operation::named("node.view");
    let mut nodes: Vec<Node> = app.store.view(|s| {
        s.nodes()
            .filter(|n| caller.may(view, auth::scope::node_collection(n)))
            .cloned()
            .collect()
    });
    let members = app.store.members();
    for n in &mut nodes {
        with_manager_status(n, &members);
    }
    Json(nodes)
}

/// Fills a manager's status from this manager's view of the Raft group:
/// leader, and reachability (from this manager; on a follower, what it last
/// heard). Only members of the group have a manager status.
fn with_manager_status(n: &mut Node, members: &[store::ManagerInfo]) {
    let raft_id = store::raft_id(&n.meta.id);
    let Some(m) = members.iter().find(|m| m.raft_id == raft_id) else {
        // Not (or no longer) in the Raft group: a manager in name only, e.g.
        // after a --force-new-cluster, until it is demoted or removed.
        n.manager_status = None;
        return;
    };
    let recorded = n.manager_status.take().unwrap_or_default();
    n.manager_status = Some(api::ManagerStatus {
        leader: m.leader,
        reachability: match m.reachable {
            Some(false) => "unreachable".into(),
            _ => "reachable".into(),
        },
        addr: m.addr.clone(),
        api_addr: recorded.api_addr,
    });
}

#[utoipa::path(get, path = "/api/v1/nodes/{id}", params(("id" = String, Path, description = "node id, unique id prefix or hostname")),
    responses((status = 200, body = api::Node), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn inspect(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Json<Node>, ApiError> {
    let mut node = app.store.view(|s| resolve(s, &key).cloned())?;
    caller.require(
        Operation::named("node.view"),
        auth::scope::node_collection(&node),
    )?;
    with_manager_status(&mut node, &app.store.members());
    Ok(Json(node))
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/update", params(("id" = String, Path, description = "node id, unique id prefix or hostname")),
    request_body = UpdateNode,
    responses((status = 200, body = Created), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Created>, ApiError> {
    let mut req: UpdateNode = parse_json(&body)?;
    api::validate::node_spec(&req.spec)?;
    if let Some(c) = req.spec.labels.get_mut(api::auth::COLLECTION_LABEL) {
        *c = auth::collection::normalize(c).map_err(|e| {
            ApiError::bad(
                format!("spec.labels.{}", api::auth::COLLECTION_LABEL),
                e.to_string(),
            )
        })?;
    }
    let (mut node, managers) = app.store.view(|s| {
        let managers = s
            .nodes()
            .filter(|n| n.spec.role == NodeRole::Manager)
            .count();
        resolve(s, &key).cloned().map(|n| (n, managers))
    })?;
    if req.version != node.meta.version {
        return Err(ApiError::Conflict(format!(
            "node {} was changed since version {} (it is at {}): read it again and retry",
            node.description.hostname, req.version, node.meta.version
        )));
    }
    let from = auth::scope::node_collection(&node).to_string();
    caller.require(Operation::named("node.update"), &from)?;
    if req.spec.role != node.spec.role {
        caller.require_admin("promote or demote a node")?;
    }
    let mut moved = node.clone();
    moved.spec = req.spec.clone();
    let to = auth::scope::node_collection(&moved).to_string();
    if to != from {
        if app
            .store
            .view(|s| s.auth_by_key(&api::auth::collection_key(&to)).is_none())
        {
            return Err(ApiError::NotFound(format!(
                "collection {to} does not exist"
            )));
        }
        caller.require(Operation::named("node.update"), &to)?;
    }
    if node.spec.role == NodeRole::Manager && req.spec.role == NodeRole::Worker && managers == 1 {
        return Err(ApiError::bad(
            "spec.role",
            "cannot demote the last manager of the cluster: promote another node first",
        ));
    }
    let id = node.meta.id.clone();
    if req.spec == node.spec {
        return Ok(Json(Created {
            id,
            version: node.meta.version,
        }));
    }
    node.spec = req.spec;
    let change = app.store.update(vec![Op::Update(node.into())]).await?;
    Ok(Json(Created {
        id,
        version: change.index,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Remove a node that is not down (its tasks are rescheduled elsewhere).
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/api/v1/nodes/{id}", params(("id" = String, Path, description = "node id, unique id prefix or hostname"), RemoveQuery),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn remove(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let node = app.store.view(|s| resolve(s, &key).cloned())?;
    caller.require(
        Operation::named("node.delete"),
        auth::scope::node_collection(&node),
    )?;
    let name = &node.description.hostname;
    // As Docker: a manager leaves the Raft group by a demotion first, and a
    // live node is only removed on purpose.
    if node.spec.role == NodeRole::Manager {
        return Err(ApiError::Conflict(format!(
            "node {name} is a manager: demote it before removing it (berth node demote {name})"
        )));
    }
    if node.status.state != NodeState::Down && !q.force {
        return Err(ApiError::Conflict(format!(
            "node {name} is not down and can't be removed: stop it, or use --force"
        )));
    }
    // The orchestrator replaces the tasks of a node that is gone.
    app.store
        .update(vec![Op::Delete {
            kind: api::Kind::Node,
            id: node.meta.id,
            version: Some(node.meta.version),
        }])
        .await?;
    Ok(StatusCode::NO_CONTENT)
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
