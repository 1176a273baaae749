//! The trusted registry's metadata (DTR's), kept in the Raft store beside
//! the auth store's objects so every manager serves `/v2/` from its own
//! copy: repositories, the blobs each links, its manifests, its tags, and
//! teams' permissions on it. The bytes themselves are in the registry's
//! blob store; these say which repository may serve which digest.
//!
//! Ids are made from the names, so a write is idempotent and a
//! repository's objects are one range of ids: a link and a manifest are
//! `<repo>@<digest>`, a tag `<repo>:<tag>` (neither `@` nor `:` can be in a
//! repository name), a grant `<repo>|<team id>`, a repository its name.
//! `State::apply` keeps each unique and refuses one whose repository, or
//! what a manifest references, is not there.

use crate::object::Meta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A repository (`eng/app`): its namespace is its first component, a user
/// or an organization.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `meta.id` is the name.
    pub meta: Meta,
    #[serde(default)]
    pub description: String,
    /// Anyone, signed in or not, may pull.
    #[serde(default)]
    pub public: bool,
    /// A tag, once pushed, never moves to another manifest nor goes.
    #[serde(default)]
    pub immutable_tags: bool,
}

impl Repository {
    pub fn name(&self) -> &str {
        &self.meta.id
    }

    /// The user or organization the repository belongs to.
    pub fn namespace(&self) -> &str {
        self.name().split('/').next().unwrap_or_default()
    }
}

/// A blob a repository may serve (it was pushed to it or mounted into it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoBlob {
    /// `<repo>@<digest>`.
    pub meta: Meta,
    pub repo: String,
    pub digest: String,
    pub size: u64,
}

/// A manifest of a repository; its bytes are the blob of its digest.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoManifest {
    /// `<repo>@<digest>`.
    pub meta: Meta,
    pub repo: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The manifest it refers to (the referrers API), which need not exist.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The blobs (config, layers) and manifests (an index's) it references:
    /// each must be in the repository when it is stored.
    #[serde(default)]
    pub blobs: Vec<String>,
    #[serde(default)]
    pub manifests: Vec<String>,
}

/// A tag of a repository, on one of its manifests.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoTag {
    /// `<repo>:<tag>`.
    pub meta: Meta,
    pub repo: String,
    pub tag: String,
    pub digest: String,
}

/// What a team may do with a repository (DTR's levels, additive).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoAccess {
    Read,
    ReadWrite,
    Admin,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoGrant {
    /// `<repo>|<team id>`.
    pub meta: Meta,
    pub repo: String,
    pub team_id: String,
    pub access: RepoAccess,
}

pub fn blob_id(repo: &str, digest: &str) -> String {
    format!("{repo}@{digest}")
}
pub fn manifest_id(repo: &str, digest: &str) -> String {
    format!("{repo}@{digest}")
}
pub fn tag_id(repo: &str, tag: &str) -> String {
    format!("{repo}:{tag}")
}
pub fn repo_grant_id(repo: &str, team_id: &str) -> String {
    format!("{repo}|{team_id}")
}

