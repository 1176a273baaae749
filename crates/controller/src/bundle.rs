//! Client bundles (UCP's): how a presented client certificate maps to its
//! bundle, by the SHA-256 of its public key.

use sha2::{Digest, Sha256};

/// The lowercase hex SHA-256 of the certificate's SubjectPublicKeyInfo (DER).
pub fn public_key_sha256_der(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("reading the client certificate: {e}"))?;
    Ok(hex::encode(Sha256::digest(cert.public_key().raw)))
}
