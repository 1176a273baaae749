//! Registry tokens as the JWT spec of Docker's registry describes them:
//! a JWS in compact form, signed ES256 (the JOSE signature is `r || s`, not
//! DER), its header naming the key by `kid`, its claims saying who (`sub`),
//! for which registry (`aud`), until when (`exp`), and what it may do
//! (`access`). [`Signer`] makes them, [`Verifier`] checks them.

use super::key::{KeyError, PublicKey, SigningKey};
use super::scope::ResourceScope;
use data_encoding::BASE64URL_NOPAD;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ALGORITHM: &str = "ES256";
/// An ES256 signature: r and s, 32 bytes each.
pub const SIGNATURE_LEN: usize = 64;
/// How far the clocks of the signer and the verifier may disagree.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct Header {
    typ: Option<String>,
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// A token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user's name; empty for an anonymous token.
    pub sub: String,
    /// The services it is for. One is written as a string (what Docker's
    /// registry expects); a list is accepted too, as RFC 7519 allows.
    #[serde(with = "audience")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceScope>,
}

impl Claims {
    /// Whether the token is the anonymous one.
    pub fn is_anonymous(&self) -> bool {
        self.sub.is_empty()
    }

    /// Whether `access` grants `action` on this resource. The class is not
    /// compared: berth keeps a plugin as a repository like any other.
    pub fn allows(&self, resource_type: &str, name: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|a| a.resource_type == resource_type && a.name == name && a.allows(action))
    }
}

mod audience {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub fn serialize<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
        match aud {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(a) => a,
        })
    }
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A token just signed.
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

/// Signs tokens with one key, as one issuer.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    issuer: String,
}

impl Signer {
    pub fn new(key: SigningKey, issuer: impl Into<String>) -> Signer {
        Signer {
            key,
            issuer: issuer.into(),
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token for `subject` (empty: anonymous) at `audience`, granting
    /// `access`, valid from now for `lifetime`.
    pub fn sign(
        &self,
        subject: &str,
        audience: &str,
        access: Vec<ResourceScope>,
        lifetime: Duration,
    ) -> Result<Issued, KeyError> {
        self.sign_at(subject, audience, access, lifetime, SystemTime::now())
    }

    /// [`Signer::sign`] as if it were `now`.
    pub fn sign_at(
        &self,
        subject: &str,
        audience: &str,
        access: Vec<ResourceScope>,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Issued, KeyError> {
        let iat = unix(now);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: vec![audience.to_string()],
            exp: iat.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            nbf: iat,
            iat,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            access,
        };
        let header = Header {
            typ: Some("JWT".into()),
            alg: ALGORITHM.into(),
            kid: Some(self.key.kid().to_string()),
        };
        let token = self.encode(&header, &claims)?;
        Ok(Issued { token, claims })
    }

    fn encode(&self, header: &Header, claims: &Claims) -> Result<String, KeyError> {
        // Serialising these types to JSON cannot fail: no maps with
        // non-string keys, no types that refuse to serialise.
        let h = serde_json::to_vec(header).unwrap_or_default();
        let c = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(&h),
            BASE64URL_NOPAD.encode(&c)
        );
        let sig = self.key.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&sig)))
    }
}

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsupported signing algorithm {0:?}")]
    Algorithm(String),
    #[error("signed by an unknown key {0:?}")]
    UnknownKey(String),
    #[error("bad signature")]
    Signature,
    #[error("issued by {0:?}")]
    Issuer(String),
    #[error("not for this service (audience {0:?})")]
    Audience(Vec<String>),
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
}

/// Checks tokens of one issuer for one service, signed by any of its keys
/// (several while a key is rotated).
#[derive(Clone, Debug)]
pub struct Verifier {
    issuer: String,
    audience: String,
    keys: HashMap<String, PublicKey>,
    leeway: Duration,
}

