//! Real clients against the registry served on 127.0.0.1 over plain HTTP:
//! umoci builds a small OCI image layout, skopeo copies it in (as OCI and
//! as Docker schema 2), lists, inspects, copies between repositories, out
//! again, and deletes; umoci unpacks what came back.
//!
//! Without skopeo or umoci installed the test says so and skips, unless
//! `BERTH_REQUIRE_PRIVILEGED_TESTS=1` (CI), where it fails instead;
//! `scripts/install-test-deps.sh` installs them.

use crate::support::*;
use registry::access::AllowAll;
use registry::storage::FsBlobStore;
use registry::{MemoryMetadata, Registry};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long one client command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command to completion; its stdout, or a panic with its stderr.
async fn run(program: &Path, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} {args:?} took over {COMMAND_TIMEOUT:?}",
                program.display()
            )
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The digest of the manifest an OCI layout's index names for `tag`.
fn layout_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_a_umoci_image_in_and_out() {
    let (Some(skopeo), Some(umoci)) = (tool("skopeo"), tool("umoci")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        FsBlobStore::open(dir.path().join("registry"))
            .await
            .unwrap(),
    );
    let router = registry::app(Registry::new(
        store,
        Arc::new(MemoryMetadata::new()),
        Arc::new(AllowAll),
    ));
    let served = Served::start(router).await;
    let host = served.addr.to_string();
    let p = |sub: &str| dir.path().join(sub).display().to_string();

    // A small image: umoci's empty one, plus a layer with one file.
    let layout = p("oci");
    run(&umoci, &["init", "--layout", &layout]).await;
    run(&umoci, &["new", "--image", &format!("{layout}:1.0")]).await;
    run(
        &umoci,
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{layout}:1.0"),
            &p("bundle"),
        ],
    )
    .await;
    std::fs::write(
        dir.path().join("bundle/rootfs/hello.txt"),
        "hello from berth\n",
    )
    .unwrap();
    run(
        &umoci,
        &["repack", "--image", &format!("{layout}:1.0"), &p("bundle")],
    )
    .await;
    let pushed = layout_digest(Path::new(&layout), "1.0");

    let insecure = ["--insecure-policy"];
    let app = format!("docker://{host}/eng/app");
    let copy = |args: Vec<String>| {
        let skopeo = skopeo.clone();
        async move {
            let mut all: Vec<&str> = insecure.to_vec();
            all.push("copy");
            all.extend(args.iter().map(String::as_str));
            run(&skopeo, &all).await
        }
    };
    copy(vec![
        "--dest-tls-verify=false".into(),
        format!("oci:{layout}:1.0"),
        format!("{app}:1.0"),
    ])
    .await;

    // The registry holds it as pushed.
    let inspect = run(
        &skopeo,
        &["inspect", "--tls-verify=false", &format!("{app}:1.0")],
    )
    .await;
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], pushed.as_str(), "{inspect}");
    let raw = run(
        &skopeo,
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("{app}:1.0"),
        ],
    )
    .await;
    assert_eq!(sha256(raw.as_bytes()), pushed);

    // As Docker schema 2 too, under another tag.
    copy(vec![
        "--dest-tls-verify=false".into(),
        "--format".into(),
        "v2s2".into(),
        format!("oci:{layout}:1.0"),
        format!("{app}:v2s2"),
    ])
    .await;
    let raw = run(
        &skopeo,
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("{app}:v2s2"),
        ],
    )
    .await;
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["mediaType"], DOCKER_MANIFEST);

    let tags = run(&skopeo, &["list-tags", "--tls-verify=false", &app]).await;
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["1.0", "v2s2"]));

    // Registry to registry (blobs may be mounted across repositories).
    let other = format!("docker://{host}/eng/copy:1.0");
    copy(vec![
        "--src-tls-verify=false".into(),
        "--dest-tls-verify=false".into(),
        format!("{app}:1.0"),
        other.clone(),
    ])
    .await;
    let inspect = run(&skopeo, &["inspect", "--tls-verify=false", &other]).await;
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], pushed.as_str());

    // And out again, byte for byte: the same manifest, the same file.
    let out = p("out");
    copy(vec![
        "--src-tls-verify=false".into(),
        format!("{app}:1.0"),
        format!("oci:{out}:1.0"),
    ])
    .await;
    assert_eq!(layout_digest(Path::new(&out), "1.0"), pushed);
    run(
        &umoci,
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{out}:1.0"),
            &p("pulled"),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pulled/rootfs/hello.txt")).unwrap(),
        "hello from berth\n"
    );

    // skopeo delete removes the manifest (by digest), and its tags with it.
    run(
        &skopeo,
        &["delete", "--tls-verify=false", &format!("{app}:v2s2")],
    )
    .await;
    let tags = run(&skopeo, &["list-tags", "--tls-verify=false", &app]).await;
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["1.0"]));
}
