//! Repository names and manifest references, with the grammars of the
//! distribution spec: a name is components of `[a-z0-9]+` joined by `.`, `_`,
//! `__` or runs of `-`, separated by `/`; a tag is `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`;
//! a reference is a tag or a digest.

use crate::digest::{Digest, DigestError};
use std::fmt;

/// The longest repository name accepted: clients limit `host/name` to 255
/// characters, so a longer name could never be pulled.
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_TAG_LEN: usize = 128;

/// A valid repository name such as `eng/app`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn parse(s: &str) -> Option<RepositoryName> {
        (s.len() <= MAX_NAME_LEN && s.split('/').all(is_component))
            .then(|| RepositoryName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && alnum(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !run(&mut i) {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// What a manifest URL names: a tag or a digest, nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// Why a reference is neither a tag nor a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("{0}")]
    Digest(DigestError),
    #[error("a reference is a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}) or a digest")]
    Neither,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(ReferenceError::Digest)
        } else if is_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(ReferenceError::Neither)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec_regex() {
        for good in [
            "a",
            "app",
            "eng/app",
            "eng/web/app-1",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "0",
            "library/ubuntu",
        ] {
            assert!(RepositoryName::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "App",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a_.b",
            "a b",
            "_catalog",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(RepositoryName::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tags_follow_the_spec_regex() {
        for good in ["latest", "1.0", "_x", "A-b.c_d", &"a".repeat(128)] {
            assert!(is_tag(good), "{good}");
        }
        for bad in ["", ".a", "-a", "a/b", "a:b", &"a".repeat(129)] {
            assert!(!is_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_reference_is_a_tag_or_a_digest_and_nothing_else() {
        assert_eq!(Reference::parse("v1"), Ok(Reference::Tag("v1".into())));
        let d = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(matches!(
            Reference::parse("sha256:xyz"),
            Err(ReferenceError::Digest(_))
        ));
        assert_eq!(Reference::parse("-v1"), Err(ReferenceError::Neither));
    }
}
