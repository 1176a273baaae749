//! The API as a whole: the base endpoint, the error format, access
//! decisions, the catalog.

use crate::support::*;
use axum::http::{Method, StatusCode};
use registry::access::{Challenge, DenyAll};
use registry::Config;
use serde_json::json;
use std::sync::Arc;

// "If the response is `200 OK`, then the registry implements this
// specification." (GET /v2/)
#[tokio::test]
async fn the_base_endpoint_is_200() {
    let h = Harness::new().await;
    let r = h.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

const CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

// "If the response body is in JSON format, it MUST have the following
// format: {"errors": [{"code", "message", "detail"}]}" ... "The `code` field
// MUST be a unique identifier, containing only uppercase alphabetic
// characters and underscores." ... "The `code` field MUST be one of the
// following".
#[tokio::test]
async fn every_4xx_body_is_the_spec_error_format_with_a_listed_code() {
    let h = Harness::new().await;
    let d = sha256(b"x");
    let upload = h.start_upload("app").await;
    let mut failures = vec![
        h.get(&format!("/v2/app/blobs/{d}")).await,
        h.get("/v2/app/manifests/nope").await,
        h.get("/v2/BAD/tags/list").await,
        h.get("/v2/app/blobs/sha256:zz").await,
        h.put_manifest("app", "v1", OCI_MANIFEST, b"[]").await,
        h.get(&format!("{upload}x")).await,
        h.call(Method::PATCH, &upload, &[("content-range", "5-6")], "ab")
            .await,
        h.call(Method::POST, "/v2/app/manifests/v1", &[], "").await,
        h.get("/v2/app/nothing/here").await,
    ];
    let denied = Harness::with(
        Arc::new(DenyAll {
            challenge: Challenge::Basic { realm: "r".into() },
        }),
        Config::default(),
    )
    .await;
    failures.push(denied.get("/v2/").await);
    failures.push(
        denied
            .call(
                Method::GET,
                "/v2/app/tags/list",
                &[("authorization", "Basic eDp5")],
                "",
            )
            .await,
    );
    for r in &failures {
        assert!(r.status.is_client_error(), "{r:?}");
        let body = r.json();
        let errors = body["errors"].as_array().unwrap_or_else(|| panic!("{r:?}"));
        assert!(!errors.is_empty(), "{r:?}");
        for e in errors {
            let code = e["code"].as_str().unwrap();
            assert!(
                code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{code}"
            );
            assert!(CODES.contains(&code), "{code} is not a spec code");
            assert!(e["message"].is_string(), "{e}");
            assert!(e.get("detail").is_some(), "{e}");
        }
    }
}

// The access policy decides: no credential is 401 UNAUTHORIZED with the
// challenge (here a bearer one naming the request's scope, as Docker's token
// spec has it); a refused credential is 403 DENIED.
#[tokio::test]
async fn refused_requests_are_401_with_a_challenge_or_403() {
    let challenge = Challenge::Bearer {
        realm: "https://127.0.0.1/auth/token".into(),
        service: "berth".into(),
    };
    let h = Harness::with(Arc::new(DenyAll { challenge }), Config::default()).await;
    let r = h.get("/v2/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.codes(), ["UNAUTHORIZED"]);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="https://127.0.0.1/auth/token",service="berth""#)
    );
    let r = h
        .call(Method::POST, "/v2/eng/app/blobs/uploads/", &[], "")
        .await;
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="https://127.0.0.1/auth/token",service="berth",scope="repository:eng/app:pull,push""#
        )
    );
    let r = h
        .call(
            Method::GET,
            "/v2/eng/app/manifests/v1",
            &[("authorization", "Bearer abc")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.codes(), ["DENIED"]);
    assert_eq!(r.header("www-authenticate"), None);
    // Refused before anything is done.
    let r = h
        .call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={}", sha256(b"x")),
            &[],
            "x",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(std::fs::read_dir(h.dir.path().join("blobs"))
        .unwrap()
        .next()
        .is_none());
}

// The catalog lists repositories in order, paginated as the tag list is.
#[tokio::test]
async fn the_catalog_lists_repositories_with_pagination() {
    let h = Harness::new().await;
    for name in ["b/app", "a", "c", "b"] {
        h.push_image(name, "v1", name, json!({})).await;
    }
    let r = h.get("/v2/_catalog").await;
    assert_eq!(r.json()["repositories"], json!(["a", "b", "b/app", "c"]));
    let r = h.get("/v2/_catalog?n=3").await;
    assert_eq!(r.json()["repositories"], json!(["a", "b", "b/app"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/_catalog?n=3&last=b%2Fapp>; rel=\"next\"")
    );
    let r = h.get("/v2/_catalog?n=3&last=b%2Fapp").await;
    assert_eq!(r.json()["repositories"], json!(["c"]));
    assert_eq!(r.header("link"), None);
}

// A method an endpoint does not have is 405 UNSUPPORTED.
#[tokio::test]
async fn an_unsupported_method_is_405() {
    let h = Harness::new().await;
    let r = h.call(Method::POST, "/v2/app/tags/list", &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.codes(), ["UNSUPPORTED"]);
}
