//! Talking to the LDAP directory (ldap3 over rustls with ring).
//!
//! [`Directory::connect`] tries the configured servers in order, each with
//! bounded timeouts, and binds as the reader; the reader searches the users
//! ([`Directory::search_users`]) and reads groups
//! ([`Directory::group_members`]). [`authenticate`] checks a user's
//! password: the reader finds the user's DN, then the connection binds as
//! that DN with the password.
//!
//! No password ever reaches a log line or an error: errors carry the
//! server, what was being done and the directory's reason only. User input
//! is escaped before it goes into a filter.

use api::auth::LdapConfig;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long one server may take to accept a connection (TCP, then TLS or
/// StartTLS) before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a bind or a group's read may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the whole user search may take (every page of it).
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Entries per page of the user search (Active Directory answers at most
/// 1,000 per request without paging).
const PAGE_SIZE: i32 = 500;

/// A user as the directory has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub dn: String,
    /// The value of `username_attr`, lowercased: the berth user name.
    pub username: String,
    /// The value of `fullname_attr`; empty when there is none.
    pub full_name: String,
}

/// Why the directory could not be used. None carries a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The settings cannot work as they are; fix them and retry.
    #[error("the LDAP settings are not usable: {0}")]
    Config(String),
    /// Every server failed to connect (each with its reason, in order).
    #[error("could not reach any LDAP server ({})", .0.join("; "))]
    Unreachable(Vec<String>),
    /// The server answered, and refused the reader's DN and password.
    #[error("the reader DN could not bind: {0}")]
    ReaderBind(String),
    /// The server refused an operation (a search under a base that does not
    /// exist, a bad filter, no access, …): `what` says which.
    #[error("the LDAP server {server} refused the {what}: {reason}")]
    Refused {
        server: String,
        what: String,
        reason: String,
    },
    /// The connection failed or stopped answering during an operation.
    #[error("the LDAP server {server} stopped answering during the {what}: {reason}")]
    Lost {
        server: String,
        what: String,
        reason: String,
    },
}

impl DirectoryError {
    /// Whether trying again later may work without a change of settings.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DirectoryError::Unreachable(_) | DirectoryError::Lost { .. }
        )
    }
}

/// A connection to one of the configured servers, bound as the reader.
pub struct Directory {
    ldap: Ldap,
    server: String,
    config: LdapConfig,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// Connects to the first server of `config.servers` that answers and
    /// binds as the reader (anonymously if no reader DN is set). A server
    /// that cannot be reached in [`CONNECT_TIMEOUT`] is passed over; one
    /// that answers and refuses the reader ends the attempt (the others
    /// would refuse the same credentials).
    pub async fn connect(config: &LdapConfig) -> Result<Directory, DirectoryError> {
        check_config(config)?;
        let mut failures = Vec::new();
        for server in &config.servers {
            let mut ldap = match open(server, config).await {
                Ok(ldap) => ldap,
                Err(reason) => {
                    tracing::debug!(%server, %reason, "LDAP server not reachable");
                    failures.push(format!("{server}: {reason}"));
                    continue;
                }
            };
            if config.reader_dn.is_empty() {
                // Anonymous search, as some directories allow.
                return Ok(Directory {
                    ldap,
                    server: server.clone(),
                    config: config.clone(),
                });
            }
            match bind(&mut ldap, &config.reader_dn, &config.reader_password).await {
                Ok(Bound::Yes) => {
                    return Ok(Directory {
                        ldap,
                        server: server.clone(),
                        config: config.clone(),
                    })
                }
                Ok(Bound::Refused(reason)) => return Err(DirectoryError::ReaderBind(reason)),
                Err(e) if is_connection_failure(&e) => {
                    failures.push(format!("{server}: {}", reason(&e)));
                }
                Err(e) => return Err(DirectoryError::ReaderBind(reason(&e))),
            }
        }
        Err(DirectoryError::Unreachable(failures))
    }

