//! A real OpenLDAP server for the tests: [`Slapd::start`] runs slapd as the
//! current user on 127.0.0.1 and a free port, from a slapd.conf and an mdb
//! database in a temporary directory, seeds it as the root DN (through
//! ldap3, as the worker talks) and kills it when dropped.
//!
//! Without slapd installed the tests say so and skip, unless
//! `BERTH_REQUIRE_PRIVILEGED_TESTS=1` (CI), where they fail instead;
//! `scripts/install-test-deps.sh` installs it.

use api::auth::LdapConfig;
use ldap3::{Ldap, LdapConnAsync, Mod};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=berth,dc=test";
pub const ROOT_DN: &str = "cn=admin,dc=berth,dc=test";
const ROOT_PW: &str = "root-secret";
pub const READER_DN: &str = "cn=reader,dc=berth,dc=test";
pub const READER_PW: &str = "reader-secret";
pub const PEOPLE: &str = "ou=people,dc=berth,dc=test";
pub const GROUPS: &str = "ou=groups,dc=berth,dc=test";

/// Set (to 1) where tests that need a peer such as slapd must run.
const REQUIRE: &str = "BERTH_REQUIRE_PRIVILEGED_TESTS";
const SLAPD: &str = "/usr/sbin/slapd";
/// How long slapd may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},{GROUPS}")
}

/// A user's password in the test directory.
pub fn password(uid: &str) -> String {
    format!("{uid}-password")
}

pub struct Slapd {
    child: Child,
    _dir: tempfile::TempDir,
    /// `ldap://127.0.0.1:PORT`
    pub url: String,
    /// `ldaps://127.0.0.1:PORT`, when started with TLS.
    pub ldaps_url: Option<String>,
    root: Ldap,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where this system keeps OpenLDAP's schema files and modules.
fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

fn config_text(dir: &Path, schema: &Path, modules: Option<&Path>, tls: bool) -> String {
    let mut conf = String::new();
    if tls {
        conf.push_str(&format!(
            "TLSCertificateFile {dir}/cert.pem\nTLSCertificateKeyFile {dir}/key.pem\n",
            dir = dir.display()
        ));
    }
    for s in ["core", "cosine", "inetorgperson"] {
        conf.push_str(&format!("include {}/{s}.schema\n", schema.display()));
    }
    if let Some(m) = modules {
        conf.push_str(&format!(
            "modulepath {}\nmoduleload back_mdb\n",
            m.display()
        ));
    }
    conf.push_str(&format!(
        "pidfile {dir}/slapd.pid\n\
         argsfile {dir}/slapd.args\n\
         database mdb\n\
         maxsize 67108864\n\
         suffix \"{SUFFIX}\"\n\
         rootdn \"{ROOT_DN}\"\n\
         rootpw {ROOT_PW}\n\
         directory {dir}/db\n",
        dir = dir.display()
    ));
    conf
}

impl Slapd {
    /// A running, seeded slapd; `None` (after saying why) when slapd is not
    /// installed and the environment does not require it.
    pub async fn start() -> Option<Slapd> {
        Slapd::start_with(false).await
    }

    /// The same, also serving TLS (ldaps:// at [`Slapd::ldaps_url`], and
    /// StartTLS at [`Slapd::url`]) with a self-signed certificate for
    /// 127.0.0.1, which no system trusts.
    pub async fn start_with_tls() -> Option<Slapd> {
        Slapd::start_with(true).await
    }

    async fn start_with(tls: bool) -> Option<Slapd> {
        if !Path::new(SLAPD).exists() {
            let why =
                format!("{SLAPD} is not installed (scripts/install-test-deps.sh installs slapd)");
            if std::env::var(REQUIRE).as_deref() == Ok("1") {
                panic!("{why}, and {REQUIRE}=1 requires the LDAP tests to run");
            }
            // Once per run, past the test harness's capture, so that a
            // skip is seen; each test's own line stays in its output.
            static SAID: AtomicBool = AtomicBool::new(false);
            let line = format!("SKIPPED: the LDAP tests need a real slapd: {why}");
            if !SAID.swap(true, Ordering::SeqCst) {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            eprintln!("{line}");
            return None;
        }
        let schema = first_existing(&["/etc/ldap/schema", "/etc/openldap/schema"])
            .expect("slapd is installed, but no OpenLDAP schema directory was found");
        // Debian builds the backends as modules; elsewhere mdb is built in.
        let modules =
            first_existing(&["/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap"])
                .filter(|m| m.join("back_mdb.so").exists() || m.join("back_mdb.la").exists());
        // A port that was free a moment ago may be taken by the time slapd
        // binds it: a few attempts.
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("a temporary directory");
            std::fs::create_dir(dir.path().join("db")).expect("the database directory");
            let conf = dir.path().join("slapd.conf");
            std::fs::write(
                &conf,
                config_text(dir.path(), &schema, modules.as_deref(), tls),
            )
            .expect("writing slapd.conf");
            let url = format!("ldap://127.0.0.1:{}", free_port());
            let mut listeners = format!("{url}/");
            let mut ldaps_url = None;
            if tls {
                let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
                    .expect("a self-signed certificate");
                std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("cert.pem");
                std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem())
                    .expect("key.pem");
                let ldaps = format!("ldaps://127.0.0.1:{}", free_port());
                listeners.push_str(&format!(" {ldaps}/"));
                ldaps_url = Some(ldaps);
            }
            let log = std::fs::File::create(dir.path().join("slapd.log")).expect("slapd.log");
            let mut child = Command::new(SLAPD)
                .arg("-h")
                .arg(&listeners)
                .arg("-f")
                .arg(&conf)
                // Stay in the foreground (a child we can kill), logging
                // nothing but what slapd prints before it serves.
                .arg("-d")
                .arg("0")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting slapd");
            match wait_until_it_answers(&url, &mut child).await {
                Ok(root) => {
                    let mut server = Slapd {
                        child,
                        _dir: dir,
                        url,
                        ldaps_url,
                        root,
                    };
                    server.seed().await;
                    return Some(server);
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log =
                        std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default();
                    last_error = format!("{e}; slapd said: {log}");
                }
            }
        }
        panic!("slapd did not start: {last_error}");
    }

