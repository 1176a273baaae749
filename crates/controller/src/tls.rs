//! The API's TLS: the server configuration from a certificate the cluster
//! root CA signed for the manager (the node wiring issues and renews it), and
//! the accept loop that serves the router over it, taking each connection's
//! configuration from a watch so a renewed certificate needs no restart.

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the API certificate or key is not valid: {0}")]
    Invalid(String),
}

/// The API's certificate chain and key, PEM-encoded, and the client root
/// CA whose certificates (users' bundles) the API accepts.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert_pem: String,
    pub key_pem: String,
    /// `None`: no client certificates are asked for.
    pub client_ca_pem: Option<String>,
}

/// Writes a file readable by its owner only, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(files.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(files.key_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let builder = match &files.client_ca_pem {
        // A certificate is optional (most callers bring a bearer token);
        // one that is presented must chain to the client root CA, and the
        // API then maps it to its bundle (crate::authn).
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let c = c.map_err(|e| TlsError::Invalid(format!("client root CA: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| TlsError::Invalid(format!("client root CA: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Invalid(format!("client root CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes; each
/// connection uses the configuration current when it is accepted.
pub async fn serve(
    listener: TcpListener,
    config: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting an API connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config.borrow().clone());
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let peer = crate::authn::Peer {
                remote: Some(remote),
                client_cert: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Arc::new(c.as_ref().to_vec())),
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let app = tower::ServiceExt::map_request(
                app,
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req
                },
            );
            let service = hyper_util::service::TowerToHyperService::new(app);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%remote, error = %e, "API connection ended with an error");
            }
        });
    }
}
