//! Token auth end to end: the registry under [`TokenAccess`] and the token
//! endpoint over a test [`Authority`] — alice may read `eng/read`, read and
//! write `eng/write`, and anyone may read the public `pub/app`. In process:
//! the 401 and its challenge, the token asked as the challenge says, the
//! request retried with it; a push with a pull-only token refused with
//! `insufficient_scope`; anonymous pulls of the public repository only;
//! the endpoint's refusals. Over a socket: skopeo logs in with Basic
//! credentials through the token endpoint and pushes where alice may, and
//! is refused where she may only read.

use crate::support::*;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use registry::storage::FsBlobStore;
use registry::token::{
    endpoint, Authority, Claims, Login, Principal, Refused, ResourceScope, Signer, SigningKey,
    TokenAccess, TokenService, Verifier,
};
use registry::{AllowAll, MemoryMetadata, Registry};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tower::ServiceExt;

const SERVICE: &str = "berth-registry";
const ISSUER: &str = "berth-token-issuer";
const REALM: &str = "http://registry.test/auth/token";

/// alice (password `secret`) reads `eng/read` and `pub/app`, reads and
/// writes `eng/write`; anonymous reads `pub/app`. It answers more than
/// asked on `eng/write` (delete too), which the endpoint must drop.
struct TestAuthority;

#[async_trait]
impl Authority for TestAuthority {
    async fn authenticate(&self, login: &Login) -> Result<Option<Principal>, Refused> {
        match &login.credentials {
            None => Ok(None),
            Some(c) if c.user == "alice" && c.secret == "secret" => Ok(Some(Principal {
                name: "alice".into(),
            })),
            Some(c) if c.user == "locked" => Err(Refused::TooManyAttempts),
            Some(_) => Err(Refused::BadCredentials),
        }
    }

    async fn grant(
        &self,
        principal: Option<&Principal>,
        requested: &[ResourceScope],
    ) -> Vec<ResourceScope> {
        let alice = principal.is_some_and(|p| p.name == "alice");
        requested
            .iter()
            .filter(|r| r.resource_type == "repository")
            .filter_map(|r| {
                let actions: &[&str] = match (r.name.as_str(), alice) {
                    ("pub/app", _) | ("eng/read", true) => &["pull"],
                    ("eng/write", true) => &["pull", "push", "delete"],
                    _ => return None,
                };
                Some(ResourceScope::repository(&r.name, actions))
            })
            .collect()
    }
}

struct Setup {
    /// The registry under token auth.
    registry: Harness,
    /// The same store and metadata, unprotected, to put content in.
    seed: Harness,
    tokens: Router,
    verifier: Arc<Verifier>,
    signer: Arc<Signer>,
}

fn keys() -> (Arc<Signer>, Arc<Verifier>) {
    let key = SigningKey::generate().unwrap();
    let verifier = Arc::new(Verifier::new(ISSUER, SERVICE, [key.public_key().clone()]));
    (Arc::new(Signer::new(key, ISSUER)), verifier)
}

fn token_router(signer: Arc<Signer>, lifetime: Duration) -> Router {
    let svc = TokenService::new(signer, Arc::new(TestAuthority), SERVICE)
        .with_lifetime(lifetime)
        .with_basic_realm("berth test");
    Router::new().route("/auth/token", endpoint(svc))
}

async fn setup() -> Setup {
    let (signer, verifier) = keys();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsBlobStore::open(dir.path()).await.unwrap());
    let metadata = Arc::new(MemoryMetadata::new());
    let access = TokenAccess::new(verifier.clone(), REALM);
    let registry = Harness {
        router: registry::app(Registry::new(
            store.clone(),
            metadata.clone(),
            Arc::new(access),
        )),
        dir: tempfile::tempdir().unwrap(),
        store: store.clone(),
    };
    let seed = Harness {
        router: registry::app(Registry::new(store.clone(), metadata, Arc::new(AllowAll))),
        dir,
        store,
    };
    Setup {
        registry,
        seed,
        tokens: token_router(signer.clone(), registry::token::DEFAULT_LIFETIME),
        verifier,
        signer,
    }
}

