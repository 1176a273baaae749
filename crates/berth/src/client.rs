//! The CLI's HTTPS client for the controller's API: it trusts only the
//! cluster root CA it was given, tries every manager it knows, and presents
//! a bearer token or a client bundle's certificate. [`fetch_ca_unverified`]
//! is the one request made without verifying the server: the first contact
//! of a login, whose answer is checked against a fingerprint before use.

use crate::credentials::{BundleDir, Credentials};
use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// An error answer of the API, with its status and message.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub message: String,
    pub field: Option<String>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// What the client proves itself with, so that a refusal can say what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presented {
    Nothing,
    Session,
    ApiToken,
    AdminToken,
    /// A bearer secret of no known kind.
    Token,
    Bundle,
}

impl Presented {
    fn of_token(token: &str) -> Presented {
        if token.is_empty() {
            Presented::Nothing
        } else if token.starts_with(controller::authn::SESSION_PREFIX) {
            Presented::Session
        } else if token.starts_with(controller::authn::API_TOKEN_PREFIX) {
            Presented::ApiToken
        } else if token.starts_with("berth-admin-") {
            Presented::AdminToken
        } else {
            Presented::Token
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `https://host:port` of each manager to try, the preferred one first.
    bases: Vec<String>,
    /// The manager that answered last, tried first next time.
    current: Arc<std::sync::atomic::AtomicUsize>,
    /// Empty: no `Authorization` header.
    token: String,
    presented: Presented,
}

/// The token is a secret: never in a log or an error.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bases", &self.bases)
            .field("presented", &self.presented)
            .finish_non_exhaustive()
    }
}

fn roots_of(ca_pem: &str, what: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.with_context(|| format!("the certificate in {what} is not valid PEM"))?;
        roots
            .add(cert)
            .with_context(|| format!("the certificate in {what} cannot be trusted"))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{what} holds no CA certificate");
    }
    Ok(roots)
}

fn http_client(tls: rustls::ClientConfig) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("building the HTTPS client")
}

fn bases_of(host: &str, managers: &[String]) -> Vec<String> {
    let mut bases = vec![format!("https://{host}")];
    for m in managers {
        let b = format!("https://{m}");
        if !bases.contains(&b) {
            bases.push(b);
        }
    }
    bases
}

impl Client {
    /// A client that trusts the credentials' CA and presents their token
    /// (none when it is empty).
    pub fn new(creds: &Credentials) -> anyhow::Result<Client> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots_of(&creds.ca_pem, "the credentials")?)
            .with_no_client_auth();
        Ok(Client {
            http: http_client(tls)?,
            bases: bases_of(&creds.host, &creds.managers),
            current: Arc::default(),
            token: creds.token.clone(),
            presented: Presented::of_token(&creds.token),
        })
    }

    /// A client of a client bundle: it trusts the bundle's CA and presents
    /// its certificate in the TLS handshake, with no bearer token.
    pub fn with_bundle(host: &str, bundle: &BundleDir) -> anyhow::Result<Client> {
        let chain = CertificateDer::pem_slice_iter(bundle.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("the bundle's cert.pem is not valid PEM")?;
        if chain.is_empty() {
            anyhow::bail!("the bundle's cert.pem holds no certificate");
        }
        let key = PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes())
            .context("the bundle's key.pem holds no private key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots_of(&bundle.ca_pem, "the bundle's ca.pem")?)
            .with_client_auth_cert(chain, key)
            .context("the bundle's cert.pem and key.pem do not make a client certificate")?;
        Ok(Client {
            http: http_client(tls)?,
            bases: bases_of(host, &[]),
            current: Arc::default(),
            token: String::new(),
            presented: Presented::Bundle,
        })
    }

    /// The manager the client talks to now.
    pub fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    /// `GET`, the answer decoded from JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(path, |base| self.http.get(format!("{base}{path}")))
            .await
    }

    /// `GET` of a text answer (`/ca`'s PEM).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self
            .execute(|base| self.http.get(format!("{base}{path}")))
            .await?;
        let resp = check(resp, path, self.presented).await?;
        resp.text().await.context("reading the API's answer")
    }

    /// `POST` of a JSON body, the answer decoded from JSON (an empty answer,
    /// such as a 204's, reads as `null`: ask for `()`).
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(path, |base| {
            self.http.post(format!("{base}{path}")).json(body)
        })
        .await
    }

    /// `POST` of a JSON body whose answer is bytes (a client bundle's zip).
    pub async fn post_for_bytes<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .execute(|base| self.http.post(format!("{base}{path}")).json(body))
            .await?;
        let resp = check(resp, path, self.presented).await?;
        Ok(resp
            .bytes()
            .await
            .context("reading the API's answer")?
            .to_vec())
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let resp = self
            .execute(|base| self.http.delete(format!("{base}{path}")))
            .await?;
        check(resp, path, self.presented).await.map(|_| ())
    }

    /// Sends the request to the current manager, and to the next ones in turn
    /// while a manager cannot be reached. Only a failure to connect moves on:
    /// the request was never received, so sending it elsewhere is safe.
    async fn execute(
        &self,
        req: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        use std::sync::atomic::Ordering;
        let first = self.current.load(Ordering::Relaxed);
        let mut unreachable = Vec::new();
        for k in 0..self.bases.len() {
            let i = (first + k) % self.bases.len();
            let base = &self.bases[i];
            let mut r = req(base);
            if !self.token.is_empty() {
                r = r.bearer_auth(&self.token);
            }
            match r.send().await {
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) if e.is_connect() => {
                    unreachable.push(format!("{base}: {}", root_cause(&e)));
                }
                Err(e) if e.is_timeout() => {
                    return Err(anyhow!(
                        "the berth API at {base} did not answer in time: {}",
                        root_cause(&e)
                    ))
                }
                Err(e) => return Err(anyhow!("request to {base} failed: {}", root_cause(&e))),
            }
        }
        Err(anyhow!(
            "cannot reach the berth API ({}) — is berth running?",
            unreachable.join("; ")
        ))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        req: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = check(self.execute(req).await?, path, self.presented).await?;
        let bytes = resp.bytes().await.context("reading the API's answer")?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes)
            .context("the API's answer is not what this CLI expects (version mismatch?)")
    }
}

