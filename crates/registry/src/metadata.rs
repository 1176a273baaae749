//! What each repository holds, apart from the bytes: the [`Metadata`] trait
//! (manifests, blob links, tags, listings, referrers) and [`MemoryMetadata`],
//! its in-memory implementation. The controller's implementation will keep
//! this in the Raft store; every write method here is one atomic batch
//! there, preconditions included, so no check-then-write race is left to
//! the caller.

use crate::digest::Digest;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use tokio::sync::RwLock;

/// A manifest as a repository records it (its bytes are a blob).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The manifest this one refers to (`subject`), for the referrers API.
    pub subject: Option<Digest>,
    /// The artifact type the referrers API shows: the manifest's
    /// `artifactType`, else an image manifest's config media type.
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// Blobs it references (config, layers), which the repository must link.
    pub blobs: Vec<Digest>,
    /// Manifests it references (an index's entries), which the repository
    /// must hold.
    pub manifests: Vec<Digest>,
}

/// One page of a sorted listing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<String>,
    /// Whether items follow the last one returned.
    pub more: bool,
}

/// A page request: items strictly after `last`, at most `n` of them.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub last: Option<String>,
    pub n: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The store cannot answer now (no quorum, timeout): the client retries.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("metadata store: {0}")]
    Internal(String),
}

pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// Why [`Metadata::put_manifest`] refused a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingReferences {
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
}

#[async_trait]
pub trait Metadata: Send + Sync + 'static {
    /// Whether the repository holds anything (a blob link or a manifest).
    async fn repository_exists(&self, repo: &str) -> Result<bool>;

    /// Whether the repository links the blob.
    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<bool>;
    /// Links a blob (already stored and verified) into the repository.
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Unlinks a blob; whether it was linked. Its bytes stay for the
    /// garbage collector.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;

    /// Records a manifest and points `tags` at it, in one batch, if every
    /// blob and manifest it references is in the repository at that moment
    /// (its `subject` need not be).
    async fn put_manifest(
        &self,
        repo: &str,
        manifest: ManifestRecord,
        tags: &[String],
    ) -> Result<std::result::Result<(), MissingReferences>>;
    async fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRecord>>;
    /// Removes a manifest and every tag on it; whether it was there.
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool>;

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>>;
    /// Removes a tag (not its manifest); whether it was there.
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool>;
    /// Tags in byte order (Go's `sort.Strings`, as the spec asks).
    async fn tags(&self, repo: &str, page: &PageRequest) -> Result<Page>;

    /// Manifests of the repository whose `subject` is `digest`.
    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<ManifestRecord>>;

    /// Repository names in byte order.
    async fn repositories(&self, page: &PageRequest) -> Result<Page>;
}

#[derive(Default)]
struct Repository {
    blobs: BTreeMap<Digest, u64>,
    manifests: BTreeMap<Digest, ManifestRecord>,
    tags: BTreeMap<String, Digest>,
    /// subject → manifests that refer to it.
    referrers: BTreeMap<Digest, BTreeSet<Digest>>,
}

impl Repository {
    fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.manifests.is_empty()
    }
}

/// [`Metadata`] in memory, one lock over it all (each call is atomic).
#[derive(Default)]
pub struct MemoryMetadata {
    repos: RwLock<BTreeMap<String, Repository>>,
}

impl MemoryMetadata {
    pub fn new() -> Self {
        Self::default()
    }
}

impl PageRequest {
    /// The page of `sorted` (in byte order) this request asks for; every
    /// [`Metadata`] pages its listings with it.
    pub fn page(&self, sorted: impl Iterator<Item = String>) -> Page {
        let n = self.n.unwrap_or(usize::MAX);
        let mut after =
            sorted.filter(|k| self.last.as_ref().is_none_or(|l| k.as_str() > l.as_str()));
        let items: Vec<String> = after.by_ref().take(n).collect();
        let more = after.next().is_some();
        Page { items, more }
    }
}

