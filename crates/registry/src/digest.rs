//! Content digests (`algorithm:encoded`, as the OCI image spec defines them)
//! and the streaming hashers that verify content against them. sha256 and
//! sha512 are the algorithms this registry computes; any other is refused.

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::fmt;
use std::str::FromStr;

/// A hash algorithm the registry can verify content with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded hash.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// The digest of a buffer held whole (manifests).
    pub fn digest_of(self, bytes: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running hash over content as it streams past.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The digest of everything seen so far (the hasher itself is left as is).
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// A verified-form digest: a supported algorithm and its lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a digest this registry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("a digest is algorithm:encoded")]
    Malformed,
    #[error("unsupported digest algorithm {0:?} (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    #[error("a {0} digest is {1} lowercase hex characters")]
    BadEncoding(Algorithm, usize),
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part (lowercase hex), as used in file names.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// The image spec's grammar for an algorithm: components of `[a-z0-9]`
/// joined by one of `+._-`.
fn is_algorithm_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, encoded) = s.split_once(':').ok_or(DigestError::Malformed)?;
        if !is_algorithm_grammar(alg)
            || encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
        {
            return Err(DigestError::Malformed);
        }
        let algorithm = Algorithm::parse(alg)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(alg.to_string()))?;
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadEncoding(algorithm, algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_image_spec_allows_and_refuses_the_rest() {
        let sha256_empty =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases: &[(&str, Result<(), DigestError>)] = &[
            (sha256_empty, Ok(())),
            (&format!("sha512:{}", "a".repeat(128)), Ok(())),
            ("sha256", Err(DigestError::Malformed)),
            ("sha256:", Err(DigestError::Malformed)),
            (":abc", Err(DigestError::Malformed)),
            ("SHA256:abc", Err(DigestError::Malformed)),
            ("sha256:abc/def", Err(DigestError::Malformed)),
            (
                "blake3:abc",
                Err(DigestError::UnsupportedAlgorithm("blake3".into())),
            ),
            (
                "sha256:abc",
                Err(DigestError::BadEncoding(Algorithm::Sha256, 64)),
            ),
            (
                &format!("sha256:{}", "A".repeat(64)),
                Err(DigestError::BadEncoding(Algorithm::Sha256, 64)),
            ),
        ];
        for (input, want) in cases {
            let got = input.parse::<Digest>().map(|_| ());
            assert_eq!(&got, want, "{input}");
        }
        let d: Digest = sha256_empty.parse().unwrap();
        assert_eq!(d.to_string(), sha256_empty);
        assert_eq!(Algorithm::Sha256.digest_of(b""), d);
    }

    #[test]
    fn a_streamed_hash_equals_the_hash_of_the_whole() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = alg.hasher();
            h.update(b"hello ");
            assert_ne!(h.current(), alg.digest_of(b"hello world"));
            h.update(b"world");
            assert_eq!(h.finish(), alg.digest_of(b"hello world"));
        }
    }
}
