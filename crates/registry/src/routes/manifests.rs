//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<tag or digest>`.
//! A pushed manifest is held in memory (up to the configured limit, 413
//! past it), checked against its digest and its kind's rules, its bytes
//! stored as a blob exactly as sent, and recorded with its tags in one
//! metadata write that also checks that everything it references is in the
//! repository (`MANIFEST_BLOB_UNKNOWN` otherwise; its `subject` need not
//! be). A pull answers with the stored media type, if the `Accept` header
//! allows it.

use super::{
    content_length, empty, header_str, metadata_error, query, storage_error, with_body,
    DOCKER_CONTENT_DIGEST,
};
use crate::access::{Action, Scope};
use crate::digest::{Algorithm, Digest};
use crate::error::{Code, RegistryError};
use crate::manifest::{self, bare_media_type};
use crate::metadata::ManifestRecord;
use crate::names::{is_tag, Reference, ReferenceError, RepositoryName};
use crate::storage::once;
use crate::Registry;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::json;

fn scope(name: &RepositoryName, actions: &[Action]) -> Scope {
    Scope::Repository {
        name: name.to_string(),
        actions: actions.to_vec(),
    }
}

fn parse_reference(raw: &str) -> Result<Reference, RegistryError> {
    Reference::parse(raw).map_err(|e| match e {
        ReferenceError::Digest(d) => RegistryError::new(Code::DigestInvalid, d.to_string())
            .with_detail(json!({"reference": raw})),
        ReferenceError::Neither => RegistryError::new(Code::ManifestInvalid, e.to_string())
            .with_detail(json!({"reference": raw})),
    })
}

fn manifest_unknown(reference: &str) -> RegistryError {
    RegistryError::new(Code::ManifestUnknown, "manifest unknown to registry")
        .with_detail(json!({"reference": reference}))
}

/// 404 for a manifest: `NAME_UNKNOWN` if the repository itself is unknown.
async fn not_found(reg: &Registry, name: &RepositoryName, reference: &str) -> RegistryError {
    match reg.inner.metadata.repository_exists(name.as_str()).await {
        Ok(false) => RegistryError::new(Code::NameUnknown, "repository name not known to registry")
            .with_detail(json!({"name": name.as_str()})),
        _ => manifest_unknown(reference),
    }
}

/// Whether the client's `Accept` header admits `media_type`: no header,
/// a wildcard, plain JSON, or the type itself.
fn acceptable(headers: &HeaderMap, media_type: &str) -> bool {
    let accepted: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(bare_media_type)
        .filter(|t| !t.is_empty())
        .collect();
    accepted.is_empty()
        || accepted.iter().any(|&t| {
            t == media_type || t == "*/*" || t == "application/*" || t == "application/json"
        })
}

async fn resolve(
    reg: &Registry,
    name: &RepositoryName,
    reference: &Reference,
    raw: &str,
) -> Result<ManifestRecord, RegistryError> {
    let md = &reg.inner.metadata;
    let digest = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => match md
            .resolve_tag(name.as_str(), t)
            .await
            .map_err(metadata_error)?
        {
            Some(d) => d,
            None => return Err(not_found(reg, name, raw).await),
        },
    };
    match md
        .manifest(name.as_str(), &digest)
        .await
        .map_err(metadata_error)?
    {
        Some(r) => Ok(r),
        None => Err(not_found(reg, name, raw).await),
    }
}

pub async fn get(
    reg: &Registry,
    name: RepositoryName,
    raw: &str,
    req: Request,
    head: bool,
) -> Result<Response, RegistryError> {
    reg.authorize(scope(&name, &[Action::Pull]), req.headers())
        .await?;
    let reference = parse_reference(raw)?;
    let record = resolve(reg, &name, &reference, raw).await?;
    if !acceptable(req.headers(), &record.media_type) {
        return Err(manifest_unknown(raw).with_detail(json!({
            "reference": raw,
            "mediaType": record.media_type,
            "reason": "the manifest's media type is not in the Accept header",
        })));
    }
    let headers = [
        ("content-type", record.media_type.clone()),
        (DOCKER_CONTENT_DIGEST, record.digest.to_string()),
        ("content-length", record.size.to_string()),
        ("etag", format!("\"{}\"", record.digest)),
    ];
    let body = if head {
        Body::empty()
    } else {
        let stream = reg
            .inner
            .blobs
            .read(&record.digest, 0, record.size)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| {
                RegistryError::internal(
                    "manifest",
                    format!(
                        "{name}@{}: recorded, but its bytes are missing",
                        record.digest
                    ),
                )
            })?;
        Body::from_stream(stream)
    };
    with_body(StatusCode::OK, &headers, body)
}

