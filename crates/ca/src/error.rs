//! The crate's one error type. Callers that answer a remote node (the CA's
//! "issue certificate" RPC) use [`CaError::is_request_error`] to tell the
//! caller's mistakes from this node's faults.

/// Why a CA or TLS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The certificate signing request cannot be used: unparsable, a bad
    /// signature, or a key type the cluster does not issue for.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    /// A name that would go into a certificate subject is unusable.
    #[error("invalid {field}: {reason}")]
    InvalidName {
        field: &'static str,
        reason: &'static str,
    },
    /// PEM text that holds no usable certificate or key.
    #[error("invalid PEM ({what}): {reason}")]
    Pem { what: &'static str, reason: String },
    /// A certificate that cannot be parsed, or is not the kind expected
    /// (for example a user's certificate where a node's was needed).
    #[error("certificate: {0}")]
    Certificate(String),
    /// Stored CA material this crate cannot sign with (not made by it, or the
    /// key does not belong to the certificate).
    #[error("unusable root CA: {0}")]
    UnusableRoot(String),
    /// The root a manager handed to a joining node is not the one its join
    /// token pins: the node may be talking to an impostor.
    #[error("the root CA offered by the manager does not match the join token's digest")]
    RootDigestMismatch,
    /// The server a joining node talked to does not hold a certificate from
    /// the root it offered.
    #[error("the server's certificate does not chain to the offered root CA: {0}")]
    ServerNotUnderRoot(String),
    /// rcgen could not build or sign a certificate.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration (for example a key that does not match
    /// its certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl CaError {
    /// True when the input is at fault rather than this node: the remote
    /// caller should get "invalid argument", not "internal".
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            CaError::InvalidCsr(_)
                | CaError::InvalidName { .. }
                | CaError::Pem { .. }
                | CaError::Certificate(_)
        )
    }
}
