//! Access control through the router: logins, sessions, API tokens,
//! lockout, accounts, collections, roles and grants, and the decisions on
//! services (an API-level matrix of subjects × roles × operations whose
//! expectations are written out by hand, not computed by the code under
//! test).

use super::{app, call, TOKEN};
use axum::http::StatusCode;
use serde_json::{json, Value};

/// Creates a user through the API (as the admin) and returns a fresh API
/// token of theirs (made by logging in and asking for one).
async fn user_with_token(app: &axum::Router, name: &str) -> String {
    let (s, u) = call(
        app,
        "POST",
        "/api/v1/users",
        Some(json!({"name": name, "password": "password-of-".to_string() + name})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let session = login(app, name, &format!("password-of-{name}")).await;
    let (s, t) = call(
        app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "tests"})),
        Some(&session),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t["token"].as_str().unwrap().to_string()
}

async fn login(app: &axum::Router, name: &str, password: &str) -> String {
    let (s, body) = call(
        app,
        "POST",
        "/api/v1/auth/login",
        Some(json!({"username": name, "password": password})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "login of {name}: {body}");
    body["token"].as_str().unwrap().to_string()
}

async fn admin_post(app: &axum::Router, path: &str, body: Value) -> Value {
    let (s, v) = call(app, "POST", path, Some(body), Some(TOKEN)).await;
    assert!(s.is_success(), "POST {path}: {s} {v}");
    v
}

fn exec_service(name: &str, collection: &str) -> Value {
    json!({"name": name, "labels": {"berth.access.collection": collection},
           "task_template": {"command": ["sleep", "1000"]}})
}

#[tokio::test]
async fn a_login_makes_a_session_and_failures_lock_the_account() {
    let (app, store, _dir) = app().await;
    admin_post(
        &app,
        "/api/v1/users",
        json!({"name": "alice", "password": "correct horse"}),
    )
    .await;

    let session = login(&app, "alice", "correct horse").await;
    assert!(session.starts_with("berth-session-"));
    let (s, me) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&session)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["user"]["name"], "alice");
    assert_eq!(me["credential"], "session");
    // The store keeps only the secret's hash.
    let stored = store.view(|s| {
        s.auth_objects(api::Kind::Token)
            .map(|o| serde_json::to_string(o).unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&session["berth-session-".len()..]));

    // A wrong password and an unknown user get the same answer.
    let attempt = |user: &'static str, pw: &'static str| {
        let app = app.clone();
        async move {
            call(
                &app,
                "POST",
                "/api/v1/auth/login",
                Some(json!({"username": user, "password": pw})),
                None,
            )
            .await
        }
    };
    let (s1, e1) = attempt("alice", "wrong horse").await;
    let (s2, e2) = attempt("nobody", "wrong horse").await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(e1["message"], e2["message"]);
    assert!(!e1.to_string().contains("wrong horse"));

    // Five failures in a row (the default) lock alice: then even the right
    // password is refused, and the lock is in the store for every manager.
    for _ in 0..4 {
        let (s, _) = attempt("alice", "wrong horse").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, e) = attempt("alice", "correct horse").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(e["message"].as_str().unwrap().contains("locked"), "{e}");
    let locked = store.view(|s| match s.auth_by_key(&api::auth::account_key("alice")) {
        Some(api::Object::User(u)) => u.locked_until,
        _ => None,
    });
    assert!(locked.is_some_and(|l| l > api::Timestamp::now()));
    // Her live session still works (the lock is on passwords), and an
    // admin lifts the lock.
    let (s, _) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&session)).await;
    assert_eq!(s, StatusCode::OK);
    admin_post(&app, "/api/v1/users/alice/update", json!({"unlock": true})).await;
    login(&app, "alice", "correct horse").await;

    // Logging out ends the session.
    let (s, _) = call(&app, "POST", "/api/v1/auth/logout", None, Some(&session)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&session)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
}