#[async_trait]
impl Metadata for MemoryMetadata {
    async fn repository_exists(&self, repo: &str) -> Result<bool> {
        Ok(self
            .repos
            .read()
            .await
            .get(repo)
            .is_some_and(|r| !r.is_empty()))
    }

    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self
            .repos
            .read()
            .await
            .get(repo)
            .is_some_and(|r| r.blobs.contains_key(digest)))
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let mut repos = self.repos.write().await;
        repos
            .entry(repo.to_string())
            .or_default()
            .blobs
            .insert(digest.clone(), size);
        Ok(())
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let mut repos = self.repos.write().await;
        let Some(r) = repos.get_mut(repo) else {
            return Ok(false);
        };
        let was = r.blobs.remove(digest).is_some();
        if r.is_empty() {
            repos.remove(repo);
        }
        Ok(was)
    }

    async fn put_manifest(
        &self,
        repo: &str,
        manifest: ManifestRecord,
        tags: &[String],
    ) -> Result<std::result::Result<(), MissingReferences>> {
        let mut repos = self.repos.write().await;
        let empty = Repository::default();
        let r = repos.get(repo).unwrap_or(&empty);
        let missing = MissingReferences {
            blobs: manifest
                .blobs
                .iter()
                .filter(|d| !r.blobs.contains_key(*d))
                .cloned()
                .collect(),
            manifests: manifest
                .manifests
                .iter()
                .filter(|d| !r.manifests.contains_key(*d))
                .cloned()
                .collect(),
        };
        if !missing.blobs.is_empty() || !missing.manifests.is_empty() {
            return Ok(Err(missing));
        }
        let r = repos.entry(repo.to_string()).or_default();
        if let Some(s) = &manifest.subject {
            r.referrers
                .entry(s.clone())
                .or_default()
                .insert(manifest.digest.clone());
        }
        for t in tags {
            r.tags.insert(t.clone(), manifest.digest.clone());
        }
        r.manifests.insert(manifest.digest.clone(), manifest);
        Ok(Ok(()))
    }

    async fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRecord>> {
        Ok(self
            .repos
            .read()
            .await
            .get(repo)
            .and_then(|r| r.manifests.get(digest).cloned()))
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let mut repos = self.repos.write().await;
        let Some(r) = repos.get_mut(repo) else {
            return Ok(false);
        };
        let Some(m) = r.manifests.remove(digest) else {
            return Ok(false);
        };
        r.tags.retain(|_, d| d != digest);
        if let Some(s) = &m.subject {
            if let Some(set) = r.referrers.get_mut(s) {
                set.remove(digest);
                if set.is_empty() {
                    r.referrers.remove(s);
                }
            }
        }
        if r.is_empty() {
            repos.remove(repo);
        }
        Ok(true)
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        Ok(self
            .repos
            .read()
            .await
            .get(repo)
            .and_then(|r| r.tags.get(tag).cloned()))
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let mut repos = self.repos.write().await;
        Ok(repos
            .get_mut(repo)
            .is_some_and(|r| r.tags.remove(tag).is_some()))
    }

    async fn tags(&self, repo: &str, req: &PageRequest) -> Result<Page> {
        let repos = self.repos.read().await;
        let Some(r) = repos.get(repo) else {
            return Ok(Page::default());
        };
        let start = match &req.last {
            Some(l) => Bound::Excluded(l.clone()),
            None => Bound::Unbounded,
        };
        Ok(req.page(
            r.tags
                .range((start, Bound::Unbounded))
                .map(|(k, _)| k.clone()),
        ))
    }

    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<ManifestRecord>> {
        let repos = self.repos.read().await;
        let Some(r) = repos.get(repo) else {
            return Ok(vec![]);
        };
        Ok(r.referrers
            .get(digest)
            .into_iter()
            .flatten()
            .filter_map(|d| r.manifests.get(d).cloned())
            .collect())
    }

    async fn repositories(&self, req: &PageRequest) -> Result<Page> {
        let repos = self.repos.read().await;
        Ok(req.page(
            repos
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(k, _)| k.clone()),
        ))
    }
}