impl Verifier {
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> Verifier {
        Verifier {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: keys.into_iter().map(|k| (k.kid().to_string(), k)).collect(),
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// How far `exp` and `nbf` may be passed or ahead (a minute unless set).
    pub fn with_leeway(mut self, leeway: Duration) -> Verifier {
        self.leeway = leeway;
        self
    }

    /// The service tokens must be for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        self.verify_at(token, SystemTime::now())
    }

    /// [`Verifier::verify`] as if it were `now`.
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<Claims, VerifyError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not three dot-separated parts"));
        };
        let decode = |part: &str, what| {
            BASE64URL_NOPAD
                .decode(part.as_bytes())
                .map_err(|_| VerifyError::Malformed(what))
        };
        let header: Header =
            serde_json::from_slice(&decode(h64, "the header is not base64url")?)
                .map_err(|_| VerifyError::Malformed("the header is not a JOSE header"))?;
        if header.alg != ALGORITHM {
            return Err(VerifyError::Algorithm(header.alg));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?;
        let sig = decode(s64, "the signature is not base64url")?;
        if sig.len() != SIGNATURE_LEN {
            return Err(VerifyError::Signature);
        }
        let signing_input = &token[..h64.len() + 1 + c64.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.point())
            .verify(signing_input.as_bytes(), &sig)
            .map_err(|_| VerifyError::Signature)?;
        let claims: Claims = serde_json::from_slice(&decode(c64, "the claims are not base64url")?)
            .map_err(|_| VerifyError::Malformed("the claims are not a registry token's"))?;
        if claims.iss != self.issuer {
            return Err(VerifyError::Issuer(claims.iss));
        }
        if !claims.aud.contains(&self.audience) {
            return Err(VerifyError::Audience(claims.aud));
        }
        let now = unix(now);
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if now >= claims.exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        if now.saturating_add(leeway) < claims.nbf {
            return Err(VerifyError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "berth-token-issuer";
    const SERVICE: &str = "berth-registry";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn setup() -> (Signer, Verifier) {
        let key = SigningKey::generate().unwrap();
        let verifier = Verifier::new(ISSUER, SERVICE, [key.public_key().clone()])
            .with_leeway(Duration::from_secs(10));
        (Signer::new(key, ISSUER), verifier)
    }

    fn token(signer: &Signer) -> Issued {
        signer
            .sign_at(
                "alice",
                SERVICE,
                vec![ResourceScope::repository("eng/app", &["pull", "push"])],
                Duration::from_secs(300),
                at(1_000_000),
            )
            .unwrap()
    }

    fn parts(token: &str) -> Vec<Vec<u8>> {
        token
            .split('.')
            .map(|p| BASE64URL_NOPAD.decode(p.as_bytes()).unwrap())
            .collect()
    }

    fn join(parts: &[Vec<u8>]) -> String {
        let p: Vec<String> = parts.iter().map(|p| BASE64URL_NOPAD.encode(p)).collect();
        p.join(".")
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let (signer, verifier) = setup();
        let issued = token(&signer);
        let p = parts(&issued.token);
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].len(), SIGNATURE_LEN);
        let header: serde_json::Value = serde_json::from_slice(&p[0]).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": signer.key().kid()})
        );
        let claims: serde_json::Value = serde_json::from_slice(&p[1]).unwrap();
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], SERVICE);
        assert_eq!(claims["iat"], 1_000_000);
        assert_eq!(claims["nbf"], 1_000_000);
        assert_eq!(claims["exp"], 1_000_300);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        assert_eq!(
            claims["access"],
            serde_json::json!([{"type": "repository", "name": "eng/app", "actions": ["pull", "push"]}])
        );
        let got = verifier.verify_at(&issued.token, at(1_000_100)).unwrap();
        assert_eq!(got, issued.claims);
        assert!(got.allows("repository", "eng/app", "push"));
        assert!(!got.allows("repository", "eng/app", "delete"));
        assert!(!got.allows("repository", "eng/other", "pull"));
        // Every token is its own.
        assert_ne!(token(&signer).claims.jti, issued.claims.jti);
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let (signer, verifier) = setup();
        let issued = token(&signer);
        let now = at(1_000_100);
        let p = parts(&issued.token);

        // The payload: more access than granted.
        let mut claims = issued.claims.clone();
        claims.access[0].actions.push("delete".into());
        let forged = join(&[
            p[0].clone(),
            serde_json::to_vec(&claims).unwrap(),
            p[2].clone(),
        ]);
        assert_eq!(
            verifier.verify_at(&forged, now),
            Err(VerifyError::Signature)
        );

        // The header: same key id, another spelling.
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, signer.key().kid());
        let forged = join(&[header.into_bytes(), p[1].clone(), p[2].clone()]);
        assert_eq!(
            verifier.verify_at(&forged, now),
            Err(VerifyError::Signature)
        );

        // The signature: one bit, or its length, or none at all.
        let mut sig = p[2].clone();
        sig[10] ^= 0x01;
        let forged = join(&[p[0].clone(), p[1].clone(), sig]);
        assert_eq!(
            verifier.verify_at(&forged, now),
            Err(VerifyError::Signature)
        );
        let forged = join(&[p[0].clone(), p[1].clone(), p[2][..63].to_vec()]);
        assert_eq!(
            verifier.verify_at(&forged, now),
            Err(VerifyError::Signature)
        );

        // alg "none", the classic JWT forgery.
        let header = format!(r#"{{"alg":"none","kid":"{}"}}"#, signer.key().kid());
        let forged = format!("{}.", join(&[header.into_bytes(), p[1].clone()]));
        assert_eq!(
            verifier.verify_at(&forged, now),
            Err(VerifyError::Algorithm("none".into()))
        );

        // Signed by another key, whether it names its own id or ours.
        let other = Signer::new(SigningKey::generate().unwrap(), ISSUER);
        let theirs = token(&other).token;
        assert_eq!(
            verifier.verify_at(&theirs, now),
            Err(VerifyError::UnknownKey(other.key().kid().into()))
        );
        let q = parts(&theirs);
        let forged = join(&[p[0].clone(), q[1].clone(), q[2].clone()]);
        assert_eq!(
            verifier.verify_at(&forged, now),
            Err(VerifyError::Signature)
        );

        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.AA",
            &issued.token.replace('.', ""),
        ] {
            assert!(
                matches!(
                    verifier.verify_at(junk, now),
                    Err(VerifyError::Malformed(_))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let (signer, verifier) = setup();
        let now = at(1_000_100);
        let other_issuer = Signer::new(
            SigningKey::from_pkcs8_der(signer.key().to_pkcs8_der()).unwrap(),
            "someone-else",
        );
        let t = token(&other_issuer).token;
        assert_eq!(
            verifier.verify_at(&t, now),
            Err(VerifyError::Issuer("someone-else".into()))
        );
        let t = signer
            .sign_at(
                "alice",
                "another-registry",
                vec![],
                Duration::from_secs(300),
                at(1_000_000),
            )
            .unwrap()
            .token;
        assert_eq!(
            verifier.verify_at(&t, now),
            Err(VerifyError::Audience(vec!["another-registry".into()]))
        );
    }

    #[test]
    fn validity_is_checked_with_the_leeway() {
        let (signer, verifier) = setup();
        let t = token(&signer).token;
        // Issued at 1,000,000 for 300 s; leeway 10 s.
        assert_eq!(
            verifier.verify_at(&t, at(999_989)),
            Err(VerifyError::NotYetValid)
        );
        assert!(verifier.verify_at(&t, at(999_990)).is_ok());
        assert!(verifier.verify_at(&t, at(1_000_309)).is_ok());
        assert_eq!(
            verifier.verify_at(&t, at(1_000_310)),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn a_rotated_key_still_verifies_until_dropped() {
        let old = SigningKey::generate().unwrap();
        let new = SigningKey::generate().unwrap();
        let both = Verifier::new(
            ISSUER,
            SERVICE,
            [old.public_key().clone(), new.public_key().clone()],
        );
        let t_old = token(&Signer::new(old, ISSUER)).token;
        let t_new = token(&Signer::new(new, ISSUER)).token;
        let now = at(1_000_001);
        assert!(both.verify_at(&t_old, now).is_ok());
        assert!(both.verify_at(&t_new, now).is_ok());
    }

    #[test]
    fn an_audience_list_is_accepted() {
        let json = r#"{"iss":"i","sub":"","aud":["a","b"],"exp":2,"nbf":1,"iat":1,"jti":"x"}"#;
        let c: Claims = serde_json::from_str(json).unwrap();
        assert_eq!(c.aud, ["a", "b"]);
        assert!(c.is_anonymous() && c.access.is_empty());
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            json.replace('}', r#","access":[]}"#)
        );
    }
}
