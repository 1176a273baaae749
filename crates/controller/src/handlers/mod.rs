//! Request handlers, one file per resource, mirroring the URLs.

pub mod access;
pub mod audit;
pub mod bundles;
pub mod cluster;
pub mod identity;
pub mod info;
pub mod nodes;
pub mod services;
pub mod session;
pub mod tasks;

use crate::error::ApiError;
use axum::body::Bytes;
use serde::de::DeserializeOwned;

/// Parses a JSON body; a malformed body is a 400 that names the field at fault
/// (axum's own extractor answers 422 without the path).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = (path != ".").then_some(path);
        ApiError::BadRequest {
            message: format!("invalid request body: {inner}"),
            field,
        }
    })
}
