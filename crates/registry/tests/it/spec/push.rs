//! Push: blobs (monolithic, POST then PUT, chunked, mounted) and manifests.

use crate::support::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
}

// "A registry MUST initially accept an otherwise valid manifest with a
// `subject` field that references a manifest that does not exist in the
// repository, allowing clients to push a manifest and referrers to that
// manifest in either order."
#[tokio::test]
async fn a_manifest_whose_subject_does_not_exist_is_accepted() {
    let h = Harness::new().await;
    let absent = sha256(b"a manifest pushed later");
    h.push_image(
        "app",
        "sig",
        "s",
        json!({"subject": {"mediaType": OCI_MANIFEST, "digest": absent, "size": 23}}),
    )
    .await;
    assert_eq!(h.get("/v2/app/manifests/sig").await.status, StatusCode::OK);
}

// "When a manifest is rejected for this reason [descriptors that reference a
// manifest or blob that does not exist], it MUST result in one or more
// `MANIFEST_BLOB_UNKNOWN` errors."
#[tokio::test]
async fn a_manifest_referencing_missing_content_is_manifest_blob_unknown() {
    let h = Harness::new().await;
    let config = h.push_blob("app", b"{}").await;
    let missing_layer = sha256(b"never pushed");
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": LAYER, "digest": missing_layer, "size": 12}],
    }))
    .unwrap();
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["MANIFEST_BLOB_UNKNOWN"]);
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], missing_layer);
    // A blob of another repository is not this one's.
    h.push_blob("other", b"never pushed").await;
    assert_eq!(
        h.put_manifest("app", "v1", OCI_MANIFEST, &m).await.codes(),
        ["MANIFEST_BLOB_UNKNOWN"]
    );
    // An index's entries are manifests of the repository.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"no such manifest"), "size": 16}],
    }))
    .unwrap();
    let r = h.put_manifest("app", "list", OCI_INDEX, &index).await;
    assert_eq!(r.codes(), ["MANIFEST_BLOB_UNKNOWN"]);
    assert_eq!(
        h.get("/v2/app/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
}

// "Upon success, the response MUST have a code of `202 Accepted`, and MUST
// include the following header: `Location: <blob-push-location>`. The
// `<blob-push-location>` MUST contain a UUID representing a unique session
// ID for the upload to follow."
#[tokio::test]
async fn post_starts_a_session_202_with_a_location_holding_a_uuid() {
    let h = Harness::new().await;
    let r = h
        .call(
            Method::POST,
            "/v2/eng/app/blobs/uploads/",
            &[("content-length", "0")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let loc = r.header("location").unwrap();
    let id = loc.strip_prefix("/v2/eng/app/blobs/uploads/").unwrap();
    assert!(is_uuid(id), "{loc}");
    assert_eq!(r.header("docker-upload-uuid"), Some(id));
    assert_eq!(r.header("range"), Some("0-0"));
    let other = h.start_upload("eng/app").await;
    assert_ne!(other, loc, "session ids are unique");
}

// "Upon successful completion of the request [the PUT closing a POST-then-PUT
// upload], the response MUST have code `201 Created` and MUST have the
// following header: `Location: <blob-location>`" (a pullable blob URL).
#[tokio::test]
async fn post_then_put_is_201_with_a_pullable_location() {
    let h = Harness::new().await;
    let loc = h.start_upload("app").await;
    let blob = b"monolithic after post";
    let d = sha256(blob);
    let r = h
        .call(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-type", "application/octet-stream")],
            blob.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let blob_loc = r.header("location").unwrap().to_string();
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let r = h.get(&blob_loc).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], blob);
    // The session is over.
    assert_eq!(h.get(&loc).await.status, StatusCode::NOT_FOUND);
}

// "Successful completion of the request [a single POST with ?digest=] MUST
// return a `201 Created` and MUST include the following header:
// `Location: <blob-location>`"
#[tokio::test]
async fn a_single_post_is_201_with_a_pullable_location() {
    let h = Harness::new().await;
    let blob = b"single post";
    let d = sha256(blob);
    let r = h
        .call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={d}"),
            &[],
            blob.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = h.get(r.header("location").unwrap()).await;
    assert_eq!(&r.body[..], blob);
}

// "Likewise, the `<digest>` MUST match the blob's digest." A blob whose
// content does not match is refused and nothing is stored.
#[tokio::test]
async fn a_pushed_blob_must_match_its_digest_and_nothing_is_stored_otherwise() {
    let h = Harness::new().await;
    let claimed = sha256(b"what the client claims");
    let r = h
        .call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={claimed}"),
            &[],
            &b"other bytes"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
    let loc = h.start_upload("app").await;
    let r = h
        .call(
            Method::PUT,
            &format!("{loc}?digest={claimed}"),
            &[],
            &b"other bytes"[..],
        )
        .await;
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
    for d in [claimed, sha256(b"other bytes")] {
        assert_eq!(
            h.head(&format!("/v2/app/blobs/{d}")).await.status,
            StatusCode::NOT_FOUND
        );
        let digest: registry::Digest = d.parse().unwrap();
        assert!(!h.store.blob_path(&digest).exists(), "{d} stored");
    }
    let leftovers: Vec<_> = std::fs::read_dir(h.dir.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// "If the client provided digest is invalid or uses an unsupported algorithm,
// the registry SHOULD respond with a response code `400 Bad Request`."
#[tokio::test]
async fn an_invalid_or_unsupported_digest_is_400() {
    let h = Harness::new().await;
    for d in ["sha256:xyz", "blake3:abcd", "nonsense"] {
        let r = h
            .call(
                Method::POST,
                &format!("/v2/app/blobs/uploads/?digest={d}"),
                &[],
                "x",
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{d}");
        assert_eq!(r.codes(), ["DIGEST_INVALID"], "{d}");
    }
}

// "The response for each successful chunk upload MUST be `202 Accepted`, and
// MUST have the following headers: `Location: <blob-push-location>`,
// `Range: 0-<end-of-range>`", the end being "the position of the last
// uploaded byte of the blob, matching the end value of the `Content-Range`".
#[tokio::test]
async fn each_chunk_is_202_with_location_and_range() {
    let h = Harness::new().await;
    let loc = h.start_upload("app").await;
    let blob = b"abcdefghij";
    for (range, part) in [("0-3", &blob[0..4]), ("4-8", &blob[4..9])] {
        let r = h
            .call(
                Method::PATCH,
                &loc,
                &[
                    ("content-range", range),
                    ("content-type", "application/octet-stream"),
                ],
                part.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{range}: {r:?}");
        assert_eq!(r.header("location"), Some(loc.as_str()));
        assert_eq!(r.header("range"), Some(range.replace("4-", "0-").as_str()));
    }
    // The final chunk in the closing PUT.
    let d = sha256(blob);
    let r = h
        .call(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "9-9")],
            &blob[9..],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(&h.get(&format!("/v2/app/blobs/{d}")).await.body[..], blob);
}

// "Chunks MUST be uploaded in order, with the first byte of a chunk being the
// last chunk's `<end-of-range>` plus one. If a chunk is uploaded out of
// order, the registry MUST respond with a `416 Requested Range Not
// Satisfiable` code."
#[tokio::test]
async fn a_chunk_out_of_order_is_416() {
    let h = Harness::new().await;
    let loc = h.start_upload("app").await;
    let r = h
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "0-4")],
            &b"01234"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for (range, body) in [("6-9", &b"6789"[..]), ("0-4", b"01234"), ("3-7", b"34567")] {
        let r = h
            .call(
                Method::PATCH,
                &loc,
                &[("content-range", range)],
                body.to_vec(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}: {r:?}"
        );
        assert_eq!(r.header("range"), Some("0-4"), "{range}");
        assert_eq!(r.header("location"), Some(loc.as_str()));
    }
    // Nothing of the refused chunks was kept.
    let r = h
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "5-9")],
            &b"56789"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let d = sha256(b"0123456789");
    assert_eq!(
        h.call(Method::PUT, &format!("{loc}?digest={d}"), &[], "")
            .await
            .status,
        StatusCode::CREATED
    );
}

// "If the final chunk is uploaded out of order, the registry MUST respond
// with a `416 Requested Range Not Satisfiable` code."
#[tokio::test]
async fn a_final_chunk_out_of_order_is_416() {
    let h = Harness::new().await;
    let loc = h.start_upload("app").await;
    h.call(
        Method::PATCH,
        &loc,
        &[("content-range", "0-2")],
        &b"abc"[..],
    )
    .await;
    let d = sha256(b"abcdef");
    let r = h
        .call(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "4-6")],
            &b"def"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{r:?}");
    assert_eq!(r.header("range"), Some("0-2"));
    let r = h
        .call(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "3-5")],
            &b"def"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

