//! `/api/v1/users`, `/api/v1/orgs`, `/api/v1/teams` (ucp-auth-store's
//! accounts): every authenticated user may see who exists (to share with
//! them); changing accounts takes `user.*`/`team.*` on `/`, which only
//! admins (or a custom role granted on `/`) have.

use super::parse_json;
use crate::authn::Caller;
use crate::wire::{
    CreateNamed, CreateTeam, CreateUser, OrgView, SetPassword, TeamMember, TeamView, UpdateUser,
    UserView,
};
use crate::{error::ApiError, AppState};
use api::auth::{
    account_key, private_collection, team_key, Collection, Grant, Organization, Subject, Team,
    User, UserSource, ROOT_COLLECTION,
};
use api::{Kind, Object, Op, State as St};
use auth::Operation;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

/// The role each new user gets on its private collection (UCP's default).
pub const PRIVATE_ROLE: &str = "Restricted Control";

/// Account names (users, organizations, teams): as registry namespaces,
/// lowercase letters, digits, `.`, `_` and `-`, starting with a letter or
/// digit, at most 100 characters.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 100 || !ok_first || !ok_rest {
        return Err(ApiError::bad(
            field,
            format!(
                "{name:?} is not a valid name: use 1 to 100 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn user_by_name<'a>(s: &'a St, name: &str) -> Result<&'a User, ApiError> {
    match s.auth_by_key(&account_key(name)) {
        Some(Object::User(u)) => Ok(u),
        _ => Err(ApiError::NotFound(format!("user {name} not found"))),
    }
}

pub(crate) fn org_by_name<'a>(s: &'a St, name: &str) -> Result<&'a Organization, ApiError> {
    match s.auth_by_key(&account_key(name)) {
        Some(Object::Organization(o)) => Ok(o),
        _ => Err(ApiError::NotFound(format!("organization {name} not found"))),
    }
}

pub(crate) fn team_by_names<'a>(s: &'a St, org: &str, team: &str) -> Result<&'a Team, ApiError> {
    let o = org_by_name(s, org)?;
    match s.auth_by_key(&team_key(&o.meta.id, team)) {
        Some(Object::Team(t)) => Ok(t),
        _ => Err(ApiError::NotFound(format!("team {org}/{team} not found"))),
    }
}

/// `org/team` → the team.
pub(crate) fn team_by_path<'a>(s: &'a St, path: &str) -> Result<&'a Team, ApiError> {
    let Some((org, team)) = path.split_once('/') else {
        return Err(ApiError::bad(
            "subject",
            format!("{path:?} is not a team: name it as organization/team"),
        ));
    };
    team_by_names(s, org, team)
}

fn org_name(s: &St, id: &str) -> String {
    match s.auth_object(Kind::Organization, id) {
        Some(Object::Organization(o)) => o.name.clone(),
        _ => id.to_string(),
    }
}

fn user_name(s: &St, id: &str) -> String {
    match s.auth_object(Kind::User, id) {
        Some(Object::User(u)) => u.name.clone(),
        _ => id.to_string(),
    }
}

pub(crate) fn teams(s: &St) -> impl Iterator<Item = &Team> {
    s.auth_objects(Kind::Team).filter_map(|o| match o {
        Object::Team(t) => Some(t),
        _ => None,
    })
}

pub(crate) fn user_view(s: &St, u: &User) -> UserView {
    let mut team_names: Vec<String> = teams(s)
        .filter(|t| t.members.contains(&u.meta.id))
        .map(|t| format!("{}/{}", org_name(s, &t.org_id), t.name))
        .collect();
    team_names.sort();
    view_with_teams(u, team_names)
}

fn view_with_teams(u: &User, team_names: Vec<String>) -> UserView {
    let (source, ldap_dn) = match &u.source {
        UserSource::Local => ("local", None),
        UserSource::Ldap { dn } => ("ldap", Some(dn.clone())),
    };
    UserView {
        id: u.meta.id.clone(),
        name: u.name.clone(),
        full_name: u.full_name.clone(),
        admin: u.admin,
        disabled: u.disabled,
        source: source.into(),
        ldap_dn,
        locked_until: u.locked_until.filter(|l| *l > api::Timestamp::now()),
        created_at: u.meta.created_at,
        teams: team_names,
    }
}

fn team_view(s: &St, t: &Team) -> TeamView {
    let mut members: Vec<String> = t.members.iter().map(|id| user_name(s, id)).collect();
    members.sort();
    TeamView {
        id: t.meta.id.clone(),
        org: org_name(s, &t.org_id),
        name: t.name.clone(),
        members,
        ldap_group_dn: t.ldap_group_dn.clone(),
    }
}

