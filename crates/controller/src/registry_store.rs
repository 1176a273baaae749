//! The registry's metadata in the Raft store ([`registry::Metadata`] over
//! `api::registry`'s objects), so that every manager serves `/v2/` from its
//! own copy and a push acknowledged by one is there on all. Each write is
//! one batch; what a manifest or tag needs is checked again by
//! `State::apply` inside that batch, so a blob unlinked at the same moment
//! cannot leave a manifest pointing at nothing (the write is retried once
//! against the new state and then answered as missing references).

use api::registry::{
    blob_id, digest_prefix, manifest_id, tag_id, tag_prefix, RepoBlob, RepoManifest, RepoTag,
    Repository,
};
use api::{ApplyError, Kind, Meta, Object, Op, State};
use async_trait::async_trait;
use registry::metadata::{MetadataError, MissingReferences, Page, PageRequest, Result};
use registry::{Digest, ManifestRecord, Metadata};

/// How often a write is tried again when another one changed what it read.
const ATTEMPTS: usize = 5;

#[derive(Clone)]
pub struct RaftMetadata {
    store: store::Store,
}

impl RaftMetadata {
    pub fn new(store: store::Store) -> RaftMetadata {
        RaftMetadata { store }
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.store.view(f)
    }

    async fn write(&self, ops: Vec<Op>) -> std::result::Result<(), store::StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.store.update(ops).await.map(|_| ())
    }
}

fn unavailable(e: store::StoreError) -> MetadataError {
    if e.is_retryable() {
        MetadataError::Unavailable(e.to_string())
    } else {
        MetadataError::Internal(e.to_string())
    }
}

/// A write lost to a concurrent one (a name taken, a version moved, a
/// reference gone): read again and retry.
fn raced(e: &store::StoreError) -> bool {
    matches!(e, store::StoreError::Apply(_))
}

fn repository_op(s: &State, repo: &str) -> Option<Op> {
    (!s.contains(Kind::Repository, repo)).then(|| {
        Op::Create(
            Repository {
                meta: Meta::new(repo),
                description: String::new(),
                public: false,
                immutable_tags: false,
            }
            .into(),
        )
    })
}

fn record_of(m: &RepoManifest) -> Option<ManifestRecord> {
    let parse = |d: &String| d.parse::<Digest>().ok();
    Some(ManifestRecord {
        digest: m.digest.parse().ok()?,
        media_type: m.media_type.clone(),
        size: m.size,
        subject: m.subject.as_ref().and_then(parse),
        artifact_type: m.artifact_type.clone(),
        annotations: m.annotations.clone(),
        blobs: m.blobs.iter().filter_map(parse).collect(),
        manifests: m.manifests.iter().filter_map(parse).collect(),
    })
}

