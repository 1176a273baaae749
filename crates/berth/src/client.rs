//! The CLI's HTTPS client for the controller's API.

use crate::credentials::Credentials;
use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
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

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `https://host:port` of each manager to try, the preferred one first.
    bases: Vec<String>,
    /// The manager that answered last, tried first next time.
    current: Arc<std::sync::atomic::AtomicUsize>,
    token: String,
}

impl Client {
    pub fn new(creds: &Credentials) -> anyhow::Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
            let cert = cert.context("the certificate in the credentials is not valid PEM")?;
            roots
                .add(cert)
                .context("the certificate in the credentials cannot be trusted")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTPS client")?;
        let mut bases = vec![format!("https://{}", creds.host)];
        for m in &creds.managers {
            let b = format!("https://{m}");
            if !bases.contains(&b) {
                bases.push(b);
            }
        }
        Ok(Client {
            http,
            bases,
            current: Arc::default(),
            token: creds.token.clone(),
        })
    }

    /// The manager the client talks to now.
    pub fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(|base| self.http.get(format!("{base}{path}")))
            .await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(|base| self.http.post(format!("{base}{path}")).json(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let resp = self
            .execute(|base| self.http.delete(format!("{base}{path}")))
            .await?;
        check(resp).await.map(|_| ())
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
            match req(base).bearer_auth(&self.token).send().await {
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
        req: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = check(self.execute(req).await?).await?;
        let bytes = resp.bytes().await.context("reading the API's answer")?;
        serde_json::from_slice(&bytes)
            .context("the API's answer is not what this CLI expects (version mismatch?)")
    }
}

async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
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
    let message = if status.as_u16() == 401 {
        format!("{message}: the credential was refused (run `berth up` again to renew the admin credential, or check BERTH_TOKEN)")
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
