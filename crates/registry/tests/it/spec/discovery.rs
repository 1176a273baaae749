//! Content discovery: the tag list and the referrers API.

use crate::support::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn tagged(h: &Harness, tags: &[&str]) {
    let m = h.push_image("app", tags[0], "tags", json!({})).await;
    for t in &tags[1..] {
        assert_eq!(
            h.put_manifest("app", t, OCI_MANIFEST, &m).await.status,
            StatusCode::CREATED
        );
    }
}

fn tags_of(r: &Resp) -> Vec<String> {
    r.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

// "Assuming a repository is found, this request MUST return a `200 OK`
// response code." ... "If the list is not empty, the tags MUST be in lexical
// ... or "ASCIIbetical" order." ... "the response MUST be a json body in the
// following format: {"name": "<name>", "tags": [...]}"
#[tokio::test]
async fn the_tag_list_is_200_named_and_in_asciibetical_order() {
    let h = Harness::new().await;
    tagged(&h, &["v2", "B", "a", "v10", "_x"]).await;
    let r = h.get("/v2/app/tags/list").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["name"], "app");
    assert_eq!(tags_of(&r), ["B", "_x", "a", "v10", "v2"]);
    // An unknown repository has no list.
    assert_eq!(
        h.get("/v2/nothing/tags/list").await.status,
        StatusCode::NOT_FOUND
    );
}

// "The list of tags MAY be empty if there are no tags on the repository."
#[tokio::test]
async fn a_repository_without_tags_lists_none() {
    let h = Harness::new().await;
    h.push_blob("app", b"only a blob").await;
    let r = h.get("/v2/app/tags/list").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(tags_of(&r).is_empty());
}

// "The response to such a request [with n] MAY return fewer than `<int>`
// results, but only when the total number of tags attached to the repository
// is less than `<int>` or a `Link` header is provided. Otherwise, the
// response MUST include `<int>` results." ... the `Link` header "MUST be set
// according to RFC 5988 with the Relation Type `rel="next"`."
#[tokio::test]
async fn n_gives_n_tags_and_a_next_link_while_more_remain() {
    let h = Harness::new().await;
    let all = ["a", "b", "c", "d", "e"];
    tagged(&h, &all).await;
    let mut uri = "/v2/app/tags/list?n=2".to_string();
    let mut seen = vec![];
    for _ in 0..10 {
        let r = h.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK);
        let page = tags_of(&r);
        seen.extend(page.clone());
        match r.header("link") {
            Some(link) => {
                assert_eq!(page.len(), 2, "a short page only at the end");
                assert!(link.ends_with("; rel=\"next\""), "{link}");
                uri = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, all);
    let r = h.get("/v2/app/tags/list?n=10").await;
    assert_eq!(tags_of(&r), all);
    assert_eq!(r.header("link"), None);
}

// "When `n` is zero, this endpoint MUST return an empty list, and MUST NOT
// include a `Link` header."
#[tokio::test]
async fn n_zero_is_an_empty_list_without_a_link() {
    let h = Harness::new().await;
    tagged(&h, &["a", "b"]).await;
    let r = h.get("/v2/app/tags/list?n=0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(tags_of(&r).is_empty());
    assert_eq!(r.header("link"), None);
}

// "A request of this sort [with `last`] will return up to `<int>` tags,
// beginning non-inclusively with `<tagname>`." ... "When using the `last`
// query parameter, the `n` parameter is OPTIONAL."
#[tokio::test]
async fn last_starts_after_the_named_tag() {
    let h = Harness::new().await;
    tagged(&h, &["a", "b", "c", "d"]).await;
    assert_eq!(
        tags_of(&h.get("/v2/app/tags/list?n=2&last=a").await),
        ["b", "c"]
    );
    assert_eq!(
        tags_of(&h.get("/v2/app/tags/list?last=b").await),
        ["c", "d"]
    );
    // `last` need not be a tag that exists: it is a position in the order.
    assert_eq!(
        tags_of(&h.get("/v2/app/tags/list?last=bb").await),
        ["c", "d"]
    );
}

async fn subject_and_referrers(h: &Harness) -> (String, Vec<String>) {
    let base = h.push_image("app", "v1", "base", json!({})).await;
    let subject = sha256(&base);
    let subj = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": base.len()});
    let sbom = h
        .push_image(
            "app",
            "sbom",
            "sbom",
            json!({"artifactType": "application/vnd.example.sbom", "subject": subj,
            "annotations": {"org.example.format": "json"}}),
        )
        .await;
    // No artifactType: the config's media type stands in.
    let sig = h
        .push_image("app", "sig", "sig", json!({"subject": subj}))
        .await;
    // An index with a subject and no artifactType.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "subject": subj,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&sig), "size": sig.len()}],
    }))
    .unwrap();
    assert_eq!(
        h.put_manifest("app", "idx", OCI_INDEX, &index).await.status,
        StatusCode::CREATED
    );
    // A referrer of something else.
    h.push_image("app", "other", "other", json!({"subject": {"mediaType": OCI_MANIFEST, "digest": sha256(&sbom), "size": sbom.len()}}))
        .await;
    (subject, vec![sha256(&sbom), sha256(&sig), sha256(&index)])
}