#[async_trait]
impl Metadata for RaftMetadata {
    async fn repository_exists(&self, repo: &str) -> Result<bool> {
        Ok(self.read(|s| s.contains(Kind::Repository, repo)))
    }

    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let id = blob_id(repo, &digest.to_string());
        Ok(self.read(|s| s.contains(Kind::RepoBlob, &id)))
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let id = blob_id(repo, &digest.to_string());
        for _ in 0..ATTEMPTS {
            let ops = self.read(|s| {
                if s.contains(Kind::RepoBlob, &id) {
                    return vec![];
                }
                let mut ops: Vec<Op> = repository_op(s, repo).into_iter().collect();
                ops.push(Op::Create(
                    RepoBlob {
                        meta: Meta::new(&id),
                        repo: repo.into(),
                        digest: digest.to_string(),
                        size,
                    }
                    .into(),
                ));
                ops
            });
            match self.write(ops).await {
                Ok(()) => return Ok(()),
                Err(e) if raced(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(MetadataError::Unavailable(
            "the repository keeps changing under this push; retry".into(),
        ))
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let id = blob_id(repo, &digest.to_string());
        if !self.read(|s| s.contains(Kind::RepoBlob, &id)) {
            return Ok(false);
        }
        match self
            .write(vec![Op::Delete {
                kind: Kind::RepoBlob,
                id,
                version: None,
            }])
            .await
        {
            Ok(()) => Ok(true),
            Err(store::StoreError::Apply(ApplyError::NotFound { .. })) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn put_manifest(
        &self,
        repo: &str,
        manifest: ManifestRecord,
        tags: &[String],
    ) -> Result<std::result::Result<(), MissingReferences>> {
        let digest = manifest.digest.to_string();
        let id = manifest_id(repo, &digest);
        let object = RepoManifest {
            meta: Meta::new(&id),
            repo: repo.into(),
            digest: digest.clone(),
            media_type: manifest.media_type.clone(),
            size: manifest.size,
            subject: manifest.subject.as_ref().map(|d| d.to_string()),
            artifact_type: manifest.artifact_type.clone(),
            annotations: manifest.annotations.clone(),
            blobs: manifest.blobs.iter().map(|d| d.to_string()).collect(),
            manifests: manifest.manifests.iter().map(|d| d.to_string()).collect(),
        };
        for _ in 0..ATTEMPTS {
            let planned = self.read(|s| {
                let missing = MissingReferences {
                    blobs: manifest
                        .blobs
                        .iter()
                        .filter(|d| !s.contains(Kind::RepoBlob, &blob_id(repo, &d.to_string())))
                        .cloned()
                        .collect(),
                    manifests: manifest
                        .manifests
                        .iter()
                        .filter(|d| {
                            !s.contains(Kind::RepoManifest, &manifest_id(repo, &d.to_string()))
                        })
                        .cloned()
                        .collect(),
                };
                if !missing.blobs.is_empty() || !missing.manifests.is_empty() {
                    return Err(missing);
                }
                let mut ops: Vec<Op> = repository_op(s, repo).into_iter().collect();
                match s.auth_object(Kind::RepoManifest, &id) {
                    Some(Object::RepoManifest(old)) => {
                        let mut new = object.clone();
                        new.meta = old.meta.clone();
                        if *old != new {
                            ops.push(Op::Update(new.into()));
                        }
                    }
                    _ => ops.push(Op::Create(object.clone().into())),
                }
                for t in tags {
                    let tid = tag_id(repo, t);
                    match s.auth_object(Kind::RepoTag, &tid) {
                        Some(Object::RepoTag(old)) if old.digest == digest => {}
                        Some(Object::RepoTag(old)) => {
                            let mut moved = old.clone();
                            moved.digest = digest.clone();
                            ops.push(Op::Update(moved.into()));
                        }
                        _ => ops.push(Op::Create(
                            RepoTag {
                                meta: Meta::new(&tid),
                                repo: repo.into(),
                                tag: t.clone(),
                                digest: digest.clone(),
                            }
                            .into(),
                        )),
                    }
                }
                Ok(ops)
            });
            let ops = match planned {
                Ok(ops) => ops,
                Err(missing) => return Ok(Err(missing)),
            };
            match self.write(ops).await {
                Ok(()) => return Ok(Ok(())),
                Err(e) if raced(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(MetadataError::Unavailable(
            "the repository keeps changing under this push; retry".into(),
        ))
    }

    async fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let id = manifest_id(repo, &digest.to_string());
        Ok(self.read(|s| match s.auth_object(Kind::RepoManifest, &id) {
            Some(Object::RepoManifest(m)) => record_of(m),
            _ => None,
        }))
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        let id = manifest_id(repo, &digest);
        for _ in 0..ATTEMPTS {
            let ops = self.read(|s| {
                let Some(Object::RepoManifest(m)) = s.auth_object(Kind::RepoManifest, &id) else {
                    return None;
                };
                let prefix = tag_prefix(repo);
                let mut ops: Vec<Op> = s
                    .auth_range(Kind::RepoTag, &prefix)
                    .filter_map(|o| match o {
                        Object::RepoTag(t) if t.digest == digest => Some(Op::Delete {
                            kind: Kind::RepoTag,
                            id: t.meta.id.clone(),
                            version: Some(t.meta.version),
                        }),
                        _ => None,
                    })
                    .collect();
                ops.push(Op::Delete {
                    kind: Kind::RepoManifest,
                    id: id.clone(),
                    version: Some(m.meta.version),
                });
                Some(ops)
            });
            let Some(ops) = ops else {
                return Ok(false);
            };
            match self.write(ops).await {
                Ok(()) => return Ok(true),
                Err(e) if raced(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(MetadataError::Unavailable(
            "the repository keeps changing; retry".into(),
        ))
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let id = tag_id(repo, tag);
        Ok(self.read(|s| match s.auth_object(Kind::RepoTag, &id) {
            Some(Object::RepoTag(t)) => t.digest.parse().ok(),
            _ => None,
        }))
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let id = tag_id(repo, tag);
        if !self.read(|s| s.contains(Kind::RepoTag, &id)) {
            return Ok(false);
        }
        match self
            .write(vec![Op::Delete {
                kind: Kind::RepoTag,
                id,
                version: None,
            }])
            .await
        {
            Ok(()) => Ok(true),
            Err(store::StoreError::Apply(ApplyError::NotFound { .. })) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn tags(&self, repo: &str, req: &PageRequest) -> Result<Page> {
        let prefix = tag_prefix(repo);
        Ok(self.read(|s| {
            req.page(
                s.auth_range(Kind::RepoTag, &prefix)
                    .filter_map(|o| match o {
                        Object::RepoTag(t) => Some(t.tag.clone()),
                        _ => None,
                    }),
            )
        }))
    }

    async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<ManifestRecord>> {
        let subject = digest.to_string();
        let prefix = digest_prefix(repo);
        Ok(self.read(|s| {
            s.auth_range(Kind::RepoManifest, &prefix)
                .filter_map(|o| match o {
                    Object::RepoManifest(m) if m.subject.as_deref() == Some(&subject) => {
                        record_of(m)
                    }
                    _ => None,
                })
                .collect()
        }))
    }

    async fn repositories(&self, req: &PageRequest) -> Result<Page> {
        Ok(self.read(|s| req.page(s.auth_objects(Kind::Repository).map(|o| o.id().to_string()))))
    }
}
