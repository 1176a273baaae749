//! The token signing key: an ECDSA P-256 key pair (ES256), generated here
//! or loaded from PKCS#8 (DER or PEM, what the controller keeps in the Raft
//! store), and its public half, named by the `kid` Docker's registry looks
//! it up by (libtrust's fingerprint) and shown as a JWK.
//!
//! The libtrust key id: the SHA-256 of the public key's DER
//! (SubjectPublicKeyInfo), cut to its first 240 bits, in RFC 4648 base32
//! (48 characters, no padding), as 12 groups of 4 joined by `:`.

use data_encoding::{BASE32, BASE64, BASE64URL_NOPAD};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::Digest as _;
use std::fmt;

/// The DER of a P-256 SubjectPublicKeyInfo up to its point: the algorithm
/// (id-ecPublicKey, prime256v1) and the BIT STRING's header.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// An uncompressed P-256 point: `04 || X || Y`.
const POINT_LEN: usize = 65;

const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not PEM with a {0:?} block")]
    NotPem(&'static str),
    #[error("the PEM block is not base64")]
    BadBase64,
    #[error("not a PKCS#8 ECDSA P-256 private key: {0}")]
    Rejected(String),
    #[error("not a P-256 public key (SubjectPublicKeyInfo)")]
    NotP256PublicKey,
    #[error("the system's random generator failed")]
    Random,
}

/// The private key that signs tokens. Its `Debug` shows only its key id.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Random)?;
        SigningKey::from_pkcs8_der(doc.as_ref())
    }

    /// A PKCS#8 v1 document (what `openssl genpkey -algorithm EC` writes;
    /// it must hold the public key, as OpenSSL's and ring's do).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        Ok(SigningKey {
            pair,
            pkcs8: der.to_vec(),
            public,
        })
    }

    /// A `-----BEGIN PRIVATE KEY-----` block (PKCS#8). An `EC PRIVATE KEY`
    /// (SEC 1) block is refused: `openssl pkcs8 -topk8 -nocrypt` converts it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, KeyError> {
        SigningKey::from_pkcs8_der(&pem_decode(pem, PRIVATE_KEY_LABEL)?)
    }

    pub fn to_pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn to_pkcs8_pem(&self) -> String {
        pem_encode(PRIVATE_KEY_LABEL, &self.pkcs8)
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// The JOSE signature of `message`: `r || s`, 32 bytes each.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| KeyError::Random)?;
        Ok(sig.as_ref().to_vec())
    }
}

/// A P-256 public key that verifies tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: Vec<u8>,
    kid: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.kid).finish()
    }
}

impl PublicKey {
    fn from_point(point: &[u8]) -> Result<PublicKey, KeyError> {
        if point.len() != POINT_LEN || point[0] != 0x04 {
            return Err(KeyError::NotP256PublicKey);
        }
        let mut spki = SPKI_P256_PREFIX.to_vec();
        spki.extend_from_slice(point);
        Ok(PublicKey {
            point: point.to_vec(),
            kid: libtrust_key_id(&spki),
        })
    }

    /// A DER SubjectPublicKeyInfo of a P-256 key (uncompressed point).
    /// Whether the point is on the curve is checked when it verifies.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let point = der
            .strip_prefix(&SPKI_P256_PREFIX[..])
            .ok_or(KeyError::NotP256PublicKey)?;
        PublicKey::from_point(point)
    }

    /// A `-----BEGIN PUBLIC KEY-----` block.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_spki_der(&pem_decode(pem, PUBLIC_KEY_LABEL)?)
    }

    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = SPKI_P256_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        der
    }

    pub fn to_pem(&self) -> String {
        pem_encode(PUBLIC_KEY_LABEL, &self.to_spki_der())
    }

    /// The key id tokens name in their header (libtrust's fingerprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as a JSON Web Key (RFC 7517), with its `kid`.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "kid": self.kid,
            "x": BASE64URL_NOPAD.encode(&self.point[1..33]),
            "y": BASE64URL_NOPAD.encode(&self.point[33..]),
        })
    }

    /// The uncompressed point, as ring verifies with it.
    pub(crate) fn point(&self) -> &[u8] {
        &self.point
    }
}

