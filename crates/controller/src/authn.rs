//! Who is calling (ucp-auth-api's authentication): every request under
//! `/api/v1` except the login carries a credential, and [`authenticate`]
//! turns it into a [`Caller`] in the request's extensions, or answers 401.
//!
//! Credentials, in the order they are looked at:
//! - `Authorization: Bearer <secret>`: a session (made by a login, short-lived
//!   and renewed while in use), an API token (`berth token create`), or the
//!   admin token `berth up`/`init` wrote into the founder's credentials file;
//! - a client certificate from a bundle, which the TLS layer checked against
//!   the client root CA and the API maps to its user by the SHA-256 of its
//!   public key (so removing the bundle revokes it).
//!
//! Only hashes of secrets are stored; a presented secret is hashed and
//! looked up, so no comparison of secrets happens at all (the admin token's
//! hash is compared in constant time). The user is read from the current
//! state on every request: a disabled user is refused at once, whatever
//! credential it holds.

use crate::{error::ApiError, AppState};
use api::auth::{TokenPurpose, User};
use api::{Kind, Object, Timestamp};
use auth::{Authorizer, Operation};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// The prefixes of the secrets the API makes, so a leaked one is easy to
/// recognise (and to scan for).
pub const SESSION_PREFIX: &str = "berth-session-";
pub const API_TOKEN_PREFIX: &str = "berth-token-";

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh secret with `prefix` (256 random bits) and the hex SHA-256 the
/// store keeps of it.
pub fn new_secret(prefix: &str) -> (String, String) {
    let secret = format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()));
    let sha = hex::encode(token_hash(&secret));
    (secret, sha)
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// What the connection tells about a request, put in its extensions by the
/// TLS layer ([`crate::tls::serve`]).
#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub remote: Option<SocketAddr>,
    /// The client certificate (DER) the handshake verified against the
    /// client root CA, if one was presented.
    pub client_cert: Option<Arc<Vec<u8>>>,
}

/// How the caller proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The founder's admin token (its hash is in the cluster object).
    AdminToken,
    Session {
        token_id: String,
    },
    ApiToken {
        token_id: String,
    },
    Bundle {
        bundle_id: String,
    },
}

/// The authenticated caller of a request, with the decisions of the state
/// it was authenticated against.
#[derive(Clone)]
pub struct Caller {
    /// The user's id ("" for the admin token of a cluster without an
    /// `admin` user, made before users existed).
    pub user_id: String,
    pub name: String,
    pub admin: bool,
    pub credential: Credential,
    authz: Arc<Authorizer>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("credential", &self.credential)
            .finish()
    }
}

impl Caller {
    /// Whether a grant (or being an admin) allows `op` on `collection`.
    pub fn may(&self, op: Operation, collection: &str) -> bool {
        self.admin || self.authz.allows(&self.user_id, op, collection)
    }

    /// [`Caller::may`], or a 403 that names the operation and collection.
    pub fn require(&self, op: Operation, collection: &str) -> Result<(), ApiError> {
        if self.may(op, collection) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} may not {op} in collection {collection}: no grant allows it",
                self.name
            )))
        }
    }

    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only an admin may {what} ({} is not an admin)",
                self.name
            )))
        }
    }

    /// A caller for tests and in-process use: `user` as stored.
    pub fn for_user(user: &User, authz: Arc<Authorizer>, credential: Credential) -> Caller {
        Caller {
            user_id: user.meta.id.clone(),
            name: user.name.clone(),
            admin: user.admin,
            credential,
            authz,
        }
    }
}

/// The authenticated user's name, in the response's extensions.
#[derive(Clone, Debug)]
pub struct CallerName(pub String);

/// The user named `admin`, if it exists: the admin token acts as it.
pub const ADMIN_USER: &str = "admin";

