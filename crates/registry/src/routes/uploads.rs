//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (a monolithic push with
//! `?digest=`, a cross-repository mount with `?mount=&from=`, or a session),
//! and on `/v2/<name>/blobs/uploads/<uuid>`: `PATCH` (a chunk, in order, or
//! 416), `PUT ?digest=` (close, with an optional last chunk), `GET` (the
//! status: 204 with the `Range` received) and `DELETE` (cancel).

use super::blobs::parse_digest;
use super::{
    body_stream, content_length, empty, metadata_error, param, query, storage_error,
    DOCKER_CONTENT_DIGEST,
};
use crate::access::{Action, Decision, Scope};
use crate::digest::{Algorithm, Digest};
use crate::error::{Code, RegistryError};
use crate::names::RepositoryName;
use crate::storage::{Chunk, StorageError, UploadState};
use crate::Registry;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

fn push_scope(name: &RepositoryName) -> Scope {
    Scope::Repository {
        name: name.to_string(),
        actions: vec![Action::Pull, Action::Push],
    }
}

fn location(name: &RepositoryName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `0-<last byte received>`; `0-0` before any byte, as distribution says it.
fn range_of(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn session_headers(name: &RepositoryName, state: &UploadState) -> Vec<(&'static str, String)> {
    vec![
        ("location", location(name, &state.id)),
        ("range", range_of(state.offset)),
        ("docker-upload-uuid", state.id.clone()),
    ]
}

/// A 416 that tells the client where the upload stands.
fn out_of_order(name: &RepositoryName, id: &str, offset: u64) -> RegistryError {
    RegistryError::new(
        Code::BlobUploadInvalid,
        format!("chunks must be in order: the next starts at offset {offset}"),
    )
    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    .with_header(header::LOCATION, &location(name, id))
    .with_header(header::RANGE, &range_of(offset))
    .with_header(header::HeaderName::from_static("docker-upload-uuid"), id)
}

fn upload_unknown(id: &str) -> RegistryError {
    RegistryError::new(Code::BlobUploadUnknown, "blob upload unknown to registry")
        .with_detail(serde_json::json!({"uuid": id}))
}

/// The session, if it exists and belongs to this repository.
async fn session(
    reg: &Registry,
    name: &RepositoryName,
    id: &str,
) -> Result<UploadState, RegistryError> {
    match reg.inner.blobs.upload(id).await.map_err(storage_error)? {
        Some(s) if s.repository == name.as_str() => Ok(s),
        _ => Err(upload_unknown(id)),
    }
}

/// `Content-Range` of a chunk: the spec's `<start>-<end>`, or the HTTP form
/// `bytes <start>-<end>/<total or *>` some clients send. Inclusive.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(raw) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        RegistryError::new(
            Code::BlobUploadInvalid,
            "Content-Range is <start>-<end>, inclusive",
        )
        .with_detail(serde_json::json!({"content-range": String::from_utf8_lossy(raw.as_bytes())}))
    };
    let s = raw.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes ")
        .map(|r| r.split('/').next().unwrap_or(""))
        .unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Err(bad());
    }
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// The chunk a `PATCH` or closing `PUT` carries, with its declared range.
fn chunk(req: Request) -> Result<Chunk, RegistryError> {
    let range = content_range(req.headers())?;
    let len = range.map(|(a, b)| b - a + 1);
    if let (Some(l), Some(cl)) = (len, content_length(req.headers())) {
        if l != cl {
            return Err(RegistryError::new(
                Code::SizeInvalid,
                format!("Content-Range says {l} bytes, Content-Length {cl}"),
            ));
        }
    }
    Ok(Chunk {
        start: range.map(|r| r.0),
        len,
        body: body_stream(req.into_body()),
    })
}

fn map_append_error(name: &RepositoryName, id: &str, e: StorageError) -> RegistryError {
    match e {
        StorageError::RangeMismatch { offset } => out_of_order(name, id, offset),
        StorageError::UploadUnknown => upload_unknown(id),
        e => storage_error(e),
    }
}

fn blob_created(name: &RepositoryName, digest: &Digest) -> Result<Response, RegistryError> {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
        ],
    )
}

