//! `/api/v1/auth/*` and `/api/v1/tokens`: logins make sessions (short-lived
//! bearer tokens, renewed while in use), users make named API tokens for
//! scripts and CI. Both are stored as the SHA-256 of their secret, which is
//! shown once.
//!
//! A login answers the same 401 for an unknown name and a wrong password,
//! after the same argon2 work; repeated failures lock the account
//! (`AuthSettings::lockout_failures`, written to the store so every manager
//! refuses it) and slow the address down.

use super::identity::{user_by_name, user_view};
use super::parse_json;
use crate::authn::{new_secret, Caller, Credential, API_TOKEN_PREFIX, SESSION_PREFIX};
use crate::lockout::Refusal;
use crate::wire::{CreateToken, Login, NewToken, TokenView, WhoAmI};
use crate::{error::ApiError, AppState};
use api::auth::{Token, TokenPurpose, User, UserSource};
use api::{Kind, Object, Op, Timestamp};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use std::time::Instant;

const BAD_LOGIN: &str = "invalid username or password";

fn minutes(d: std::time::Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// How a password is checked for a user (or a name no user has).
enum Check {
    Local(Option<String>),
    Ldap,
}

pub async fn login(
    State(app): State<AppState>,
    peer: Option<Extension<crate::authn::Peer>>,
    body: Bytes,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let req: Login = parse_json(&body)?;
    let addr = peer.and_then(|Extension(p)| p.remote).map(|a| a.ip());
    let name = req.username.trim().to_lowercase();
    if name.is_empty() {
        return Err(ApiError::bad("username", "give a user name"));
    }
    let now = Timestamp::now();
    let (user, settings) = check_password(&app, &name, &req.password, addr).await?;
    let (secret, sha) = new_secret(SESSION_PREFIX);
    let id = api::new_id();
    let expires_at = now.plus(settings.session_lifetime);
    let token = Token {
        meta: api::Meta::new(&id),
        user_id: user.meta.id.clone(),
        name: format!("session-{}", api::id::short(&id)),
        purpose: TokenPurpose::Session,
        secret_sha256: sha,
        expires_at: Some(expires_at),
    };
    let name_of_token = token.name.clone();
    app.store.update(vec![Op::Create(token.into())]).await?;
    let view = app.store.view(|s| user_view(s, &user));
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            id,
            name: name_of_token,
            token: secret,
            expires_at: Some(expires_at),
            user: view,
        }),
    ))
}

/// Ends the caller's session (other credentials are removed by name).
pub async fn logout(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let Credential::Session { token_id } = &caller.credential else {
        return Err(ApiError::bad(
            "authorization",
            "only a session logs out; remove an API token with `berth token rm`",
        ));
    };
    app.store
        .update(vec![Op::Delete {
            kind: Kind::Token,
            id: token_id.clone(),
            version: None,
        }])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn credential_name(c: &Credential) -> &'static str {
    match c {
        Credential::AdminToken => "admin_token",
        Credential::Session { .. } => "session",
        Credential::ApiToken { .. } => "api_token",
        Credential::Bundle { .. } => "bundle",
    }
}

pub async fn whoami(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<WhoAmI>, ApiError> {
    let user = app
        .store
        .view(|s| match s.auth_object(Kind::User, &caller.user_id) {
            Some(Object::User(u)) => Some(user_view(s, u)),
            _ => None,
        });
    let user = user.unwrap_or_else(|| crate::wire::UserView {
        id: String::new(),
        name: caller.name.clone(),
        full_name: String::new(),
        admin: caller.admin,
        disabled: false,
        source: "local".into(),
        ldap_dn: None,
        locked_until: None,
        created_at: Timestamp(0),
        teams: vec![],
    });
    Ok(Json(WhoAmI {
        user,
        credential: credential_name(&caller.credential).into(),
    }))
}

// ------------------------------------------------------------- API tokens

#[derive(Debug, Deserialize)]
pub struct TokensQuery {
    /// An admin may list another user's tokens.
    pub user: Option<String>,
}

fn token_view(s: &api::State, t: &Token) -> TokenView {
    TokenView {
        id: t.meta.id.clone(),
        name: t.name.clone(),
        user: match s.auth_object(Kind::User, &t.user_id) {
            Some(Object::User(u)) => u.name.clone(),
            _ => t.user_id.clone(),
        },
        created_at: t.meta.created_at,
        expires_at: t.expires_at,
    }
}

/// The user whose tokens a request is about: the caller, or (admins) another.
fn subject_user(app: &AppState, caller: &Caller, other: Option<&str>) -> Result<String, ApiError> {
    match other {
        Some(name) if name != caller.name => {
            caller.require_admin("see or change another user's tokens")?;
            app.store
                .view(|s| user_by_name(s, name).map(|u| u.meta.id.clone()))
        }
        _ if caller.user_id.is_empty() => Err(ApiError::bad(
            "user",
            "the admin token belongs to no user: create the admin user first",
        )),
        _ => Ok(caller.user_id.clone()),
    }
}

pub async fn list_tokens(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<TokensQuery>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let user_id = subject_user(&app, &caller, q.user.as_deref())?;
    Ok(Json(app.store.view(|s| {
        s.auth_objects(Kind::Token)
            .filter_map(|o| match o {
                Object::Token(t) if t.user_id == user_id && t.purpose == TokenPurpose::Api => {
                    Some(token_view(s, t))
                }
                _ => None,
            })
            .collect()
    })))
}

pub async fn create_token(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let req: CreateToken = parse_json(&body)?;
    let user_id = subject_user(&app, &caller, None)?;
    super::identity::check_name("name", &req.name)?;
    let now = Timestamp::now();
    let expires_at = match req.expires_in.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| {
                ApiError::bad(
                    "expires_in",
                    format!("{text:?} is not a duration (such as 30d or 12h): {e}"),
                )
            })?;
            if d.is_zero() {
                return Err(ApiError::bad(
                    "expires_in",
                    "a token must live longer than nothing",
                ));
            }
            Some(now.plus(d))
        }
    };
    let (secret, sha) = new_secret(API_TOKEN_PREFIX);
    let id = api::new_id();
    let token = Token {
        meta: api::Meta::new(&id),
        user_id: user_id.clone(),
        name: req.name.clone(),
        purpose: TokenPurpose::Api,
        secret_sha256: sha,
        expires_at,
    };
    let user = app.store.view(|s| {
        if s.auth_by_key(&api::auth::token_name_key(&user_id, &req.name))
            .is_some()
        {
            return Err(ApiError::Conflict(format!(
                "you already have a token named {}",
                req.name
            )));
        }
        match s.auth_object(Kind::User, &user_id) {
            Some(Object::User(u)) => Ok(user_view(s, u)),
            _ => Err(ApiError::NotFound("your user no longer exists".into())),
        }
    })?;
    app.store.update(vec![Op::Create(token.into())]).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            id,
            name: req.name,
            token: secret,
            expires_at,
            user,
        }),
    ))
}

