//! A root certificate authority: the cluster root CA (node certificates) or
//! the client root CA (users' client bundles) — one type, two instances, each
//! kept in the Raft store as [`StoredRootCa`].
//!
//! Roots are ECDSA P-256 and self-signed. The CA writes every subject itself
//! (see [`crate::subject`]) and takes only the public key from a request.
//! Rotation: [`RootCa::cross_sign`] lets nodes that still trust only the old
//! root accept certificates from the new one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use api::rpc::PeerRole;

use crate::key::requested_key;
use crate::subject::{self, parse_cert};
use crate::CaError;

/// How far back a new certificate's validity starts, so that a node whose
/// clock runs a little behind the CA's accepts it at once.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// SHA-256 of a root certificate's DER: what a join token pins.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaDigest(pub [u8; 32]);

impl CaDigest {
    pub fn of_der(der: &[u8]) -> CaDigest {
        CaDigest(Sha256::digest(der).into())
    }
}

impl std::fmt::Display for CaDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for CaDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaDigest({self})")
    }
}

/// The digest of the first certificate in `cert_pem`.
pub fn digest_of_pem(cert_pem: &str) -> Result<CaDigest, CaError> {
    let der = cert_from_pem(cert_pem)?;
    Ok(CaDigest::of_der(der.as_ref()))
}

/// Whether the first certificate of `cert_pem` (a node's leaf) carries a
/// signature of the key of the root certificate `root_pem`. During a
/// rotation this tells a certificate of the new root from one of the old:
/// both roots have the same name, so only the signature can.
pub fn issued_by(cert_pem: &str, root_pem: &str) -> Result<bool, CaError> {
    let leaf_der = cert_from_pem(cert_pem)?;
    let root_der = cert_from_pem(root_pem)?;
    let leaf = parse_cert(leaf_der.as_ref())?;
    let root = parse_cert(root_der.as_ref())?;
    Ok(leaf.verify_signature(Some(root.public_key())).is_ok())
}

pub(crate) fn cert_from_pem(cert_pem: &str) -> Result<CertificateDer<'static>, CaError> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CaError::Pem {
        what: "certificate",
        reason: e.to_string(),
    })
}

/// A root CA as the store keeps it. The key is the cluster's most valuable
/// secret: `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRootCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for StoredRootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digest = digest_of_pem(&self.cert_pem).map(|d| d.to_string());
        f.debug_struct("StoredRootCa")
            .field("digest", &digest.as_deref().unwrap_or("<unreadable>"))
            .finish_non_exhaustive()
    }
}

/// A root CA that can sign.
pub struct RootCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    /// rcgen signs "by a `Certificate`" and reads from it the issuer name and
    /// key identifier it writes into what it signs. For a root loaded from the
    /// store this is rebuilt from the stored subject (see `from_stored`).
    issuer: Certificate,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

impl RootCa {
    /// A new self-signed root named `common_name`, valid from `now` (less the
    /// clock-skew allowance) for `validity`.
    pub fn generate(
        common_name: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<RootCa, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = root_params(common_name)?;
        set_validity(&mut params, now, validity, None)?;
        params.serial_number = Some(random_serial());
        let issuer = params.self_signed(&key)?;
        let cert_pem = issuer.pem();
        let cert_der = issuer.der().clone();
        Ok(RootCa {
            cert_pem,
            cert_der,
            key,
            issuer,
        })
    }

    pub fn to_stored(&self) -> StoredRootCa {
        StoredRootCa {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key.serialize_pem(),
        }
    }