#[tokio::test]
async fn api_tokens_expire_are_revoked_and_die_with_a_disabled_user() {
    let (app, store, _dir) = app().await;
    let token = user_with_token(&app, "bob").await;
    let (s, me) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["credential"], "api_token");

    // Listed by name, never with its secret.
    let (s, list) = call(&app, "GET", "/api/v1/tokens", None, Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "tests");
    assert!(!list.to_string().contains(&token));
    // A second token of the same name is refused.
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "tests"})),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Disabled: refused at once; enabled again: accepted.
    admin_post(&app, "/api/v1/users/bob/update", json!({"disabled": true})).await;
    let (s, e) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&token)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(e["message"].as_str().unwrap().contains("disabled"), "{e}");
    admin_post(&app, "/api/v1/users/bob/update", json!({"disabled": false})).await;
    let (s, _) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&token)).await;
    assert_eq!(s, StatusCode::OK);

    // Expiry: a token made to live one second is refused after it.
    let (s, short) = call(
        &app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "short", "expires_in": "1s"})),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let short = short["token"].as_str().unwrap().to_string();
    let (s, _) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&short)).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, e) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&short)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    let (s, e) = call(
        &app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "bad", "expires_in": "soon"})),
        Some(&token),
    )
    .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expires_in"))
    );

    // Revocation.
    let (s, _) = call(&app, "DELETE", "/api/v1/tokens/tests", None, Some(&token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(&token)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Removing the user removes its tokens, grants and private grant with it.
    admin_post(&app, "/api/v1/users", json!({"name": "carol"})).await;
    let (s, _) = call(&app, "DELETE", "/api/v1/users/carol", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let leftovers = store.view(|s| {
        s.auth_objects(api::Kind::Grant)
            .filter(|o| serde_json::to_string(o).unwrap().contains("carol"))
            .count()
    });
    assert_eq!(leftovers, 0);
}

/// The grants matrix at the API: each subject kind (the user itself, a
/// team it is in, that team's organization) × each built-in role, granted
/// on /Shared/web, × what one may then do to an exec service there and in
/// a sibling collection. The expectations are UCP's roles written out.
#[tokio::test]
async fn grants_decide_every_service_call_by_subject_role_and_collection() {
    let (app, _store, _dir) = app().await;
    admin_post(&app, "/api/v1/collections", json!({"path": "/Shared/web"})).await;
    admin_post(
        &app,
        "/api/v1/collections",
        json!({"path": "/Shared/web/api"}),
    )
    .await;
    admin_post(
        &app,
        "/api/v1/collections",
        json!({"path": "/Shared/other"}),
    )
    .await;
    admin_post(&app, "/api/v1/orgs", json!({"name": "eng"})).await;
    admin_post(&app, "/api/v1/teams/eng", json!({"name": "web"})).await;
    let token = user_with_token(&app, "dave").await;
    admin_post(
        &app,
        "/api/v1/teams/eng/web/members",
        json!({"user": "dave"}),
    )
    .await;
    // Services made by the admin, one per collection (a grant on
    // /Shared/web reaches /Shared/web/api below it, not /Shared/other).
    for (name, c) in [("inside", "/Shared/web/api"), ("outside", "/Shared/other")] {
        admin_post(&app, "/api/v1/services", exec_service(name, c)).await;
    }

    //            role                 view   logs   scale  create delete
    let table: &[(&str, [bool; 5])] = &[
        ("None", [false, false, false, false, false]),
        ("View Only", [true, true, false, false, false]),
        // Restricted Control may not run exec tasks (unconfined on the
        // host: service.privileged), so it can neither create nor change
        // one, but it may look and remove.
        ("Restricted Control", [true, true, false, false, true]),
        ("Scheduler", [false, false, false, false, false]),
        ("Full Control", [true, true, true, true, true]),
    ];
    let mut round = 0;
    for (kind, subject) in [("user", "dave"), ("team", "eng/web"), ("org", "eng")] {
        for (role, expect) in table {
            round += 1;
            let g = admin_post(
                &app,
                "/api/v1/grants",
                json!({"subject_kind": kind, "subject": subject, "role": role, "collection": "/Shared/web"}),
            )
            .await;
            let case = format!("{kind} {subject} with {role}");
            let ok = |s: StatusCode| s.is_success();

            let (s, _) = call(&app, "GET", "/api/v1/services/inside", None, Some(&token)).await;
            assert_eq!(ok(s), expect[0], "view: {case}: {s}");
            let (s, _) = call(
                &app,
                "GET",
                "/api/v1/services/inside/logs",
                None,
                Some(&token),
            )
            .await;
            assert_eq!(ok(s), expect[1], "logs: {case}: {s}");
            let (_, svc) = call(&app, "GET", "/api/v1/services/inside", None, Some(TOKEN)).await;
            let mut spec = svc["spec"].clone();
            spec["mode"] = json!({"replicated": {"replicas": round + 1}});
            let (s, _) = call(
                &app,
                "POST",
                "/api/v1/services/inside/update",
                Some(json!({"version": svc["meta"]["version"], "spec": spec})),
                Some(&token),
            )
            .await;
            assert_eq!(ok(s), expect[2], "scale: {case}: {s}");
            let name = format!("new{round}");
            let (s, _) = call(
                &app,
                "POST",
                "/api/v1/services",
                Some(exec_service(&name, "/Shared/web/api")),
                Some(&token),
            )
            .await;
            assert_eq!(ok(s), expect[3], "create: {case}: {s}");
            let victim = if expect[3] {
                name.clone()
            } else {
                format!("victim{round}")
            };
            if !expect[3] {
                admin_post(
                    &app,
                    "/api/v1/services",
                    exec_service(&victim, "/Shared/web/api"),
                )
                .await;
            }
            let (s, _) = call(
                &app,
                "DELETE",
                &format!("/api/v1/services/{victim}"),
                None,
                Some(&token),
            )
            .await;
            assert_eq!(ok(s), expect[4], "delete: {case}: {s}");
            if !expect[4] {
                let (s, _) = call(
                    &app,
                    "DELETE",
                    &format!("/api/v1/services/{victim}"),
                    None,
                    Some(TOKEN),
                )
                .await;
                assert_eq!(s, StatusCode::NO_CONTENT);
            }

            // Never outside the granted subtree, whatever the role.
            let (s, _) = call(&app, "GET", "/api/v1/services/outside", None, Some(&token)).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "outside: {case}");
            let (s, _) = call(
                &app,
                "DELETE",
                "/api/v1/services/outside",
                None,
                Some(&token),
            )
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "outside: {case}");
            // The list shows exactly what may be viewed.
            let (_, list) = call(&app, "GET", "/api/v1/services", None, Some(&token)).await;
            let names: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["spec"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names.contains(&"inside"),
                expect[0],
                "list: {case}: {names:?}"
            );
            assert!(!names.contains(&"outside"), "list: {case}: {names:?}");

            let (s, _) = call(
                &app,
                "DELETE",
                &format!("/api/v1/grants/{}", g["id"].as_str().unwrap()),
                None,
                Some(TOKEN),
            )
            .await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
    }
    // What a new user may do by default: Restricted Control in its own
    // private collection, so it may not run exec tasks even there.
    let (s, e) = call(
        &app,
        "POST",
        "/api/v1/services",
        Some(json!({"name": "mine", "task_template": {"command": ["true"]}})),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(e["message"].as_str().unwrap().contains("privileged"), "{e}");
}

#[tokio::test]
async fn system_is_for_admins_even_with_a_grant_on_the_root() {
    let (app, _store, _dir) = app().await;
    let token = user_with_token(&app, "erin").await;
    admin_post(
        &app,
        "/api/v1/grants",
        json!({"subject_kind": "user", "subject": "erin", "role": "Full Control", "collection": "/"}),
    )
    .await;
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/services",
        Some(exec_service("sys", "/System")),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/services",
        Some(exec_service("shared", "/Shared")),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    // Full Control does not manage accounts or grants, nor cluster settings.
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "mallory"})),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/grants",
        Some(json!({"subject_kind": "user", "subject": "erin", "role": "Full Control", "collection": "/System"})),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "GET",
        "/api/v1/cluster/join-tokens",
        None,
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The owner label is the API's: a user cannot claim another owner.
    let mut spec = exec_service("claimed", "/Shared");
    spec["labels"]["berth.access.owner"] = json!("admin");
    let (s, _) = call(&app, "POST", "/api/v1/services", Some(spec), Some(&token)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, svc) = call(&app, "GET", "/api/v1/services/claimed", None, Some(&token)).await;
    assert_eq!(svc["spec"]["labels"]["berth.access.owner"], "erin");
}

