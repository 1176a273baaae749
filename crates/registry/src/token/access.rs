//! [`TokenAccess`]: the registry's [`Access`] under token auth. A request
//! passes with an `Authorization: Bearer <jwt>` that the [`Verifier`]
//! accepts and whose `access` covers every action the request needs;
//! otherwise it is answered 401 with a `Bearer` challenge that names the
//! token endpoint, the service and the scope to ask for — with
//! `error="invalid_token"` when the token is bad, and
//! `error="insufficient_scope"` when it is valid but lacks an action, as
//! Docker's registry answers (RFC 6750's codes; the token spec keeps 401,
//! so that a client asks the token endpoint again).

use super::jwt::{Claims, Verifier};
use super::scope::{ALL_ACTIONS, REGISTRY, REPOSITORY};
use crate::access::{Access, Challenge, Decision, Scope};
use async_trait::async_trait;
use axum::http::{header, HeaderMap};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct TokenAccess {
    verifier: Arc<Verifier>,
    challenge: Challenge,
}

impl TokenAccess {
    /// Tokens checked by `verifier`, to be had at `realm` (the token
    /// endpoint's absolute URL); the service is the verifier's audience.
    pub fn new(verifier: Arc<Verifier>, realm: impl Into<String>) -> TokenAccess {
        let challenge = Challenge::Bearer {
            realm: realm.into(),
            service: verifier.audience().to_string(),
        };
        TokenAccess {
            verifier,
            challenge,
        }
    }

    fn challenge(&self, scope: &Scope, error: Option<&str>) -> Decision {
        let mut challenge = self.challenge.header_value(scope);
        if let Some(e) = error {
            challenge.push_str(&format!(",error=\"{e}\""));
        }
        Decision::Unauthorized { challenge }
    }
}

/// The token of an `Authorization: Bearer` header, if that is its scheme.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the claims cover the request. `/v2/` needs only a valid token
/// (Docker clients check their login there, with no scope).
fn covers(claims: &Claims, scope: &Scope) -> bool {
    match scope {
        Scope::Base => true,
        Scope::Catalog => claims.allows(REGISTRY, "catalog", ALL_ACTIONS),
        Scope::Repository { name, actions } => actions
            .iter()
            .all(|a| claims.allows(REPOSITORY, name, a.as_str())),
    }
}

#[async_trait]
impl Access for TokenAccess {
    async fn check(&self, scope: &Scope, headers: &HeaderMap) -> Decision {
        let Some(token) = bearer(headers) else {
            return self.challenge(scope, None);
        };
        match self.verifier.verify(token) {
            Err(e) => {
                tracing::debug!(error = %e, "registry token refused");
                self.challenge(scope, Some("invalid_token"))
            }
            Ok(claims) if covers(&claims, scope) => Decision::Allow,
            Ok(_) => self.challenge(scope, Some("insufficient_scope")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Action;
    use crate::token::{ResourceScope, Signer, SigningKey};
    use std::time::Duration;

    const REALM: &str = "https://m:7443/auth/token";

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn decisions_follow_the_tokens_access() {
        let key = SigningKey::generate().unwrap();
        let verifier = Arc::new(Verifier::new("iss", "svc", [key.public_key().clone()]));
        let signer = Signer::new(key, "iss");
        let access = TokenAccess::new(verifier, REALM);
        let token = signer
            .sign(
                "alice",
                "svc",
                vec![
                    ResourceScope::repository("eng/app", &["pull"]),
                    ResourceScope::repository("eng/all", &["*"]),
                ],
                Duration::from_secs(300),
            )
            .unwrap()
            .token;
        let repo = |name: &str, actions: &[Action]| Scope::Repository {
            name: name.into(),
            actions: actions.to_vec(),
        };
        let pull = repo("eng/app", &[Action::Pull]);
        let push = repo("eng/app", &[Action::Pull, Action::Push]);
        let challenge = |scope: &Scope, error: &str| Decision::Unauthorized {
            challenge: format!(
                r#"Bearer realm="{REALM}",service="svc"{}{error}"#,
                if *scope == Scope::Base {
                    String::new()
                } else {
                    format!(",scope=\"{scope}\"")
                }
            ),
        };
        let bearer = headers(&format!("Bearer {token}"));
        let lower = headers(&format!("bearer {token}"));
        let cases = [
            (&pull, &bearer, Decision::Allow),
            (&pull, &lower, Decision::Allow),
            (&Scope::Base, &bearer, Decision::Allow),
            (
                &repo("eng/all", &[Action::Push, Action::Delete]),
                &bearer,
                Decision::Allow,
            ),
            (
                &push,
                &bearer,
                challenge(&push, r#",error="insufficient_scope""#),
            ),
            (
                &Scope::Catalog,
                &bearer,
                challenge(&Scope::Catalog, r#",error="insufficient_scope""#),
            ),
            (&pull, &HeaderMap::new(), challenge(&pull, "")),
            (&Scope::Base, &HeaderMap::new(), challenge(&Scope::Base, "")),
            (
                &pull,
                &headers("Basic YWxpY2U6c2VjcmV0"),
                challenge(&pull, ""),
            ),
            (
                &pull,
                &headers("Bearer nope"),
                challenge(&pull, r#",error="invalid_token""#),
            ),
        ];
        for (scope, h, want) in cases {
            assert_eq!(access.check(scope, h).await, want, "{scope:?} {h:?}");
        }
    }
}
