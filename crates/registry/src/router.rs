//! Every route of the registry: [`app`] builds the axum router, and
//! [`Endpoint::parse`] maps a `/v2/…` path onto the spec's endpoints.
//! Repository names contain slashes, so the path is read from its end: the
//! last segments say which endpoint it is, what precedes them is the name.
//!
//! | method | path | handler |
//! |---|---|---|
//! | GET | `/v2/` | [`routes::base`] |
//! | GET | `/v2/_catalog` | [`routes::catalog`] |
//! | GET, HEAD, DELETE | `/v2/<name>/blobs/<digest>` | [`routes::blobs`] |
//! | POST | `/v2/<name>/blobs/uploads/` | [`routes::uploads::start`] |
//! | GET, PATCH, PUT, DELETE | `/v2/<name>/blobs/uploads/<uuid>` | [`routes::uploads`] |
//! | GET, HEAD, PUT, DELETE | `/v2/<name>/manifests/<reference>` | [`routes::manifests`] |
//! | GET | `/v2/<name>/tags/list` | [`routes::tags`] |
//! | GET | `/v2/<name>/referrers/<digest>` | [`routes::referrers`] |

use crate::error::{Code, RegistryError};
use crate::names::RepositoryName;
use crate::routes;
use crate::Registry;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One of the spec's endpoints, its name already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    Blob(RepositoryName, String),
    UploadStart(RepositoryName),
    Upload(RepositoryName, String),
    Manifest(RepositoryName, String),
    Tags(RepositoryName),
    Referrers(RepositoryName, String),
}

impl Endpoint {
    /// The endpoint a path names; 404 for no endpoint, `NAME_INVALID` for
    /// an endpoint under a name that the spec's grammar refuses.
    pub fn parse(path: &str) -> Result<Endpoint, RegistryError> {
        let not_found = || {
            RegistryError::new(Code::NameUnknown, "no such endpoint")
                .with_status(axum::http::StatusCode::NOT_FOUND)
        };
        let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
        if rest.is_empty() || rest == "/" {
            return Ok(Endpoint::Base);
        }
        let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name_of = |k: usize| -> Result<RepositoryName, RegistryError> {
            if k == 0 {
                return Err(not_found());
            }
            let raw = segs[..k].join("/");
            RepositoryName::parse(&raw).ok_or_else(|| {
                RegistryError::new(
                    Code::NameInvalid,
                    format!("invalid repository name {raw:?}"),
                )
                .with_detail(serde_json::json!({"name": raw}))
            })
        };
        if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let name = name_of(n - 3)?;
            return Ok(if segs[n - 1].is_empty() {
                Endpoint::UploadStart(name)
            } else {
                Endpoint::Upload(name, segs[n - 1].to_string())
            });
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Ok(Endpoint::UploadStart(name_of(n - 2)?));
        }
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Ok(Endpoint::Tags(name_of(n - 2)?));
        }
        if n >= 3 && !segs[n - 1].is_empty() {
            let last = segs[n - 1].to_string();
            match segs[n - 2] {
                "blobs" => return Ok(Endpoint::Blob(name_of(n - 2)?, last)),
                "manifests" => return Ok(Endpoint::Manifest(name_of(n - 2)?, last)),
                "referrers" => return Ok(Endpoint::Referrers(name_of(n - 2)?, last)),
                _ => {}
            }
        }
        Err(not_found())
    }
}

/// The whole registry as a router serving `/v2/`, to be merged into the
/// controller's.
pub fn app(registry: Registry) -> Router {
    Router::new()
        .route("/v2", axum::routing::any(dispatch))
        .route("/v2/", axum::routing::any(dispatch))
        .route("/v2/{*path}", axum::routing::any(dispatch))
        .layer(axum::middleware::map_response(api_version))
        .with_state(registry)
}

