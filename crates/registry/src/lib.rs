//! berth's trusted registry (DTR's role): the OCI Distribution Spec v1.1
//! served as an axum [`Router`] under `/v2/`, over three pluggable parts —
//! a [`BlobStore`] for content-addressed bytes, a [`Metadata`] store for
//! what each repository holds, and an [`Access`] policy for who may do what.
//! [`app`] builds the router; the controller merges it into its own.
//!
//! # Layout on disk ([`FsBlobStore`])
//!
//! ```text
//! <root>/blobs/<alg>/<first 2 hex>/<hex>   a blob (layers, configs, manifests)
//! <root>/uploads/<uuid>/data               the bytes of an upload so far
//! <root>/uploads/<uuid>/state.json         {repository, algorithm, offset, started_unix}
//! <root>/tmp/<uuid>                        a one-shot write (monolithic push, manifest)
//! ```
//!
//! # Crash safety
//!
//! - A blob appears only by renaming a complete, fsynced, digest-verified
//!   file within the root's filesystem, then fsyncing its directory: no
//!   partial or unverified blob is ever visible, and concurrent writers of
//!   one digest replace identical bytes, both successfully.
//! - An upload's state file is rewritten (temp, fsync, rename) only after
//!   the data up to its offset is fsynced; a crash mid-chunk leaves bytes
//!   past that offset, cut off when the upload is next touched. Uploads
//!   survive a restart; the running hash is re-computed from the data on
//!   the first request after it (sha2 0.10 cannot serialise a hash state).
//! - `tmp/` is emptied when the store opens: a one-shot write is not
//!   resumable, its client retries.
//! - A manifest's bytes are stored before its record: a recorded manifest
//!   is always readable; a refused one leaves a blob for the collector.
//! - Deleting a blob or manifest only changes metadata; bytes go only by
//!   garbage collection.
//!
//! # Left for the integration (issue 5)
//!
//! - [`Metadata`] in the Raft store: each write method is meant as one
//!   atomic batch there (`put_manifest` checks the references it needs in
//!   the same batch), with `Unavailable` answered 503.
//! - Token auth: an [`Access`] that checks the cluster's users, tokens and
//!   repository grants, answering with [`Challenge::Bearer`] and a token
//!   endpoint; the catalog filtered to what the caller may see.
//! - Garbage collection of unreferenced blobs, untagged manifests by policy,
//!   and abandoned uploads (`started_unix` gives the grace window); immutable
//!   tags; the `berth repo` CLI; an S3 [`BlobStore`].

pub mod access;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod metadata;
pub mod names;
pub mod router;
mod routes;
pub mod storage;
pub mod token;

pub use access::{Access, Action, AllowAll, Challenge, Decision, DenyAll, Scope};
pub use digest::{Algorithm, Digest};
pub use error::{Code, RegistryError};
pub use metadata::{ManifestRecord, MemoryMetadata, Metadata};
pub use router::app;
pub use storage::{BlobStore, FsBlobStore};

use axum::Router;
use std::sync::Arc;

/// Limits and switches of a registry.
#[derive(Clone, Debug)]
pub struct Config {
    /// The largest manifest accepted (413 past it); the spec asks for at
    /// least 4 MiB.
    pub max_manifest_bytes: usize,
    /// The most items one page of tags or repositories holds; a larger `n`
    /// gets this many and a `Link` to the rest.
    pub max_page: usize,
    /// Whether manifests, tags and blobs may be deleted (405 otherwise).
    pub delete_enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_page: 1000,
            delete_enabled: true,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) metadata: Arc<dyn Metadata>,
    pub(crate) access: Arc<dyn Access>,
    pub(crate) config: Config,
}

/// A registry's parts, cheap to clone (the router's state).
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl Registry {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn Metadata>,
        access: Arc<dyn Access>,
    ) -> Registry {
        Registry::with_config(blobs, metadata, access, Config::default())
    }

    pub fn with_config(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn Metadata>,
        access: Arc<dyn Access>,
        config: Config,
    ) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                blobs,
                metadata,
                access,
                config,
            }),
        }
    }

    /// The router serving `/v2/`.
    pub fn router(self) -> Router {
        app(self)
    }
}
