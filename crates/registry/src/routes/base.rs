//! `GET /v2/`: the registry speaks the spec (200), or the caller must
//! authenticate first (401 with the challenge).

use crate::access::Scope;
use crate::error::RegistryError;
use crate::Registry;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};

pub async fn get(reg: &Registry, req: Request) -> Result<Response, RegistryError> {
    reg.authorize(Scope::Base, req.headers()).await?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}
