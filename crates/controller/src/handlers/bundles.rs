//! `/api/v1/bundles` (UCP's client bundles, signed by ucp-client-root-ca):
//! a new key and a certificate the client root CA signs for the caller,
//! zipped with the cluster root CA and the environment scripts. The key is
//! made here and sent once, over TLS; only the SHA-256 of the public key is
//! stored, which is how a presented certificate is mapped back to its user
//! (`crate::authn`), so removing the bundle revokes the certificate.

use super::identity::check_name;
use super::parse_json;
use crate::authn::Caller;
use crate::bundle::{self, BundleFiles};
use crate::wire::{BundleView, CreateBundle};
use crate::{error::ApiError, AppState};
use api::auth::{bundle_label_key, ClientBundle};
use api::{Kind, Object, Op, Timestamp};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

fn view(s: &api::State, b: &ClientBundle) -> BundleView {
    BundleView {
        id: b.meta.id.clone(),
        label: b.label.clone(),
        user: match s.auth_object(Kind::User, &b.user_id) {
            Some(Object::User(u)) => u.name.clone(),
            _ => b.user_id.clone(),
        },
        created_at: b.meta.created_at,
        expires_at: b.expires_at,
        public_key_sha256: b.public_key_sha256.clone(),
    }
}

fn own_user(caller: &Caller) -> Result<&str, ApiError> {
    if caller.user_id.is_empty() {
        return Err(ApiError::bad(
            "authorization",
            "the admin token belongs to no user: log in as a user to make a bundle",
        ));
    }
    Ok(&caller.user_id)
}

pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBundle = if body.is_empty() {
        CreateBundle::default()
    } else {
        parse_json(&body)?
    };
    let docker_context = match req.format.as_deref() {
        None | Some("ucp") => false,
        Some("docker-context") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("{other:?} is not a bundle format: ucp or docker-context"),
            ))
        }
    };
    let user_id = own_user(&caller)?.to_string();
    let id = api::new_id();
    let label = req
        .label
        .unwrap_or_else(|| format!("bundle-{}", api::id::short(&id)));
    check_name("label", &label)?;
    let (client_ca, trust_pem) = app.store.view(|s| {
        if s.auth_by_key(&bundle_label_key(&user_id, &label)).is_some() {
            return Err(ApiError::Conflict(format!(
                "you already have a bundle labelled {label}"
            )));
        }
        s.cluster()
            .and_then(|c| c.security.as_ref())
            .map(|sec| (sec.client_ca.clone(), sec.trust_pem()))
            .ok_or_else(|| ApiError::Unavailable("the store holds no cluster security".into()))
    })?;
    let root = ca::RootCa::from_stored(&ca::StoredRootCa {
        cert_pem: client_ca.cert_pem,
        key_pem: client_ca.key_pem,
    })
    .map_err(|e| ApiError::Internal(format!("the client root CA is unusable: {e}")))?;
    let key = ca::NodeKey::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let csr = key
        .csr_pem()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = std::time::SystemTime::now();
    let cert_pem = root
        .issue_client_certificate(&csr, &caller.name, ca::DEFAULT_CLIENT_CERT_VALIDITY, now)
        .map_err(|e| ApiError::Internal(format!("signing the bundle's certificate: {e}")))?;
    let sha = bundle::public_key_sha256(&cert_pem)
        .map_err(|e| ApiError::Internal(format!("reading the bundle's certificate: {e}")))?;
    let expires_at = ca::not_after(&cert_pem)
        .map(Timestamp::from)
        .unwrap_or_else(|_| Timestamp::now().plus(ca::DEFAULT_CLIENT_CERT_VALIDITY));
    let files = BundleFiles {
        user: caller.name.clone(),
        label: label.clone(),
        api_host: app.api_host.clone(),
        ca_pem: trust_pem,
        cert_pem,
        key_pem: key.key_pem(),
        public_key_pem: key.public_key_pem(),
    };
    let zip = if docker_context {
        bundle::build_docker_context(&files)
    } else {
        bundle::build(&files)
    }
    .map_err(|e| ApiError::Internal(format!("making the bundle: {e}")))?;
    let record = ClientBundle {
        meta: api::Meta::new(&id),
        user_id,
        label: label.clone(),
        public_key_sha256: sha,
        expires_at,
    };
    // Recorded before it is handed out: a certificate is never in the
    // wild without its record.
    app.store.update(vec![Op::Create(record.into())]).await?;
    let disposition = format!(
        "attachment; filename=\"{}.zip\"",
        bundle::context_name(&caller.name, &label)
    );
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        zip,
    )
        .into_response())
}

pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<BundleView>> {
    Json(app.store.view(|s| {
        s.auth_objects(Kind::ClientBundle)
            .filter_map(|o| match o {
                // Admins see everyone's (to revoke them), others their own.
                Object::ClientBundle(b) if caller.admin || b.user_id == caller.user_id => {
                    Some(view(s, b))
                }
                _ => None,
            })
            .collect()
    }))
}

#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    /// An admin removes another user's bundle.
    pub user: Option<String>,
}

pub async fn remove(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(label): Path<String>,
    axum::extract::Query(q): axum::extract::Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let user_id = match q.user.as_deref() {
        Some(name) if name != caller.name => {
            caller.require_admin("remove another user's bundle")?;
            app.store
                .view(|s| super::identity::user_by_name(s, name).map(|u| u.meta.id.clone()))?
        }
        _ => own_user(&caller)?.to_string(),
    };
    let op = app.store.view(
        |s| match s.auth_by_key(&bundle_label_key(&user_id, &label)) {
            Some(Object::ClientBundle(b)) => {
                Ok(super::identity::delete(Kind::ClientBundle, &b.meta))
            }
            _ => Err(ApiError::NotFound(format!("no bundle labelled {label}"))),
        },
    )?;
    app.store.update(vec![op]).await?;
    Ok(StatusCode::NO_CONTENT)
}
