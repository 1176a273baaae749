//! `GET /v2/<name>/tags/list`: the repository's tags in byte order, with
//! `n` and `last`, and a `Link` to the next page when more follow.

use super::{metadata_error, next_link, page_request, query};
use crate::access::{Action, Scope};
use crate::error::{Code, RegistryError};
use crate::names::RepositoryName;
use crate::Registry;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub async fn get(
    reg: &Registry,
    name: RepositoryName,
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
    let md = &reg.inner.metadata;
    if !md
        .repository_exists(name.as_str())
        .await
        .map_err(metadata_error)?
    {
        return Err(
            RegistryError::new(Code::NameUnknown, "repository name not known to registry")
                .with_detail(serde_json::json!({"name": name.as_str()})),
        );
    }
    let q = query(req.uri());
    let pr = page_request(&q, reg.inner.config.max_page)?;
    // n=0 asks for an empty list and no Link.
    if pr.n == Some(0) {
        return Ok(
            axum::Json(serde_json::json!({"name": name.as_str(), "tags": []})).into_response(),
        );
    }
    let page = md.tags(name.as_str(), &pr).await.map_err(metadata_error)?;
    let mut resp =
        axum::Json(serde_json::json!({"name": name.as_str(), "tags": page.items})).into_response();
    if let (true, Some(n), Some(last)) = (page.more, pr.n, page.items.last()) {
        if let Ok(v) = next_link(&format!("/v2/{name}/tags/list"), n, last).parse() {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}