fn basic(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{user}:{secret}").as_bytes())
    )
}

async fn send(router: &Router, req: Request<Body>) -> Resp {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// `GET /auth/token?<query>`, with Basic credentials if given.
async fn ask(router: &Router, query: &str, auth: Option<(&str, &str)>) -> Resp {
    let mut b = Request::get(format!("/auth/token?{query}"));
    if let Some((u, s)) = auth {
        b = b.header("authorization", basic(u, s));
    }
    send(router, b.body(Body::empty()).unwrap()).await
}

/// The token the endpoint answers for these scopes, checked as the spec's
/// answer, and its verified claims.
async fn token_for(s: &Setup, scopes: &[&str], auth: Option<(&str, &str)>) -> (String, Claims) {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("service", SERVICE);
    if let Some((u, _)) = auth {
        q.append_pair("account", u);
    }
    for sc in scopes {
        q.append_pair("scope", sc);
    }
    let r = ask(&s.tokens, &q.finish(), auth).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], token.as_str());
    assert_eq!(body["expires_in"], 300);
    let issued = humantime::parse_rfc3339(body["issued_at"].as_str().unwrap()).unwrap();
    let age = SystemTime::now().duration_since(issued).unwrap();
    assert!(age < Duration::from_secs(30), "issued {age:?} ago");
    let claims = s.verifier.verify(&token).unwrap();
    assert_eq!(claims.exp - claims.iat, 300);
    (token, claims)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The parameters of a `Bearer` challenge.
