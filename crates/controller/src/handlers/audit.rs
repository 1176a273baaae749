//! The audit trail of the API: [`record`] (middleware around every
//! `/api/v1` call) writes an entry per call into this manager's
//! [`crate::audit::AuditLog`], and `GET /api/v1/audit` (admins) reads it.
//!
//! What is kept follows the cluster's `AuthSettings::audit_level`:
//! `none` nothing; `metadata` every call that changes something and every
//! refused call (401, 403, 429), with who, method, path, object, status,
//! time and remote address; `request` every call, reads too, with the
//! request body, secrets redacted. (Reads are left out at `metadata`
//! because the CLI polls while it shows progress.)

use crate::audit::{redact_bytes, AuditDecision, AuditEntry, AuditFilter};
use crate::authn::{CallerName, Peer};
use crate::{error::ApiError, AppState};
use api::auth::AuditLevel;
use api::Timestamp;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

/// Larger bodies are not kept (the entry says how large it was).
const BODY_LIMIT: usize = 1 << 20;

/// "services web" for `/api/v1/services/web/update`: the resource and the
/// object named, if any.
fn object_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/").unwrap_or(path);
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let resource = parts.next()?;
    Some(match parts.next() {
        Some(name) => format!("{resource} {name}"),
        None => resource.to_string(),
    })
}

pub async fn record(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(log) = app.audit.clone() else {
        return next.run(req).await;
    };
    let level = app
        .store
        .view(|s| s.cluster().map(|c| c.auth.audit_level))
        .unwrap_or_default();
    if level == AuditLevel::None {
        return next.run(req).await;
    }
    let method = req.method().clone();
    // Inside `/api/v1`, whose prefix the nesting strips.
    let path = format!("/api/v1{}", req.uri().path());
    let remote = req
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.remote)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let is_read = method == Method::GET || method == Method::HEAD;
    let is_login = path.ends_with("/auth/login");
    // The body is kept at `request` level, and read for a login at any
    // level to know which account was tried (its password is redacted).
    let (req, body) = if (level == AuditLevel::Request && !is_read) || is_login {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(bytes) => {
                let seen = redact_bytes(&bytes);
                (
                    Request::from_parts(parts, axum::body::Body::from(bytes)),
                    seen,
                )
            }
            Err(_) => {
                // Too large to keep (or broken): the handler would refuse it too.
                let resp = axum::response::IntoResponse::into_response(ApiError::bad(
                    "body",
                    "the request body is too large",
                ));
                log.record(AuditEntry {
                    time: Timestamp::now(),
                    user: None,
                    method: method.to_string(),
                    path,
                    object: None,
                    status: resp.status().as_u16(),
                    remote,
                    decision: AuditDecision::Allowed,
                    body: None,
                    manager: String::new(),
                });
                return resp;
            }
        }
    } else {
        (req, None)
    };
    let resp = next.run(req).await;
    let status = resp.status();
    let refused = matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    );
    if is_read && level != AuditLevel::Request && !refused {
        return resp;
    }
    let user = resp
        .extensions()
        .get::<CallerName>()
        .map(|c| c.0.clone())
        .or_else(|| {
            body.as_ref()
                .filter(|_| is_login)
                .and_then(|b| b.get("username"))
                .and_then(|u| u.as_str())
                .map(str::to_string)
        });
    let decision = match status {
        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS => AuditDecision::Unauthenticated,
        StatusCode::FORBIDDEN => AuditDecision::Denied,
        _ => AuditDecision::Allowed,
    };
    log.record(AuditEntry {
        time: Timestamp::now(),
        user,
        method: method.to_string(),
        object: object_of(&path),
        path,
        status: status.as_u16(),
        remote,
        decision,
        body: if level == AuditLevel::Request {
            body
        } else {
            None
        },
        manager: String::new(),
    });
    resp
}

/// `GET /api/v1/audit` query: `since` is a duration back from now (`1h`)
/// or an RFC 3339 time.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub user: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub method: Option<String>,
    pub decision: Option<AuditDecision>,
    #[serde(default)]
    pub limit: usize,
}

fn when(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    if let Ok(d) = humantime::parse_duration(text) {
        let now = Timestamp::now();
        return Ok(Timestamp(now.0.saturating_sub(d.as_millis() as u64)));
    }
    serde_json::from_value::<Timestamp>(serde_json::Value::String(text.to_string())).map_err(|_| {
        ApiError::bad(
            field,
            format!("{text:?} is neither a duration (1h, 30m) nor an RFC 3339 time"),
        )
    })
}

pub async fn list(
    State(app): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Some(log) = app.audit.clone() else {
        return Err(ApiError::Unavailable(
            "this manager keeps no audit log".into(),
        ));
    };
    let filter = AuditFilter {
        user: q.user,
        since: q.since.as_deref().map(|s| when("since", s)).transpose()?,
        until: q.until.as_deref().map(|s| when("until", s)).transpose()?,
        method: q.method,
        decision: q.decision,
        limit: q.limit,
    };
    let entries = tokio::task::spawn_blocking(move || {
        log.flush()?;
        log.query(&filter)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("reading the audit log: {e}")))?;
    Ok(Json(entries))
}

#[cfg(test)]
mod tests {
    #[test]
    fn objects_are_named_from_the_path() {
        assert_eq!(
            super::object_of("/api/v1/services/web/update").as_deref(),
            Some("services web")
        );
        assert_eq!(super::object_of("/api/v1/users").as_deref(), Some("users"));
    }
}
