//! The registry's request errors: each carries one of the distribution spec's
//! error codes and its HTTP status, and renders as the spec's JSON body
//! `{"errors":[{"code","message","detail"}]}`. Internal failures are logged
//! and answered 500 (or 503 when the metadata store is unavailable) without
//! their details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The spec's error codes (code-1 … code-14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    /// The status distribution answers each code with, unless a handler
    /// says otherwise (416 for a range, 413 for a manifest too large).
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// One failed request, as the client will see it.
#[derive(Debug)]
pub struct RegistryError {
    status: StatusCode,
    errors: Vec<(Code, String, Value)>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// An internal failure: no spec code, the body says only that much.
    internal: bool,
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RegistryError {
            status: code.status(),
            errors: vec![(code, message.into(), Value::Null)],
            headers: vec![],
            internal: false,
        }
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        if let Some(e) = self.errors.last_mut() {
            e.2 = detail;
        }
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// Several errors of one kind in one answer (one per missing blob).
    pub fn many(code: Code, items: impl IntoIterator<Item = (String, Value)>) -> Self {
        RegistryError {
            status: code.status(),
            errors: items.into_iter().map(|(m, d)| (code, m, d)).collect(),
            headers: vec![],
            internal: false,
        }
    }

    /// A failure of ours (I/O, a broken invariant): logged here, not shown.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!("registry: {context}: {err}");
        RegistryError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            errors: vec![],
            headers: vec![],
            internal: true,
        }
    }

    /// The metadata store cannot answer now (lost quorum, timeout): retry.
    pub fn unavailable(err: impl std::fmt::Display) -> Self {
        tracing::warn!("registry: metadata unavailable: {err}");
        let mut e = RegistryError::internal("metadata", "unavailable");
        e.status = StatusCode::SERVICE_UNAVAILABLE;
        e
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn codes(&self) -> Vec<Code> {
        self.errors.iter().map(|e| e.0).collect()
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = if self.internal {
            json!({"errors": [{"code": "UNKNOWN", "message": "internal error, see the registry's log"}]})
        } else {
            json!({"errors": self.errors.iter().map(|(c, m, d)| json!({
                "code": c.as_str(), "message": m, "detail": d,
            })).collect::<Vec<_>>()})
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            resp.headers_mut().append(name, value);
        }
        resp
    }
}
