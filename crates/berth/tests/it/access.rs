//! Access control through the real binary, as a UCP user drives it: an admin
//! makes a user; the user logs in from a home of its own, pinning the
//! cluster's root CA by the fingerprint the admin shows (a wrong one or none
//! is refused), makes an API token that works alone in an empty environment
//! until it is removed, changes its password and logs out; the admin builds
//! organizations, teams, collections, roles and grants, reads the audit log
//! and the auth settings; a client bundle's env.sh is all a shell needs.
//! Every CLI run has its own HOME and nothing else from this environment.

use crate::support::*;
use berth::credentials::{fingerprint, same_fingerprint, Credentials};
use berth::node::{Membership, Node, NodeAddrs, NodeConfig};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ADMIN_PASSWORD: &str = "admin-password-of-tests";
const ALICE_PASSWORD: &str = "alice-password-1";

struct Cluster {
    node: Node,
    dir: tempfile::TempDir,
    _reaper: TaskReaper,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(NodeConfig {
            data_dir: dir.path().join("data"),
            addrs: NodeAddrs::loopback("127.0.0.1:0".parse().unwrap()),
            hostname: Some("access-node".into()),
            shim: agent::ShimCommand {
                program: berth_bin(),
                args: vec!["shim".into()],
            },
            credentials_file: Some(dir.path().join("config/credentials.json")),
            admin_password: Some(ADMIN_PASSWORD.into()),
            membership: Membership::Up,
        })
        .await
        .expect("node starts");
        let reaper = TaskReaper(dir.path().to_path_buf());
        Cluster {
            node,
            dir,
            _reaper: reaper,
        }
    }

    fn creds(&self) -> &Credentials {
        self.node.credentials().unwrap()
    }

    fn host(&self) -> String {
        self.creds().host.clone()
    }

    /// The founder's environment: the admin credential `berth up` wrote.
    fn admin(&self) -> Env {
        let mut env = Env::home(&self.dir.path().join("admin-home"));
        env.set("BERTH_CONFIG_DIR", self.dir.path().join("config"));
        env
    }
}

/// The whole environment of a CLI run: an empty HOME of its own (with
/// XDG_CONFIG_HOME in it), and what a test adds.
#[derive(Clone)]
struct Env {
    home: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn home(home: &Path) -> Env {
        std::fs::create_dir_all(home).unwrap();
        let mut env = Env {
            home: home.to_path_buf(),
            vars: vec![],
        };
        env.set("HOME", home);
        env.set("XDG_CONFIG_HOME", home.join(".config"));
        env
    }

    fn set(&mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) {
        self.vars.retain(|(x, _)| x != k);
        self.vars
            .push((k.into(), v.as_ref().to_string_lossy().into_owned()));
    }

    fn with(&self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Env {
        let mut e = self.clone();
        e.set(k, v);
        e
    }

    fn credentials_file(&self) -> PathBuf {
        self.home.join(".config/berth/credentials.json")
    }
}

#[derive(Debug)]
struct Out {
    ok: bool,
    out: String,
    err: String,
}

impl Out {
    /// stdout, or a panic that shows both outputs.
    fn ok(self, what: &str) -> String {
        assert!(self.ok, "{what} failed:\n{}\n{}", self.out, self.err);
        self.out
    }

