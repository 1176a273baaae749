//! Pull: manifests and blobs by GET, existence by HEAD.

use crate::support::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

// "A GET request to an existing manifest URL MUST provide the expected
// manifest, with a response code that MUST be `200 OK`."
#[tokio::test]
async fn get_of_an_existing_manifest_is_200_with_the_manifest_by_tag_and_by_digest() {
    let h = Harness::new().await;
    let m = h.push_image("eng/app", "1.0", "a", json!({})).await;
    for reference in ["1.0".to_string(), sha256(&m)] {
        let r = h.get(&format!("/v2/eng/app/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK, "{reference}: {r:?}");
        assert_eq!(&r.body[..], &m[..], "{reference}");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    }
}

// "A successful response MUST contain the digest of the uploaded blob in the
// header `Docker-Content-Digest`." (manifests)
#[tokio::test]
async fn a_manifest_pull_carries_its_digest_in_docker_content_digest() {
    let h = Harness::new().await;
    let m = h.push_image("app", "v1", "b", json!({})).await;
    let r = h.get("/v2/app/manifests/v1").await;
    assert_eq!(r.header("docker-content-digest"), Some(sha256(&m).as_str()));
}

// "If the manifest is not found in the repository, the response code MUST
// be `404 Not Found`."
#[tokio::test]
async fn a_manifest_not_in_the_repository_is_404() {
    let h = Harness::new().await;
    let m = h.push_image("app", "v1", "c", json!({})).await;
    let r = h.get("/v2/app/manifests/v2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["MANIFEST_UNKNOWN"]);
    // Known elsewhere is not known here.
    let r = h.get(&format!("/v2/other/manifests/{}", sha256(&m))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// "`<tag-or-digest>` MUST be either (a) the digest of the manifest or (b) a
// tag. The `<tag-or-digest>` MUST NOT be in any other format."
#[tokio::test]
async fn a_reference_in_any_other_format_is_refused() {
    let h = Harness::new().await;
    h.push_image("app", "v1", "d", json!({})).await;
    for bad in [
        "-v1",
        ".v1",
        "sha256:short",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        let r = h.get(&format!("/v2/app/manifests/{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
    }
}

// "Throughout this document, `<name>` MUST match the following regular
// expression: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`"
#[tokio::test]
async fn a_name_must_match_the_spec_regex() {
    let h = Harness::new().await;
    for good in ["a", "eng/app", "a.b/c__d/e---f"] {
        h.push_image(good, "v1", good, json!({})).await;
        assert_eq!(
            h.get(&format!("/v2/{good}/manifests/v1")).await.status,
            StatusCode::OK,
            "{good}"
        );
    }
    for bad in ["A", "a__/b", "a...b", "a/_b", "-a"] {
        let r = h.get(&format!("/v2/{bad}/manifests/v1")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.codes(), ["NAME_INVALID"], "{bad}");
        let r = h
            .call(Method::POST, &format!("/v2/{bad}/blobs/uploads/"), &[], "")
            .await;
        assert_eq!(r.codes(), ["NAME_INVALID"], "{bad}");
    }
}

// "`<tag-or-digest>` as a tag MUST be at most 128 characters in length and
// MUST match the following regular expression: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`"
#[tokio::test]
async fn a_tag_is_at_most_128_characters_of_the_spec_regex() {
    let h = Harness::new().await;
    let longest = format!("_{}", "A.b-".repeat(31) + "xyz");
    assert_eq!(longest.len(), 128);
    h.push_image("app", &longest, "e", json!({})).await;
    assert_eq!(
        h.get(&format!("/v2/app/manifests/{longest}")).await.status,
        StatusCode::OK
    );
    let m = h.get(&format!("/v2/app/manifests/{longest}")).await.body;
    let too_long = format!("{longest}x");
    let r = h.put_manifest("app", &too_long, OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = h.put_manifest("app", "bad!tag", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}

// "A GET request to an existing blob URL MUST provide the expected blob,
// with a response code that MUST be `200 OK`."
#[tokio::test]
async fn get_of_an_existing_blob_is_200_with_the_blob() {
    let h = Harness::new().await;
    let d = h.push_blob("app", b"some layer bytes").await;
    let r = h.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"some layer bytes");
}

// "A successful response MUST contain the digest of the uploaded blob in the
// header `Docker-Content-Digest`. If present, the value of this header MUST
// be a digest matching that of the response body."
#[tokio::test]
async fn a_blob_pull_carries_the_digest_of_its_body() {
    let h = Harness::new().await;
    let d = h.push_blob("app", b"digest me").await;
    let r = h.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(sha256(&r.body), d);
}

// "If the blob is not found in the repository, the response code MUST be
// `404 Not Found`."
#[tokio::test]
async fn a_blob_not_in_the_repository_is_404() {
    let h = Harness::new().await;
    let d = h.push_blob("app", b"only in app").await;
    let r = h.get(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["BLOB_UNKNOWN"]);
    let r = h
        .get(&format!("/v2/app/blobs/{}", sha256(b"never pushed")))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// "A HEAD request to an existing blob or manifest URL MUST return `200 OK`.
// A successful response MUST contain the digest of the uploaded blob or
// manifest in the header `Docker-Content-Digest`. A successful response MUST
// contain the size in bytes of the uploaded blob or manifest in the header
// `Content-Length`."
#[tokio::test]
async fn head_of_existing_content_is_200_with_digest_and_length() {
    let h = Harness::new().await;
    let m = h.push_image("app", "v1", "f", json!({})).await;
    let d = h.push_blob("app", b"twelve bytes").await;
    for (uri, digest, len) in [
        (format!("/v2/app/blobs/{d}"), d.clone(), 12),
        ("/v2/app/manifests/v1".into(), sha256(&m), m.len()),
        (
            format!("/v2/app/manifests/{}", sha256(&m)),
            sha256(&m),
            m.len(),
        ),
    ] {
        let r = h.head(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(digest.as_str()),
            "{uri}"
        );
        assert_eq!(
            r.header("content-length"),
            Some(len.to_string().as_str()),
            "{uri}"
        );
        assert!(r.body.is_empty(), "{uri}");
    }
}

// "If the blob or manifest is not found in the repository, the response
// code MUST be `404 Not Found`." (HEAD)
#[tokio::test]
async fn head_of_missing_content_is_404() {
    let h = Harness::new().await;
    h.push_image("app", "v1", "g", json!({})).await;
    for uri in [
        format!("/v2/app/blobs/{}", sha256(b"nope")),
        "/v2/app/manifests/v2".into(),
        format!("/v2/app/manifests/{}", sha256(b"nope")),
        "/v2/nothing/manifests/v1".into(),
    ] {
        assert_eq!(h.head(&uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
}

// "A registry SHOULD support the `Range` request header in accordance with
// RFC 9110 (section 14)." (a SHOULD, kept because resumable pulls rely on it)
#[tokio::test]
async fn a_blob_range_is_206_with_content_range_and_an_unsatisfiable_one_416() {
    let h = Harness::new().await;
    let d = h.push_blob("app", b"0123456789").await;
    let uri = format!("/v2/app/blobs/{d}");
    for (range, body, content_range) in [
        ("bytes=2-5", &b"2345"[..], "bytes 2-5/10"),
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
    ] {
        let r = h.call(Method::GET, &uri, &[("range", range)], "").await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(&r.body[..], body, "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    }
    let r = h
        .call(Method::GET, &uri, &[("range", "bytes=10-")], "")
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), Some("bytes */10"));
}

// Content negotiation: "The `Content-Type` header SHOULD match what the
// client pushed as the manifest's `Content-Type`"; a client that accepts
// only other types is not sent this one.
#[tokio::test]
async fn a_manifest_is_served_with_its_media_type_to_clients_that_accept_it() {
    let h = Harness::new().await;
    h.push_image("app", "v1", "h", json!({})).await;
    let uri = "/v2/app/manifests/v1";
    for accept in [
        OCI_MANIFEST,
        "*/*",
        &format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9"),
    ] {
        let r = h.call(Method::GET, uri, &[("accept", accept)], "").await;
        assert_eq!(r.status, StatusCode::OK, "{accept}");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    }
    let r = h
        .call(Method::GET, uri, &[("accept", DOCKER_MANIFEST)], "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["MANIFEST_UNKNOWN"]);
}