    /// The server this connection went to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Every user under `user_base_dn` that `user_filter` selects (one level
    /// or the subtree), in pages. Entries without the username attribute
    /// are left out (with a debug line).
    pub async fn search_users(&mut self) -> Result<Vec<DirectoryUser>, DirectoryError> {
        let what = format!("search for users under {:?}", self.config.user_base_dn);
        let filter = user_filter(&self.config);
        match tokio::time::timeout(SEARCH_TIMEOUT, self.search_users_paged(&filter)).await {
            Ok(Ok(users)) => Ok(users),
            Ok(Err(e)) => Err(self.op_error(what, &e)),
            Err(_) => Err(DirectoryError::Lost {
                server: self.server.clone(),
                what,
                reason: format!("not finished within {SEARCH_TIMEOUT:?}"),
            }),
        }
    }

    async fn search_users_paged(&mut self, filter: &str) -> Result<Vec<DirectoryUser>, LdapError> {
        let scope = if self.config.subtree {
            Scope::Subtree
        } else {
            Scope::OneLevel
        };
        let attrs = self.user_attrs();
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE_SIZE)),
        ];
        let mut stream = self
            .ldap
            .streaming_search_with(adapters, &self.config.user_base_dn, scope, filter, attrs)
            .await?;
        let mut users = Vec::new();
        while let Some(entry) = stream.next().await? {
            if let Some(user) = self.user_of(SearchEntry::construct(entry)) {
                users.push(user);
            }
        }
        stream.finish().await.success()?;
        Ok(users)
    }

    /// The DNs that the group `group_dn` names in `group_member_attr`.
    pub async fn group_members(
        &mut self,
        group_dn: &str,
    ) -> Result<BTreeSet<String>, DirectoryError> {
        let what = format!("read of group {group_dn:?}");
        let attr = self.config.group_member_attr.clone();
        let search = async {
            let (entries, result) = self
                .ldap
                .search(
                    group_dn,
                    Scope::Base,
                    "(objectClass=*)",
                    vec![attr.as_str()],
                )
                .await?
                .success()?;
            let _ = result;
            let mut members = BTreeSet::new();
            for entry in entries {
                let entry = SearchEntry::construct(entry);
                if let Some(values) = attribute(&entry, &attr) {
                    members.extend(values.iter().cloned());
                }
            }
            Ok::<_, LdapError>(members)
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, search).await {
            Ok(Ok(members)) => Ok(members),
            Ok(Err(e)) => Err(self.op_error(what, &e)),
            Err(_) => Err(DirectoryError::Lost {
                server: self.server.clone(),
                what,
                reason: format!("no answer within {OPERATION_TIMEOUT:?}"),
            }),
        }
    }

    /// The users that `user_filter` selects and whose username attribute is
    /// `username` (escaped into the filter).
    async fn find_user(&mut self, username: &str) -> Result<Vec<DirectoryUser>, DirectoryError> {
        let what = "search for the user logging in".to_string();
        let filter = format!(
            "(&{}({}={}))",
            user_filter(&self.config),
            self.config.username_attr,
            ldap3::ldap_escape(username)
        );
        let scope = if self.config.subtree {
            Scope::Subtree
        } else {
            Scope::OneLevel
        };
        let attrs = self.user_attrs();
        let base = self.config.user_base_dn.clone();
        let search = self.ldap.search(&base, scope, &filter, attrs);
        let entries = match tokio::time::timeout(OPERATION_TIMEOUT, search).await {
            Ok(Ok(result)) => match result.success() {
                Ok((entries, _)) => entries,
                Err(e) => return Err(self.op_error(what, &e)),
            },
            Ok(Err(e)) => return Err(self.op_error(what, &e)),
            Err(_) => {
                return Err(DirectoryError::Lost {
                    server: self.server.clone(),
                    what,
                    reason: format!("no answer within {OPERATION_TIMEOUT:?}"),
                })
            }
        };
        Ok(entries
            .into_iter()
            .filter_map(|e| self.user_of(SearchEntry::construct(e)))
            .collect())
    }

    /// Ends the session politely (the connection closes in any case once
    /// the `Directory` is dropped).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(OPERATION_TIMEOUT, self.ldap.unbind()).await;
    }

    fn user_attrs(&self) -> Vec<String> {
        let mut attrs = vec![self.config.username_attr.clone()];
        if !self.config.fullname_attr.is_empty() {
            attrs.push(self.config.fullname_attr.clone());
        }
        attrs
    }

    fn user_of(&self, entry: SearchEntry) -> Option<DirectoryUser> {
        let username = attribute(&entry, &self.config.username_attr)
            .and_then(|v| v.first())
            .cloned();
        let Some(username) = username.filter(|u| !u.is_empty()) else {
            tracing::debug!(
                dn = %entry.dn,
                attr = %self.config.username_attr,
                "directory entry without the username attribute left out"
            );
            return None;
        };
        let full_name = if self.config.fullname_attr.is_empty() {
            String::new()
        } else {
            attribute(&entry, &self.config.fullname_attr)
                .and_then(|v| v.first())
                .cloned()
                .unwrap_or_default()
        };
        Some(DirectoryUser {
            dn: entry.dn,
            // berth names are lowercase (they are registry namespaces too),
            // and LDAP matches names without regard to case.
            username: username.to_lowercase(),
            full_name,
        })
    }

    fn op_error(&self, what: String, e: &LdapError) -> DirectoryError {
        if is_connection_failure(e) {
            DirectoryError::Lost {
                server: self.server.clone(),
                what,
                reason: reason(e),
            }
        } else {
            DirectoryError::Refused {
                server: self.server.clone(),
                what,
                reason: reason(e),
            }
        }
    }
}

