//! A node's private key and its certificate signing request, and the CA's
//! reading of such a request: it takes the public key (once the request's
//! signature proves the requester holds the private key) and nothing else.

use rcgen::{
    CertificateParams, KeyPair, PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::alg_id;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateSigningRequestDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::FromDer;

use crate::CaError;

/// An ECDSA P-256 private key: a node's (or a user's, for a client bundle).
/// The key never leaves the node that made it; the CA only sees its CSR.
pub struct NodeKey {
    key: KeyPair,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is a secret: show only which key it is.
        f.debug_struct("NodeKey")
            .field("public_key", &hex_prefix(self.key.public_key_raw()))
            .finish_non_exhaustive()
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl NodeKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Result<NodeKey, CaError> {
        Ok(NodeKey {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        })
    }

    /// A key saved with [`NodeKey::key_pem`].
    pub fn from_pem(key_pem: &str) -> Result<NodeKey, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::Pem {
                what: "private key",
                reason: "not an ECDSA P-256 key".into(),
            });
        }
        Ok(NodeKey { key })
    }

    /// The private key as PKCS#8 PEM. It is secret: store it with mode 0600
    /// and never log it.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The public key (SubjectPublicKeyInfo) as PEM: not secret.
    pub fn public_key_pem(&self) -> String {
        self.key.public_key_pem()
    }

    /// A signing request for this key. Its subject is a placeholder: the CA
    /// writes the subject from what it knows about the node, not from the CSR.
    pub fn csr_pem(&self) -> Result<String, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth certificate request");
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    #[cfg(test)]
    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key
    }
}

/// The public key taken from a verified CSR, in the form rcgen signs.
pub(crate) struct RequestedKey {
    raw: Vec<u8>,
}

impl PublicKeyData for RequestedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Reads a PEM CSR, checks it is an ECDSA P-256 key that signed the request
/// itself, and returns the key. Every other field of the CSR is ignored.
pub(crate) fn requested_key(csr_pem: &str) -> Result<RequestedKey, CaError> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| CaError::InvalidCsr(format!("no CSR in the PEM text: {e}")))?;
    requested_key_der(der.as_ref())
}

fn requested_key_der(der: &[u8]) -> Result<RequestedKey, CaError> {
    let csr = match X509CertificationRequest::from_der(der) {
        Ok(([], csr)) => csr,
        Ok(_) => return Err(CaError::InvalidCsr("trailing bytes".into())),
        Err(e) => return Err(CaError::InvalidCsr(e.to_string())),
    };
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
        return Err(CaError::InvalidCsr(
            "the cluster issues certificates for ECDSA P-256 keys only".into(),
        ));
    }
    if csr.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(CaError::InvalidCsr(
            "the request is not signed with ecdsa-with-SHA256".into(),
        ));
    }
    let raw = spki.subject_public_key.data.to_vec();
    // The signature over the request info proves that the requester holds the
    // private key. ring's verifier comes through rustls, so the crate needs no
    // other crypto library.
    let verifier = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all
        .iter()
        .find(|a| {
            a.public_key_alg_id() == alg_id::ECDSA_P256
                && a.signature_alg_id() == alg_id::ECDSA_SHA256
        })
        .copied()
        .ok_or_else(|| CaError::InvalidCsr("no ECDSA P-256 verifier available".into()))?;
    verifier
        .verify_signature(
            &raw,
            csr.certification_request_info.raw,
            &csr.signature_value.data,
        )
        .map_err(|_| CaError::InvalidCsr("the request's signature does not verify".into()))?;
    Ok(RequestedKey { raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csr_yields_its_key() {
        let key = NodeKey::generate().unwrap();
        let got = requested_key(&key.csr_pem().unwrap()).unwrap();
        assert_eq!(got.raw, key.key_pair().public_key_raw());
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let key = NodeKey::generate().unwrap();
        let pem = key.csr_pem().unwrap();
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        // Flip a bit of the placeholder subject: the signature no longer covers it.
        let at = der
            .windows(5)
            .position(|w| w == b"berth")
            .expect("placeholder subject in the CSR");
        der[at] ^= 1;
        let err = requested_key_der(&der).err().expect("refused");
        assert!(err.to_string().contains("signature"), "{err}");
    }

    #[test]
    fn a_non_p256_key_is_refused() {
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&ed)
            .unwrap()
            .pem()
            .unwrap();
        let err = requested_key(&csr).err().expect("refused");
        assert!(err.to_string().contains("P-256"), "{err}");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(requested_key("not a csr").is_err());
        assert!(NodeKey::from_pem("not a key").is_err());
    }

    #[test]
    fn keys_round_trip_and_debug_hides_them() {
        let key = NodeKey::generate().unwrap();
        let pem = key.key_pem();
        let back = NodeKey::from_pem(&pem).unwrap();
        assert_eq!(
            back.key_pair().public_key_raw(),
            key.key_pair().public_key_raw()
        );
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }
}
