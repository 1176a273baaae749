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
    /// No leader, lost quorum, shutting down: retryable.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
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
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            // The text says whether the write may still be applied.
            e @ (store::StoreError::Unavailable(_) | store::StoreError::OutcomeUnknown(_)) => {
                ApiError::Unavailable(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
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
        let mut resp = (status, axum::Json(ErrorBody { message, field })).into_response();
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