#[tokio::test]
async fn bad_inputs_are_clear_4xx_and_write_nothing() {
    let (app, store, _dir) = app().await;
    admin_post(&app, "/api/v1/users", json!({"name": "frank"})).await;
    let before = store.view(|s| s.auth_index());
    let cases: &[(&str, &str, Value, StatusCode, &str)] = &[
        (
            "POST",
            "/api/v1/grants",
            json!({"subject_kind": "user", "subject": "frank", "role": "Janitor", "collection": "/Shared"}),
            StatusCode::BAD_REQUEST,
            "unknown role",
        ),
        (
            "POST",
            "/api/v1/grants",
            json!({"subject_kind": "user", "subject": "nobody", "role": "View Only", "collection": "/Shared"}),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "POST",
            "/api/v1/grants",
            json!({"subject_kind": "team", "subject": "noslash", "role": "View Only", "collection": "/Shared"}),
            StatusCode::BAD_REQUEST,
            "organization/team",
        ),
        (
            "POST",
            "/api/v1/grants",
            json!({"subject_kind": "user", "subject": "frank", "role": "View Only", "collection": "/Shared/../System"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "POST",
            "/api/v1/grants",
            json!({"subject_kind": "user", "subject": "frank", "role": "View Only", "collection": "/Shared/none"}),
            StatusCode::NOT_FOUND,
            "collection",
        ),
        (
            "POST",
            "/api/v1/collections",
            json!({"path": "/Shared/a/b"}),
            StatusCode::NOT_FOUND,
            "parent",
        ),
        (
            "POST",
            "/api/v1/collections",
            json!({"path": "Shared//x"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "POST",
            "/api/v1/collections",
            json!({"path": "/Shared/./x"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "POST",
            "/api/v1/collections",
            json!({"path": "/Shared"}),
            StatusCode::CONFLICT,
            "exists",
        ),
        (
            "POST",
            "/api/v1/users",
            json!({"name": "frank"}),
            StatusCode::CONFLICT,
            "taken",
        ),
        (
            "POST",
            "/api/v1/users",
            json!({"name": "Frank!"}),
            StatusCode::BAD_REQUEST,
            "valid name",
        ),
        (
            "POST",
            "/api/v1/users",
            json!({"name": "gina", "password": "short"}),
            StatusCode::BAD_REQUEST,
            "at least",
        ),
        (
            "POST",
            "/api/v1/orgs",
            json!({"name": "frank"}),
            StatusCode::CONFLICT,
            "taken",
        ),
        (
            "POST",
            "/api/v1/roles",
            json!({"name": "deployer", "operations": ["service.create", "service.fly"]}),
            StatusCode::BAD_REQUEST,
            "service.fly",
        ),
        (
            "POST",
            "/api/v1/roles",
            json!({"name": "Full Control", "operations": ["service.view"]}),
            StatusCode::CONFLICT,
            "built-in",
        ),
        (
            "POST",
            "/api/v1/teams/nowhere",
            json!({"name": "web"}),
            StatusCode::NOT_FOUND,
            "organization",
        ),
        (
            "POST",
            "/api/v1/users",
            json!({"name": "hal", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
    ];
    for (method, path, body, want, text) in cases {
        let (s, e) = call(&app, method, path, Some(body.clone()), Some(TOKEN)).await;
        assert_eq!(s, *want, "{method} {path} {body}: {e}");
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(text),
            "{method} {path} {body}: {msg:?} lacks {text:?}"
        );
    }
    assert_eq!(
        store.view(|s| s.auth_index()),
        before,
        "nothing was written"
    );
    // Builtin collections stay; a non-empty one is kept.
    let (s, _) = call(
        &app,
        "DELETE",
        "/api/v1/collections/Shared",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    admin_post(&app, "/api/v1/collections", json!({"path": "/Shared/busy"})).await;
    admin_post(
        &app,
        "/api/v1/services",
        exec_service("busy", "/Shared/busy"),
    )
    .await;
    let (s, e) = call(
        &app,
        "DELETE",
        "/api/v1/collections/Shared/busy",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("service busy"),
        "{e}"
    );
    // A custom role works in a grant, and is kept while used.
    admin_post(
        &app,
        "/api/v1/roles",
        json!({"name": "deployer", "operations": ["service.view", "service.update"]}),
    )
    .await;
    admin_post(&app, "/api/v1/grants", json!({"subject_kind": "user", "subject": "frank", "role": "deployer", "collection": "/Shared/busy"})).await;
    let (s, _) = call(&app, "DELETE", "/api/v1/roles/deployer", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = call(&app, "POST", "/api/v1/grants", Some(json!({"subject_kind": "user", "subject": "frank", "role": "deployer", "collection": "/Shared/busy"})), Some(TOKEN)).await;
    assert_eq!(s, StatusCode::CONFLICT, "a duplicate grant");

    // A custom role may let one manage users, never make an admin.
    admin_post(
        &app,
        "/api/v1/roles",
        json!({"name": "hr", "operations": ["user.create", "user.update"]}),
    )
    .await;
    let hr = user_with_token(&app, "hilda").await;
    admin_post(
        &app,
        "/api/v1/grants",
        json!({"subject_kind": "user", "subject": "hilda", "role": "hr", "collection": "/"}),
    )
    .await;
    let (s, e) = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "newbie"})),
        Some(&hr),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "boss", "admin": true})),
        Some(&hr),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/users/newbie/update",
        Some(json!({"admin": true})),
        Some(&hr),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/users/hilda/update",
        Some(json!({"admin": true})),
        Some(&hr),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "nor herself");
}

#[tokio::test]
async fn the_audit_log_keeps_allowed_and_denied_writes_and_never_a_password() {
    let (app, store, _dir) = app().await;
    store
        .update(vec![api::Op::Create(api::Cluster::new("c").into())])
        .await
        .unwrap();
    let token = user_with_token(&app, "ivan").await;
    // Denied: ivan may not make users. Unauthenticated: a bad login.
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "judy"})),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/auth/login",
        Some(json!({"username": "ivan", "password": "not-his-password"})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, entries) = call(&app, "GET", "/api/v1/audit?since=1h", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{entries}");
    let entries = entries.as_array().unwrap().clone();
    let find = |method: &str, path: &str, decision: &str| {
        entries
            .iter()
            .find(|e| e["method"] == method && e["path"] == path && e["decision"] == decision)
            .cloned()
    };
    let created = find("POST", "/api/v1/users", "allowed").expect("the admin's user create");
    assert_eq!(created["user"], "admin");
    assert_eq!(created["status"], 201);
    assert_eq!(created["object"], "users");
    let denied = find("POST", "/api/v1/users", "denied").expect("ivan's refused create");
    assert_eq!(denied["user"], "ivan");
    assert_eq!(denied["status"], 403);
    let failed = find("POST", "/api/v1/auth/login", "unauthenticated").expect("the bad login");
    assert_eq!(failed["user"], "ivan");
    // Reads are not kept at the default level; bodies neither.
    assert!(entries
        .iter()
        .all(|e| e["method"] != "GET" || e["status"] != 200));
    assert!(entries.iter().all(|e| e.get("body").is_none()));
    // Filters: by user, and only an admin reads the log.
    let (_, mine) = call(&app, "GET", "/api/v1/audit?user=ivan", None, Some(TOKEN)).await;
    assert!(mine.as_array().unwrap().iter().all(|e| e["user"] == "ivan"));
    let (s, _) = call(&app, "GET", "/api/v1/audit", None, Some(&token)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = call(
        &app,
        "GET",
        "/api/v1/audit?since=yesterday-ish",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("since"))
    );

    // At level `request` the body is kept, its secrets redacted.
    let (_, mut settings) = call(&app, "GET", "/api/v1/auth/settings", None, Some(TOKEN)).await;
    settings["audit_level"] = json!("request");
    let (s, e) = call(
        &app,
        "POST",
        "/api/v1/auth/settings",
        Some(settings),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    admin_post(
        &app,
        "/api/v1/users",
        json!({"name": "kim", "password": "kims-secret-password"}),
    )
    .await;
    let (_, entries) = call(&app, "GET", "/api/v1/audit?limit=5", None, Some(TOKEN)).await;
    let text = entries.to_string();
    assert!(!text.contains("kims-secret-password"), "{text}");
    let kim = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["body"]["name"] == "kim")
        .expect("the body is kept at level request");
    assert_eq!(kim["body"]["password"], "<redacted>");
    // Nothing in the store or the log files holds a password either.
    let files: String = std::fs::read_dir(_dir.path().join("audit"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(!files.contains("kims-secret-password") && !files.contains("not-his-password"));
    let _ = store;
}

#[tokio::test]
async fn the_admin_token_is_the_admin_user_as_it_is_now() {
    let (app, _store, _dir) = app().await;
    admin_post(
        &app,
        "/api/v1/users",
        json!({"name": "other", "admin": true, "password": "other-password"}),
    )
    .await;
    let other = login(&app, "other", "other-password").await;
    // Demoted: the token is no admin any more.
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/users/admin/update",
        Some(json!({"admin": false})),
        Some(&other),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &app,
        "GET",
        "/api/v1/cluster/join-tokens",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Removed: refused, rather than a superuser of its own again.
    let (s, _) = call(&app, "DELETE", "/api/v1/users/admin", None, Some(&other)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = call(&app, "GET", "/api/v1/auth/whoami", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    assert!(e["message"].as_str().unwrap().contains("removed"), "{e}");
}