/// The id prefix shared by every blob link and manifest of `repo`.
pub fn digest_prefix(repo: &str) -> String {
    format!("{repo}@")
}
/// The id prefix shared by every tag of `repo`.
pub fn tag_prefix(repo: &str) -> String {
    format!("{repo}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_a_repository_together_and_apart_from_its_neighbours() {
        // "a:" and "a@" sort before any "a/…", whose ids start "a/".
        assert!(tag_id("a", "zzz").starts_with(&tag_prefix("a")));
        assert!(!tag_id("a/b", "x").starts_with(&tag_prefix("a")));
        assert!(!blob_id("a/b", "sha256:00").starts_with(&digest_prefix("a")));
        let r = Repository {
            meta: Meta::new("eng/web/app"),
            description: String::new(),
            public: false,
            immutable_tags: false,
        };
        assert_eq!(r.namespace(), "eng");
    }

    fn apply(state: &mut crate::State, ops: Vec<crate::Op>) -> Result<(), crate::ApplyError> {
        let index = state.index() + 1;
        state
            .apply(
                index,
                &crate::Batch {
                    time: crate::Timestamp(1),
                    ops,
                },
            )
            .map(|_| ())
    }

    fn repo(name: &str) -> crate::Op {
        crate::Op::Create(
            Repository {
                meta: Meta::new(name),
                description: String::new(),
                public: false,
                immutable_tags: false,
            }
            .into(),
        )
    }

    fn blob(repo: &str, d: &str) -> crate::Op {
        crate::Op::Create(
            RepoBlob {
                meta: Meta::new(blob_id(repo, d)),
                repo: repo.into(),
                digest: d.into(),
                size: 1,
            }
            .into(),
        )
    }

    fn manifest(repo: &str, d: &str, blobs: &[&str], manifests: &[&str]) -> crate::Op {
        crate::Op::Create(
            RepoManifest {
                meta: Meta::new(manifest_id(repo, d)),
                repo: repo.into(),
                digest: d.into(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 2,
                subject: None,
                artifact_type: None,
                annotations: Default::default(),
                blobs: blobs.iter().map(|b| b.to_string()).collect(),
                manifests: manifests.iter().map(|m| m.to_string()).collect(),
            }
            .into(),
        )
    }

    fn tag(repo: &str, t: &str, d: &str) -> crate::Op {
        crate::Op::Create(
            RepoTag {
                meta: Meta::new(tag_id(repo, t)),
                repo: repo.into(),
                tag: t.into(),
                digest: d.into(),
            }
            .into(),
        )
    }

    #[test]
    fn a_manifest_and_a_tag_need_what_they_refer_to_in_their_repository() {
        let mut s = crate::State::default();
        // Nothing without its repository.
        assert!(apply(&mut s, vec![blob("eng/app", "sha256:b1")]).is_err());
        apply(
            &mut s,
            vec![
                repo("eng/app"),
                repo("eng/other"),
                blob("eng/app", "sha256:b1"),
            ],
        )
        .unwrap();
        // A blob of another repository does not count.
        apply(&mut s, vec![blob("eng/other", "sha256:b2")]).unwrap();
        let e = apply(
            &mut s,
            vec![manifest(
                "eng/app",
                "sha256:m1",
                &["sha256:b1", "sha256:b2"],
                &[],
            )],
        );
        assert!(
            matches!(
                e,
                Err(crate::ApplyError::NotFound {
                    kind: crate::Kind::RepoBlob,
                    ..
                })
            ),
            "{e:?}"
        );
        // Blob and manifest in one batch: applied whole.
        apply(
            &mut s,
            vec![
                blob("eng/app", "sha256:b2"),
                manifest("eng/app", "sha256:m1", &["sha256:b1", "sha256:b2"], &[]),
                tag("eng/app", "1.0", "sha256:m1"),
            ],
        )
        .unwrap();
        // An index needs its manifests; a tag needs its manifest.
        assert!(apply(
            &mut s,
            vec![manifest("eng/app", "sha256:i1", &[], &["sha256:m9"])]
        )
        .is_err());
        assert!(apply(&mut s, vec![tag("eng/app", "2.0", "sha256:m9")]).is_err());
        apply(
            &mut s,
            vec![
                manifest("eng/app", "sha256:i1", &[], &["sha256:m1"]),
                tag("eng/app", "2.0", "sha256:i1"),
            ],
        )
        .unwrap();
        apply(
            &mut s,
            vec![
                manifest("eng/other", "sha256:x", &["sha256:b2"], &[]),
                tag("eng/other", "0.1", "sha256:x"),
            ],
        )
        .unwrap();
        // One repository's tags, in tag order, none of its neighbour's.
        let prefix = tag_prefix("eng/app");
        let tags: Vec<&str> = s
            .auth_range(crate::Kind::RepoTag, &prefix)
            .filter_map(|o| match o {
                crate::Object::RepoTag(t) => Some(t.tag.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(tags, ["1.0", "2.0"]);
        // The registry's writes never move the authorization index.
        assert_eq!(s.auth_index(), 0);
    }
}