/// The login answers 401 for a wrong password: no hint about credentials.
const LOGIN_PATH: &str = "/api/v1/auth/login";

async fn check(
    resp: reqwest::Response,
    path: &str,
    presented: Presented,
) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    let parsed: Option<controller::error::ErrorBody> = serde_json::from_slice(&body).ok();
    let (message, field) = match parsed {
        Some(b) => (b.message, b.field),
        None => (
            format!("{status}: {}", String::from_utf8_lossy(&body)),
            None,
        ),
    };
    let message = if status.as_u16() == 401 && path != LOGIN_PATH {
        refused_hint(&message, presented)
    } else {
        message
    };
    Err(ApiFailure {
        status: status.as_u16(),
        message,
        field,
    }
    .into())
}

/// A 401's message with what to do about it, by what was presented.
fn refused_hint(message: &str, presented: Presented) -> String {
    // The account itself is refused: no other credential helps.
    if message.contains("disabled") {
        return message.to_string();
    }
    let login = matches!(
        presented,
        Presented::Nothing | Presented::Session | Presented::Token
    );
    if login && message.contains("log in again") {
        return message.replacen("log in again", "log in again with `berth login`", 1);
    }
    let what = match presented {
        Presented::Nothing => "log in first: `berth login --host HOST`",
        Presented::Session => "run `berth login` to start a new session",
        Presented::ApiToken => "the API token (BERTH_TOKEN or --token) was refused: make a new one with `berth token create`",
        Presented::AdminToken => "the admin credential was refused: restarting the founding manager (`berth up`) renews it, or `berth login` as an admin",
        Presented::Token => "check BERTH_TOKEN/--token, or run `berth login`",
        Presented::Bundle => "the client bundle in BERTH_CERT_PATH was refused: make a new one with `berth bundle create`",
    };
    format!("{message} ({what})")
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The HTTP status of an API failure inside an anyhow error, if it is one.
pub fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<ApiFailure>().map(|f| f.status)
}

/// `GET /ca` of `host` over a connection that does not verify the server:
/// the cluster root CA(s) in PEM, to be checked against a fingerprint the
/// user trusts before anything else is sent. Nothing secret goes over it.
pub async fn fetch_ca_unverified(host: &str) -> anyhow::Result<String> {
    let (tls, _) = ca::bootstrap_client_config().context("building the bootstrap TLS client")?;
    let mut tls = (*tls).clone();
    // The bootstrap configuration speaks gRPC's h2; the API is HTTP/1.1.
    tls.alpn_protocols.clear();
    let http = http_client(tls)?;
    let url = format!("https://{host}/ca");
    let resp = http.get(&url).send().await.map_err(|e| {
        anyhow!(
            "cannot reach the berth API at {host}: {} — is the address right?",
            root_cause(&e)
        )
    })?;
    let resp = check(resp, "/ca", Presented::Nothing).await?;
    let pem = resp.text().await.context("reading the cluster's CA")?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("{host} answered /ca with no certificate: is it a berth manager?");
    }
    Ok(pem)
}

/// `s` percent-encoded for one segment of a URL's path or a query value:
/// everything but RFC 3986's unreserved characters is escaped.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&…` of the pairs whose value is given ("" when none is).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}