pub async fn remove_token(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<TokensQuery>,
) -> Result<StatusCode, ApiError> {
    let user_id = subject_user(&app, &caller, q.user.as_deref())?;
    let op =
        app.store.view(
            |s| match s.auth_by_key(&api::auth::token_name_key(&user_id, &name)) {
                Some(Object::Token(t)) => Ok(super::identity::delete(Kind::Token, &t.meta)),
                _ => Err(ApiError::NotFound(format!("no token named {name}"))),
            },
        )?;
    app.store.update(vec![op]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a user's password (the directory's for an LDAP user), with the
/// lockout's counts: the user and the settings when it is right; the same
/// 401 for an unknown name and a wrong password, after the same work.
/// The login and the registry's token service both sign in through it.
pub(crate) async fn check_password(
    app: &AppState,
    name: &str,
    password: &str,
    addr: Option<std::net::IpAddr>,
) -> Result<(User, api::auth::AuthSettings), ApiError> {
    let now = Timestamp::now();
    match app.lockout.check(name, addr, Instant::now()) {
        Ok(()) => {}
        Err(Refusal::Address(wait)) => {
            return Err(ApiError::TooManyRequests {
                message: "too many failed logins from this address: wait and try again".into(),
                retry_after: wait.as_secs().max(1),
            })
        }
        Err(Refusal::Account(wait)) => {
            return Err(ApiError::Unauthenticated(format!(
                "too many failed logins: the account is locked for {} more minute(s)",
                minutes(wait)
            )))
        }
    }
    let (user, settings) = app.store.view(|s| {
        let user = match s.auth_by_key(&api::auth::account_key(name)) {
            Some(Object::User(u)) => Some(u.clone()),
            _ => None,
        };
        (
            user,
            s.cluster().map(|c| c.auth.clone()).unwrap_or_default(),
        )
    });
    if let Some(until) = user.as_ref().and_then(|u| u.locked_until) {
        if until > now {
            return Err(ApiError::Unauthenticated(format!(
                "too many failed logins: the account is locked for {} more minute(s)",
                minutes(now.until(until))
            )));
        }
    }
    let check = match &user {
        Some(u) if matches!(u.source, UserSource::Ldap { .. }) => Check::Ldap,
        Some(u) => Check::Local(u.password_hash.clone()),
        None if settings.ldap.is_some() && app.ldap.is_some() => Check::Ldap,
        None => Check::Local(None),
    };
    let verified: Option<User> = match check {
        Check::Local(hash) => {
            let ok = app.hasher.verify(password.to_string(), hash).await;
            if ok {
                user.clone()
            } else {
                None
            }
        }
        Check::Ldap => match &app.ldap {
            Some(ldap) => ldap.login(&app.store, name, password).await?,
            None => None,
        },
    };
    let Some(user) = verified else {
        let locked = app.lockout.failed(
            name,
            addr,
            settings.lockout_failures,
            settings.lockout_duration,
            Instant::now(),
        );
        if locked {
            tracing::warn!(user = %name, "account locked after repeated failed logins");
            if let Some(mut u) = user {
                u.locked_until = Some(now.plus(settings.lockout_duration));
                if let Err(e) = app.store.update(vec![Op::Update(u.into())]).await {
                    tracing::warn!(error = %e, "recording an account lock");
                }
            }
        }
        return Err(ApiError::Unauthenticated(BAD_LOGIN.into()));
    };
    app.lockout.succeeded(name);
    if user.disabled {
        return Err(ApiError::Unauthenticated(format!(
            "user {} is disabled",
            user.name
        )));
    }
    Ok((user, settings))
}
