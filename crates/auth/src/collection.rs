//! Collection paths: what a valid one is, and the chain of its ancestors.

/// The deepest a collection may be, and the longest a path.
pub const MAX_DEPTH: usize = 16;
pub const MAX_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("collection path {0:?} must start with /")]
    NotAbsolute(String),
    #[error("collection path {0:?} has an empty, '.' or '..' segment")]
    BadSegment(String),
    #[error("collection path {path:?}: segment {segment:?} may hold only letters, digits, '-', '_' and '.'")]
    BadCharacter { path: String, segment: String },
    #[error(
        "collection path {0:?} is deeper than {MAX_DEPTH} levels or longer than {MAX_LEN} bytes"
    )]
    TooLong(String),
}

/// The path in its one stored form: absolute, no trailing slash, no empty
/// or relative segment. `"/Shared/web/"` becomes `"/Shared/web"`.
pub fn normalize(path: &str) -> Result<String, PathError> {
    let p = path.trim();
    if !p.starts_with('/') {
        return Err(PathError::NotAbsolute(path.to_string()));
    }
    if p.len() > MAX_LEN {
        return Err(PathError::TooLong(path.to_string()));
    }
    let body = p.trim_end_matches('/');
    if body.is_empty() {
        return Ok("/".to_string());
    }
    let segments: Vec<&str> = body[1..].split('/').collect();
    if segments.len() > MAX_DEPTH {
        return Err(PathError::TooLong(path.to_string()));
    }
    for s in &segments {
        if s.is_empty() || *s == "." || *s == ".." {
            return Err(PathError::BadSegment(path.to_string()));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(PathError::BadCharacter {
                path: path.to_string(),
                segment: s.to_string(),
            });
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// The path itself, then each ancestor up to `/`, of a normalised path.
pub fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| api::auth::parent_path(p))
}

/// Whether `path` is `ancestor` or below it (both normalised).
pub fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_or_are_refused_with_the_reason() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/Shared/web/").unwrap(), "/Shared/web");
        assert_eq!(normalize(" /Shared ").unwrap(), "/Shared");
        assert!(matches!(
            normalize("Shared"),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            normalize("/Shared//web"),
            Err(PathError::BadSegment(_))
        ));
        assert!(matches!(
            normalize("/Shared/../System"),
            Err(PathError::BadSegment(_))
        ));
        assert!(matches!(
            normalize("/a b"),
            Err(PathError::BadCharacter { .. })
        ));
        let deep = "/a".repeat(MAX_DEPTH + 1);
        assert!(matches!(normalize(&deep), Err(PathError::TooLong(_))));
        assert!(normalize(&"/a".repeat(MAX_DEPTH)).is_ok());
    }

    #[test]
    fn ancestors_and_containment() {
        let chain: Vec<&str> = self_and_ancestors("/Shared/Private/alice").collect();
        assert_eq!(
            chain,
            ["/Shared/Private/alice", "/Shared/Private", "/Shared", "/"]
        );
        assert!(is_within("/Shared/web", "/Shared"));
        assert!(is_within("/Shared", "/Shared"));
        assert!(is_within("/System", "/"));
        assert!(!is_within("/SharedX", "/Shared"));
        assert!(!is_within("/Shared", "/Shared/web"));
    }
}