/// Docker clients look for this header on `/v2/` to know they speak to a
/// v2 registry; every answer carries it.
async fn api_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    match route(reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(reg: Registry, req: Request) -> Result<Response, RegistryError> {
    let endpoint = Endpoint::parse(req.uri().path())?;
    let method = req.method().clone();
    use Endpoint as E;
    match (method, endpoint) {
        (Method::GET, E::Base) => routes::base::get(&reg, req).await,
        (Method::GET, E::Catalog) => routes::catalog::get(&reg, req).await,
        (Method::GET, E::Blob(n, d)) => routes::blobs::get(&reg, n, &d, req, false).await,
        (Method::HEAD, E::Blob(n, d)) => routes::blobs::get(&reg, n, &d, req, true).await,
        (Method::DELETE, E::Blob(n, d)) => routes::blobs::delete(&reg, n, &d, req).await,
        (Method::POST, E::UploadStart(n)) => routes::uploads::start(&reg, n, req).await,
        (Method::GET, E::Upload(n, id)) => routes::uploads::status(&reg, n, &id, req).await,
        (Method::PATCH, E::Upload(n, id)) => routes::uploads::patch(&reg, n, &id, req).await,
        (Method::PUT, E::Upload(n, id)) => routes::uploads::close(&reg, n, &id, req).await,
        (Method::DELETE, E::Upload(n, id)) => routes::uploads::cancel(&reg, n, &id, req).await,
        (Method::GET, E::Manifest(n, r)) => routes::manifests::get(&reg, n, &r, req, false).await,
        (Method::HEAD, E::Manifest(n, r)) => routes::manifests::get(&reg, n, &r, req, true).await,
        (Method::PUT, E::Manifest(n, r)) => routes::manifests::put(&reg, n, &r, req).await,
        (Method::DELETE, E::Manifest(n, r)) => routes::manifests::delete(&reg, n, &r, req).await,
        (Method::GET, E::Tags(n)) => routes::tags::get(&reg, n, req).await,
        (Method::GET, E::Referrers(n, d)) => routes::referrers::get(&reg, n, &d, req).await,
        (m, e) => Err(RegistryError::new(
            Code::Unsupported,
            format!("{m} is not an operation of {e:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn paths_map_onto_endpoints_from_their_end() {
        let d = format!("sha256:{}", "a".repeat(64));
        let id = "0a1b2c3d-0000-4000-8000-000000000000";
        let cases = [
            ("/v2/".to_string(), Endpoint::Base),
            ("/v2".into(), Endpoint::Base),
            ("/v2/_catalog".into(), Endpoint::Catalog),
            (
                format!("/v2/eng/app/blobs/{d}"),
                Endpoint::Blob(name("eng/app"), d.clone()),
            ),
            (
                "/v2/eng/app/blobs/uploads/".into(),
                Endpoint::UploadStart(name("eng/app")),
            ),
            (
                "/v2/eng/app/blobs/uploads".into(),
                Endpoint::UploadStart(name("eng/app")),
            ),
            (
                format!("/v2/a/blobs/uploads/{id}"),
                Endpoint::Upload(name("a"), id.into()),
            ),
            (
                "/v2/a/b/c/manifests/latest".into(),
                Endpoint::Manifest(name("a/b/c"), "latest".into()),
            ),
            ("/v2/a/tags/list".into(), Endpoint::Tags(name("a"))),
            (
                format!("/v2/a/referrers/{d}"),
                Endpoint::Referrers(name("a"), d.clone()),
            ),
            // Names may hold the words the endpoints use.
            (
                "/v2/blobs/manifests/manifests/v1".into(),
                Endpoint::Manifest(name("blobs/manifests"), "v1".into()),
            ),
            (
                "/v2/x/tags/tags/list".into(),
                Endpoint::Tags(name("x/tags")),
            ),
            (
                format!("/v2/x/blobs/uploads/blobs/{d}"),
                Endpoint::Blob(name("x/blobs/uploads"), d.clone()),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::parse(&path).unwrap(), want, "{path}");
        }
        for (path, code) in [
            ("/v2/Eng/manifests/latest", Code::NameInvalid),
            ("/v2/a//b/manifests/latest", Code::NameInvalid),
            ("/v2/a/unknown/x", Code::NameUnknown),
            ("/v2/manifests/latest", Code::NameUnknown),
            ("/v3/", Code::NameUnknown),
        ] {
            let e = Endpoint::parse(path).unwrap_err();
            assert_eq!(e.codes(), vec![code], "{path}");
        }
    }
}