fn challenge(value: &str) -> BTreeMap<String, String> {
    let rest = value
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a Bearer challenge: {value}"));
    let mut out = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{value}");
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => v.extend(chars.next()),
                '"' => break,
                c => v.push(c),
            }
        }
        out.insert(key, v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

fn access_of(claims: &Claims) -> String {
    let list: Vec<String> = claims.access.iter().map(|a| a.to_string()).collect();
    list.join(" ")
}

#[tokio::test]
async fn a_pull_is_challenged_then_served_with_the_token_the_endpoint_issues() {
    let s = setup().await;
    let manifest = s.seed.push_image("eng/read", "1.0", "r", json!({})).await;

    let r = s.registry.get("/v2/eng/read/manifests/1.0").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.codes(), ["UNAUTHORIZED"]);
    let c = challenge(r.header("www-authenticate").unwrap());
    assert_eq!(
        c,
        BTreeMap::from([
            ("realm".into(), REALM.into()),
            ("service".into(), SERVICE.into()),
            ("scope".into(), "repository:eng/read:pull".into()),
        ])
    );

    // Asked as the challenge says, with alice's password.
    let (token, claims) = token_for(&s, &[&c["scope"]], Some(("alice", "secret"))).await;
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.aud, [SERVICE]);
    assert_eq!(access_of(&claims), "repository:eng/read:pull");

    let r = s
        .registry
        .call(
            Method::GET,
            "/v2/eng/read/manifests/1.0",
            &[("authorization", &bearer(&token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body, manifest);

    // The same token does not open another repository.
    let r = s
        .registry
        .call(
            Method::GET,
            "/v2/eng/write/tags/list",
            &[("authorization", &bearer(&token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let c = challenge(r.header("www-authenticate").unwrap());
    assert_eq!(c["scope"], "repository:eng/write:pull");
    assert_eq!(c["error"], "insufficient_scope");

    // `docker login` checks /v2/ with a token of no scope.
    let r = s.registry.get("/v2/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let c = challenge(r.header("www-authenticate").unwrap());
    assert!(!c.contains_key("scope"), "{c:?}");
    let (token, claims) = token_for(&s, &[], Some(("alice", "secret"))).await;
    assert!(claims.access.is_empty());
    let r = s
        .registry
        .call(
            Method::GET,
            "/v2/",
            &[("authorization", &bearer(&token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    // A token the registry cannot verify is an invalid_token.
    let mut forged = token.clone();
    forged.push('A');
    let r = s
        .registry
        .call(
            Method::GET,
            "/v2/",
            &[("authorization", &bearer(&forged))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(r.header("www-authenticate").unwrap())["error"],
        "invalid_token"
    );
}

#[tokio::test]
async fn a_push_needs_a_token_with_push_and_a_pull_only_one_is_insufficient() {
    let s = setup().await;
    let blob = b"a layer".to_vec();
    let digest = sha256(&blob);
    let push = |repo: &'static str, token: String| {
        let registry = &s.registry;
        let blob = blob.clone();
        let digest = digest.clone();
        async move {
            registry
                .call(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                    &[
                        ("authorization", &bearer(&token)),
                        ("content-type", "application/octet-stream"),
                    ],
                    blob,
                )
                .await
        }
    };

    // Read-only: the token holds pull only, and the push is refused with
    // the scope it needs.
    let (token, claims) = token_for(
        &s,
        &["repository:eng/read:pull,push"],
        Some(("alice", "secret")),
    )
    .await;
    assert_eq!(access_of(&claims), "repository:eng/read:pull");
    let r = push("eng/read", token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let c = challenge(r.header("www-authenticate").unwrap());
    assert_eq!(c["scope"], "repository:eng/read:pull,push");
    assert_eq!(c["error"], "insufficient_scope");

    // Read-write: exactly pull and push, though the authority offered
    // delete too.
    let (token, claims) = token_for(
        &s,
        &["repository:eng/write:pull,push"],
        Some(("alice", "secret")),
    )
    .await;
    assert_eq!(access_of(&claims), "repository:eng/write:pull,push");
    let r = push("eng/write", token.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = s
        .registry
        .call(
            Method::DELETE,
            &format!("/v2/eng/write/blobs/{digest}"),
            &[("authorization", &bearer(&token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(
        challenge(r.header("www-authenticate").unwrap())["scope"],
        "repository:eng/write:delete"
    );

    // Several scopes in one request, an unknown type among them: each
    // granted as far as allowed, the unknown one not at all.
    let (_, claims) = token_for(
        &s,
        &[
            "repository:eng/read:pull",
            "repository:eng/write:push repository:eng/write:pull helm:charts:get",
            "registry:catalog:*",
            "repository:eng/other:pull",
        ],
        Some(("alice", "secret")),
    )
    .await;
    assert_eq!(
        access_of(&claims),
        "repository:eng/read:pull repository:eng/write:push,pull"
    );
}

#[tokio::test]
async fn anonymous_pulls_the_public_repository_and_nothing_else() {
    let s = setup().await;
    let manifest = s.seed.push_image("pub/app", "1.0", "p", json!({})).await;
    s.seed.push_image("eng/read", "1.0", "r", json!({})).await;

    let (token, claims) = token_for(&s, &["repository:pub/app:pull"], None).await;
    assert!(claims.is_anonymous());
    assert_eq!(access_of(&claims), "repository:pub/app:pull");
    let r = s
        .registry
        .call(
            Method::GET,
            "/v2/pub/app/manifests/1.0",
            &[("authorization", &bearer(&token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body, manifest);

    // No push for anonymous, even on the public repository.
    let (token, claims) = token_for(&s, &["repository:pub/app:pull,push"], None).await;
    assert_eq!(access_of(&claims), "repository:pub/app:pull");
    let r = s
        .registry
        .call(
            Method::POST,
            "/v2/pub/app/blobs/uploads/",
            &[("authorization", &bearer(&token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(
        challenge(r.header("www-authenticate").unwrap())["error"],
        "insufficient_scope"
    );

    // A private repository: an anonymous token of nothing.
    let (token, claims) = token_for(&s, &["repository:eng/read:pull"], None).await;
    assert!(claims.access.is_empty());
    let r = s
        .registry
        .call(
            Method::GET,
            "/v2/eng/read/manifests/1.0",
            &[("authorization", &bearer(&token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
}

#[tokio::test]
async fn the_endpoint_refuses_bad_credentials_and_bad_requests() {
    let s = setup().await;
    let q = "service=berth-registry&scope=repository:eng/read:pull";
    for auth in [("alice", "wrong"), ("bob", "secret")] {
        let r = ask(&s.tokens, q, Some(auth)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="berth test""#)
        );
        assert_eq!(r.codes(), ["UNAUTHORIZED"]);
        assert!(r
            .json()
            .to_string()
            .contains("invalid username or password"));
    }
    // A header that is not Basic credentials is not anonymous.
    for header in ["Basic !!!", "Bearer abc", "Basic", &basic("alice", "")[..9]] {
        let req = Request::get(format!("/auth/token?{q}"))
            .header("authorization", header)
            .body(Body::empty())
            .unwrap();
        let r = send(&s.tokens, req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{header}: {r:?}");
    }
    let r = ask(&s.tokens, q, Some(("locked", "x"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    for bad in [
        "service=another&scope=repository:eng/read:pull",
        "service=berth-registry&scope=repository:Eng:pull",
        "service=berth-registry&scope=repository:eng/read",
        "service=berth-registry&account=bob&scope=repository:eng/read:pull",
    ] {
        let r = ask(&s.tokens, bad, Some(("alice", "secret"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
        assert_eq!(r.codes(), ["UNSUPPORTED"], "{bad}");
    }
}

#[tokio::test]
async fn the_oauth2_password_grant_issues_the_same_tokens() {
    let s = setup().await;
    let post = |form: &str| {
        let req = Request::post("/auth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap();
        send(&s.tokens, req)
    };
    let r = post(
        "grant_type=password&service=berth-registry&client_id=test&username=alice&password=secret\
         &scope=repository%3Aeng%2Fwrite%3Apull%2Cpush+repository%3Aeng%2Fread%3Apull%2Cpush",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(
        body["scope"],
        "repository:eng/write:pull,push repository:eng/read:pull"
    );
    assert_eq!(body["expires_in"], 300);
    let claims = s
        .verifier
        .verify(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(access_of(&claims), body["scope"].as_str().unwrap());

    let r = post(
        "grant_type=password&service=berth-registry&client_id=test&username=alice&password=no",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Basic realm="berth test""#)
    );
    for (form, error) in [
        (
            "grant_type=refresh_token&service=berth-registry&client_id=t&refresh_token=x",
            "unsupported_grant_type",
        ),
        (
            "grant_type=password&service=berth-registry&username=alice&password=secret",
            "invalid_request",
        ),
        (
            "grant_type=password&client_id=t&username=alice&password=secret",
            "invalid_request",
        ),
        (
            "grant_type=password&service=berth-registry&client_id=t&username=alice",
            "invalid_request",
        ),
        (
            "service=berth-registry&client_id=t&username=alice&password=secret",
            "invalid_request",
        ),
    ] {
        let r = post(form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{form}: {r:?}");
        assert_eq!(r.json()["error"], error, "{form}");
    }
}

#[tokio::test]
async fn the_lifetime_is_configurable_but_never_under_a_minute() {
    let (signer, verifier) = keys();
    for (asked, got) in [(600, 600), (10, 60)] {
        let tokens = token_router(signer.clone(), Duration::from_secs(asked));
        let r = ask(&tokens, "service=berth-registry", None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json()["expires_in"], got);
        let claims = verifier
            .verify(r.json()["token"].as_str().unwrap())
            .unwrap();
        assert_eq!(claims.exp - claims.iat, got as i64);
    }
}

#[tokio::test]
async fn a_token_of_another_signer_or_expired_is_an_invalid_token() {
    let s = setup().await;
    let (other, _) = keys();
    let grant = vec![ResourceScope::repository("eng/read", &["pull"])];
    let expired = s
        .signer
        .sign_at(
            "alice",
            SERVICE,
            grant.clone(),
            Duration::from_secs(300),
            SystemTime::now() - Duration::from_secs(3600),
        )
        .unwrap()
        .token;
    let foreign = other
        .sign("alice", SERVICE, grant, Duration::from_secs(300))
        .unwrap()
        .token;
    for token in [expired, foreign] {
        let r = s
            .registry
            .call(
                Method::GET,
                "/v2/eng/read/tags/list",
                &[("authorization", &bearer(&token))],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
        assert_eq!(
            challenge(r.header("www-authenticate").unwrap())["error"],
            "invalid_token"
        );
    }
}

// skopeo, a real client, over a socket.

/// Set (to 1) where tests that need a peer such as skopeo must run.
async fn skopeo(program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--insecure-policy").args(args).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("skopeo {args:?} took over 2 minutes"))
        .unwrap()
}

/// Writes an OCI image layout holding one small image tagged `1.0`;
/// returns its config's digest (skopeo compresses the uncompressed layer
/// on its way, so the manifest it pushes is not this one).
fn write_layout(dir: &Path) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blobs.join(&d["sha256:".len()..]), bytes).unwrap();
        d
    };
    // An empty tar archive: two zero blocks.
    let layer = vec![0u8; 1024];
    let layer_digest = put(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1.0"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    config_digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_through_the_token_endpoint_only_where_it_may() {
    let Some(skopeo_bin) = tool("skopeo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signer, verifier) = keys();
    let store = Arc::new(
        FsBlobStore::open(dir.path().join("registry"))
            .await
            .unwrap(),
    );
    let access = TokenAccess::new(verifier, format!("http://{addr}/auth/token"));
    let router = registry::app(Registry::new(
        store,
        Arc::new(MemoryMetadata::new()),
        Arc::new(access),
    ))
    .merge(token_router(signer, registry::token::DEFAULT_LIFETIME));
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let layout = dir.path().join("oci");
    let pushed = write_layout(&layout);
    let src = format!("oci:{}:1.0", layout.display());
    // No credentials from the machine's files: an auth file of the test's own.
    let auth_file = dir.path().join("auth.json");
    std::fs::write(&auth_file, "{}").unwrap();
    let auth_file = auth_file.display().to_string();
    let copy = |repo: &str| {
        let dest = format!("docker://{addr}/{repo}:1.0");
        let (skopeo_bin, src, auth_file) = (skopeo_bin.clone(), src.clone(), auth_file.clone());
        async move {
            skopeo(
                &skopeo_bin,
                &[
                    "copy",
                    "--authfile",
                    &auth_file,
                    "--dest-creds",
                    "alice:secret",
                    "--dest-tls-verify=false",
                    &src,
                    &dest,
                ],
            )
            .await
        }
    };

    let out = copy("eng/write").await;
    assert!(
        out.status.success(),
        "skopeo copy into eng/write: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skopeo(
        &skopeo_bin,
        &[
            "inspect",
            "--raw",
            "--authfile",
            &auth_file,
            "--creds",
            "alice:secret",
            "--tls-verify=false",
            &format!("docker://{addr}/eng/write:1.0"),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["config"]["digest"], pushed.as_str(), "{manifest}");

    let out = copy("eng/read").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "alice pushed into eng/read: {stderr}"
    );
    // Refused where the push begins, with the registry's 401.
    assert!(
        stderr.contains("/v2/eng/read/blobs/uploads/")
            && stderr.contains("authentication required"),
        "{stderr}"
    );

    // And a wrong password gets no token at all.
    let out = skopeo(
        &skopeo_bin,
        &[
            "inspect",
            "--authfile",
            &auth_file,
            "--creds",
            "alice:wrong",
            "--tls-verify=false",
            &format!("docker://{addr}/eng/write:1.0"),
        ],
    )
    .await;
    assert!(!out.status.success(), "inspected with a wrong password");
    server.abort();
}