/// Ops that create the collections every cluster has, where missing.
pub fn builtin_collection_ops(s: &St) -> Vec<Op> {
    [
        ROOT_COLLECTION,
        api::auth::SYSTEM_COLLECTION,
        api::auth::SHARED_COLLECTION,
        api::auth::PRIVATE_COLLECTION,
    ]
    .iter()
    .filter(|p| s.auth_by_key(&api::auth::collection_key(p)).is_none())
    .map(|p| {
        Op::Create(
            Collection {
                meta: api::Meta::new(api::new_id()),
                path: p.to_string(),
            }
            .into(),
        )
    })
    .collect()
}

/// The ops that make a user: the builtin collections if missing, the user,
/// its private collection and its grant there.
pub fn new_user_ops(s: &St, user: User) -> Vec<Op> {
    let mut ops = builtin_collection_ops(s);
    let private = private_collection(&user.name);
    if s.auth_by_key(&api::auth::collection_key(&private))
        .is_none()
    {
        ops.push(Op::Create(
            Collection {
                meta: api::Meta::new(api::new_id()),
                path: private.clone(),
            }
            .into(),
        ));
    }
    let grant = Grant {
        meta: api::Meta::new(api::new_id()),
        subject: Subject::User(user.meta.id.clone()),
        role: PRIVATE_ROLE.into(),
        collection: private,
    };
    ops.push(Op::Create(user.into()));
    ops.push(Op::Create(grant.into()));
    ops
}

// ------------------------------------------------------------------ users

pub async fn list_users(State(app): State<AppState>) -> Json<Vec<UserView>> {
    Json(app.store.view(|s| {
        // Each user's teams from one pass over the teams, not one per user.
        let mut of_user: std::collections::HashMap<&str, Vec<String>> = Default::default();
        for t in teams(s) {
            let name = format!("{}/{}", org_name(s, &t.org_id), t.name);
            for m in &t.members {
                of_user.entry(m.as_str()).or_default().push(name.clone());
            }
        }
        s.auth_objects(Kind::User)
            .filter_map(|o| match o {
                Object::User(u) => {
                    let mut names = of_user.remove(u.meta.id.as_str()).unwrap_or_default();
                    names.sort();
                    Some(view_with_teams(u, names))
                }
                _ => None,
            })
            .collect()
    }))
}

pub async fn inspect_user(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    app.store
        .view(|s| user_by_name(s, &name).map(|u| Json(user_view(s, u))))
}

