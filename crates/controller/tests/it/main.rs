//! The controller's router driven with `oneshot`, without a socket, over a real
//! store in a temp dir: authentication, validation, versions, resolution.

// In tests an unwrap is an assertion.
#![allow(clippy::unwrap_used)]

mod access;
mod registry;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

struct NoLogs;

#[async_trait::async_trait]
impl controller::LogSource for NoLogs {
    async fn task_logs(
        &self,
        _task: &api::Task,
        _tail: Option<usize>,
        _since: Option<api::Timestamp>,
    ) -> Result<Vec<api::dispatch::LogLine>, String> {
        Ok(vec![])
    }
}

const TOKEN: &str = "test-token";

async fn app() -> (axum::Router, store::Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(store::StoreConfig::new(dir.path()))
        .await
        .unwrap();
    let mut state = controller::AppState::new(
        store.clone(),
        Arc::new(NoLogs),
        controller::authn::token_hash(TOKEN),
    );
    // As `berth up` makes it: the admin token acts as this user.
    let admin = api::auth::User {
        meta: api::Meta::new(api::new_id()),
        name: "admin".into(),
        full_name: String::new(),
        admin: true,
        disabled: false,
        password_hash: None,
        source: Default::default(),
        locked_until: None,
    };
    let ops = store.view(|s| controller::new_user_ops(s, admin));
    store.update(ops).await.unwrap();
    state.audit = Some(
        controller::audit::AuditLog::open(&dir.path().join("audit"), "m1".into(), 1 << 20, 3)
            .unwrap(),
    );
    (controller::app(state), store, dir)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn services_are_created_read_updated_and_removed_through_the_router() {
    let (app, store, _dir) = app().await;
    let spec = json!({"name": "web", "mode": {"replicated": {"replicas": 2}}, "task_template": {"command": ["sleep", "9"]}});

    let (s, _) = call(&app, "GET", "/api/v1/services", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, "GET", "/api/v1/services", None, Some("wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, created) = call(
        &app,
        "POST",
        "/api/v1/services",
        Some(spec.clone()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    // By name, by id, by unique prefix.
    for key in ["web", id.as_str(), &id[..6]] {
        let (s, svc) = call(
            &app,
            "GET",
            &format!("/api/v1/services/{key}"),
            None,
            Some(TOKEN),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{key}: {svc}");
        assert_eq!(svc["spec"]["name"], "web");
        assert_eq!(svc["service_status"]["desired_tasks"], 2);
    }

    // Renaming is refused; a template change bumps spec_version and keeps the previous spec.
    let version = created["version"].as_u64().unwrap();
    let mut renamed = spec.clone();
    renamed["name"] = json!("other");
    let (s, e) = call(
        &app,
        "POST",
        "/api/v1/services/web/update",
        Some(json!({"version": version, "spec": renamed})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("spec.name")),
        "{e}"
    );
    let mut changed = spec.clone();
    changed["task_template"]["env"] = json!(["A=1"]);
    let (s, e) = call(
        &app,
        "POST",
        "/api/v1/services/web/update",
        Some(json!({"version": version, "spec": changed})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let svc = store.view(|st| st.service_by_name("web").cloned()).unwrap();
    assert_eq!(svc.spec_version, 2);
    assert!(svc.previous_spec.is_some());
    // The same (now stale) version again is a conflict.
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/services/web/update",
        Some(json!({"version": version, "spec": spec})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Rollback swaps the specs back.
    let (s, e) = call(
        &app,
        "POST",
        "/api/v1/services/web/rollback",
        Some(json!({"version": svc.meta.version})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let svc = store.view(|st| st.service_by_name("web").cloned()).unwrap();
    assert!(svc.spec.task_template.env.is_empty());
    assert_eq!(svc.spec_version, 3);

    let (s, _) = call(&app, "DELETE", "/api/v1/services/web", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = call(&app, "GET", "/api/v1/services/web", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_and_openapi_need_no_credential() {
    let (app, store, _dir) = app().await;
    let req = Request::builder()
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
    let (s, doc) = call(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/api/v1/services",
        "/api/v1/services/{id}/update",
        "/api/v1/tasks",
        "/api/v1/nodes",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(
        doc["components"]["schemas"]["ServiceSpec"].is_object(),
        "ServiceSpec schema missing"
    );
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_store_that_cannot_write_answers_503_not_a_hang() {
    let (app, store, _dir) = app().await;
    store.shutdown().await.unwrap();
    let spec = json!({"name": "late", "task_template": {"command": ["sleep", "1"]}});
    let (s, e) = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        call(&app, "POST", "/api/v1/services", Some(spec), Some(TOKEN)),
    )
    .await
    .expect("answered in time");
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable")),
        "{e}"
    );
    // Reads of the local copy still work.
    let (s, _) = call(&app, "GET", "/api/v1/services", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn cluster_settings_are_read_and_changed_and_bad_ones_write_nothing() {
    let (app, store, _dir) = app().await;
    store
        .update(vec![api::Op::Create(api::Cluster::new("c").into())])
        .await
        .unwrap();
    let (status, before) = call(&app, "GET", "/api/v1/cluster", None, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["dispatcher_heartbeat"], "5s");
    assert_eq!(before["cert_expiry"], "90d");

    // Each bad field is named, and nothing of the request is applied.
    for (body, field) in [
        (
            json!({"cert_expiry": "10m", "task_history_limit": 2}),
            "cert_expiry",
        ),
        (
            json!({"dispatcher_heartbeat": "soon"}),
            "dispatcher_heartbeat",
        ),
        (
            json!({"dispatcher_heartbeat": "100ms"}),
            "dispatcher_heartbeat",
        ),
        (json!({"task_history_limit": 5000}), "task_history_limit"),
        (json!({"heartbeat": "5s"}), "heartbeat"),
        (json!({"gossip_key_rotation": "1m"}), "gossip_key_rotation"),
        (
            json!({"gossip_key_rotation": "often"}),
            "gossip_key_rotation",
        ),
    ] {
        let (status, err) = call(
            &app,
            "POST",
            "/api/v1/cluster/update",
            Some(body.clone()),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err.to_string().contains(field), "{body}: {err}");
    }
    let (_, unchanged) = call(&app, "GET", "/api/v1/cluster", None, Some(TOKEN)).await;
    assert_eq!(unchanged, before);

    let (status, after) = call(
        &app,
        "POST",
        "/api/v1/cluster/update",
        Some(json!({"cert_expiry": "48h", "dispatcher_heartbeat": "2s", "version": before["version"]})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["cert_expiry"], "2d");
    assert_eq!(after["dispatcher_heartbeat"], "2s");
    assert_eq!(after["task_history_limit"], before["task_history_limit"]);
    let stored = store.view(|s| s.cluster().cloned()).unwrap();
    assert_eq!(
        stored.node_cert_validity,
        std::time::Duration::from_secs(48 * 3600)
    );
    // A change based on an old version is refused.
    let (status, _) = call(
        &app,
        "POST",
        "/api/v1/cluster/update",
        Some(json!({"task_history_limit": 3, "version": before["version"]})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The gossip key's rotation: a period, or never.
    assert_eq!(after["gossip_key_rotation"], "12h");
    for (text, shown, secs) in [("30m", "30m", 1800), ("0", "0s", 0)] {
        let (status, v) = call(
            &app,
            "POST",
            "/api/v1/cluster/update",
            Some(json!({"gossip_key_rotation": text})),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["gossip_key_rotation"], shown);
        let stored = store.view(|s| s.cluster().cloned()).unwrap();
        assert_eq!(
            stored.gossip_key_rotation,
            std::time::Duration::from_secs(secs)
        );
    }
}