    /// stderr of a run that must fail.
    fn refused(self, what: &str) -> String {
        assert!(!self.ok, "{what} should fail:\n{}\n{}", self.out, self.err);
        self.err
    }
}

fn run_with(program: &Path, pre: &[&str], env: &Env, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(pre)
        .args(args)
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(&env.home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run berth");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the CLI off the runtime that serves the node.
async fn berth(env: &Env, args: &[&str], stdin: Option<&str>) -> Out {
    let (env, stdin) = (env.clone(), stdin.map(str::to_string));
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_with(&berth_bin(), &[], &env, &a, stdin.as_deref())
    })
    .await
    .unwrap()
}

fn read_creds(env: &Env) -> Credentials {
    Credentials::load(&env.credentials_file()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_by_fingerprint_uses_an_api_token_and_logs_out() {
    let c = Cluster::start().await;
    let admin = c.admin();
    let host = c.host();
    let tmp = tempfile::tempdir().unwrap();

    // The admin shows the fingerprint: of the CA in its credentials.
    let fp = berth(&admin, &["ca", "fingerprint"], None)
        .await
        .ok("ca fingerprint")
        .trim()
        .to_string();
    assert_eq!(fp, fingerprint(&c.creds().ca_pem).unwrap());
    assert!(fp.starts_with("sha256:") && fp.len() == 7 + 64, "{fp}");
    // Anyone may read it from a manager (unverified, and said so).
    let stranger = Env::home(&tmp.path().join("stranger"));
    let out = berth(&stranger, &["ca", "fingerprint", "--host", &host], None).await;
    assert!(out.err.contains("without verifying"), "{out:?}");
    assert_eq!(out.ok("ca fingerprint --host").trim(), fp);

    let made = berth(
        &admin,
        &[
            "user",
            "create",
            "alice",
            "--full-name",
            "Alice A",
            "--password-stdin",
        ],
        Some(&format!("{ALICE_PASSWORD}\n")),
    )
    .await
    .ok("user create");
    assert_eq!(made.trim(), "alice");

    // First contact without a fingerprint, and stdin not a terminal: refused,
    // saying how to pass one; nothing is written.
    let alice = Env::home(&tmp.path().join("alice"));
    let login = [
        "login",
        "--host",
        &host,
        "--username",
        "alice",
        "--password-stdin",
    ];
    let pw = format!("{ALICE_PASSWORD}\n");
    let err = berth(&alice, &login, Some(&pw))
        .await
        .refused("login without a fingerprint");
    assert!(
        err.contains("--ca-fingerprint") && err.contains("berth ca fingerprint"),
        "{err}"
    );
    assert!(!alice.credentials_file().exists());
    // A wrong fingerprint: refused, naming both.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = berth(
        &alice,
        &[&login[..], &["--ca-fingerprint", &wrong]].concat(),
        Some(&pw),
    )
    .await
    .refused("login with a wrong fingerprint");
    assert!(err.contains(&wrong) && err.contains(&fp), "{err}");
    assert!(!alice.credentials_file().exists());
    // A wrong password: the API's message, with no credential hint.
    let err = berth(
        &alice,
        &[&login[..], &["--ca-fingerprint", &fp]].concat(),
        Some("not-her-password\n"),
    )
    .await
    .refused("login with a wrong password");
    assert!(err.contains("invalid username or password"), "{err}");
    assert!(!err.contains("berth login"), "{err}");

    // The right fingerprint (written as openssl does) and password.
    let openssl_style = fp.as_bytes()["sha256:".len()..]
        .chunks(2)
        .map(|b| std::str::from_utf8(b).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let out = berth(
        &alice,
        &[&login[..], &["--ca-fingerprint", &openssl_style]].concat(),
        Some(&pw),
    )
    .await;
    let (stdout, stderr) = (out.out.clone(), out.err.clone());
    assert!(out.ok("login").contains("Login Succeeded"));
    let saved = read_creds(&alice);
    assert_eq!(saved.host, host);
    assert!(saved.token.starts_with("berth-session-"));
    assert!(same_fingerprint(&fingerprint(&saved.ca_pem).unwrap(), &fp));
    for shown in [&stdout, &stderr] {
        assert!(
            !shown.contains(&saved.token) && !shown.contains(ALICE_PASSWORD),
            "a secret was printed: {shown}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(alice.credentials_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "credentials readable by others: {mode:o}");

    let me = berth(&alice, &["whoami"], None).await.ok("whoami");
    assert!(me.contains("alice") && me.contains("Alice A"), "{me}");
    assert!(me.contains("session"), "{me}");
    // Not an admin: the API's refusal, as it says it.
    let err = berth(&alice, &["org", "create", "eng"], None)
        .await
        .refused("org create by alice");
    assert!(err.contains("alice may not"), "{err}");

    // An API token, printed alone with -q, works with nothing else: no
    // credentials file, the host, the token and the CA's fingerprint.
    let token = berth(&alice, &["token", "create", "--name", "ci", "-q"], None)
        .await
        .ok("token create");
    let token = token.trim().to_string();
    assert!(
        token.starts_with("berth-token-") && !token.contains('\n'),
        "{token}"
    );
    let listed = berth(&alice, &["token", "ls"], None).await.ok("token ls");
    assert!(
        listed.contains("ci") && !listed.contains(&token),
        "{listed}"
    );
    let ci = Env::home(&tmp.path().join("ci"))
        .with("BERTH_HOST", &host)
        .with("BERTH_TOKEN", &token);
    let err = berth(&ci, &["whoami"], None)
        .await
        .refused("a token without a CA to trust");
    assert!(err.contains("BERTH_CA_FINGERPRINT"), "{err}");
    let ci = ci.with("BERTH_CA_FINGERPRINT", &fp);
    let me = berth(&ci, &["whoami", "--format", "json"], None)
        .await
        .ok("whoami with BERTH_TOKEN");
    let me: serde_json::Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["user"]["name"], "alice");
    assert_eq!(me["credential"], "api_token");
    assert!(!ci.credentials_file().exists());
    // BERTH_TOKEN also overrides a file's token.
    let me = berth(&alice.with("BERTH_TOKEN", &token), &["whoami"], None)
        .await
        .ok("whoami with BERTH_TOKEN over a session");
    assert!(me.contains("api token"), "{me}");
    // Removed: refused from then on, saying what to do.
    berth(&alice, &["token", "rm", "ci"], None)
        .await
        .ok("token rm");
    let err = berth(&ci, &["whoami"], None)
        .await
        .refused("a removed token");
    assert!(
        err.contains("not valid") && err.contains("berth token create"),
        "{err}"
    );

    // Her own password: the current one, then the new one.
    berth(
        &alice,
        &["user", "passwd", "--password-stdin"],
        Some("wrong-current-1\nalice-password-2\n"),
    )
    .await
    .refused("passwd with a wrong current password");
    berth(
        &alice,
        &["user", "passwd", "--password-stdin"],
        Some(&format!("{ALICE_PASSWORD}\nalice-password-2\n")),
    )
    .await
    .ok("user passwd");

    // Logout ends the session on the server and forgets it here.
    let session = read_creds(&alice).token;
    berth(&alice, &["logout"], None).await.ok("logout");
    assert!(read_creds(&alice).token.is_empty());
    let err = berth(&alice, &["whoami"], None)
        .await
        .refused("whoami after logout");
    assert!(err.contains("berth login"), "{err}");
    let err = berth(&alice.with("BERTH_TOKEN", &session), &["whoami"], None)
        .await
        .refused("the ended session");
    assert!(err.contains("not valid"), "{err}");
    // Logging in again needs neither the host nor the fingerprint: the
    // file still says which cluster to trust. The new password works.
    berth(
        &alice,
        &["login", "-u", "alice", "--password-stdin"],
        Some("alice-password-2\n"),
    )
    .await
    .ok("login again");
    assert!(berth(&alice, &["whoami"], None)
        .await
        .ok("whoami")
        .contains("alice"));

    // An admin disables her: every credential of hers is refused at once.
    berth(&admin, &["user", "disable", "alice"], None)
        .await
        .ok("user disable");
    let err = berth(&alice, &["whoami"], None)
        .await
        .refused("whoami while disabled");
    assert!(err.contains("disabled"), "{err}");
    berth(&admin, &["user", "enable", "alice"], None)
        .await
        .ok("user enable");
    berth(&alice, &["whoami"], None).await.ok("whoami enabled");
    let users = berth(&admin, &["user", "ls"], None).await.ok("user ls");
    assert!(
        users.contains("alice") && users.contains("admin"),
        "{users}"
    );

    // The admin token is not a session: logout refuses and keeps it.
    let err = berth(&admin, &["logout"], None)
        .await
        .refused("logout of the admin token");
    assert!(err.contains("only a session logs out"), "{err}");
    berth(&admin, &["whoami"], None).await.ok("admin whoami");
    c.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_builds_teams_and_grants_and_reads_the_audit_log() {
    let c = Cluster::start().await;
    let admin = c.admin();
    let tmp = tempfile::tempdir().unwrap();
    berth(
        &admin,
        &["user", "create", "alice", "--password-stdin"],
        Some(&format!("{ALICE_PASSWORD}\n")),
    )
    .await
    .ok("user create");
    let fp = berth(&admin, &["ca", "fingerprint"], None)
        .await
        .ok("ca fingerprint");
    let alice = Env::home(&tmp.path().join("alice"));
    let host = c.host();
    berth(
        &alice,
        &[
            "login",
            "--host",
            &host,
            "-u",
            "alice",
            "--password-stdin",
            "--ca-fingerprint",
            fp.trim(),
        ],
        Some(&format!("{ALICE_PASSWORD}\n")),
    )
    .await
    .ok("login");

    // Organization, team, member, collection, role, grant.
    for args in [
        &["org", "create", "eng"][..],
        &["team", "create", "eng/web"],
        &["team", "add", "eng/web", "alice"],
        &["collection", "create", "/Shared/web"],
        &[
            "role",
            "create",
            "deployer",
            "--allow",
            "service.view,service.update",
        ],
    ] {
        berth(&admin, args, None).await.ok(&args.join(" "));
    }
    let teams = berth(&admin, &["team", "ls", "eng"], None)
        .await
        .ok("team ls");
    assert!(teams.contains("eng/web"), "{teams}");
    let team: serde_json::Value = serde_json::from_str(
        &berth(&admin, &["team", "inspect", "eng/web"], None)
            .await
            .ok("team inspect"),
    )
    .unwrap();
    assert_eq!(team["members"], serde_json::json!(["alice"]));
    let roles = berth(&admin, &["role", "ls"], None).await.ok("role ls");
    assert!(
        roles.contains("deployer") && roles.contains("Full Control"),
        "{roles}"
    );
    let ops = berth(&admin, &["role", "ls", "--operations"], None)
        .await
        .ok("role ls --operations");
    assert!(ops.lines().any(|l| l == "service.create"), "{ops}");
    let err = berth(
        &admin,
        &["role", "create", "bad", "--allow", "no.such"],
        None,
    )
    .await
    .refused("a role of an unknown operation");
    assert!(err.contains("no.such"), "{err}");

    let id = berth(
        &admin,
        &[
            "grant",
            "add",
            "--team",
            "eng/web",
            "--role",
            "deployer",
            "--collection",
            "/Shared/web",
        ],
        None,
    )
    .await
    .ok("grant add");
    let id = id.trim().to_string();
    let grants: serde_json::Value = serde_json::from_str(
        &berth(&admin, &["grant", "ls", "--format", "json"], None)
            .await
            .ok("grant ls"),
    )
    .unwrap();
    let grant = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id.as_str())
        .unwrap_or_else(|| panic!("grant {id} not listed: {grants}"));
    assert_eq!(grant["subject"], "eng/web");
    assert_eq!(grant["collection"], "/Shared/web");
    // Alice sees the grant she holds, and her team.
    let hers = berth(&alice, &["grant", "ls"], None).await.ok("grant ls");
    assert!(hers.contains(&id) && hers.contains("deployer"), "{hers}");
    let me = berth(&alice, &["whoami"], None).await.ok("whoami");
    assert!(me.contains("eng/web"), "{me}");
    // A grant must name one subject.
    berth(
        &admin,
        &[
            "grant",
            "add",
            "--role",
            "deployer",
            "--collection",
            "/Shared/web",
        ],
        None,
    )
    .await
    .refused("a grant without a subject");

    // Torn down in order; the API refuses out of order.
    let err = berth(&admin, &["role", "rm", "deployer"], None)
        .await
        .refused("removing a role in use");
    assert!(err.contains("used by 1 grant"), "{err}");
    for args in [
        &["grant", "rm", id.as_str()][..],
        &["role", "rm", "deployer"],
        &["collection", "rm", "/Shared/web"],
        &["team", "remove", "eng/web", "alice"],
        &["team", "rm", "eng/web"],
        &["org", "rm", "eng"],
    ] {
        berth(&admin, args, None).await.ok(&args.join(" "));
    }
    let left = berth(&admin, &["grant", "ls"], None).await.ok("grant ls");
    assert!(!left.contains(&id), "{left}");
    let collections = berth(&admin, &["collection", "ls"], None)
        .await
        .ok("collection ls");
    assert!(
        collections.contains("/Shared") && !collections.contains("/Shared/web"),
        "{collections}"
    );

    // A client bundle: its env.sh, in an otherwise empty environment, is
    // all the CLI needs; removed, its certificate is refused.
    let zip = tmp.path().join("alice.zip");
    let zip_s = zip.to_str().unwrap();
    berth(
        &alice,
        &["bundle", "create", "--label", "laptop", "-o", zip_s],
        None,
    )
    .await
    .ok("bundle create");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&zip).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the bundle is readable by others: {mode:o}"
    );
    berth(
        &alice,
        &["bundle", "create", "--label", "again", "-o", zip_s],
        None,
    )
    .await
    .refused("overwriting a file");
    let listed = berth(&alice, &["bundle", "ls"], None).await.ok("bundle ls");
    assert!(listed.contains("laptop"), "{listed}");
    let unpacked = tmp.path().join("bundle dir");
    std::fs::create_dir(&unpacked).unwrap();
    let unzip = Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&unpacked)
        .status();
    match unzip {
        Ok(s) if s.success() => {
            let shell = Env::home(&tmp.path().join("bundle-home")).with("BERTH_TOKEN", "stale");
            let script = format!(
                "source '{}/env.sh' && exec '{}' whoami --format json",
                unpacked.display(),
                berth_bin().display()
            );
            let run = |shell: Env, script: String| async move {
                tokio::task::spawn_blocking(move || {
                    run_with(Path::new("/bin/bash"), &["-c", &script], &shell, &[], None)
                })
                .await
                .unwrap()
            };
            let me = run(shell.clone(), script.clone())
                .await
                .ok("whoami with the bundle");
            let me: serde_json::Value = serde_json::from_str(&me).unwrap();
            assert_eq!(me["user"]["name"], "alice");
            assert_eq!(me["credential"], "bundle");
            berth(&alice, &["bundle", "rm", "laptop"], None)
                .await
                .ok("bundle rm");
            let err = run(shell, script).await.refused("a removed bundle");
            assert!(err.contains("bundle"), "{err}");
        }
        other => eprintln!("unzip is not usable ({other:?}): the bundle's env.sh is not run"),
    }

    // The audit log: alice's writes, for the admin only.
    let audit = berth(
        &admin,
        &["audit", "ls", "--user", "alice", "--since", "1h"],
        None,
    )
    .await
    .ok("audit ls");
    assert!(audit.contains("/api/v1/bundles"), "{audit}");
    let entries: serde_json::Value = serde_json::from_str(
        &berth(
            &admin,
            &["audit", "ls", "--limit", "2", "--format", "json"],
            None,
        )
        .await
        .ok("audit ls json"),
    )
    .unwrap();
    assert!(entries.as_array().unwrap().len() <= 2, "{entries}");
    berth(&alice, &["audit", "ls"], None)
        .await
        .refused("audit by a non-admin");

    // Auth settings: LDAP set from flags, read, changed in part (the reader's
    // password kept), and turned off again.
    let shown = berth(&admin, &["auth", "settings", "show"], None)
        .await
        .ok("auth settings show");
    assert!(
        shown.contains("Session lifetime") && shown.contains("LDAP:"),
        "{shown}"
    );
    berth(
        &admin,
        &[
            "auth",
            "ldap",
            "set",
            "--server",
            "ldap://127.0.0.1:1",
            "--reader-dn",
            "cn=reader,dc=example,dc=org",
            "--reader-password-stdin",
            "--user-base-dn",
            "ou=people,dc=example,dc=org",
            "--one-level",
            "--no-jit",
            "--sync-interval",
            "0",
        ],
        Some("reader-secret\n"),
    )
    .await
    .ok("auth ldap set");
    berth(
        &admin,
        &["auth", "ldap", "set", "--username-attr", "mail", "--jit"],
        None,
    )
    .await
    .ok("auth ldap set (in part)");
    let json = berth(
        &admin,
        &["auth", "settings", "show", "--format", "json"],
        None,
    )
    .await
    .ok("auth settings show json");
    assert!(!json.contains("reader-secret"), "{json}");
    let ldap = c
        .node
        .store()
        .unwrap()
        .view(|s| s.cluster().unwrap().auth.ldap.clone())
        .expect("LDAP is set");
    assert_eq!(ldap.servers, ["ldap://127.0.0.1:1"]);
    assert_eq!(ldap.reader_password, "reader-secret");
    assert_eq!(ldap.username_attr, "mail");
    assert!(!ldap.subtree && ldap.jit_provisioning);
    assert!(ldap.sync_interval.is_zero());
    berth(&alice, &["auth", "settings", "show"], None)
        .await
        .refused("auth settings by a non-admin");
    berth(&admin, &["auth", "ldap", "disable"], None)
        .await
        .ok("auth ldap disable");
    let off = c
        .node
        .store()
        .unwrap()
        .view(|s| s.cluster().unwrap().auth.ldap.is_none());
    assert!(off);
    c.node.shutdown().await.unwrap();
}

/// How fingerprints compare, and what a login keeps of a credentials file.
#[test]
fn fingerprints_compare_however_written_and_a_login_keeps_its_cluster_only() {
    let hex = "ab".repeat(32);
    let colons = ["AB"; 32].join(":");
    for (a, b, same) in [
        (format!("sha256:{hex}"), hex.clone(), true),
        (format!("SHA256:{colons}"), format!("sha256:{hex}"), true),
        (format!(" sha256:{hex}\n"), hex.clone(), true),
        (
            format!("sha256:{hex}"),
            format!("sha256:{}", "ac".repeat(32)),
            false,
        ),
        // Too short to be a SHA-256: never equal, even to itself.
        ("sha256:abcd".to_string(), "abcd".to_string(), false),
    ] {
        assert_eq!(same_fingerprint(&a, &b), same, "{a} vs {b}");
    }

    let root = |name: &str| {
        ca::RootCa::generate(
            name,
            std::time::Duration::from_secs(3600),
            std::time::SystemTime::now(),
        )
        .unwrap()
        .to_stored()
        .cert_pem
    };
    let (ours, theirs) = (root("ours"), root("theirs"));
    let old = Credentials {
        host: "a:1".into(),
        managers: vec!["b:1".into(), "c:1".into()],
        token: "old".into(),
        ca_pem: ours.clone(),
    };
    let same = Credentials::logged_in(Some(old.clone()), "b:1", &ours, "new".into());
    assert_eq!(same.host, "b:1");
    assert_eq!(same.managers, ["c:1", "a:1"]);
    assert_eq!(same.token, "new");
    let other = Credentials::logged_in(Some(old), "x:1", &theirs, "t".into());
    assert_eq!(other.host, "x:1");
    assert!(other.managers.is_empty());
    assert!(other.trusts_fingerprint(&fingerprint(&theirs).unwrap()));
    assert!(!other.trusts_fingerprint(&fingerprint(&ours).unwrap()));

    // The token is a secret: not in Debug, and not in the file once empty.
    let mut c = Credentials {
        host: "h:1".into(),
        managers: vec![],
        token: "berth-session-secret".into(),
        ca_pem: String::new(),
    };
    assert!(!format!("{c:?}").contains("secret"));
    c.token.clear();
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("token"), "{json}");
    let back: Credentials = serde_json::from_str(&json).unwrap();
    assert!(back.token.is_empty());
}
