//! Bad input is refused with a clear 4xx that names what is wrong, and nothing
//! is half-written.

use crate::support::*;
use controller::wire::{Created, ServiceWithStatus, UpdateService};
use serde_json::json;

async fn post_raw(n: &TestNode, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let http = reqwest_client(n);
    let resp = http
        .post(format!("https://{}{path}", n.creds().host))
        .bearer_auth(&n.creds().token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

fn reqwest_client(n: &TestNode) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(n.creds().ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

use rustls::pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_field_named() {
    let n = TestNode::start().await;
    let good = json!({"name": "ok", "task_template": {"command": ["sleep", "1"]}});
    let cases = [
        (
            json!({"name": "bad name", "task_template": {"command": ["sleep"]}}),
            400,
            Some("name"),
        ),
        (
            json!({"name": "x", "task_template": {"command": []}}),
            400,
            Some("task_template.command"),
        ),
        (
            json!({"name": "x", "task_template": {"command": ["a"], "env": ["NOPE"]}}),
            400,
            Some("task_template.env[0]"),
        ),
        (
            json!({"name": "x", "task_template": {"command": ["a"], "restart_policy": {"condition": "sometimes"}}}),
            400,
            Some("task_template.restart_policy.condition"),
        ),
        (
            json!({"name": "x", "task_template": {"command": ["a"]}, "colour": 1}),
            400,
            None,
        ),
        (json!({"name": "x"}), 400, None),
    ];
    for (body, status, field) in cases {
        let (got, answer) = post_raw(&n, "/api/v1/services", body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        if let Some(f) = field {
            assert_eq!(answer["field"], f, "{body} → {answer}");
        }
    }
    assert_eq!(
        n.store().view(|s| s.services().count()),
        0,
        "nothing was written"
    );

    let (got, _) = post_raw(&n, "/api/v1/services", good.clone()).await;
    assert_eq!(got, 201);
    let (got, answer) = post_raw(&n, "/api/v1/services", good).await;
    assert_eq!(got, 409, "duplicate name: {answer}");

    // A stale version is refused, the current one accepted.
    let svc: ServiceWithStatus = n.client.get("/api/v1/services/ok").await.unwrap();
    let stale = UpdateService {
        version: svc.service.meta.version - 1,
        spec: svc.service.spec.clone(),
    };
    let (got, answer) = post_raw(
        &n,
        "/api/v1/services/ok/update",
        serde_json::to_value(&stale).unwrap(),
    )
    .await;
    assert_eq!(got, 409, "{answer}");
    let mut spec = svc.service.spec.clone();
    spec.task_template.args.push("2".into());
    let _: Created = n
        .client
        .post(
            "/api/v1/services/ok/update",
            &UpdateService {
                version: svc.service.meta.version,
                spec,
            },
        )
        .await
        .unwrap();

    // Unknown objects are 404; no credential is 401.
    let err = n
        .client
        .get::<serde_json::Value>("/api/v1/services/nope")
        .await
        .unwrap_err();
    assert_eq!(berth::client::status_of(&err), Some(404), "{err:#}");
    let resp = reqwest_client(&n)
        .get(format!("https://{}/api/v1/services", n.creds().host))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = reqwest_client(&n)
        .get(format!("https://{}/api/v1/services", n.creds().host))
        .bearer_auth("berth-admin-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // The OpenAPI document is served at its stable path and lists the routes.
    let doc: serde_json::Value = reqwest_client(&n)
        .get(format!("https://{}/openapi.json", n.creds().host))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/services"].is_object(), "{doc}");

    // The CLI reports a bad spec with the field, and fails.
    let (ok, _, err) = cli_async(
        &n.config_dir(),
        &[
            "service", "create", "--name", "bad name", "-d", "--", "sleep", "1",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("name"), "{err}");
    let (ok, _, err) = cli_async(&n.config_dir(), &["service", "scale", "nope=3"]).await;
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    n.node.shutdown().await.unwrap();
}