fn by_digest(r: &Resp) -> std::collections::BTreeMap<String, Value> {
    r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["digest"].as_str().unwrap().to_string(), d.clone()))
        .collect()
}

// "Assuming a repository is found, this request MUST return a `200 OK`
// response code." ... "the response MUST be a JSON body with an image index
// containing a list of descriptors. The `Content-Type` header MUST be set to
// `application/vnd.oci.image.index.v1+json`." ... "Registries MUST include
// all newly pushed image manifests with a valid `subject` field in the
// referrers API response."
#[tokio::test]
async fn referrers_are_an_image_index_of_every_manifest_with_that_subject() {
    let h = Harness::new().await;
    let (subject, referrers) = subject_and_referrers(&h).await;
    let r = h.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert_eq!(r.json()["schemaVersion"], 2);
    assert_eq!(r.json()["mediaType"], OCI_INDEX);
    let got = by_digest(&r);
    let mut want = referrers.clone();
    want.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want);
    for d in got.values() {
        assert!(d["size"].as_u64().unwrap() > 0);
    }
}

// "The descriptors MUST include an `artifactType` field that is set to the
// value of the `artifactType` in the image manifest or index, if present. If
// the `artifactType` is empty or missing in the image manifest, the value of
// `artifactType` MUST be set to the config descriptor `mediaType` value. If
// the `artifactType` is empty or missing in an index, the `artifactType`
// MUST be omitted. The descriptors MUST include annotations from the image
// manifest or index."
#[tokio::test]
async fn referrer_descriptors_carry_artifact_type_and_annotations() {
    let h = Harness::new().await;
    let (subject, r) = subject_and_referrers(&h).await;
    let got = by_digest(&h.get(&format!("/v2/app/referrers/{subject}")).await);
    let (sbom, sig, index) = (&got[&r[0]], &got[&r[1]], &got[&r[2]]);
    assert_eq!(sbom["artifactType"], "application/vnd.example.sbom");
    assert_eq!(sbom["annotations"]["org.example.format"], "json");
    assert_eq!(sig["artifactType"], CONFIG);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert!(index.get("artifactType").is_none(), "{index}");
}

// "If the registry supports the referrers API, the registry MUST NOT return a
// `404 Not Found` to a referrers API requests." ... "If a query results in no
// matching referrers, an empty manifest list MUST be returned."
#[tokio::test]
async fn referrers_of_anything_without_referrers_is_an_empty_index_never_404() {
    let h = Harness::new().await;
    h.push_image("app", "v1", "lonely", json!({})).await;
    for uri in [
        format!("/v2/app/referrers/{}", sha256(b"no referrers")),
        format!("/v2/unknown/repo/referrers/{}", sha256(b"x")),
    ] {
        let r = h.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.json()["manifests"], json!([]), "{uri}");
    }
}

// "If the request is invalid, such as a `<digest>` with an invalid syntax, a
// `400 Bad Request` MUST be returned."
#[tokio::test]
async fn referrers_of_an_invalid_digest_is_400() {
    let h = Harness::new().await;
    for d in ["sha256:nothex", "latest", "sha256:"] {
        let r = h.get(&format!("/v2/app/referrers/{d}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{d}");
    }
}

// "If filtering is requested and applied, the response MUST include a header
// `OCI-Filters-Applied: artifactType` denoting that an `artifactType` filter
// was applied."
#[tokio::test]
async fn an_artifact_type_filter_is_applied_and_said() {
    let h = Harness::new().await;
    let (subject, r) = subject_and_referrers(&h).await;
    let resp = h
        .call(
            Method::GET,
            &format!("/v2/app/referrers/{subject}?artifactType=application%2Fvnd.example.sbom"),
            &[],
            "",
        )
        .await;
    assert_eq!(resp.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(
        by_digest(&resp).keys().cloned().collect::<Vec<_>>(),
        [r[0].clone()]
    );
    let resp = h.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(resp.header("oci-filters-applied"), None);
}
