//! Checks of the repository's conventions (STYLE.md, ARCHITECTURE.md) under
//! plain `cargo test`: module comments, the direction of dependencies, one
//! integration-test binary per crate.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut files = vec![];
    for krate in std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
    {
        let src = krate.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(workspace()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a //! comment: {missing:#?}"
    );
}

fn dependencies(krate: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(workspace().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut deps = vec![];
    let mut in_deps = false;
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = l.split_once('=') {
                deps.push(name.trim().trim_end_matches(".workspace").to_string());
            }
        }
    }
    deps
}

#[test]
fn dependencies_point_one_way() {
    let agent = dependencies("agent");
    assert!(agent.contains(&"api".to_string()), "{agent:?}");
    for forbidden in ["store", "manager", "controller", "berth"] {
        assert!(
            !agent.contains(&forbidden.to_string()),
            "the agent must not depend on {forbidden}: {agent:?}"
        );
    }
    for (krate, forbidden) in [
        (
            "api",
            &["store", "manager", "agent", "controller", "berth"][..],
        ),
        ("store", &["manager", "agent", "controller", "berth"][..]),
        ("manager", &["agent", "controller", "berth"][..]),
        ("controller", &["agent", "berth", "authworker"][..]),
        // Access control's rules are pure; the LDAP worker is reached by the
        // controller only through its `Directory` trait.
        (
            "auth",
            &[
                "store",
                "manager",
                "agent",
                "controller",
                "berth",
                "authworker",
            ][..],
        ),
        (
            "authworker",
            &["manager", "agent", "controller", "berth"][..],
        ),
        // The registry's core knows nothing of the cluster: the controller
        // gives it the Raft store's metadata and the cluster's identities.
        (
            "registry",
            &[
                "store",
                "manager",
                "agent",
                "controller",
                "berth",
                "authworker",
            ][..],
        ),
    ] {
        let deps = dependencies(krate);
        for f in forbidden {
            assert!(
                !deps.contains(&f.to_string()),
                "{krate} must not depend on {f}: {deps:?}"
            );
        }
    }
}

#[test]
fn at_most_one_integration_test_binary_per_crate() {
    for krate in std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
    {
        let tests = krate.path().join("tests");
        if !tests.is_dir() {
            continue;
        }
        let top_level: Vec<String> = std::fs::read_dir(&tests)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            top_level.is_empty(),
            "{}: put integration tests in tests/it/ (one binary), found {top_level:?}",
            krate.path().display()
        );
    }
}
