//! `GET /v2/_catalog`: repository names in byte order, paginated with `n`
//! and `last` and a `Link` to the next page, as distribution serves it.

use super::{metadata_error, next_link, page_request, query};
use crate::access::Scope;
use crate::error::RegistryError;
use crate::Registry;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub async fn get(reg: &Registry, req: Request) -> Result<Response, RegistryError> {
    reg.authorize(Scope::Catalog, req.headers()).await?;
    let q = query(req.uri());
    let pr = page_request(&q, reg.inner.config.max_page)?;
    if pr.n == Some(0) {
        return Ok(axum::Json(serde_json::json!({"repositories": []})).into_response());
    }
    let page = reg
        .inner
        .metadata
        .repositories(&pr)
        .await
        .map_err(metadata_error)?;
    let mut resp = axum::Json(serde_json::json!({"repositories": page.items})).into_response();
    if let (true, Some(n), Some(last)) = (page.more, pr.n, page.items.last()) {
        if let Ok(v) = next_link("/v2/_catalog", n, last).parse() {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}