/// What a bearer secret or certificate maps to in `state`, or why not.
fn identify(
    app: &AppState,
    state: &api::State,
    bearer: Option<&str>,
    peer: Option<&Peer>,
    now: Timestamp,
) -> Result<(User, Credential, Option<api::auth::Token>), ApiError> {
    let refused = |why: &str| ApiError::Unauthenticated(why.to_string());
    let user_of = |id: &str| -> Result<User, ApiError> {
        match state.auth_object(Kind::User, id) {
            Some(Object::User(u)) => Ok(u.clone()),
            _ => Err(refused("the credential's user no longer exists")),
        }
    };
    if let Some(secret) = bearer {
        let hash = token_hash(secret);
        if constant_time_eq(&hash, &app.admin_token_sha256) {
            let admin = match state.auth_by_key(&api::auth::account_key(ADMIN_USER)) {
                // As it is now: demoted or disabled, the token is too.
                Some(Object::User(u)) => u.clone(),
                // A cluster founded before users existed: the token is a
                // superuser of its own until the first user is made.
                _ if state.auth_objects(Kind::User).next().is_none() => User {
                    meta: api::Meta::new(""),
                    name: ADMIN_USER.into(),
                    full_name: String::new(),
                    admin: true,
                    disabled: false,
                    password_hash: None,
                    source: Default::default(),
                    locked_until: None,
                },
                _ => {
                    return Err(refused(
                        "the admin token's user (admin) was removed: log in as another admin",
                    ))
                }
            };
            return Ok((admin, Credential::AdminToken, None));
        }
        let key = api::auth::token_secret_key(&hex::encode(hash));
        let Some(Object::Token(t)) = state.auth_by_key(&key) else {
            return Err(refused(
                "the token is not valid (unknown, revoked, or its session ended)",
            ));
        };
        if t.expires_at.is_some_and(|e| e <= now) {
            return Err(refused(match t.purpose {
                TokenPurpose::Session => "the session has expired: log in again",
                TokenPurpose::Api => "the API token has expired",
            }));
        }
        let user = user_of(&t.user_id)?;
        let credential = match t.purpose {
            TokenPurpose::Session => Credential::Session {
                token_id: t.meta.id.clone(),
            },
            TokenPurpose::Api => Credential::ApiToken {
                token_id: t.meta.id.clone(),
            },
        };
        return Ok((user, credential, Some(t.clone())));
    }
    if let Some(der) = peer.and_then(|p| p.client_cert.as_ref()) {
        let Ok(sha) = crate::bundle::public_key_sha256_der(der) else {
            return Err(refused("the client certificate could not be read"));
        };
        let Some(Object::ClientBundle(b)) = state.auth_by_key(&api::auth::bundle_key_key(&sha))
        else {
            return Err(refused(
                "the client certificate belongs to no bundle (it was removed)",
            ));
        };
        if b.expires_at <= now {
            return Err(refused("the client bundle has expired"));
        }
        let user = user_of(&b.user_id)?;
        return Ok((
            user,
            Credential::Bundle {
                bundle_id: b.meta.id.clone(),
            },
            None,
        ));
    }
    Err(ApiError::Unauthorized)
}

/// The bearer secret of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Who presents `bearer` (or the certificate in `peer`) now: the whole of
/// a request's authentication, with the decisions it will be authorized
/// by. The session's token comes back too, for its renewal.
pub fn caller_of(
    app: &AppState,
    bearer: Option<&str>,
    peer: Option<&Peer>,
    now: Timestamp,
) -> Result<(Caller, Option<api::auth::Token>), ApiError> {
    // A copy of the state (a few reference counts), so that a rebuild of
    // the decisions, when this request is the first after a change, does
    // not hold the store's lock.
    let s = app.store.view(|s| s.clone());
    let (user, credential, token) = identify(app, &s, bearer, peer, now)?;
    if user.disabled {
        return Err(ApiError::Unauthenticated(format!(
            "user {} is disabled",
            user.name
        )));
    }
    let authz = app.authz.get(&s);
    Ok((Caller::for_user(&user, authz, credential), token))
}

