//! The registry a manager serves on its API port, driven by skopeo over
//! the real TLS listener with the cluster's users: a push into one's own
//! namespace with a password and with an API token, a pull back, and the
//! refusals (another namespace, a wrong password, anonymous).

use crate::identity::{bearer, curl, write_ca};
use crate::support::TestNode;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn skopeo() -> Option<PathBuf> {
    let found = ["/usr/bin/skopeo", "/usr/local/bin/skopeo"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("BERTH_REQUIRE_PRIVILEGED_TESTS").as_deref() != Ok("1"),
            "skopeo is required here (scripts/install-test-deps.sh installs it)"
        );
        eprintln!("SKIPPED: the registry through skopeo: skopeo is not installed");
    }
    found
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A one-layer OCI image layout written by hand (an empty tar as its layer).
fn oci_layout(dir: &Path, tag: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blobs.join(&d["sha256:".len()..]), bytes).unwrap();
        d
    };
    let layer = vec![0u8; 1024]; // a tar's end-of-archive
    let layer_d = put(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d]}
    }))
    .unwrap();
    let config_d = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    let manifest_d = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d,
                        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    manifest_d
}

/// The config digest of the layout's manifest `digest`.
fn config_of(layout: &Path, digest: &str) -> String {
    let bytes =
        std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    m["config"]["digest"].as_str().unwrap().to_string()
}

fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        // skopeo keeps credentials and policy out of the test's HOME.
        .env("REGISTRY_AUTH_FILE", "/nonexistent/berth-test-auth.json")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_with_the_clusters_users() {
    let Some(skopeo) = skopeo() else { return };
    let node = TestNode::start().await;
    let cadir = write_ca(&node);
    let ca = cadir.path().join("ca.pem");
    // skopeo reads the CAs of a registry from *.crt files in a directory.
    std::fs::copy(&ca, cadir.path().join("ca.crt")).unwrap();
    let certs = cadir.path().to_str().unwrap().to_string();
    let admin = bearer(&node.creds().token);
    let body = json!({"name": "alice", "password": "alice-password"}).to_string();
    let (s, v) = curl(
        &node,
        &ca,
        "/api/v1/users",
        &[
            "-H",
            &admin,
            "-H",
            "content-type: application/json",
            "-d",
            &body,
        ],
    );
    assert_eq!(s, 201, "{v}");
    let policy = cadir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let policy = policy.to_str().unwrap().to_string();

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("image");
    let pushed = oci_layout(&layout, "1.0");
    let src = format!("oci:{}:1.0", layout.display());
    let host = format!("127.0.0.1:{}", node.node.api_addr().unwrap().port());
    let dest = |repo: &str| format!("docker://{host}/{repo}:1.0");

    // Into her own namespace with her password.
    let (ok, out) = run(
        &skopeo,
        &[
            "--policy",
            &policy,
            "copy",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            "alice:alice-password",
            &src,
            &dest("alice/app"),
        ],
    );
    assert!(ok, "{out}");
    // Not into another's, nor with a wrong password.
    let (ok, out) = run(
        &skopeo,
        &[
            "--policy",
            &policy,
            "copy",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            "alice:alice-password",
            &src,
            &dest("eng/app"),
        ],
    );
    assert!(!ok, "pushed into a namespace not hers: {out}");
    let (ok, _) = run(
        &skopeo,
        &[
            "--policy",
            &policy,
            "copy",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            "alice:wrong-password",
            &src,
            &dest("alice/other"),
        ],
    );
    assert!(!ok);

    // An API token is a password for the registry too.
    let login = json!({"username": "alice", "password": "alice-password"}).to_string();
    let (_, v) = curl(
        &node,
        &ca,
        "/api/v1/auth/login",
        &["-H", "content-type: application/json", "-d", &login],
    );
    let session = bearer(v["token"].as_str().unwrap());
    let (_, t) = curl(
        &node,
        &ca,
        "/api/v1/tokens",
        &[
            "-H",
            &session,
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"name": "ci"}"#,
        ],
    );
    let token = t["token"].as_str().unwrap().to_string();
    let creds = format!("alice:{token}");
    let (ok, out) = run(
        &skopeo,
        &[
            "--policy",
            &policy,
            "copy",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            &creds,
            &src,
            &dest("alice/ci"),
        ],
    );
    assert!(ok, "{out}");

    // Pulled back: the same manifest; anonymous may not (private).
    let (ok, out) = run(
        &skopeo,
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            &certs,
            "--creds",
            "alice:alice-password",
            &dest("alice/app"),
        ],
    );
    assert!(ok, "{out}");
    // skopeo compresses the layer on its way (a new manifest): the one
    // pulled is the one the tag names in the Raft store, byte for byte.
    let raw: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        raw["config"]["digest"],
        config_of(&layout, &pushed).as_str()
    );
    let tagged = node.store().view(|s| {
        match s.auth_object(
            api::Kind::RepoTag,
            &api::registry::tag_id("alice/app", "1.0"),
        ) {
            Some(api::Object::RepoTag(t)) => t.digest.clone(),
            _ => String::new(),
        }
    });
    assert_eq!(sha(out.trim_end().as_bytes()), tagged);
    let back = work.path().join("back");
    let (ok, out) = run(
        &skopeo,
        &[
            "--policy",
            &policy,
            "copy",
            "--src-cert-dir",
            &certs,
            "--src-creds",
            "alice:alice-password",
            &dest("alice/app"),
            &format!("oci:{}:1.0", back.display()),
        ],
    );
    assert!(ok, "{out}");
    let (ok, _) = run(
        &skopeo,
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            &certs,
            "--no-creds",
            &dest("alice/app"),
        ],
    );
    assert!(!ok, "an anonymous pull of a private repository");
    let (ok, out) = run(
        &skopeo,
        &[
            "list-tags",
            "--cert-dir",
            &certs,
            "--creds",
            "alice:alice-password",
            &format!("docker://{host}/alice/app"),
        ],
    );
    assert!(ok && out.contains("1.0"), "{out}");
    // The repository is in the Raft store.
    assert!(node
        .store()
        .view(|s| s.contains(api::Kind::Repository, "alice/app")));
}
