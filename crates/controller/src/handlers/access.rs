//! `/api/v1/collections`, `/api/v1/roles`, `/api/v1/grants`: the tree
//! resources live in, the sets of operations, and who may do which where.

use super::identity::{delete, org_by_name, team_by_path, user_by_name};
use super::parse_json;
use crate::authn::Caller;
use crate::wire::{
    CollectionView, CreateCollection, CreateGrant, CreateRole, GrantView, RoleView, SubjectKind,
};
use crate::{error::ApiError, AppState};
use api::auth::{collection_key, grant_key, role_key, Collection, Grant, Role, Subject};
use api::{Kind, Object, Op, State as St};
use auth::{builtin_role, OpSet, Operation, BUILTIN_ROLES};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

fn normalize(field: &str, path: &str) -> Result<String, ApiError> {
    auth::collection::normalize(path).map_err(|e| ApiError::bad(field, e.to_string()))
}

/// Made by berth: never removed through the API.
fn is_builtin(path: &str) -> bool {
    use api::auth::*;
    matches!(
        path,
        ROOT_COLLECTION | SYSTEM_COLLECTION | SHARED_COLLECTION | PRIVATE_COLLECTION
    ) || parent_path(path) == Some(PRIVATE_COLLECTION)
}

fn collection_view(c: &Collection) -> CollectionView {
    CollectionView {
        id: c.meta.id.clone(),
        path: c.path.clone(),
        builtin: is_builtin(&c.path),
    }
}

pub(crate) fn collection_by_path<'a>(s: &'a St, path: &str) -> Result<&'a Collection, ApiError> {
    match s.auth_by_key(&collection_key(path)) {
        Some(Object::Collection(c)) => Ok(c),
        _ => Err(ApiError::NotFound(format!("collection {path} not found"))),
    }
}

// ------------------------------------------------------------ collections