// "The closing `PUT` request MUST include the `<digest>` of the whole blob
// (not the final chunk) as a query parameter."
#[tokio::test]
async fn the_closing_put_names_the_whole_blobs_digest() {
    let h = Harness::new().await;
    let loc = h.start_upload("app").await;
    h.call(
        Method::PATCH,
        &loc,
        &[("content-range", "0-2")],
        &b"abc"[..],
    )
    .await;
    let r = h.call(Method::PUT, &loc, &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
    // The last chunk's digest is not the blob's.
    let r = h
        .call(
            Method::PUT,
            &format!("{loc}?digest={}", sha256(b"def")),
            &[],
            &b"def"[..],
        )
        .await;
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
    let loc = h.start_upload("app").await;
    h.call(Method::PATCH, &loc, &[], &b"abc"[..]).await;
    let r = h
        .call(
            Method::PUT,
            &format!("{loc}?digest={}", sha256(b"abcdef")),
            &[],
            &b"def"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

// "The response to an active upload `<blob-push-location>` MUST be a `204 No
// Content` response code, and MUST have the following headers: `Location:
// <blob-push-location>`, `Range: 0-<end-of-range>`"
#[tokio::test]
async fn the_status_of_an_active_upload_is_204_with_location_and_range() {
    let h = Harness::new().await;
    let loc = h.start_upload("app").await;
    h.call(Method::PATCH, &loc, &[], &b"0123456"[..]).await;
    let r = h.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(r.header("location"), Some(loc.as_str()));
    assert_eq!(r.header("range"), Some("0-6"));
    // An upload is its repository's only.
    let other = loc.replace("/v2/app/", "/v2/other/");
    assert_eq!(h.get(&other).await.codes(), ["BLOB_UPLOAD_UNKNOWN"]);
}

// Cancel: "If successful, the response SHOULD be a `204 No Content`".
#[tokio::test]
async fn a_cancelled_upload_is_gone() {
    let h = Harness::new().await;
    let loc = h.start_upload("app").await;
    h.call(Method::PATCH, &loc, &[], &b"abc"[..]).await;
    assert_eq!(h.delete(&loc).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.get(&loc).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.delete(&loc).await.codes(), ["BLOB_UPLOAD_UNKNOWN"]);
    let r = h.call(Method::PATCH, &loc, &[], &b"def"[..]).await;
    assert_eq!(r.codes(), ["BLOB_UPLOAD_UNKNOWN"]);
}

// "The response to a successful mount MUST be `201 Created`, and MUST contain
// the following header: `Location: <blob-location>`"; a registry "unable to
// mount the requested blob ... SHOULD return a `202`".
#[tokio::test]
async fn a_mount_is_201_with_a_location_and_an_impossible_one_starts_an_upload() {
    let h = Harness::new().await;
    let d = h.push_blob("base/image", b"shared layer").await;
    let r = h
        .call(
            Method::POST,
            &format!("/v2/eng/app/blobs/uploads/?mount={d}&from=base/image"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/eng/app/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        &h.get(&format!("/v2/eng/app/blobs/{d}")).await.body[..],
        b"shared layer"
    );
    // From a repository that does not link it, or no `from`: an upload.
    for q in [
        format!("mount={d}&from=nowhere"),
        format!("mount={}&from=base/image", sha256(b"x")),
        format!("mount={d}"),
    ] {
        let r = h
            .call(
                Method::POST,
                &format!("/v2/other/blobs/uploads/?{q}"),
                &[],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{q}: {r:?}");
        assert!(r
            .header("location")
            .unwrap()
            .starts_with("/v2/other/blobs/uploads/"));
    }
    assert_eq!(
        h.head(&format!("/v2/other/blobs/{d}")).await.status,
        StatusCode::NOT_FOUND
    );
}

// "The registry MUST store the manifest in the exact byte representation
// provided by the client."
#[tokio::test]
async fn a_manifest_is_stored_byte_for_byte() {
    let h = Harness::new().await;
    let c = h.push_blob("app", b"{}").await;
    // Odd spacing and key order that a re-encoding would lose.
    let m = format!(
        "{{   \"schemaVersion\":2,\n\t\"layers\" : [],  \"config\":{{\"size\":2,\"digest\":\"{c}\",\"mediaType\":\"{CONFIG}\"}},\"mediaType\":\"{OCI_MANIFEST}\"   }}\n"
    );
    let r = h
        .put_manifest("app", "odd", OCI_MANIFEST, m.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(h.get("/v2/app/manifests/odd").await.body, m.as_bytes());
}

// "Upon a successful upload, the registry MUST return response code `201
// Created`, and MUST have the following header: `Location: <location>`" and
// the Docker-Content-Digest "MUST be equal to the client provided digest".
#[tokio::test]
async fn a_manifest_push_is_201_with_a_location_and_the_pushed_digest() {
    let h = Harness::new().await;
    let m = h.push_image("app", "v1", "x", json!({})).await;
    let d = sha256(&m);
    let r = h.put_manifest("app", &d, OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(h.get(r.header("location").unwrap()).await.body, m);
    // By a sha512 digest: answered with that digest.
    let d512 = sha512(&m);
    let r = h.put_manifest("app", &d512, OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
    assert_eq!(h.get(&format!("/v2/app/manifests/{d512}")).await.body, m);
    // A digest the bytes do not have is refused.
    let r = h
        .put_manifest("app", &sha256(b"else"), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
}

// "An attempt to pull a nonexistent repository MUST return response code
// `404 Not Found`."
#[tokio::test]
async fn pulling_a_nonexistent_repository_is_404() {
    let h = Harness::new().await;
    let r = h.get("/v2/no/such/repo/manifests/latest").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["NAME_UNKNOWN"]);
}

// "When processing a request for an image manifest with the `subject` field,
// a registry implementation that supports the referrers API MUST respond
// with the response header `OCI-Subject: <subject digest>`"
#[tokio::test]
async fn a_manifest_with_a_subject_is_answered_with_oci_subject() {
    let h = Harness::new().await;
    let base = h.push_image("app", "v1", "base", json!({})).await;
    let subject = sha256(&base);
    let c = h.push_blob("app", b"{}").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": c, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": base.len()},
    }))
    .unwrap();
    let r = h.put_manifest("app", &sha256(&m), OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
    // Without a subject, no such header.
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &base).await;
    assert_eq!(r.header("oci-subject"), None);
}

// "[A registry supporting `tag` query parameters] MUST include an `OCI-Tag`
// response header ... for each accepted tag."
#[tokio::test]
async fn tags_pushed_as_query_parameters_are_answered_in_oci_tag() {
    let h = Harness::new().await;
    let m = h.push_image("app", "base", "t", json!({})).await;
    let d = sha256(&m);
    let r = h
        .put_manifest(
            "app",
            &format!("{d}?tag=1.2.3&tag=1.2&tag=latest"),
            OCI_MANIFEST,
            &m,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("oci-tag"), Some("1.2.3, 1.2, latest"));
    for t in ["1.2.3", "1.2", "latest"] {
        assert_eq!(
            h.get(&format!("/v2/app/manifests/{t}")).await.body,
            m,
            "{t}"
        );
    }
}

// "A registry SHOULD enforce some limit on the maximum manifest size ... SHOULD
// respond ... over this limit with a response code `413 Payload Too Large`.
// ... SHOULD expect to be able to support manifest pushes of at least 4
// megabytes."
#[tokio::test]
async fn a_manifest_over_the_limit_is_413_and_4_mib_fits() {
    let h = Harness::new().await;
    let c = h.push_blob("app", b"{}").await;
    let manifest_of = |pad: usize| {
        let mut v = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG, "digest": c, "size": 2}, "layers": [],
            "annotations": {"pad": ""},
        });
        let base = serde_json::to_vec(&v).unwrap().len();
        v["annotations"]["pad"] = json!("x".repeat(pad - base));
        serde_json::to_vec(&v).unwrap()
    };
    let fits = manifest_of(4 * 1024 * 1024);
    assert_eq!(fits.len(), 4 * 1024 * 1024);
    assert_eq!(
        h.put_manifest("app", "big", OCI_MANIFEST, &fits)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = h
        .put_manifest(
            "app",
            "huge",
            OCI_MANIFEST,
            &manifest_of(4 * 1024 * 1024 + 1),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.codes(), ["MANIFEST_INVALID"]);
}

// Docker schema 2 manifests and manifest lists are pushed and pulled as such;
// malformed JSON is MANIFEST_INVALID.
#[tokio::test]
async fn docker_schema_2_manifests_and_lists_round_trip_and_garbage_is_invalid() {
    let h = Harness::new().await;
    let c = h.push_blob("app", b"{\"os\":\"linux\"}").await;
    let l = h.push_blob("app", b"layer").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": c, "size": 15},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": l, "size": 5}],
    }))
    .unwrap();
    assert_eq!(
        h.put_manifest("app", "amd64", DOCKER_MANIFEST, &m)
            .await
            .status,
        StatusCode::CREATED
    );
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(&m), "size": m.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    assert_eq!(
        h.put_manifest("app", "latest", DOCKER_LIST, &list)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = h
        .call(
            Method::GET,
            "/v2/app/manifests/latest",
            &[("accept", DOCKER_LIST)],
            "",
        )
        .await;
    assert_eq!(r.header("content-type"), Some(DOCKER_LIST));
    assert_eq!(r.body, list);
    let r = h
        .put_manifest("app", "bad", OCI_MANIFEST, b"{not json")
        .await;
    assert_eq!(r.codes(), ["MANIFEST_INVALID"]);
}

// sha512: a chunked upload announced with `digest-algorithm=sha512` (spec
// end-4c), and one closed with a sha512 digest without announcing it.
#[tokio::test]
async fn blobs_verify_with_sha512_too() {
    let h = Harness::new().await;
    let blob = b"hashed with sha512";
    let d = sha512(blob);
    for start in [
        "/v2/app/blobs/uploads/?digest-algorithm=sha512",
        "/v2/app/blobs/uploads/",
    ] {
        let r = h.call(Method::POST, start, &[], "").await;
        let loc = r.header("location").unwrap().to_string();
        h.call(Method::PATCH, &loc, &[], blob.to_vec()).await;
        let r = h
            .call(Method::PUT, &format!("{loc}?digest={d}"), &[], "")
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{start}: {r:?}");
    }
    let r = h.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(&r.body[..], blob);
    let r = h
        .call(
            Method::POST,
            "/v2/app/blobs/uploads/?digest-algorithm=md5",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
