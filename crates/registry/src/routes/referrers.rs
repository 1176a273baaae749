//! `GET /v2/<name>/referrers/<digest>`: the manifests of the repository
//! whose `subject` is `<digest>`, as an OCI image index, optionally
//! filtered by `artifactType` (then said in `OCI-Filters-Applied`).

use super::blobs::parse_digest;
use super::{metadata_error, query, with_body};
use crate::access::{Action, Scope};
use crate::error::RegistryError;
use crate::manifest::OCI_INDEX;
use crate::names::RepositoryName;
use crate::Registry;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

pub async fn get(
    reg: &Registry,
    name: RepositoryName,
    raw: &str,
    req: Request,
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
    let q = query(req.uri());
    let filter: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "artifactType")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut records = reg
        .inner
        .metadata
        .referrers(name.as_str(), &digest)
        .await
        .map_err(metadata_error)?;
    if !filter.is_empty() {
        records.retain(|r| {
            r.artifact_type
                .as_deref()
                .is_some_and(|a| filter.contains(&a))
        });
    }
    records.sort_by(|a, b| a.digest.cmp(&b.digest));
    let manifests: Vec<Value> = records
        .into_iter()
        .map(|r| {
            let mut d = Map::new();
            d.insert("mediaType".into(), json!(r.media_type));
            d.insert("digest".into(), json!(r.digest.to_string()));
            d.insert("size".into(), json!(r.size));
            if let Some(a) = r.artifact_type {
                d.insert("artifactType".into(), json!(a));
            }
            if !r.annotations.is_empty() {
                d.insert("annotations".into(), json!(r.annotations));
            }
            Value::Object(d)
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .map_err(|e| RegistryError::internal("encoding referrers", e))?;
    let mut headers = vec![("content-type", OCI_INDEX.to_string())];
    if !filter.is_empty() {
        headers.push(("oci-filters-applied", "artifactType".to_string()));
    }
    with_body(StatusCode::OK, &headers, Body::from(body))
}
