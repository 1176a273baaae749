//! The registry's router over the Raft store's metadata
//! (`controller::registry_store::RaftMetadata`) and a filesystem blob
//! store: a push and pull as a client makes them, the references a
//! manifest needs, tags and their pages, referrers, deletes, and what a
//! store reopened from its directory still holds.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use tower::ServiceExt;

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn registry(dir: &std::path::Path) -> (axum::Router, store::Store) {
    let store = store::Store::open(store::StoreConfig::new(dir.join("store")))
        .await
        .unwrap();
    let blobs = registry::FsBlobStore::open(dir.join("blobs"))
        .await
        .unwrap();
    let reg = registry::Registry::new(
        Arc::new(blobs),
        Arc::new(controller::registry_store::RaftMetadata::new(store.clone())),
        Arc::new(registry::AllowAll),
    );
    (registry::app(reg), store)
}

async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

async fn push_blob(app: &axum::Router, repo: &str, bytes: &[u8]) -> String {
    let d = digest(bytes);
    let (s, _, b) = send(
        app,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        Some("application/octet-stream"),
        bytes.to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    d
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn image(config: &str, layer: &str, subject: Option<&str>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}],
    });
    if let Some(s) = subject {
        m["subject"] = json!({"mediaType": MANIFEST, "digest": s, "size": 1});
        m["artifactType"] = json!("application/vnd.example.sig");
    }
    serde_json::to_vec(&m).unwrap()
}

#[tokio::test]
async fn pushes_and_pulls_through_the_raft_store_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = registry(dir.path()).await;
    let config = push_blob(&app, "eng/app", b"{}").await;
    let layer = push_blob(&app, "eng/app", b"hello").await;

    // A manifest whose layer the repository does not link is refused.
    let stranger = digest(b"not pushed");
    let (s, _, b) = send(
        &app,
        "PUT",
        "/v2/eng/app/manifests/bad",
        Some(MANIFEST),
        image(&config, &stranger, None),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("MANIFEST_BLOB_UNKNOWN"));
    // Nor may one repository's blobs make another's manifest.
    let (s, _, _) = send(
        &app,
        "PUT",
        "/v2/eng/other/manifests/x",
        Some(MANIFEST),
        image(&config, &layer, None),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let m = image(&config, &layer, None);
    let md = digest(&m);
    for tag in ["1.0", "latest", "0.9"] {
        let (s, h, _) = send(
            &app,
            "PUT",
            &format!("/v2/eng/app/manifests/{tag}"),
            Some(MANIFEST),
            m.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(h["docker-content-digest"], md.as_str());
    }
    // A signature referring to it (the referrers API).
    let sig = image(&config, &layer, Some(&md));
    let (s, h, _) = send(
        &app,
        "PUT",
        &format!("/v2/eng/app/manifests/{}", digest(&sig)),
        Some(MANIFEST),
        sig.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h["oci-subject"], md.as_str());

    let (s, _, body) = send(&app, "GET", "/v2/eng/app/manifests/latest", None, vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, m, "stored byte for byte");
    let (_, _, tags) = send(&app, "GET", "/v2/eng/app/tags/list?n=2", None, vec![]).await;
    let tags: Value = serde_json::from_slice(&tags).unwrap();
    assert_eq!(tags["tags"], json!(["0.9", "1.0"]));
    let (_, _, tags) = send(&app, "GET", "/v2/eng/app/tags/list?last=1.0", None, vec![]).await;
    let tags: Value = serde_json::from_slice(&tags).unwrap();
    assert_eq!(tags["tags"], json!(["latest"]));
    let (_, _, refs) = send(
        &app,
        "GET",
        &format!("/v2/eng/app/referrers/{md}"),
        None,
        vec![],
    )
    .await;
    let refs: Value = serde_json::from_slice(&refs).unwrap();
    assert_eq!(refs["manifests"][0]["digest"], digest(&sig).as_str());
    assert_eq!(
        refs["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    let (_, _, cat) = send(&app, "GET", "/v2/_catalog", None, vec![]).await;
    let cat: Value = serde_json::from_slice(&cat).unwrap();
    assert_eq!(cat["repositories"], json!(["eng/app"]));

    // It is all in the store's objects.
    let (manifests, tags) = store.view(|s| {
        (
            s.auth_objects(api::Kind::RepoManifest).count(),
            s.auth_objects(api::Kind::RepoTag).count(),
        )
    });
    assert_eq!((manifests, tags), (2, 3));

    // Deleting the manifest takes its tags with it, in one batch.
    let (s, _, _) = send(
        &app,
        "DELETE",
        &format!("/v2/eng/app/manifests/{md}"),
        None,
        vec![],
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, _) = send(&app, "GET", "/v2/eng/app/manifests/latest", None, vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let m2 = image(&config, &layer, Some(&config));
    let (s, _, _) = send(
        &app,
        "PUT",
        "/v2/eng/app/manifests/2.0",
        Some(MANIFEST),
        m2.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    store.shutdown().await.unwrap();
    drop(app);

    // Reopened from its directories: the metadata and the bytes are there.
    let (app, store) = registry(dir.path()).await;
    let (s, _, body) = send(&app, "GET", "/v2/eng/app/manifests/2.0", None, vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, m2);
    let (s, _, body) = send(
        &app,
        "GET",
        &format!("/v2/eng/app/blobs/{layer}"),
        None,
        vec![],
    )
    .await;
    assert_eq!((s, body.as_slice()), (StatusCode::OK, b"hello".as_slice()));
    store.shutdown().await.unwrap();
}