/// libtrust's key id of a public key given as its DER.
fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = sha2::Sha256::digest(spki_der);
    // 240 bits are 30 bytes, and 48 base32 characters without padding.
    let b32 = BASE32.encode(&hash[..30]);
    let groups: Vec<&str> = (0..b32.len()).step_by(4).map(|i| &b32[i..i + 4]).collect();
    groups.join(":")
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 is ASCII, so any cut is a valid string.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The bytes of the first `label` block of a PEM text.
fn pem_decode(pem: &str, label: &'static str) -> Result<Vec<u8>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = pem.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| *l == begin)
        .ok_or(KeyError::NotPem(label))?;
    let mut b64 = String::new();
    for line in lines {
        if line == end {
            return BASE64
                .decode(b64.as_bytes())
                .map_err(|_| KeyError::BadBase64);
        }
        b64.push_str(line);
    }
    Err(KeyError::NotPem(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`.
    const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvWnEoDHl+Em5CpnC
FxcITcIkessolghbgMUKAQCURY6hRANCAASdVIcsHLyNvL+RUqWU/4Z4jXf8/rNX
OL3E8U6GA8kyxO+hfoUff9Ck0WXikggsFe0GDVhHO/aq4gjvEhZa3sli
-----END PRIVATE KEY-----
";
    /// `openssl pkey -pubout -outform DER` of that key, in hex.
    const OPENSSL_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200049d54872c1cbc8dbcbf9152a594ff86788d77fcfeb35738bdc4f14e8603c932c4efa17e851f7fd0a4d165e292082c15ed060d58473bf6aae208ef12165adec962";
    /// Computed apart from this code, by Python's hashlib and base64 over
    /// that DER.
    const OPENSSL_KID: &str = "XHW7:ABUU:MCKF:VSOW:QBFF:SHNT:LPUA:DEVC:GJG5:EEUK:NQ6H:C54J";

    #[test]
    fn an_openssl_key_loads_with_the_key_id_libtrust_gives_it() {
        let key = SigningKey::from_pkcs8_pem(OPENSSL_KEY).unwrap();
        assert_eq!(hex::encode(key.public_key().to_spki_der()), OPENSSL_SPKI);
        assert_eq!(key.kid(), OPENSSL_KID);
        // Step by step, as libtrust does it: SHA-256 of the DER, 30 bytes,
        // base32, groups of four.
        let hash = sha2::Sha256::digest(hex::decode(OPENSSL_SPKI).unwrap());
        let b32 = BASE32.encode(&hash[..30]);
        assert_eq!(b32.len(), 48);
        assert!(!b32.contains('='));
        let grouped: Vec<String> = b32
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert_eq!(grouped.len(), 12);
        assert_eq!(grouped.join(":"), OPENSSL_KID);
        assert_eq!(
            key.public_key().jwk(),
            serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "kid": OPENSSL_KID,
                "x": "nVSHLBy8jby_kVKllP-GeI13_P6zVzi9xPFOhgPJMsQ",
                "y": "76F-hR9_0KTRZeKSCCwV7QYNWEc79qriCO8SFlreyWI",
            })
        );
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let again = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.to_pkcs8_der(), key.to_pkcs8_der());
        let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
        assert_eq!(&public, key.public_key());
        assert_ne!(SigningKey::generate().unwrap().kid(), key.kid());
        // The private key never shows in Debug.
        let debug = format!("{key:?}");
        assert!(
            debug.contains(key.kid()) && !debug.contains(&pem[30..60]),
            "{debug}"
        );
    }

    #[test]
    fn what_is_not_a_p256_pkcs8_key_is_refused() {
        assert!(matches!(
            SigningKey::from_pkcs8_pem("hello"),
            Err(KeyError::NotPem(_))
        ));
        let sec1 = OPENSSL_KEY.replace("PRIVATE KEY", "EC PRIVATE KEY");
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&sec1),
            Err(KeyError::NotPem(_))
        ));
        let unterminated = OPENSSL_KEY.replace("-----END PRIVATE KEY-----", "");
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&unterminated),
            Err(KeyError::NotPem(_))
        ));
        let garbled = OPENSSL_KEY.replace("MIGHAgEA", "MIGH*gEA");
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&garbled),
            Err(KeyError::BadBase64)
        ));
        let mut der = pem_decode(OPENSSL_KEY, PRIVATE_KEY_LABEL).unwrap();
        der[40] ^= 1;
        assert!(matches!(
            SigningKey::from_pkcs8_der(&der),
            Err(KeyError::Rejected(_))
        ));
        let spki = hex::decode(OPENSSL_SPKI).unwrap();
        assert!(PublicKey::from_spki_der(&spki[1..]).is_err());
        assert!(PublicKey::from_spki_der(&spki[..60]).is_err());
    }
}
