//! Who may do what: the [`Access`] trait decides each request from its scope
//! (a repository and the actions asked, the catalog, or the base endpoint)
//! and its headers, and answers allow, 401 with a challenge, or 403.
//! [`AllowAll`] and [`DenyAll`] are the implementations the tests use; the
//! controller's will check the cluster's tokens and grants, and answer with a
//! [`Challenge::Bearer`] naming its token endpoint.

use async_trait::async_trait;
use axum::http::HeaderMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// What a request asks for, in the terms of Docker's token scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `GET /v2/`: only whether the caller is authenticated.
    Base,
    /// `GET /v2/_catalog` (`registry:catalog:*`).
    Catalog,
    Repository {
        name: String,
        actions: Vec<Action>,
    },
}

impl fmt::Display for Scope {
    /// The token spec's form: `repository:eng/app:pull,push`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Base => Ok(()),
            Scope::Catalog => f.write_str("registry:catalog:*"),
            Scope::Repository { name, actions } => {
                write!(f, "repository:{name}:")?;
                let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// The `WWW-Authenticate` challenge of a 401.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`
    Basic { realm: String },
    /// `Bearer realm="…",service="…",scope="…"`: Docker's token spec; the
    /// scope is the request's.
    Bearer { realm: String, service: String },
}

impl Challenge {
    pub fn header_value(&self, scope: &Scope) -> String {
        match self {
            Challenge::Basic { realm } => format!("Basic realm={}", quoted(realm)),
            Challenge::Bearer { realm, service } => {
                let mut v = format!("Bearer realm={},service={}", quoted(realm), quoted(service));
                if *scope != Scope::Base {
                    v.push_str(&format!(",scope={}", quoted(&scope.to_string())));
                }
                v
            }
        }
    }
}

/// An RFC 9110 quoted string.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No (valid) credential: 401 `UNAUTHORIZED` with this challenge.
    Unauthorized {
        challenge: String,
    },
    /// A credential that may not do this: 403 `DENIED`.
    Denied,
}

#[async_trait]
pub trait Access: Send + Sync + 'static {
    async fn check(&self, scope: &Scope, headers: &HeaderMap) -> Decision;
}

/// Everyone may do everything (tests, a registry on loopback).
#[derive(Clone, Debug, Default)]
pub struct AllowAll;

#[async_trait]
impl Access for AllowAll {
    async fn check(&self, _: &Scope, _: &HeaderMap) -> Decision {
        Decision::Allow
    }
}

/// No one may do anything: a request without an `Authorization` header is
/// challenged, one with any credential is denied.
#[derive(Clone, Debug)]
pub struct DenyAll {
    pub challenge: Challenge,
}

#[async_trait]
impl Access for DenyAll {
    async fn check(&self, scope: &Scope, headers: &HeaderMap) -> Decision {
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            Decision::Denied
        } else {
            Decision::Unauthorized {
                challenge: self.challenge.header_value(scope),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_the_scope_as_the_token_spec_does() {
        let bearer = Challenge::Bearer {
            realm: "https://m:7443/auth/token".into(),
            service: "berth".into(),
        };
        let scope = Scope::Repository {
            name: "eng/app".into(),
            actions: vec![Action::Pull, Action::Push],
        };
        assert_eq!(
            bearer.header_value(&scope),
            r#"Bearer realm="https://m:7443/auth/token",service="berth",scope="repository:eng/app:pull,push""#
        );
        assert_eq!(
            bearer.header_value(&Scope::Base),
            r#"Bearer realm="https://m:7443/auth/token",service="berth""#
        );
        assert_eq!(
            bearer.header_value(&Scope::Catalog),
            r#"Bearer realm="https://m:7443/auth/token",service="berth",scope="registry:catalog:*""#
        );
        let basic = Challenge::Basic {
            realm: r#"a "b""#.into(),
        };
        assert_eq!(basic.header_value(&scope), r#"Basic realm="a \"b\"""#);
    }
}