pub async fn create_user(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let req: CreateUser = parse_json(&body)?;
    caller.require(Operation::named("user.create"), ROOT_COLLECTION)?;
    if req.admin {
        // A role may let one make users, never make admins.
        caller.require_admin("make an admin")?;
    }
    check_name("name", &req.name)?;
    let password_hash = match req.password {
        Some(p) => {
            crate::password::check_policy(&p).map_err(|m| ApiError::bad("password", m))?;
            Some(app.hasher.hash(p).await.map_err(ApiError::Internal)?)
        }
        None => None,
    };
    let user = User {
        meta: api::Meta::new(api::new_id()),
        name: req.name.clone(),
        full_name: req.full_name,
        admin: req.admin,
        disabled: false,
        password_hash,
        source: UserSource::Local,
        locked_until: None,
    };
    let ops = app.store.view(|s| {
        if s.auth_by_key(&account_key(&req.name)).is_some() {
            return Err(ApiError::Conflict(format!(
                "the name {} is taken (by a user or an organization)",
                req.name
            )));
        }
        Ok(new_user_ops(s, user))
    })?;
    app.store.update(ops).await?;
    let view = app
        .store
        .view(|s| user_by_name(s, &req.name).map(|u| user_view(s, u)))?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn update_user(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<UserView>, ApiError> {
    let req: UpdateUser = parse_json(&body)?;
    let mut user = app.store.view(|s| user_by_name(s, &name).cloned())?;
    let own = user.meta.id == caller.user_id;
    let only_full_name = req.admin.is_none() && req.disabled.is_none() && !req.unlock;
    if !(own && only_full_name) {
        caller.require(Operation::named("user.update"), ROOT_COLLECTION)?;
    }
    if own && (req.disabled == Some(true) || req.admin == Some(false)) {
        return Err(ApiError::Conflict(
            "you cannot disable yourself or take away your own admin rights: ask another admin"
                .into(),
        ));
    }
    if let Some(f) = req.full_name {
        user.full_name = f;
    }
    if let Some(a) = req.admin.filter(|a| *a != user.admin) {
        caller.require_admin("grant or take away admin rights")?;
        user.admin = a;
    }
    if let Some(d) = req.disabled {
        user.disabled = d;
    }
    if req.unlock {
        user.locked_until = None;
        app.lockout.unlock(&user.name);
    }
    app.store.update(vec![Op::Update(user.into())]).await?;
    app.store
        .view(|s| user_by_name(s, &name).map(|u| Json(user_view(s, u))))
}

pub async fn set_password(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: SetPassword = parse_json(&body)?;
    let user = app.store.view(|s| user_by_name(s, &name).cloned())?;
    if let UserSource::Ldap { .. } = user.source {
        return Err(ApiError::bad(
            "password",
            format!("{name}'s password is kept in LDAP: change it there"),
        ));
    }
    if user.meta.id == caller.user_id && !caller.admin {
        let Some(old) = req.old_password else {
            return Err(ApiError::bad(
                "old_password",
                "give your current password to change it",
            ));
        };
        if !app.hasher.verify(old, user.password_hash.clone()).await {
            return Err(ApiError::bad(
                "old_password",
                "the current password is not right",
            ));
        }
    } else if user.meta.id != caller.user_id {
        caller.require(Operation::named("user.update"), ROOT_COLLECTION)?;
    }
    crate::password::check_policy(&req.password).map_err(|m| ApiError::bad("password", m))?;
    let hash = app
        .hasher
        .hash(req.password)
        .await
        .map_err(ApiError::Internal)?;
    // Re-read: the hash took a while.
    let mut user = app.store.view(|s| user_by_name(s, &name).cloned())?;
    user.password_hash = Some(hash);
    app.store.update(vec![Op::Update(user.into())]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a user with its tokens, bundles, grants and team memberships, in
/// one batch. Its private collection stays (what is in it stays too).
pub async fn remove_user(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Operation::named("user.delete"), ROOT_COLLECTION)?;
    let ops = app.store.view(|s| {
        let u = user_by_name(s, &name)?;
        if u.meta.id == caller.user_id {
            return Err(ApiError::Conflict(
                "you cannot remove your own account: ask another admin".into(),
            ));
        }
        let id = u.meta.id.clone();
        let mut ops = Vec::new();
        for o in s.auth_objects(Kind::Token) {
            if let Object::Token(t) = o {
                if t.user_id == id {
                    ops.push(delete(Kind::Token, &t.meta));
                }
            }
        }
        for o in s.auth_objects(Kind::ClientBundle) {
            if let Object::ClientBundle(b) = o {
                if b.user_id == id {
                    ops.push(delete(Kind::ClientBundle, &b.meta));
                }
            }
        }
        for o in s.auth_objects(Kind::Grant) {
            if let Object::Grant(g) = o {
                if g.subject == Subject::User(id.clone()) {
                    ops.push(delete(Kind::Grant, &g.meta));
                }
            }
        }
        for t in teams(s) {
            if t.members.contains(&id) {
                let mut t = t.clone();
                t.members.remove(&id);
                ops.push(Op::Update(t.into()));
            }
        }
        ops.push(delete(Kind::User, &u.meta));
        Ok(ops)
    })?;
    app.store.update(ops).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn delete(kind: Kind, meta: &api::Meta) -> Op {
    Op::Delete {
        kind,
        id: meta.id.clone(),
        version: Some(meta.version),
    }
}

// ---------------------------------------------------------- organizations

pub async fn list_orgs(State(app): State<AppState>) -> Json<Vec<OrgView>> {
    Json(app.store.view(|s| {
        s.auth_objects(Kind::Organization)
            .filter_map(|o| match o {
                Object::Organization(o) => Some(org_view(s, o)),
                _ => None,
            })
            .collect()
    }))
}

fn org_view(s: &St, o: &Organization) -> OrgView {
    let mut names: Vec<String> = teams(s)
        .filter(|t| t.org_id == o.meta.id)
        .map(|t| t.name.clone())
        .collect();
    names.sort();
    OrgView {
        id: o.meta.id.clone(),
        name: o.name.clone(),
        teams: names,
    }
}

pub async fn inspect_org(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<OrgView>, ApiError> {
    app.store
        .view(|s| org_by_name(s, &name).map(|o| Json(org_view(s, o))))
}

pub async fn create_org(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    let req: CreateNamed = parse_json(&body)?;
    caller.require(Operation::named("team.create"), ROOT_COLLECTION)?;
    check_name("name", &req.name)?;
    let org = Organization {
        meta: api::Meta::new(api::new_id()),
        name: req.name.clone(),
    };
    if app
        .store
        .view(|s| s.auth_by_key(&account_key(&req.name)).is_some())
    {
        return Err(ApiError::Conflict(format!(
            "the name {} is taken (by a user or an organization)",
            req.name
        )));
    }
    app.store.update(vec![Op::Create(org.into())]).await?;
    let view = app
        .store
        .view(|s| org_by_name(s, &req.name).map(|o| org_view(s, o)))?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn remove_org(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Operation::named("team.delete"), ROOT_COLLECTION)?;
    let ops = app.store.view(|s| {
        let o = org_by_name(s, &name)?;
        let left: Vec<String> = teams(s)
            .filter(|t| t.org_id == o.meta.id)
            .map(|t| t.name.clone())
            .collect();
        if !left.is_empty() {
            return Err(ApiError::Conflict(format!(
                "organization {name} still has teams ({}): remove them first",
                left.join(", ")
            )));
        }
        let mut ops = grants_of(s, &Subject::Organization(o.meta.id.clone()));
        ops.push(delete(Kind::Organization, &o.meta));
        Ok(ops)
    })?;
    app.store.update(ops).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn grants_of(s: &St, subject: &Subject) -> Vec<Op> {
    s.auth_objects(Kind::Grant)
        .filter_map(|o| match o {
            Object::Grant(g) if &g.subject == subject => Some(delete(Kind::Grant, &g.meta)),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------ teams

pub async fn list_teams(
    State(app): State<AppState>,
    Path(org): Path<String>,
) -> Result<Json<Vec<TeamView>>, ApiError> {
    app.store.view(|s| {
        let o = org_by_name(s, &org)?;
        Ok(Json(
            teams(s)
                .filter(|t| t.org_id == o.meta.id)
                .map(|t| team_view(s, t))
                .collect(),
        ))
    })
}

pub async fn inspect_team(
    State(app): State<AppState>,
    Path((org, team)): Path<(String, String)>,
) -> Result<Json<TeamView>, ApiError> {
    app.store
        .view(|s| team_by_names(s, &org, &team).map(|t| Json(team_view(s, t))))
}

pub async fn create_team(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<TeamView>), ApiError> {
    let req: CreateTeam = parse_json(&body)?;
    caller.require(Operation::named("team.create"), ROOT_COLLECTION)?;
    check_name("name", &req.name)?;
    let team = app.store.view(|s| {
        let o = org_by_name(s, &org)?;
        if s.auth_by_key(&team_key(&o.meta.id, &req.name)).is_some() {
            return Err(ApiError::Conflict(format!(
                "team {org}/{} already exists",
                req.name
            )));
        }
        Ok(Team {
            meta: api::Meta::new(api::new_id()),
            org_id: o.meta.id.clone(),
            name: req.name.clone(),
            members: Default::default(),
            ldap_group_dn: req.ldap_group_dn.filter(|d| !d.trim().is_empty()),
        })
    })?;
    app.store.update(vec![Op::Create(team.into())]).await?;
    let view = app
        .store
        .view(|s| team_by_names(s, &org, &req.name).map(|t| team_view(s, t)))?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn remove_team(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((org, team)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Operation::named("team.delete"), ROOT_COLLECTION)?;
    let ops = app.store.view(|s| {
        let t = team_by_names(s, &org, &team)?;
        let mut ops = grants_of(s, &Subject::Team(t.meta.id.clone()));
        ops.push(delete(Kind::Team, &t.meta));
        Ok::<_, ApiError>(ops)
    })?;
    app.store.update(ops).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_member(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((org, team)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<TeamView>, ApiError> {
    let req: TeamMember = parse_json(&body)?;
    caller.require(Operation::named("team.update"), ROOT_COLLECTION)?;
    let t = app.store.view(|s| {
        let u = user_by_name(s, &req.user)?;
        let mut t = team_by_names(s, &org, &team)?.clone();
        t.members.insert(u.meta.id.clone());
        Ok::<_, ApiError>(t)
    })?;
    app.store.update(vec![Op::Update(t.into())]).await?;
    app.store
        .view(|s| team_by_names(s, &org, &team).map(|t| Json(team_view(s, t))))
}

pub async fn remove_member(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Result<Json<TeamView>, ApiError> {
    caller.require(Operation::named("team.update"), ROOT_COLLECTION)?;
    let t = app.store.view(|s| {
        let u = user_by_name(s, &user)?;
        let mut t = team_by_names(s, &org, &team)?.clone();
        if !t.members.remove(&u.meta.id) {
            return Err(ApiError::NotFound(format!(
                "{user} is not a member of {org}/{team}"
            )));
        }
        Ok(t)
    })?;
    app.store.update(vec![Op::Update(t.into())]).await?;
    app.store
        .view(|s| team_by_names(s, &org, &team).map(|t| Json(team_view(s, t))))
}