/// Checks `password` for `username` against the directory: `Ok(Some)` with
/// the directory's user when it binds, `Ok(None)` when the password is
/// wrong or empty, the user unknown or not selected by `user_filter` (or
/// named by more than one entry); `Err` when the directory cannot be asked.
///
/// An empty password is refused before anything is sent: a simple bind
/// with a DN and no password is an unauthenticated bind, which a directory
/// answers with success.
pub async fn authenticate(
    config: &LdapConfig,
    username: &str,
    password: &str,
) -> Result<Option<DirectoryUser>, DirectoryError> {
    if password.is_empty() || username.is_empty() {
        tracing::debug!("LDAP login refused: empty user name or password");
        return Ok(None);
    }
    let mut directory = Directory::connect(config).await?;
    let mut found = directory.find_user(username).await?;
    let user = match found.len() {
        0 => {
            tracing::debug!(%username, "LDAP login refused: no such user");
            directory.close().await;
            return Ok(None);
        }
        1 => found.remove(0),
        n => {
            tracing::warn!(%username, entries = n, "LDAP login refused: the user name is ambiguous in the directory");
            directory.close().await;
            return Ok(None);
        }
    };
    let what = "bind as the user logging in".to_string();
    let bound = bind(&mut directory.ldap, &user.dn, password).await;
    let outcome = match bound {
        Ok(Bound::Yes) => Ok(Some(user)),
        Ok(Bound::Refused(reason)) => {
            tracing::debug!(dn = %user.dn, %reason, "LDAP login refused");
            Ok(None)
        }
        Err(e) => Err(directory.op_error(what, &e)),
    };
    directory.close().await;
    outcome
}

enum Bound {
    Yes,
    /// Wrong credentials (the directory's reason, without the password).
    Refused(String),
}

/// A simple bind, bounded in time. A refusal of the credentials is
/// `Ok(Refused)`; any other failure is `Err`.
async fn bind(ldap: &mut Ldap, dn: &str, password: &str) -> Result<Bound, LdapError> {
    // Never an unauthenticated bind (a DN and no password), which succeeds.
    if password.is_empty() {
        return Ok(Bound::Refused("no password given".into()));
    }
    let result = tokio::time::timeout(OPERATION_TIMEOUT, ldap.simple_bind(dn, password))
        .await
        .map_err(|elapsed| LdapError::Timeout { elapsed })??;
    match result.rc {
        0 => Ok(Bound::Yes),
        // invalidCredentials, inappropriateAuthentication
        49 | 48 => Ok(Bound::Refused(result_reason(&result))),
        _ => Err(LdapError::LdapResult { result }),
    }
}

