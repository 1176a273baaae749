//! The token endpoint of Docker's registry token spec, as an axum
//! [`MethodRouter`] the controller mounts (at `/auth/token`, say):
//!
//! - `GET ?service=…&scope=…&account=…`, with `Authorization: Basic` or
//!   nothing (anonymous), answers `{"token","access_token","expires_in",
//!   "issued_at"}`;
//! - `POST` with the OAuth2 form (`grant_type=password`, `username`,
//!   `password`, `service`, `client_id`, `scope`), answers
//!   `{"access_token","scope","expires_in","issued_at"}`. Refresh tokens
//!   are not issued, so `grant_type=refresh_token` is refused as
//!   unsupported.
//!
//! Who the caller is and what they may do is the [`Authority`]'s (the
//! controller's users, tokens and repository permissions); this module
//! only asks it, and signs exactly the intersection of what was asked and
//! what was granted, on resource types berth knows. Bad credentials are
//! answered 401 with a `Basic` challenge; a request without any gets the
//! anonymous token (what anonymous may have, perhaps nothing).

use super::jwt::{Issued, Signer};
use super::scope::{ResourceScope, Scope};
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use data_encoding::BASE64;
use serde_json::json;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long tokens last unless configured: distribution's default.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The spec: "a token should never be returned with less than 60 seconds
/// to live".
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// The largest OAuth2 form read.
const MAX_FORM: usize = 64 * 1024;

/// A user name and its secret (a password or an API token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One attempt to get a token.
#[derive(Clone, Debug)]
pub struct Login {
    pub credentials: Option<Credentials>,
    /// The peer's address, when the server records it (axum's
    /// `into_make_service_with_connect_info`), for lockout by address.
    pub client: Option<SocketAddr>,
}

/// Whom a token is for: its `sub`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
}

/// Why the authority will not issue a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Unknown user, wrong secret, disabled account: 401.
    #[error("invalid username or password")]
    BadCredentials,
    /// Locked out after too many failures: 429.
    #[error("too many failed attempts; try again later")]
    TooManyAttempts,
    /// The store cannot answer now: 503, retryable.
    #[error("the cluster cannot answer now: {0}")]
    Unavailable(String),
}

/// What the controller provides: the check of a credential and the
/// decision over repositories.
#[async_trait]
pub trait Authority: Send + Sync + 'static {
    /// The principal the login's credentials prove, `Ok(None)` for an
    /// anonymous login (no credentials) that is allowed.
    async fn authenticate(&self, login: &Login) -> Result<Option<Principal>, Refused>;

    /// What `principal` (or anonymous) may have of `requested` (each
    /// resource once, of a known type). Answering more than asked is
    /// harmless: the endpoint keeps only the intersection.
    async fn grant(
        &self,
        principal: Option<&Principal>,
        requested: &[ResourceScope],
    ) -> Vec<ResourceScope>;
}

/// The endpoint's parts.
pub struct TokenService {
    signer: Arc<Signer>,
    authority: Arc<dyn Authority>,
    service: String,
    lifetime: Duration,
    basic_realm: String,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("signer", &self.signer)
            .field("service", &self.service)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// Tokens for `service` (their `aud`, the registry's name in its
    /// challenges), signed by `signer`, lasting [`DEFAULT_LIFETIME`].
    pub fn new(
        signer: Arc<Signer>,
        authority: Arc<dyn Authority>,
        service: impl Into<String>,
    ) -> TokenService {
        TokenService {
            signer,
            authority,
            service: service.into(),
            lifetime: DEFAULT_LIFETIME,
            basic_realm: "berth".into(),
        }
    }

    /// How long tokens last; at least [`MIN_LIFETIME`], whatever is asked.
    pub fn with_lifetime(mut self, lifetime: Duration) -> TokenService {
        self.lifetime = lifetime.max(MIN_LIFETIME);
        self
    }

    /// The realm of the `Basic` challenge that answers bad credentials.
    pub fn with_basic_realm(mut self, realm: impl Into<String>) -> TokenService {
        self.basic_realm = realm.into();
        self
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Authenticates, asks for the grant and signs the intersection.
    async fn issue(&self, login: Login, requested: &Scope) -> Result<(Issued, Scope), Failure> {
        let principal = self
            .authority
            .authenticate(&login)
            .await
            .map_err(Failure::Refused)?;
        let known: Vec<ResourceScope> = requested
            .resources()
            .iter()
            .filter(|r| r.is_known())
            .cloned()
            .collect();
        let granted = if known.is_empty() {
            vec![]
        } else {
            self.authority.grant(principal.as_ref(), &known).await
        };
        let access = Scope::from(known).intersect(&granted);
        let subject = principal.as_ref().map(|p| p.name.as_str()).unwrap_or("");
        let issued = self
            .signer
            .sign(subject, &self.service, access.clone(), self.lifetime)
            .map_err(|e| {
                tracing::error!(error = %e, "signing a registry token");
                Failure::Internal
            })?;
        Ok((issued, Scope::from(access)))
    }

    fn check_service(&self, service: Option<&str>) -> Result<(), Failure> {
        match service {
            Some(s) if s != self.service => {
                Err(Failure::BadRequest(format!("unknown service {s:?}")))
            }
            _ => Ok(()),
        }
    }
}

/// `GET` and `POST` of the token endpoint, to be routed at its path.
pub fn endpoint<S: Clone + Send + Sync + 'static>(service: TokenService) -> MethodRouter<S> {
    axum::routing::get(get_token)
        .post(post_token)
        .with_state(Arc::new(service))
}

