//! Join tokens: `BERTH-1-<root digest>-<secret>`, Swarm's SWMTKN-1 shape.
//!
//! The digest (SHA-256 of the cluster root certificate, 50 base-36 digits)
//! lets a joining node check the manager it reached before it sends anything
//! secret; the secret (128 random bits, 25 base-36 digits) is what admits it.
//! The role is not in the token: a manager compares the secret with its stored
//! worker and manager tokens.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::base36::{self, DecodeError};
use crate::root::{digest_of_pem, CaDigest};

const PREFIX: &str = "BERTH";
const VERSION: &str = "1";
const SECRET_BYTES: usize = 16;
const DIGEST_BYTES: usize = 32;

/// A join token. `Display` writes the whole token (it is meant to be shown
/// to the operator once); `Debug` hides the secret so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    ca_digest: CaDigest,
    secret: [u8; SECRET_BYTES],
}

/// Why text is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a join token has four parts separated by '-' (BERTH-1-<digest>-<secret>), found {0}")]
    Parts(usize),
    #[error("a join token starts with \"BERTH\", found {0:?}")]
    Prefix(String),
    #[error("join token version {0:?} is not supported (this berth reads version 1)")]
    Version(String),
    #[error("the join token's {part} must be {expected} characters, found {found}")]
    Length {
        part: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("the join token's {part} has the character {found:?}; only 0-9 and a-z are used")]
    Character { part: &'static str, found: char },
    #[error("the join token's {part} is out of range")]
    Range { part: &'static str },
}

impl JoinToken {
    /// A new token with a fresh random secret, pinning the root CA whose
    /// digest is given.
    pub fn generate(ca_digest: &CaDigest) -> JoinToken {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        JoinToken {
            ca_digest: *ca_digest,
            secret,
        }
    }

    /// The root CA this token pins.
    pub fn ca_digest(&self) -> &CaDigest {
        &self.ca_digest
    }

    /// True when `root_cert_pem` is the root CA this token pins.
    pub fn verifies_ca(&self, root_cert_pem: &str) -> bool {
        digest_of_pem(root_cert_pem).is_ok_and(|d| d == self.ca_digest)
    }

    /// Whether both tokens carry the same secret, compared in constant time so
    /// a caller cannot learn it byte by byte from response times. The digest
    /// is public and not compared: after a root rotation, old tokens keep
    /// their secret but pin the old root.
    pub fn secret_matches(&self, other: &JoinToken) -> bool {
        let diff = self
            .secret
            .iter()
            .zip(other.secret.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Keep the optimiser from turning the fold into an early exit.
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}-{VERSION}-{}-{}",
            base36::encode(&self.ca_digest.0),
            base36::encode(&self.secret)
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinToken({PREFIX}-{VERSION}-{}-<secret>)",
            base36::encode(&self.ca_digest.0)
        )
    }
}

fn field<const N: usize>(part: &'static str, text: &str) -> Result<[u8; N], TokenError> {
    base36::decode::<N>(text).map_err(|e| match e {
        DecodeError::Length { expected, found } => TokenError::Length {
            part,
            expected,
            found,
        },
        DecodeError::Character(found) => TokenError::Character { part, found },
        DecodeError::Overflow => TokenError::Range { part },
    })
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Pasted tokens often carry a trailing newline.
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [prefix, version, digest, secret] = parts[..] else {
            return Err(TokenError::Parts(parts.len()));
        };
        if prefix != PREFIX {
            return Err(TokenError::Prefix(prefix.to_owned()));
        }
        if version != VERSION {
            return Err(TokenError::Version(version.to_owned()));
        }
        Ok(JoinToken {
            ca_digest: CaDigest(field::<DIGEST_BYTES>("CA digest", digest)?),
            secret: field::<SECRET_BYTES>("secret", secret)?,
        })
    }
}

impl Serialize for JoinToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JoinToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> CaDigest {
        CaDigest([7; 32])
    }

    #[test]
    fn display_parses_back() {
        let t = JoinToken::generate(&digest());
        let text = t.to_string();
        assert!(text.starts_with("BERTH-1-"), "{text}");
        assert_eq!(text.len(), "BERTH-1-".len() + 50 + 1 + 25);
        let back: JoinToken = text.parse().unwrap();
        assert_eq!(back, t);
        assert!(back.secret_matches(&t));
        assert_eq!(format!("{text}\n").parse::<JoinToken>().unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<JoinToken>(&json).unwrap(), t);
    }

    #[test]
    fn secrets_differ_and_compare() {
        let a = JoinToken::generate(&digest());
        let b = JoinToken::generate(&digest());
        assert!(!a.secret_matches(&b));
        // Same secret under another digest still matches: only the secret admits.
        let mut c = a.clone();
        c.ca_digest = CaDigest([9; 32]);
        assert!(a.secret_matches(&c));
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = JoinToken::generate(&digest());
        let text = t.to_string();
        let secret = text.rsplit('-').next().unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("<secret>"), "{debug}");
    }

    #[test]
    fn malformed_tokens_say_why() {
        let good = JoinToken::generate(&digest()).to_string();
        let parts: Vec<&str> = good.split('-').collect();
        let (d, s) = (parts[2], parts[3]);
        let cases: Vec<(String, TokenError)> = vec![
            ("".into(), TokenError::Parts(1)),
            ("BERTH-1-abc".into(), TokenError::Parts(3)),
            (
                format!("SWMTKN-1-{d}-{s}"),
                TokenError::Prefix("SWMTKN".into()),
            ),
            (format!("BERTH-2-{d}-{s}"), TokenError::Version("2".into())),
            (
                format!("BERTH-1-{}-{s}", &d[1..]),
                TokenError::Length {
                    part: "CA digest",
                    expected: 50,
                    found: 49,
                },
            ),
            (
                format!("BERTH-1-{d}-{s}0"),
                TokenError::Length {
                    part: "secret",
                    expected: 25,
                    found: 26,
                },
            ),
            (
                format!(
                    "BERTH-1-{d}-{}",
                    s.to_uppercase().replace(char::is_numeric, "Q")
                ),
                TokenError::Character {
                    part: "secret",
                    found: s
                        .to_uppercase()
                        .replace(char::is_numeric, "Q")
                        .chars()
                        .next()
                        .unwrap(),
                },
            ),
            (
                format!("BERTH-1-{d}-{}", "z".repeat(25)),
                TokenError::Range { part: "secret" },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                text.parse::<JoinToken>().err(),
                Some(want.clone()),
                "{text}"
            );
            // Every error is a sentence a user can act on.
            assert!(!want.to_string().is_empty());
        }
    }
}