fn check_config(config: &LdapConfig) -> Result<(), DirectoryError> {
    if config.servers.is_empty() {
        return Err(DirectoryError::Config(
            "no LDAP server is configured".into(),
        ));
    }
    for s in &config.servers {
        if !(s.starts_with("ldap://") || s.starts_with("ldaps://")) {
            return Err(DirectoryError::Config(format!(
                "server {s:?} is not an ldap:// or ldaps:// URL"
            )));
        }
    }
    if !config.reader_dn.is_empty() && config.reader_password.is_empty() {
        return Err(DirectoryError::Config(
            "the reader DN has no password (a bind with a DN and no password is anonymous)".into(),
        ));
    }
    if config.username_attr.is_empty() {
        return Err(DirectoryError::Config("username_attr is empty".into()));
    }
    if config.group_member_attr.is_empty() {
        return Err(DirectoryError::Config("group_member_attr is empty".into()));
    }
    Ok(())
}

/// Opens a connection to `server` and starts its driver task.
async fn open(server: &str, config: &LdapConfig) -> Result<Ldap, String> {
    let tls = tls_config(config.tls_skip_verify)?;
    let settings = LdapConnSettings::new()
        .set_conn_timeout(CONNECT_TIMEOUT)
        .set_starttls(config.start_tls && server.starts_with("ldap://"))
        .set_no_tls_verify(config.tls_skip_verify)
        .set_config(tls);
    // ldap3 bounds the TCP connection and the TLS handshake by the
    // connection timeout; this bounds anything else it might wait for.
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT + Duration::from_secs(1),
        LdapConnAsync::with_settings(settings, server),
    )
    .await
    .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))?;
    let (conn, ldap) = connected.map_err(|e| reason(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "LDAP connection ended");
        }
    });
    Ok(ldap)
}

/// The configured user filter, parenthesised (`objectClass=person` is
/// accepted as `(objectClass=person)`); every entry if empty.
fn user_filter(config: &LdapConfig) -> String {
    let f = config.user_filter.trim();
    if f.is_empty() {
        "(objectClass=*)".into()
    } else if f.starts_with('(') {
        f.to_string()
    } else {
        format!("({f})")
    }
}

/// An attribute's values, its name matched without regard to case (LDAP
/// attribute names are case-insensitive; the server answers in its own
/// spelling).
fn attribute<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a Vec<String>> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Whether the error is the connection's rather than the server's answer.
fn is_connection_failure(e: &LdapError) -> bool {
    !matches!(
        e,
        LdapError::LdapResult { .. } | LdapError::FilterParsing | LdapError::AdapterInit(_)
    )
}

/// What went wrong, in words an admin can act on.
fn reason(e: &LdapError) -> String {
    match e {
        LdapError::Io { source } if tls_error(source).is_some() => {
            tls_error(source).map(tls_reason).unwrap_or_default()
        }
        LdapError::Io { source } => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            std::io::ErrorKind::TimedOut => "timed out".into(),
            _ => source.to_string(),
        },
        LdapError::Timeout { .. } => "no answer in time".into(),
        LdapError::LdapResult { result } => result_reason(result),
        LdapError::FilterParsing => "the filter is not valid LDAP filter syntax".into(),
        LdapError::Rustls { source } => tls_reason(source),
        LdapError::EndOfStream
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::IdScrubSend { .. } => "the connection was closed".into(),
        other => other.to_string(),
    }
}

