//! The handlers, one file per URL of the spec (see [`crate::router`]), and
//! what they share: authorization, query strings, streamed bodies, and the
//! mapping of storage and metadata errors onto the spec's.

pub mod base;
pub mod blobs;
pub mod catalog;
pub mod manifests;
pub mod referrers;
pub mod tags;
pub mod uploads;

use crate::access::{Decision, Scope};
use crate::error::{Code, RegistryError};
use crate::metadata::{MetadataError, PageRequest};
use crate::storage::{ByteStream, StorageError};
use crate::Registry;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::TryStreamExt;

pub(crate) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

impl Registry {
    /// Asks the access policy; 401 with its challenge, or 403.
    pub(crate) async fn authorize(
        &self,
        scope: Scope,
        headers: &HeaderMap,
    ) -> Result<(), RegistryError> {
        match self.inner.access.check(&scope, headers).await {
            Decision::Allow => Ok(()),
            Decision::Unauthorized { challenge } => Err(RegistryError::new(
                Code::Unauthorized,
                "authentication required",
            )
            .with_detail(serde_json::json!({"scope": scope.to_string()}))
            .with_header(header::WWW_AUTHENTICATE, &challenge)),
            Decision::Denied => Err(RegistryError::new(
                Code::Denied,
                "requested access to the resource is denied",
            )
            .with_detail(serde_json::json!({"scope": scope.to_string()}))),
        }
    }
}

/// The query string's pairs, decoded, in order (`tag` may repeat).
pub(crate) fn query(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `n` and `last` of a listing; `n` is capped at the configured page size
/// (the answer then carries a `Link` to the rest, as the spec allows).
pub(crate) fn page_request(
    q: &[(String, String)],
    max: usize,
) -> Result<PageRequest, RegistryError> {
    let n = match param(q, "n") {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            RegistryError::new(Code::Unsupported, format!("n={v:?} is not a count"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    Ok(PageRequest {
        last: param(q, "last").map(str::to_string),
        n: n.map(|n| n.min(max)),
    })
}

/// An RFC 5988 `Link` to the next page of a listing at `path`.
pub(crate) fn next_link(path: &str, n: usize, last: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("n", &n.to_string())
        .append_pair("last", last)
        .finish();
    format!("<{path}?{q}>; rel=\"next\"")
}

/// The request body as a stream of chunks, never held whole.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

/// The declared `Content-Length`, if any.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn metadata_error(e: MetadataError) -> RegistryError {
    match e {
        MetadataError::Unavailable(m) => RegistryError::unavailable(m),
        MetadataError::Internal(m) => RegistryError::internal("metadata", m),
    }
}

pub(crate) fn storage_error(e: StorageError) -> RegistryError {
    match e {
        StorageError::UploadUnknown => {
            RegistryError::new(Code::BlobUploadUnknown, "blob upload unknown to registry")
        }
        StorageError::DigestMismatch { expected, actual } => RegistryError::new(
            Code::DigestInvalid,
            "provided digest did not match uploaded content",
        )
        .with_detail(
            serde_json::json!({"expected": expected.to_string(), "actual": actual.to_string()}),
        ),
        StorageError::SizeMismatch { declared, received } => RegistryError::new(
            Code::SizeInvalid,
            "provided length did not match content length",
        )
        .with_detail(serde_json::json!({"declared": declared, "received": received})),
        StorageError::RangeMismatch { offset } => RegistryError::new(
            Code::BlobUploadInvalid,
            format!("the chunk must start at offset {offset}"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE),
        StorageError::Body(e) => RegistryError::new(
            Code::BlobUploadInvalid,
            format!("request body broke off: {e}"),
        ),
        e @ StorageError::Io { .. } => RegistryError::internal("storage", e),
    }
}

/// A response with an empty body and the given headers (axum adds
/// `Content-Length: 0`).
pub(crate) fn empty(
    status: StatusCode,
    headers: &[(&str, String)],
) -> Result<Response, RegistryError> {
    with_body(status, headers, Body::empty())
}

pub(crate) fn with_body(
    status: StatusCode,
    headers: &[(&str, String)],
    body: Body,
) -> Result<Response, RegistryError> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|e| RegistryError::internal("response header", e))?;
        let name = header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| RegistryError::internal("response header", e))?;
        h.append(name, value);
    }
    Ok(resp)
}