pub async fn start(
    reg: &Registry,
    name: RepositoryName,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(push_scope(&name), req.headers()).await?;
    let q = query(req.uri());
    let md = &reg.inner.metadata;
    if let Some(mount) = param(&q, "mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = param(&q, "from").and_then(RepositoryName::parse) {
            if mountable(reg, &from, &digest, req.headers()).await? {
                let size = reg.inner.blobs.stat(&digest).await.map_err(storage_error)?;
                if let Some(size) = size {
                    md.link_blob(name.as_str(), &digest, size)
                        .await
                        .map_err(metadata_error)?;
                    return blob_created(&name, &digest);
                }
            }
        }
        // Not mountable: an ordinary session, as the spec says (202).
    } else if let Some(raw) = param(&q, "digest") {
        let digest = parse_digest(raw)?;
        let size = reg
            .inner
            .blobs
            .write(&digest, body_stream(req.into_body()))
            .await
            .map_err(storage_error)?;
        md.link_blob(name.as_str(), &digest, size)
            .await
            .map_err(metadata_error)?;
        return blob_created(&name, &digest);
    }
    let algorithm = match param(&q, "digest-algorithm") {
        None => Algorithm::Sha256,
        Some(a) => Algorithm::parse(a).ok_or_else(|| {
            RegistryError::new(
                Code::DigestInvalid,
                format!("unsupported digest algorithm {a:?}"),
            )
        })?,
    };
    let state = reg
        .inner
        .blobs
        .start_upload(name.as_str(), algorithm)
        .await
        .map_err(storage_error)?;
    empty(StatusCode::ACCEPTED, &session_headers(&name, &state))
}

/// A blob may be mounted from a repository the caller may pull from and
/// that links it; anything less starts an upload instead, so a mount never
/// reveals a blob of a repository the caller cannot read.
async fn mountable(
    reg: &Registry,
    from: &RepositoryName,
    digest: &Digest,
    headers: &HeaderMap,
) -> Result<bool, RegistryError> {
    let scope = Scope::Repository {
        name: from.to_string(),
        actions: vec![Action::Pull],
    };
    if reg.inner.access.check(&scope, headers).await != Decision::Allow {
        return Ok(false);
    }
    reg.inner
        .metadata
        .blob_linked(from.as_str(), digest)
        .await
        .map_err(metadata_error)
}

pub async fn status(
    reg: &Registry,
    name: RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(push_scope(&name), req.headers()).await?;
    let state = session(reg, &name, id).await?;
    empty(StatusCode::NO_CONTENT, &session_headers(&name, &state))
}

pub async fn patch(
    reg: &Registry,
    name: RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(push_scope(&name), req.headers()).await?;
    let state = session(reg, &name, id).await?;
    let chunk = chunk(req)?;
    if let Some(start) = chunk.start {
        // Refused before a byte is read: the store checks again under its lock.
        if start != state.offset {
            return Err(out_of_order(&name, id, state.offset));
        }
    }
    let state = reg
        .inner
        .blobs
        .append(id, chunk)
        .await
        .map_err(|e| map_append_error(&name, id, e))?;
    empty(StatusCode::ACCEPTED, &session_headers(&name, &state))
}

pub async fn close(
    reg: &Registry,
    name: RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(push_scope(&name), req.headers()).await?;
    let q = query(req.uri());
    let raw = param(&q, "digest").ok_or_else(|| {
        RegistryError::new(
            Code::DigestInvalid,
            "the closing PUT names the blob's digest (?digest=)",
        )
    })?;
    let digest = parse_digest(raw)?;
    session(reg, &name, id).await?;
    // An empty body appends nothing; the store makes no write for it.
    let last = Some(chunk(req)?);
    let size = reg
        .inner
        .blobs
        .finish(id, last, &digest)
        .await
        .map_err(|e| map_append_error(&name, id, e))?;
    reg.inner
        .metadata
        .link_blob(name.as_str(), &digest, size)
        .await
        .map_err(metadata_error)?;
    blob_created(&name, &digest)
}

pub async fn cancel(
    reg: &Registry,
    name: RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(push_scope(&name), req.headers()).await?;
    session(reg, &name, id).await?;
    if !reg.inner.blobs.cancel(id).await.map_err(storage_error)? {
        return Err(upload_unknown(id));
    }
    empty(StatusCode::NO_CONTENT, &[])
}