/// The TLS error inside an I/O error (tokio-rustls reports a failed
/// handshake as one).
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn tls_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(_) => format!(
            "TLS: {e} (this host does not trust the server's certificate: add its CA to the \
             system's trusted roots, or set tls_skip_verify for a test directory)"
        ),
        _ => format!("TLS: {e}"),
    }
}

fn result_reason(r: &ldap3::LdapResult) -> String {
    let name = match r.rc {
        8 => "stronger authentication required (use StartTLS or ldaps://)",
        13 => "confidentiality required (use StartTLS or ldaps://)",
        32 => "no such object",
        34 => "invalid DN syntax",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        _ => "",
    };
    let mut s = if name.is_empty() {
        format!("result code {}", r.rc)
    } else {
        name.to_string()
    };
    if !r.text.is_empty() {
        s.push_str(&format!(" ({})", r.text));
    }
    s
}

/// The rustls configuration of LDAP connections, made once per process:
/// ring as the provider (never the process default), the system's trusted
/// roots, or no verification at all when the admin asked to skip it.
fn tls_config(skip_verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    static VERIFIED: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    static UNVERIFIED: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let cell = if skip_verify { &UNVERIFIED } else { &VERIFIED };
    cell.get_or_init(|| make_tls_config(skip_verify)).clone()
}

fn make_tls_config(skip_verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system root certificate could not be loaded");
        }
        roots.add_parsable_certificates(found.certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `tls_skip_verify`: any certificate is accepted (the handshake's
/// signatures are still checked, so the session is at least with the
/// holder of the certificate's key).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_filters_are_parenthesised() {
        let mut c = LdapConfig::default();
        for (given, used) in [
            ("", "(objectClass=*)"),
            ("objectClass=person", "(objectClass=person)"),
            (
                "(&(objectClass=person)(!(uid=bob)))",
                "(&(objectClass=person)(!(uid=bob)))",
            ),
        ] {
            c.user_filter = given.into();
            assert_eq!(user_filter(&c), used, "{given:?}");
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused_before_connecting() {
        let good = LdapConfig {
            servers: vec!["ldap://127.0.0.1:1".into()],
            reader_dn: "cn=reader".into(),
            reader_password: "pw".into(),
            ..LdapConfig::default()
        };
        assert_eq!(check_config(&good), Ok(()));
        type Change = Box<dyn Fn(&mut LdapConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.servers.clear()), "no LDAP server"),
            (
                Box::new(|c| c.servers = vec!["http://x".into()]),
                "not an ldap://",
            ),
            (
                Box::new(|c| c.reader_password.clear()),
                "reader DN has no password",
            ),
            (Box::new(|c| c.username_attr.clear()), "username_attr"),
            (
                Box::new(|c| c.group_member_attr.clear()),
                "group_member_attr",
            ),
        ];
        for (change, says) in cases {
            let mut c = good.clone();
            change(&mut c);
            let err = check_config(&c).expect_err(says).to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn errors_name_the_cause_in_words() {
        let refused = LdapError::Io {
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(reason(&refused), "connection refused");
        assert!(is_connection_failure(&refused));
        let bad_creds = LdapError::LdapResult {
            result: ldap3::LdapResult {
                rc: 49,
                matched: String::new(),
                text: String::new(),
                refs: vec![],
                ctrls: vec![],
            },
        };
        assert_eq!(reason(&bad_creds), "invalid credentials");
        assert!(!is_connection_failure(&bad_creds));
        let e = DirectoryError::Unreachable(vec![
            "ldap://a:389: connection refused".into(),
            "ldap://b:389: no answer within 5s".into(),
        ]);
        assert_eq!(
            e.to_string(),
            "could not reach any LDAP server (ldap://a:389: connection refused; ldap://b:389: no answer within 5s)"
        );
        assert!(e.is_retryable());
        assert!(!DirectoryError::ReaderBind("invalid credentials".into()).is_retryable());
    }

    #[test]
    fn both_tls_configurations_can_be_made() {
        assert!(tls_config(false).is_ok());
        assert!(tls_config(true).is_ok());
    }
}
