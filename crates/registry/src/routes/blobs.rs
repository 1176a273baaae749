//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`: a blob the repository
//! links (or a manifest it holds, whose bytes are a blob too), whole or one
//! `Range`; deleting unlinks it from the repository and leaves the bytes to
//! the garbage collector.

use super::{empty, metadata_error, storage_error, with_body, DOCKER_CONTENT_DIGEST};
use crate::access::{Action, Scope};
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::names::RepositoryName;
use crate::Registry;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;

pub(crate) fn parse_digest(raw: &str) -> Result<Digest, RegistryError> {
    raw.parse().map_err(|e: crate::digest::DigestError| {
        RegistryError::new(Code::DigestInvalid, e.to_string())
            .with_detail(serde_json::json!({"digest": raw}))
    })
}

fn blob_unknown(d: &Digest) -> RegistryError {
    RegistryError::new(Code::BlobUnknown, "blob unknown to registry")
        .with_detail(serde_json::json!({"digest": d.to_string()}))
}

/// A `Range` header's one range over `size` bytes: `None` to serve the
/// whole (no header, another unit, several ranges or a malformed one, which
/// RFC 9110 lets a server ignore), `Some(Err)` when no byte of it exists.
pub(crate) fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let suffix: u64 = b.parse().ok()?;
        if suffix == 0 || size == 0 {
            return Some(Err(()));
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            u64::MAX
        } else {
            b.parse().ok()?
        };
        if end < start {
            return None;
        }
        if start >= size {
            return Some(Err(()));
        }
        (start, end.min(size - 1))
    };
    Some(Ok(range))
}

pub async fn get(
    reg: &Registry,
    name: RepositoryName,
    raw: &str,
    req: Request,
    head: bool,
) -> Result<Response, RegistryError> {
    reg.authorize(
        Scope::Repository {
            name: name.to_string(),
            actions: vec![Action::Pull],
        },
        req.headers(),
    )
    .await?;
    let digest = parse_digest(raw)?;
    let md = &reg.inner.metadata;
    let linked = md
        .blob_linked(name.as_str(), &digest)
        .await
        .map_err(metadata_error)?
        || md
            .manifest(name.as_str(), &digest)
            .await
            .map_err(metadata_error)?
            .is_some();
    if !linked {
        return Err(blob_unknown(&digest));
    }
    let blobs = &reg.inner.blobs;
    let size = blobs
        .stat(&digest)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| blob_unknown(&digest))?;
    let range = super::header_str(req.headers(), header::RANGE).and_then(|r| parse_range(r, size));
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Some(Err(())) => {
            return empty(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &[("content-range", format!("bytes */{size}"))],
            )
        }
    };
    let mut headers = vec![
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", len.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("etag", format!("\"{digest}\"")),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        headers.push((
            "content-range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        ));
    }
    let body = if head || len == 0 {
        Body::empty()
    } else {
        let stream = blobs
            .read(&digest, start, len)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| blob_unknown(&digest))?;
        Body::from_stream(stream)
    };
    with_body(status, &headers, body)
}

pub async fn delete(
    reg: &Registry,
    name: RepositoryName,
    raw: &str,
    req: Request,
) -> Result<Response, RegistryError> {
    reg.authorize(
        Scope::Repository {
            name: name.to_string(),
            actions: vec![Action::Delete],
        },
        req.headers(),
    )
    .await?;
    if !reg.inner.config.delete_enabled {
        return Err(RegistryError::new(
            Code::Unsupported,
            "deletion is disabled on this registry",
        ));
    }
    let digest = parse_digest(raw)?;
    if !reg
        .inner
        .metadata
        .unlink_blob(name.as_str(), &digest)
        .await
        .map_err(metadata_error)?
    {
        return Err(blob_unknown(&digest));
    }
    empty(
        StatusCode::ACCEPTED,
        &[(DOCKER_CONTENT_DIGEST, digest.to_string())],
    )
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    type Case = (&'static str, u64, Option<Result<(u64, u64), ()>>);

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        let cases: &[Case] = &[
            ("bytes=0-9", 100, Some(Ok((0, 9)))),
            ("bytes=90-200", 100, Some(Ok((90, 99)))),
            ("bytes=10-", 100, Some(Ok((10, 99)))),
            ("bytes=-10", 100, Some(Ok((90, 99)))),
            ("bytes=-200", 100, Some(Ok((0, 99)))),
            ("bytes=100-", 100, Some(Err(()))),
            ("bytes=-0", 100, Some(Err(()))),
            ("bytes=0-", 0, Some(Err(()))),
            ("bytes=5-1", 100, None),
            ("bytes=0-1,5-6", 100, None),
            ("items=0-1", 100, None),
            ("bytes=a-b", 100, None),
        ];
        for (v, size, want) in cases {
            assert_eq!(&parse_range(v, *size), want, "{v} of {size}");
        }
    }
}