    /// Settings for the worker against this server (JIT off, no periodic
    /// sync: the tests change what they need).
    pub fn config(&self) -> LdapConfig {
        LdapConfig {
            servers: vec![self.url.clone()],
            start_tls: false,
            tls_skip_verify: false,
            reader_dn: READER_DN.into(),
            reader_password: READER_PW.into(),
            user_base_dn: PEOPLE.into(),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            username_attr: "uid".into(),
            fullname_attr: "cn".into(),
            subtree: true,
            jit_provisioning: false,
            sync_interval: Duration::ZERO,
            group_member_attr: "member".into(),
        }
    }

    async fn seed(&mut self) {
        self.add(
            SUFFIX,
            &[
                ("objectClass", &["dcObject", "organization"]),
                ("dc", &["berth"]),
                ("o", &["berth"]),
            ],
        )
        .await;
        for ou in ["people", "groups"] {
            self.add(
                &format!("ou={ou},{SUFFIX}"),
                &[("objectClass", &["organizationalUnit"]), ("ou", &[ou])],
            )
            .await;
        }
        self.add(
            READER_DN,
            &[
                (
                    "objectClass",
                    &["organizationalRole", "simpleSecurityObject"],
                ),
                ("cn", &["reader"]),
                ("userPassword", &[READER_PW]),
            ],
        )
        .await;
    }

    async fn add(&mut self, dn: &str, attrs: &[(&str, &[&str])]) {
        let attrs: Vec<(&str, HashSet<&str>)> = attrs
            .iter()
            .map(|(k, v)| (*k, v.iter().copied().collect()))
            .collect();
        self.root
            .add(dn, attrs)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("adding {dn}: {e}"));
    }

    /// A person under ou=people whose password is [`password`]`(uid)`.
    pub async fn add_user(&mut self, uid: &str, full_name: &str) {
        let pw = password(uid);
        self.add(
            &user_dn(uid),
            &[
                ("objectClass", &["inetOrgPerson"]),
                ("uid", &[uid]),
                ("cn", &[full_name]),
                ("sn", &[full_name]),
                ("userPassword", &[&pw]),
            ],
        )
        .await;
    }

    pub async fn delete(&mut self, dn: &str) {
        self.root
            .delete(dn)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("deleting {dn}: {e}"));
    }

    /// Creates or replaces the group `cn` under ou=groups with these users.
    /// (A groupOfNames needs a member: the reader stands in, a DN that is
    /// no user.)
    pub async fn set_group(&mut self, cn: &str, uids: &[&str]) {
        let mut members: HashSet<String> = uids.iter().map(|u| user_dn(u)).collect();
        members.insert(READER_DN.to_string());
        let dn = group_dn(cn);
        let exists = self
            .root
            .modify(
                &dn,
                vec![Mod::Replace("member".to_string(), members.clone())],
            )
            .await
            .map(|r| r.rc == 0)
            .unwrap_or(false);
        if !exists {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            self.add(
                &dn,
                &[
                    ("objectClass", &["groupOfNames"]),
                    ("cn", &[cn]),
                    ("member", &members),
                ],
            )
            .await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The root DN's connection, once slapd answers (bounded).
async fn wait_until_it_answers(url: &str, child: &mut Child) -> Result<Ldap, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("slapd exited ({status})"));
        }
        match LdapConnAsync::new(url).await {
            Ok((conn, mut ldap)) => {
                tokio::spawn(async move {
                    let _ = conn.drive().await;
                });
                match ldap
                    .simple_bind(ROOT_DN, ROOT_PW)
                    .await
                    .and_then(|r| r.success())
                {
                    Ok(_) => return Ok(ldap),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "no answer at {url} within {START_TIMEOUT:?}: {last}"
    ))
}