/// Middleware: puts the request's [`Caller`] in its extensions, or answers
/// 401. A session past half its lifetime is renewed (in the background:
/// the request does not wait for the write).
pub async fn authenticate(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let now = Timestamp::now();
    let peer = req.extensions().get::<Peer>().cloned();
    let (caller, token) = caller_of(&app, bearer(req.headers()), peer.as_ref(), now)?;
    if let Some(t) = token.filter(|t| t.purpose == TokenPurpose::Session) {
        let settings = app
            .store
            .view(|s| s.cluster().map(|c| c.auth.clone()))
            .unwrap_or_default();
        renew_if_due(&app, t, &settings, now);
    }
    let name = caller.name.clone();
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    // The audit log (outside this layer) learns who it was.
    resp.extensions_mut().insert(CallerName(name));
    Ok(resp)
}

/// Middleware (inside [`authenticate`]): admins only.
pub async fn admin_only(req: Request, next: Next) -> Result<Response, ApiError> {
    match req.extensions().get::<Caller>() {
        Some(c) if c.admin => Ok(next.run(req).await),
        Some(c) => Err(ApiError::Forbidden(format!(
            "only an admin may change or read cluster-wide settings ({} is not an admin)",
            c.name
        ))),
        None => Err(ApiError::Unauthorized),
    }
}

/// When a session's new expiry would be: a full lifetime from now, but no
/// later than its maximum lifetime from the login. `None` when it is not
/// yet past half its lifetime (no write needed).
pub fn renewal(
    token: &api::auth::Token,
    settings: &api::auth::AuthSettings,
    now: Timestamp,
) -> Option<Timestamp> {
    let expires = token.expires_at?;
    let half = settings.session_lifetime / 2;
    if now.until(expires) > half {
        return None;
    }
    let cap = token.meta.created_at.plus(settings.session_max_lifetime);
    let next = now.plus(settings.session_lifetime).min(cap);
    (next > expires).then_some(next)
}

fn renew_if_due(
    app: &AppState,
    token: api::auth::Token,
    settings: &api::auth::AuthSettings,
    now: Timestamp,
) {
    let Some(next) = renewal(&token, settings, now) else {
        return;
    };
    let store = app.store.clone();
    tokio::spawn(async move {
        let mut t = token;
        t.expires_at = Some(next);
        // A conflict means another request renewed it first.
        if let Err(e) = store.update(vec![api::Op::Update(t.into())]).await {
            tracing::debug!(error = %e, "renewing a session");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_hashes() {
        let a = token_hash("secret");
        assert!(constant_time_eq(&a, &token_hash("secret")));
        assert!(!constant_time_eq(&a, &token_hash("secreT")));
    }

    #[test]
    fn secrets_are_fresh_and_only_their_hash_is_kept() {
        let (a, ha) = new_secret(SESSION_PREFIX);
        let (b, _) = new_secret(SESSION_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(SESSION_PREFIX));
        assert_eq!(ha, hex::encode(token_hash(&a)));
        assert!(!ha.contains(&a[SESSION_PREFIX.len()..]));
    }

    #[test]
    fn a_session_is_renewed_past_half_its_life_up_to_its_maximum() {
        let settings = api::auth::AuthSettings::default(); // 1 h, at most 24 h
        let hour = std::time::Duration::from_secs(3600);
        let login = Timestamp(1_000_000_000);
        let mut t = api::auth::Token {
            meta: api::Meta::new("t"),
            user_id: "u".into(),
            name: "t".into(),
            purpose: TokenPurpose::Session,
            secret_sha256: String::new(),
            expires_at: Some(login.plus(hour)),
        };
        t.meta.created_at = login;
        // Ten minutes in: not yet.
        assert_eq!(renewal(&t, &settings, login.plus(hour / 6)), None);
        // Forty minutes in: an hour from now.
        let now = login.plus(hour * 2 / 3);
        assert_eq!(renewal(&t, &settings, now), Some(now.plus(hour)));
        // Near the maximum: capped at 24 h after the login, then never again.
        let late = login.plus(hour * 23 + hour * 2 / 3);
        t.expires_at = Some(login.plus(hour * 24 - hour / 6));
        assert_eq!(renewal(&t, &settings, late), Some(login.plus(hour * 24)));
        t.expires_at = Some(login.plus(hour * 24));
        assert_eq!(renewal(&t, &settings, late), None);
    }
}
