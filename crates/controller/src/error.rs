//! One error type for every handler, answering with a status and a JSON body
//! `{"message": …, "field": …}`. Internal details go to the log, not the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input; names the field at fault when there is one.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("authentication required")]
    Unauthorized,
    /// A credential was presented and refused; the text says why (expired,
    /// revoked, disabled) without repeating it.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but no grant allows it.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts (logins); retry after the given seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{0}")]
    NotFound(String),
    /// A name in use, or a stale version: the client re-reads and retries.
    #[error("{0}")]
    Conflict(String),
    /// No leader, lost quorum, shutting down: retryable; nothing was written.
    #[error("{0}")]
    Unavailable(String),
    /// The write was proposed and its answer lost: it may still be applied
    /// (503 with `outcome_unknown: true`; re-read before retrying).
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On a 503: the write may still be applied (it was proposed, and its
    /// answer was lost), so read before writing again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outcome_unknown: bool,
}

impl ApiError {
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<api::validate::FieldError> for ApiError {
    fn from(e: api::validate::FieldError) -> Self {
        ApiError::BadRequest {
            message: e.to_string(),
            field: Some(e.field),
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        use api::ApplyError;
        match e {
            store::StoreError::Apply(a) => match a {
                ApplyError::NotFound { .. } => ApiError::NotFound(a.to_string()),
                ApplyError::AlreadyExists { .. }
                | ApplyError::NameTaken { .. }
                | ApplyError::Conflict { .. } => ApiError::Conflict(a.to_string()),
            },
            e @ store::StoreError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            // The text says so too.
            e @ store::StoreError::OutcomeUnknown(_) => ApiError::OutcomeUnknown(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let outcome_unknown = matches!(self, ApiError::OutcomeUnknown(_));
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let (message, field) = match self {
            ApiError::BadRequest { field, message } => (message, field),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                ("internal error; see the manager's log".to_string(), None)
            }
            other => (other.to_string(), None),
        };
        let mut resp = (
            status,
            axum::Json(ErrorBody {
                message,
                field,
                outcome_unknown,
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"berth\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_lost_answer_says_the_write_may_be_applied_and_a_refusal_does_not() {
        let (s, b) = body_of(store::StoreError::OutcomeUnknown("lost".into()).into()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b["outcome_unknown"], true, "{b}");
        let (s, b) = body_of(store::StoreError::Unavailable("no leader".into()).into()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(b.get("outcome_unknown").is_none(), "{b}");
    }
}