pub async fn list_collections(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<CollectionView>> {
    let view = Operation::named("collection.view");
    Json(app.store.view(|s| {
        s.auth_objects(Kind::Collection)
            .filter_map(|o| match o {
                Object::Collection(c) if caller.may(view, &c.path) => Some(collection_view(c)),
                _ => None,
            })
            .collect()
    }))
}

pub async fn inspect_collection(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<String>,
) -> Result<Json<CollectionView>, ApiError> {
    let path = normalize("path", &format!("/{path}"))?;
    caller.require(Operation::named("collection.view"), &path)?;
    app.store
        .view(|s| collection_by_path(s, &path).map(|c| Json(collection_view(c))))
}

pub async fn create_collection(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<CollectionView>), ApiError> {
    let req: CreateCollection = parse_json(&body)?;
    let path = normalize("path", &req.path)?;
    let Some(parent) = api::auth::parent_path(&path).map(str::to_string) else {
        return Err(ApiError::Conflict(
            "the root collection / always exists".into(),
        ));
    };
    caller.require(Operation::named("collection.create"), &parent)?;
    let mut ops = app.store.view(super::identity::builtin_collection_ops);
    let collection = app.store.view(|s| {
        if s.auth_by_key(&collection_key(&path)).is_some() {
            return Err(ApiError::Conflict(format!(
                "collection {path} already exists"
            )));
        }
        let builtin_parent = ops.iter().any(|op| match op {
            Op::Create(Object::Collection(c)) => c.path == parent,
            _ => false,
        });
        if !builtin_parent && s.auth_by_key(&collection_key(&parent)).is_none() {
            return Err(ApiError::NotFound(format!(
                "the parent collection {parent} does not exist: create it first"
            )));
        }
        Ok(Collection {
            meta: api::Meta::new(api::new_id()),
            path: path.clone(),
        })
    })?;
    ops.push(Op::Create(collection.into()));
    app.store.update(ops).await?;
    let view = app
        .store
        .view(|s| collection_by_path(s, &path).map(collection_view))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Whether anything lives in `path` (a service or node labelled with it).
fn occupants(s: &St, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    for svc in s.services() {
        if auth::scope::service_collection(svc) == path {
            found.push(format!("service {}", svc.spec.name));
        }
    }
    for n in s.nodes() {
        if n.spec
            .labels
            .get(api::auth::COLLECTION_LABEL)
            .map(String::as_str)
            == Some(path)
        {
            found.push(format!("node {}", n.description.hostname));
        }
    }
    found
}

pub async fn remove_collection(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<String>,
) -> Result<StatusCode, ApiError> {
    let path = normalize("path", &format!("/{path}"))?;
    caller.require(Operation::named("collection.delete"), &path)?;
    if is_builtin(&path) {
        return Err(ApiError::Conflict(format!(
            "collection {path} is one berth keeps: it cannot be removed"
        )));
    }
    let ops = app.store.view(|s| {
        let c = collection_by_path(s, &path)?;
        let children: Vec<&str> = s
            .auth_objects(Kind::Collection)
            .filter_map(|o| match o {
                Object::Collection(x) if api::auth::parent_path(&x.path) == Some(&path) => {
                    Some(x.path.as_str())
                }
                _ => None,
            })
            .collect();
        if !children.is_empty() {
            return Err(ApiError::Conflict(format!(
                "collection {path} has collections below it ({}): remove them first",
                children.join(", ")
            )));
        }
        let inside = occupants(s, &path);
        if !inside.is_empty() {
            return Err(ApiError::Conflict(format!(
                "collection {path} is not empty ({}): move or remove them first",
                inside.join(", ")
            )));
        }
        let mut ops: Vec<Op> = s
            .auth_objects(Kind::Grant)
            .filter_map(|o| match o {
                Object::Grant(g) if g.collection == path => Some(delete(Kind::Grant, &g.meta)),
                _ => None,
            })
            .collect();
        ops.push(delete(Kind::Collection, &c.meta));
        Ok(ops)
    })?;
    app.store.update(ops).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ roles

fn custom_roles(s: &St) -> impl Iterator<Item = &Role> {
    s.auth_objects(Kind::Role).filter_map(|o| match o {
        Object::Role(r) => Some(r),
        _ => None,
    })
}

pub async fn list_roles(State(app): State<AppState>) -> Json<Vec<RoleView>> {
    let mut roles: Vec<RoleView> = BUILTIN_ROLES
        .iter()
        .map(|name| RoleView {
            id: None,
            name: name.to_string(),
            builtin: true,
            operations: builtin_role(name)
                .unwrap_or_default()
                .iter()
                .map(|o| o.name().to_string())
                .collect(),
        })
        .collect();
    app.store.view(|s| {
        roles.extend(custom_roles(s).map(|r| RoleView {
            id: Some(r.meta.id.clone()),
            name: r.name.clone(),
            builtin: false,
            operations: r.operations.iter().cloned().collect(),
        }))
    });
    Json(roles)
}

/// Every operation a custom role may name.
pub async fn list_operations() -> Json<Vec<String>> {
    Json(Operation::all().map(|o| o.name().to_string()).collect())
}

pub async fn create_role(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<RoleView>), ApiError> {
    let req: CreateRole = parse_json(&body)?;
    caller.require(Operation::named("grant.create"), api::auth::ROOT_COLLECTION)?;
    let name = req.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad(
            "name",
            "a role needs a name of 1 to 100 characters",
        ));
    }
    if builtin_role(&name).is_some() {
        return Err(ApiError::Conflict(format!("{name} is a built-in role")));
    }
    if req.operations.is_empty() {
        return Err(ApiError::bad(
            "operations",
            "a role needs at least one operation",
        ));
    }
    let ops = OpSet::parse(req.operations.iter().map(|o| o.trim()))
        .map_err(|e| ApiError::bad("operations", e.to_string()))?;
    let role = Role {
        meta: api::Meta::new(api::new_id()),
        name: name.clone(),
        operations: ops.iter().map(|o| o.name().to_string()).collect(),
    };
    if app
        .store
        .view(|s| s.auth_by_key(&role_key(&name)).is_some())
    {
        return Err(ApiError::Conflict(format!("role {name} already exists")));
    }
    let view = RoleView {
        id: Some(role.meta.id.clone()),
        name,
        builtin: false,
        operations: role.operations.iter().cloned().collect(),
    };
    app.store.update(vec![Op::Create(role.into())]).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn remove_role(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Operation::named("grant.delete"), api::auth::ROOT_COLLECTION)?;
    if builtin_role(&name).is_some() {
        return Err(ApiError::Conflict(format!(
            "{name} is a built-in role: it cannot be removed"
        )));
    }
    let op = app.store.view(|s| {
        let Some(Object::Role(r)) = s.auth_by_key(&role_key(&name)) else {
            return Err(ApiError::NotFound(format!("role {name} not found")));
        };
        let used = s
            .auth_objects(Kind::Grant)
            .filter(|o| matches!(o, Object::Grant(g) if g.role == name))
            .count();
        if used > 0 {
            return Err(ApiError::Conflict(format!(
                "role {name} is used by {used} grant(s): remove them first"
            )));
        }
        Ok(delete(Kind::Role, &r.meta))
    })?;
    app.store.update(vec![op]).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----------------------------------------------------------------- grants

fn subject_name(s: &St, subject: &Subject) -> (SubjectKind, String) {
    match subject {
        Subject::User(id) => (
            SubjectKind::User,
            match s.auth_object(Kind::User, id) {
                Some(Object::User(u)) => u.name.clone(),
                _ => id.clone(),
            },
        ),
        Subject::Organization(id) => (
            SubjectKind::Org,
            match s.auth_object(Kind::Organization, id) {
                Some(Object::Organization(o)) => o.name.clone(),
                _ => id.clone(),
            },
        ),
        Subject::Team(id) => (
            SubjectKind::Team,
            match s.auth_object(Kind::Team, id) {
                Some(Object::Team(t)) => {
                    let org = match s.auth_object(Kind::Organization, &t.org_id) {
                        Some(Object::Organization(o)) => o.name.clone(),
                        _ => t.org_id.clone(),
                    };
                    format!("{org}/{}", t.name)
                }
                _ => id.clone(),
            },
        ),
    }
}

fn grant_view(s: &St, g: &Grant) -> GrantView {
    let (subject_kind, subject) = subject_name(s, &g.subject);
    GrantView {
        id: g.meta.id.clone(),
        subject_kind,
        subject,
        role: g.role.clone(),
        collection: g.collection.clone(),
    }
}

/// The subjects a user acts as: itself, its teams, their organizations.
fn subjects_of(s: &St, user_id: &str) -> Vec<Subject> {
    let mut out = vec![Subject::User(user_id.to_string())];
    for t in super::identity::teams(s) {
        if t.members.contains(user_id) {
            out.push(Subject::Team(t.meta.id.clone()));
            out.push(Subject::Organization(t.org_id.clone()));
        }
    }
    out
}

/// Admins see every grant; others those on collections they may view
/// grants of, and their own.
pub async fn list_grants(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<GrantView>> {
    let view = Operation::named("grant.view");
    Json(app.store.view(|s| {
        let mine = subjects_of(s, &caller.user_id);
        s.auth_objects(Kind::Grant)
            .filter_map(|o| match o {
                Object::Grant(g)
                    if caller.may(view, &g.collection) || mine.contains(&g.subject) =>
                {
                    Some(grant_view(s, g))
                }
                _ => None,
            })
            .collect()
    }))
}

pub async fn create_grant(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    let req: CreateGrant = parse_json(&body)?;
    let collection = normalize("collection", &req.collection)?;
    caller.require(Operation::named("grant.create"), &collection)?;
    let grant = app.store.view(|s| {
        let subject = match req.subject_kind {
            SubjectKind::User => Subject::User(user_by_name(s, &req.subject)?.meta.id.clone()),
            SubjectKind::Team => Subject::Team(team_by_path(s, &req.subject)?.meta.id.clone()),
            SubjectKind::Org => {
                Subject::Organization(org_by_name(s, &req.subject)?.meta.id.clone())
            }
        };
        if builtin_role(&req.role).is_none() && s.auth_by_key(&role_key(&req.role)).is_none() {
            return Err(ApiError::bad(
                "role",
                format!(
                    "unknown role {:?}: the built-in roles are {}, or create a custom one",
                    req.role,
                    BUILTIN_ROLES.join(", ")
                ),
            ));
        }
        collection_by_path(s, &collection)?;
        if s.auth_by_key(&grant_key(&subject, &req.role, &collection))
            .is_some()
        {
            return Err(ApiError::Conflict(format!(
                "{} already has {} on {collection}",
                req.subject, req.role
            )));
        }
        Ok(Grant {
            meta: api::Meta::new(api::new_id()),
            subject,
            role: req.role.clone(),
            collection: collection.clone(),
        })
    })?;
    let id = grant.meta.id.clone();
    app.store.update(vec![Op::Create(grant.into())]).await?;
    let view = app.store.view(|s| match s.auth_object(Kind::Grant, &id) {
        Some(Object::Grant(g)) => Ok(grant_view(s, g)),
        _ => Err(ApiError::NotFound(format!("grant {id} not found"))),
    })?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn remove_grant(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let op = app.store.view(|s| match s.auth_object(Kind::Grant, &id) {
        Some(Object::Grant(g)) => {
            caller.require(Operation::named("grant.delete"), &g.collection)?;
            Ok(delete(Kind::Grant, &g.meta))
        }
        _ => Err(ApiError::NotFound(format!("grant {id} not found"))),
    })?;
    app.store.update(vec![op]).await?;
    Ok(StatusCode::NO_CONTENT)
}
