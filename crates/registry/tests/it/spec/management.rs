//! Content management: deleting tags, manifests and blobs.

use crate::support::*;
use axum::http::StatusCode;
use registry::access::AllowAll;
use registry::Config;
use serde_json::json;
use std::sync::Arc;

// "To delete a tag ... Upon success, the registry MUST respond with a `202
// Accepted` code." ... "Once deleted, a `GET` to
// `/v2/<name>/manifests/<tag>` will return a 404."
#[tokio::test]
async fn deleting_a_tag_is_202_and_leaves_its_manifest() {
    let h = Harness::new().await;
    let m = h.push_image("app", "v1", "a", json!({})).await;
    h.put_manifest("app", "v2", OCI_MANIFEST, &m).await;
    assert_eq!(
        h.delete("/v2/app/manifests/v1").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.get("/v2/app/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.get("/v2/app/manifests/v2").await.status, StatusCode::OK);
    assert_eq!(
        h.get(&format!("/v2/app/manifests/{}", sha256(&m)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.delete("/v2/app/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
}

// "To delete a manifest ... Upon success, the registry MUST respond with a
// `202 Accepted` code." ... "Once deleted, a `GET` to
// `/v2/<name>/manifests/<digest>` and any tag pointing to that digest will
// return a 404."
#[tokio::test]
async fn deleting_a_manifest_is_202_and_takes_its_tags() {
    let h = Harness::new().await;
    let m = h.push_image("app", "v1", "b", json!({})).await;
    h.put_manifest("app", "latest", OCI_MANIFEST, &m).await;
    let keep = h.push_image("app", "keep", "c", json!({})).await;
    let d = sha256(&m);
    assert_eq!(
        h.delete(&format!("/v2/app/manifests/{d}")).await.status,
        StatusCode::ACCEPTED
    );
    for r in [d.as_str(), "v1", "latest"] {
        assert_eq!(
            h.get(&format!("/v2/app/manifests/{r}")).await.status,
            StatusCode::NOT_FOUND,
            "{r}"
        );
    }
    assert_eq!(h.get("/v2/app/manifests/keep").await.body, keep);
    let tags = h.get("/v2/app/tags/list").await.json();
    assert_eq!(tags["tags"], json!(["keep"]));
}

// "If the repository does not exist, the response MUST return `404 Not
// Found`." (deleting a manifest)
#[tokio::test]
async fn deleting_a_manifest_of_an_unknown_repository_is_404() {
    let h = Harness::new().await;
    let r = h
        .delete(&format!("/v2/nothing/manifests/{}", sha256(b"x")))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["NAME_UNKNOWN"]);
}

// "To delete a blob ... Upon success, the registry MUST respond with code
// `202 Accepted`. If the blob is not found, a `404 Not Found` code MUST be
// returned."
#[tokio::test]
async fn deleting_a_blob_is_202_and_an_unknown_one_404() {
    let h = Harness::new().await;
    let d = h.push_blob("app", b"to delete").await;
    h.push_blob("other", b"to delete").await;
    assert_eq!(
        h.delete(&format!("/v2/app/blobs/{d}")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{d}")).await.status,
        StatusCode::NOT_FOUND
    );
    // Other repositories keep their link.
    assert_eq!(
        h.get(&format!("/v2/other/blobs/{d}")).await.status,
        StatusCode::OK
    );
    let r = h.delete(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["BLOB_UNKNOWN"]);
}

// "If tag deletion is disabled, the registry MUST respond with either a `400
// Bad Request` or a `405 Method Not Allowed`." (and likewise for manifests
// and blobs)
#[tokio::test]
async fn deletion_disabled_is_405() {
    let h = Harness::with(
        Arc::new(AllowAll),
        Config {
            delete_enabled: false,
            ..Config::default()
        },
    )
    .await;
    let m = h.push_image("app", "v1", "d", json!({})).await;
    let b = h.push_blob("app", b"blob").await;
    for uri in [
        "/v2/app/manifests/v1".to_string(),
        format!("/v2/app/manifests/{}", sha256(&m)),
        format!("/v2/app/blobs/{b}"),
    ] {
        let r = h.delete(&uri).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{uri}");
        assert_eq!(r.codes(), ["UNSUPPORTED"]);
    }
    assert_eq!(h.get("/v2/app/manifests/v1").await.status, StatusCode::OK);
}