/// A refusal, answered in the registry's error form on `GET` and in
/// OAuth2's on `POST`.
#[derive(Debug)]
enum Failure {
    BadRequest(String),
    UnsupportedGrant(String),
    Refused(Refused),
    Internal,
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::BadRequest(_) | Failure::UnsupportedGrant(_) => StatusCode::BAD_REQUEST,
            Failure::Refused(Refused::BadCredentials) => StatusCode::UNAUTHORIZED,
            Failure::Refused(Refused::TooManyAttempts) => StatusCode::TOO_MANY_REQUESTS,
            Failure::Refused(Refused::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::BadRequest(m) | Failure::UnsupportedGrant(m) => m.clone(),
            Failure::Refused(r) => r.to_string(),
            Failure::Internal => "internal error".into(),
        }
    }

    fn respond(self, svc: &TokenService, oauth: bool) -> Response {
        let status = self.status();
        let body = if oauth {
            let error = match &self {
                Failure::BadRequest(_) => "invalid_request",
                Failure::UnsupportedGrant(_) => "unsupported_grant_type",
                Failure::Refused(Refused::BadCredentials) => "invalid_grant",
                Failure::Refused(_) | Failure::Internal => "temporarily_unavailable",
            };
            json!({"error": error, "error_description": self.message()})
        } else {
            let code = match &self {
                Failure::BadRequest(_) | Failure::UnsupportedGrant(_) => "UNSUPPORTED",
                Failure::Refused(Refused::BadCredentials) => "UNAUTHORIZED",
                Failure::Refused(Refused::TooManyAttempts) => "TOOMANYREQUESTS",
                Failure::Refused(Refused::Unavailable(_)) | Failure::Internal => "UNAVAILABLE",
            };
            json!({"errors": [{"code": code, "message": self.message()}]})
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            let realm = format!(
                "Basic realm=\"{}\"",
                svc.basic_realm.replace(['"', '\\'], "")
            );
            if let Ok(v) = HeaderValue::from_str(&realm) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

/// The credentials of an `Authorization` header: none without one, an
/// error for one that is not well-formed `Basic` (another scheme is not a
/// credential the endpoint can check, and anonymous is not what was meant).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<Credentials>, Failure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || Failure::Refused(Refused::BadCredentials);
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, b64) = value.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let raw = BASE64.decode(b64.trim().as_bytes()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (user, secret) = raw.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credentials {
        user: user.to_string(),
        secret: secret.to_string(),
    }))
}

fn client_of(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn scope_of(q: &[(String, String)]) -> Result<Scope, Failure> {
    Scope::from_params(
        q.iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    )
    .map_err(|e| Failure::BadRequest(e.to_string()))
}

fn issued_at(t: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn get_token(State(svc): State<Arc<TokenService>>, req: Request) -> Response {
    // The request's parts are Sync, so the future holding them is Send.
    let (parts, _) = req.into_parts();
    match get_inner(&svc, &parts).await {
        Ok(r) => r,
        Err(f) => f.respond(&svc, false),
    }
}

async fn get_inner(
    svc: &TokenService,
    req: &axum::http::request::Parts,
) -> Result<Response, Failure> {
    let q = pairs(req.uri.query().unwrap_or("").as_bytes());
    svc.check_service(param(&q, "service"))?;
    let scope = scope_of(&q)?;
    let credentials = basic_credentials(&req.headers)?;
    if let (Some(account), Some(c)) = (param(&q, "account"), &credentials) {
        if !account.is_empty() && account != c.user {
            return Err(Failure::BadRequest(format!(
                "account {account:?} is not the user of the credentials"
            )));
        }
    }
    let login = Login {
        credentials,
        client: client_of(&req.extensions),
    };
    let (issued, _) = svc.issue(login, &scope).await?;
    let body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": svc.lifetime.as_secs(),
        "issued_at": issued_at(issued.claims.iat),
    });
    Ok(axum::Json(body).into_response())
}

async fn post_token(State(svc): State<Arc<TokenService>>, req: Request) -> Response {
    match post_inner(&svc, req).await {
        Ok(r) => r,
        Err(f) => f.respond(&svc, true),
    }
}

async fn post_inner(svc: &TokenService, req: Request) -> Result<Response, Failure> {
    let client = client_of(req.extensions());
    let body: Bytes = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| Failure::BadRequest(format!("the form must be at most {MAX_FORM} bytes")))?;
    let form = pairs(&body);
    let required = |key: &str| {
        param(&form, key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Failure::BadRequest(format!("{key} is required")))
    };
    svc.check_service(Some(required("service")?))?;
    required("client_id")?;
    let credentials = match required("grant_type")? {
        "password" => Credentials {
            user: required("username")?.to_string(),
            secret: required("password")?.to_string(),
        },
        other => {
            return Err(Failure::UnsupportedGrant(format!(
                "grant_type {other:?} is not supported (only password)"
            )))
        }
    };
    let login = Login {
        credentials: Some(credentials),
        client,
    };
    let (issued, granted) = svc.issue(login, &scope_of(&form)?).await?;
    let body = json!({
        "access_token": issued.token,
        "token": issued.token,
        "scope": granted.to_string(),
        "expires_in": svc.lifetime.as_secs(),
        "issued_at": issued_at(issued.claims.iat),
    });
    Ok(axum::Json(body).into_response())
}