fn too_large(limit: usize) -> RegistryError {
    RegistryError::new(
        Code::ManifestInvalid,
        format!("a manifest is at most {limit} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    .with_detail(json!({"limit": limit}))
}

/// The body, whole, refused past `limit` bytes without reading further.
async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, RegistryError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| RegistryError::new(Code::ManifestInvalid, format!("request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub async fn put(
    reg: &Registry,
    name: RepositoryName,
    raw: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(scope(&name, &[Action::Pull, Action::Push]), req.headers())
        .await?;
    let reference = parse_reference(raw)?;
    let limit = reg.inner.config.max_manifest_bytes;
    if content_length(req.headers()).is_some_and(|l| l > limit as u64) {
        return Err(too_large(limit));
    }
    // More tags by `?tag=` (spec end-7b), when pushing by digest.
    let mut tags: Vec<String> = match &reference {
        Reference::Tag(t) => vec![t.clone()],
        Reference::Digest(_) => query(req.uri())
            .into_iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| v)
            .collect(),
    };
    if let Some(bad) = tags.iter().find(|t| !is_tag(t)) {
        return Err(
            RegistryError::new(Code::ManifestInvalid, format!("invalid tag {bad:?}"))
                .with_detail(json!({"tag": bad})),
        );
    }
    tags.dedup();
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_string);
    let bytes = read_limited(req.into_body(), limit).await?;
    let digest = match &reference {
        Reference::Digest(d) => {
            let actual = d.algorithm().digest_of(&bytes);
            if &actual != d {
                return Err(RegistryError::new(
                    Code::DigestInvalid,
                    "provided digest did not match uploaded content",
                )
                .with_detail(json!({"expected": d.to_string(), "actual": actual.to_string()})));
            }
            actual
        }
        Reference::Tag(_) => Algorithm::Sha256.digest_of(&bytes),
    };
    let record = manifest::parse(content_type.as_deref(), &bytes, digest.clone())?;
    let subject = record.subject.clone();
    // The bytes first: a manifest recorded is always readable. If the
    // record is then refused, the blob is garbage for the collector.
    reg.inner
        .blobs
        .write(&digest, once(bytes))
        .await
        .map_err(storage_error)?;
    if let Err(missing) = reg
        .inner
        .metadata
        .put_manifest(name.as_str(), record, &tags)
        .await
        .map_err(metadata_error)?
    {
        return Err(manifest_blob_unknown(missing.blobs, missing.manifests));
    }
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
    ];
    if let Some(s) = subject {
        headers.push(("oci-subject", s.to_string()));
    }
    if matches!(reference, Reference::Digest(_)) && !tags.is_empty() {
        headers.push(("oci-tag", tags.join(", ")));
    }
    empty(StatusCode::CREATED, &headers)
}

fn manifest_blob_unknown(blobs: Vec<Digest>, manifests: Vec<Digest>) -> RegistryError {
    RegistryError::many(
        Code::ManifestBlobUnknown,
        blobs
            .into_iter()
            .map(|d| {
                (
                    "blob unknown to the repository".to_string(),
                    json!({"digest": d.to_string()}),
                )
            })
            .chain(manifests.into_iter().map(|d| {
                (
                    "manifest unknown to the repository".to_string(),
                    json!({"digest": d.to_string()}),
                )
            })),
    )
}

pub async fn delete(
    reg: &Registry,
    name: RepositoryName,
    raw: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(scope(&name, &[Action::Delete]), req.headers())
        .await?;
    if !reg.inner.config.delete_enabled {
        return Err(RegistryError::new(
            Code::Unsupported,
            "deletion is disabled on this registry",
        ));
    }
    let reference = parse_reference(raw)?;
    let md = &reg.inner.metadata;
    let deleted = match &reference {
        Reference::Tag(t) => md.delete_tag(name.as_str(), t).await,
        Reference::Digest(d) => md.delete_manifest(name.as_str(), d).await,
    }
    .map_err(metadata_error)?;
    if !deleted {
        return Err(not_found(reg, &name, raw).await);
    }
    empty(StatusCode::ACCEPTED, &[])
}
