//! Test helpers: a registry over a temporary directory driven in process
//! (`oneshot`) or served on 127.0.0.1, and builders of blobs and manifests.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use registry::access::{Access, AllowAll};
use registry::storage::FsBlobStore;
use registry::{Config, MemoryMetadata, Registry};
use serde_json::{json, Value};
use sha2::Digest as _;
use std::sync::Arc;
use tower::ServiceExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

pub fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes)))
}

/// A registry over its own temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Arc<FsBlobStore>,
    pub router: Router,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The spec's error codes in the body.
    pub fn codes(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {}", self.json()))
            .iter()
            .map(|e| e["code"].as_str().unwrap().to_string())
            .collect()
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with(Arc::new(AllowAll), Config::default()).await
    }

    pub async fn with(access: Arc<dyn Access>, config: Config) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsBlobStore::open(dir.path()).await.unwrap());
        let metadata = Arc::new(MemoryMetadata::new());
        let router = registry::app(Registry::with_config(
            store.clone(),
            metadata.clone(),
            access,
            config,
        ));
        Harness { dir, store, router }
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let body: Bytes = body.into();
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if !body.is_empty() {
            b = b.header("content-length", body.len().to_string());
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, &[], Bytes::new()).await
    }

    pub async fn head(&self, uri: &str) -> Resp {
        self.call(Method::HEAD, uri, &[], Bytes::new()).await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.call(Method::DELETE, uri, &[], Bytes::new()).await
    }

    /// Pushes a blob with a single POST; returns its digest.
    pub async fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/?digest={d}"),
                &[("content-type", "application/octet-stream")],
                bytes.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        d
    }

    /// Starts an upload session; returns its location.
    pub async fn start_upload(&self, name: &str) -> String {
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/"),
                &[("content-length", "0")],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        r.header("location").unwrap().to_string()
    }

    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Resp {
        self.call(
            Method::PUT,
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", media_type)],
            bytes.to_vec(),
        )
        .await
    }

    /// Pushes a config and one layer, and an image manifest over them
    /// (with `extra` fields merged in); returns the manifest's bytes.
    pub async fn push_image(
        &self,
        name: &str,
        reference: &str,
        seed: &str,
        extra: Value,
    ) -> Vec<u8> {
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer of {seed}");
        let c = self.push_blob(name, config.as_bytes()).await;
        let l = self.push_blob(name, layer.as_bytes()).await;
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG, "digest": c, "size": config.len()},
            "layers": [{"mediaType": LAYER, "digest": l, "size": layer.len()}],
        });
        if let (Some(o), Value::Object(e)) = (m.as_object_mut(), extra) {
            o.extend(e);
        }
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        let r = self
            .put_manifest(name, reference, OCI_MANIFEST, &bytes)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        bytes
    }
}

/// A registry served on 127.0.0.1 (an ephemeral port) until dropped.
pub struct Served {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    pub async fn start(router: Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Served { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// An HTTP client for the served registry (plain HTTP; reqwest still wants
/// rustls's crypto provider chosen, ring as everywhere in berth).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Set (to 1) where tests that need a peer such as skopeo must run.
pub const REQUIRE: &str = "BERTH_REQUIRE_PRIVILEGED_TESTS";

/// The tool's path, or `None` (the test skips, saying why) when it is not
/// installed; a failure instead under `BERTH_REQUIRE_PRIVILEGED_TESTS=1`.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var(REQUIRE).as_deref() == Ok("1") {
            panic!("{name} is not installed and {REQUIRE}=1: run scripts/install-test-deps.sh");
        }
        eprintln!("SKIPPED: {name} is not installed (scripts/install-test-deps.sh installs it; {REQUIRE}=1 makes this a failure)");
    }
    found
}