    /// Loads a root written by [`RootCa::to_stored`].
    pub fn from_stored(stored: &StoredRootCa) -> Result<RootCa, CaError> {
        let cert_der = cert_from_pem(&stored.cert_pem)?;
        let key = KeyPair::from_pem(&stored.key_pem)
            .map_err(|e| CaError::UnusableRoot(format!("reading the key: {e}")))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::UnusableRoot("the key is not ECDSA P-256".into()));
        }
        let cert = parse_cert(cert_der.as_ref())?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CaError::UnusableRoot(
                "the key does not belong to the certificate".into(),
            ));
        }
        if !cert.is_ca() {
            return Err(CaError::UnusableRoot("not a CA certificate".into()));
        }
        let mut params = root_params(&subject::common_name(cert.subject())?)?;
        set_times(
            &mut params,
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        params.serial_number = Some(SerialNumber::from_slice(cert.raw_serial()));
        let issuer = params.self_signed(&key)?;
        // rcgen writes the issuer's subject from these rebuilt parameters into
        // every certificate it signs; a chain links only if those bytes equal
        // the stored root's subject, so check rather than trust the rebuild.
        let rebuilt = parse_cert(issuer.der().as_ref())?;
        if rebuilt.subject().as_raw() != cert.subject().as_raw() {
            return Err(CaError::UnusableRoot(
                "the subject is not one this CA writes".into(),
            ));
        }
        Ok(RootCa {
            cert_pem: stored.cert_pem.clone(),
            cert_der,
            key,
            issuer,
        })
    }

    /// The root certificate, as nodes install it in their trust bundle.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the root certificate's DER (what a join token pins).
    pub fn digest(&self) -> CaDigest {
        CaDigest::of_der(self.cert_der.as_ref())
    }

    /// Signs a node certificate for the key in `csr_pem`. The subject comes
    /// from the arguments (node id, role, cluster id), never from the CSR.
    /// The certificate serves both ends of a connection (server and client
    /// authentication), and never outlives this root.
    pub fn issue_node_certificate(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: PeerRole,
        cluster_id: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<String, CaError> {
        let key = requested_key(csr_pem)?;
        let mut params = leaf_params(subject::node_subject(node_id, role, cluster_id)?);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, now, validity, Some(self.not_after()))?;
        Ok(params.signed_by(&key, &self.issuer, &self.key)?.pem())
    }

    /// Signs a user's client certificate (a client bundle) for the key in
    /// `csr_pem`. It authenticates a client only: a user's certificate can
    /// never serve as a node's, nor be read as one (its OU says "client").
    pub fn issue_client_certificate(
        &self,
        csr_pem: &str,
        user: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<String, CaError> {
        let key = requested_key(csr_pem)?;
        let mut params = leaf_params(subject::client_subject(user)?);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, now, validity, Some(self.not_after()))?;
        Ok(params.signed_by(&key, &self.issuer, &self.key)?.pem())
    }

    /// Signs a manager's HTTPS API certificate for the key in `csr_pem`,
    /// valid for `names` (host names and IP addresses, as clients dial it).
    /// It authenticates a server only: it can never serve as a node's
    /// certificate on the cluster RPC (no client authentication, OU "api").
    pub fn issue_api_certificate(
        &self,
        csr_pem: &str,
        node_id: &str,
        cluster_id: &str,
        names: &[String],
        validity: Duration,
        now: SystemTime,
    ) -> Result<String, CaError> {
        let key = requested_key(csr_pem)?;
        let mut params = leaf_params(subject::api_subject(node_id, cluster_id)?);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                // rustls's validation: what a client could ever dial.
                Err(_) => rustls::pki_types::DnsName::try_from(n.as_str())
                    .ok()
                    .and_then(|_| n.as_str().try_into().ok())
                    .map(SanType::DnsName)
                    .ok_or(CaError::InvalidName {
                        field: "API host name",
                        reason: "not a DNS name or an IP address",
                    }),
            })
            .collect::<Result<_, _>>()?;
        set_validity(&mut params, now, validity, Some(self.not_after()))?;
        Ok(params.signed_by(&key, &self.issuer, &self.key)?.pem())
    }

    /// `new_root`'s subject and public key, signed by this (old) root.
    ///
    /// During a rotation, nodes get certificates from the new root and present
    /// them followed by this cross-signed certificate, so a peer that trusts
    /// only the old root accepts the chain `leaf → cross-signed → old root`,
    /// while a peer that already trusts the new root accepts the leaf directly.
    pub fn cross_sign(&self, new_root: &RootCa) -> Result<String, CaError> {
        let mut params = new_root.issuer.params().clone();
        // The cross-signed certificate only ever signs leaves.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        Ok(params
            .signed_by(&new_root.key, &self.issuer, &self.key)?
            .pem())
    }

    fn not_after(&self) -> SystemTime {
        let after = self.issuer.params().not_after.unix_timestamp();
        UNIX_EPOCH + Duration::from_secs(u64::try_from(after).unwrap_or(0))
    }
}

fn root_params(common_name: &str) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject::root_subject(common_name)?;
    // One level below the root: a cross-signed intermediate during rotation.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn leaf_params(dn: rcgen::DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params
}

/// Valid from `now` less the skew allowance until `now + validity`, cut at
/// `cap` (the issuer's own expiry) if given.
fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    validity: Duration,
    cap: Option<SystemTime>,
) -> Result<(), CaError> {
    let secs = |t: SystemTime| -> Result<i64, CaError> {
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| CaError::InvalidName {
                field: "time",
                reason: "before 1970",
            })?;
        i64::try_from(d.as_secs()).map_err(|_| CaError::InvalidName {
            field: "time",
            reason: "too far in the future",
        })
    };
    let mut not_after = secs(now + validity)?;
    if let Some(cap) = cap {
        not_after = not_after.min(secs(cap)?);
    }
    let not_before = secs(now)?.saturating_sub(CLOCK_SKEW_ALLOWANCE.as_secs() as i64);
    set_times(params, not_before, not_after);
    Ok(())
}

/// Sets the validity from Unix seconds. rcgen takes `time::OffsetDateTime`;
/// starting from rcgen's own date helper (and letting a closure infer the
/// type) spares the crate a direct dependency on `time`.
fn set_times(params: &mut CertificateParams, not_before: i64, not_after: i64) {
    let at = |unix_secs: i64| {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        if unix_secs >= 0 {
            epoch + Duration::from_secs(unix_secs.unsigned_abs())
        } else {
            epoch - Duration::from_secs(unix_secs.unsigned_abs())
        }
    };
    params.not_before = at(not_before);
    params.not_after = at(not_after);
}

/// A positive random 128-bit serial: unique per certificate, as RFC 5280 asks.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}
