//! Where blob bytes live: the [`BlobStore`] trait (content-addressed blobs,
//! resumable uploads) and [`FsBlobStore`], its filesystem implementation.
//!
//! Manifests are blobs too: their bytes are stored here under their digest,
//! while what a repository holds is the [`crate::metadata`]'s business.
//!
//! Crash safety of [`FsBlobStore`]:
//! - a blob appears only by `rename(2)` of a complete, fsynced file in the
//!   same filesystem, after its digest was verified, then the directory is
//!   fsynced: no reader ever sees a partial or unverified blob, and two
//!   writers of one digest simply replace identical bytes;
//! - an upload's acknowledged offset is in its state file, written (temp file,
//!   fsync, rename) only after the data up to it was fsynced; data past that
//!   offset (a crash mid-chunk) is cut off when the upload is next touched;
//! - the running hash of an upload is kept in memory only (sha2 0.10 cannot
//!   serialise its state): after a restart, the first chunk or the close
//!   re-hashes the data already received, once;
//! - a request body that breaks off mid-chunk keeps what did arrive (a prefix
//!   of the client's stream, in order), so the client resumes from the offset
//!   the upload status reports.

use crate::digest::{Algorithm, Digest, Hasher};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// A body streamed in or out, chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A stream of one buffer (a manifest, a test's blob).
pub fn once(bytes: impl Into<Bytes>) -> ByteStream {
    let b: Bytes = bytes.into();
    Box::pin(futures_util::stream::once(async move { Ok(b) }))
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob upload unknown")]
    UploadUnknown,
    /// The chunk does not start where the upload stands.
    #[error("the upload is at offset {offset}")]
    RangeMismatch { offset: u64 },
    #[error("the content's digest is {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("declared {declared} bytes, received {received}")]
    SizeMismatch { declared: u64, received: u64 },
    /// The request body broke off; what arrived before is kept.
    #[error("request body: {0}")]
    Body(io::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
        let context = context.into();
        move |source| StorageError::Io { context, source }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// An upload session as its store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadState {
    pub id: String,
    pub repository: String,
    /// Bytes received and made durable so far.
    pub offset: u64,
    /// The algorithm hashed while the data streams in; a close with another
    /// algorithm's digest re-hashes the data.
    pub algorithm: Algorithm,
    /// When the session started (seconds since the Unix epoch), for the
    /// garbage collector's grace window.
    pub started_unix: u64,
}

/// A piece of an upload: where the client says it starts (`Content-Range`),
/// how long it says it is, and the bytes.
pub struct Chunk {
    pub start: Option<u64>,
    pub len: Option<u64>,
    pub body: ByteStream,
}

/// Content-addressed blobs and resumable uploads. Implementations verify
/// every digest themselves: a caller cannot store bytes under a wrong one.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a stored blob, `None` if absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// `len` bytes of a blob from `start` (the caller has checked them
    /// against [`BlobStore::stat`]), `None` if absent.
    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<Option<ByteStream>>;
    /// Stores a whole blob in one go, verifying it against `digest` while it
    /// streams; returns its size. On a mismatch nothing is stored.
    async fn write(&self, digest: &Digest, body: ByteStream) -> Result<u64>;
    /// Removes a blob's bytes (garbage collection); whether it was there.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    async fn start_upload(&self, repository: &str, algorithm: Algorithm) -> Result<UploadState>;
    async fn upload(&self, id: &str) -> Result<Option<UploadState>>;
    /// Appends a chunk at the upload's offset; [`StorageError::RangeMismatch`]
    /// when it claims to start elsewhere.
    async fn append(&self, id: &str, chunk: Chunk) -> Result<UploadState>;
    /// Appends the last chunk if any, verifies the whole against `digest` and
    /// makes it a blob; returns its size. On a mismatch the upload is dropped
    /// and nothing is stored.
    async fn finish(&self, id: &str, last: Option<Chunk>, digest: &Digest) -> Result<u64>;
    /// Drops an upload; whether it existed.
    async fn cancel(&self, id: &str) -> Result<bool>;
}

/// The running hash of an upload, valid at `offset`.
struct Running {
    hasher: Hasher,
    offset: u64,
}

type Session = Arc<tokio::sync::Mutex<Option<Running>>>;

/// The filesystem [`BlobStore`]: see the crate documentation for its layout.
pub struct FsBlobStore {
    root: PathBuf,
    /// One lock per upload touched since the process started, so chunks of
    /// one upload are applied one at a time, with its running hash.
    sessions: Mutex<HashMap<String, Session>>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    repository: String,
    algorithm: Algorithm,
    offset: u64,
    started_unix: u64,
}

const READ_BUFFER: usize = 256 * 1024;
const WRITE_BUFFER: usize = 1024 * 1024;

impl FsBlobStore {
    /// Opens (creating it if need be) a store rooted at `root`. Leftovers of
    /// one-shot writes cut short by a crash (`tmp/`) are removed; uploads
    /// are kept, to be resumed.
    pub async fn open(root: impl Into<PathBuf>) -> Result<FsBlobStore> {
        let root = root.into();
        for d in ["blobs", "uploads", "tmp"] {
            tokio::fs::create_dir_all(root.join(d))
                .await
                .map_err(StorageError::io(format!(
                    "creating {}",
                    root.join(d).display()
                )))?;
        }
        let tmp = root.join("tmp");
        let mut entries = tokio::fs::read_dir(&tmp)
            .await
            .map_err(StorageError::io("listing tmp"))?;
        while let Some(e) = entries
            .next_entry()
            .await
            .map_err(StorageError::io("listing tmp"))?
        {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
        Ok(FsBlobStore {
            root,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/blobs/<alg>/<first 2 hex>/<hex>`
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_dir(&self, id: &str) -> Option<PathBuf> {
        is_upload_id(id).then(|| self.root.join("uploads").join(id))
    }

    fn session(&self, id: &str) -> Session {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.entry(id.to_string()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    async fn read_state(&self, id: &str) -> Result<Option<UploadState>> {
        let Some(dir) = self.upload_dir(id) else {
            return Ok(None);
        };
        let bytes = match tokio::fs::read(dir.join("state.json")).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(format!("reading upload {id}"))(e)),
        };
        let s: StateFile = serde_json::from_slice(&bytes).map_err(|e| StorageError::Io {
            context: format!("upload {id}'s state file"),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        Ok(Some(UploadState {
            id: id.to_string(),
            repository: s.repository,
            offset: s.offset,
            algorithm: s.algorithm,
            started_unix: s.started_unix,
        }))
    }

    async fn write_state(&self, dir: &Path, state: &UploadState) -> Result<()> {
        let json = serde_json::to_vec(&StateFile {
            repository: state.repository.clone(),
            algorithm: state.algorithm,
            offset: state.offset,
            started_unix: state.started_unix,
        })
        .map_err(|e| StorageError::io("encoding upload state")(io::Error::other(e)))?;
        let tmp = dir.join("state.json.tmp");
        let ctx = || format!("writing {}", tmp.display());
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(StorageError::io(ctx()))?;
        f.write_all(&json).await.map_err(StorageError::io(ctx()))?;
        f.sync_all().await.map_err(StorageError::io(ctx()))?;
        tokio::fs::rename(&tmp, dir.join("state.json"))
            .await
            .map_err(StorageError::io(ctx()))?;
        sync_dir(dir).await
    }

    /// The upload's hash at its offset: the one in memory if it is current,
    /// else the data on disk hashed again (after a restart, or for another
    /// algorithm than the one streamed).
    async fn hasher_at(
        &self,
        data: &Path,
        running: Option<Running>,
        offset: u64,
        algorithm: Algorithm,
    ) -> Result<Hasher> {
        if let Some(r) = running {
            if r.offset == offset && r.hasher.algorithm() == algorithm {
                return Ok(r.hasher);
            }
        }
        let ctx = || format!("re-hashing {}", data.display());
        let f = tokio::fs::File::open(data)
            .await
            .map_err(StorageError::io(ctx()))?;
        let mut f = f.take(offset);
        let mut hasher = algorithm.hasher();
        let mut buf = vec![0u8; READ_BUFFER];
        let mut seen = 0u64;
        loop {
            let n = f.read(&mut buf).await.map_err(StorageError::io(ctx()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            seen += n as u64;
        }
        if seen != offset {
            return Err(StorageError::io(ctx())(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{seen} bytes on disk, the state says {offset}"),
            )));
        }
        Ok(hasher)
    }

    /// Appends under the upload's lock (`running` is its guarded hash).
    async fn append_locked(
        &self,
        id: &str,
        running: &mut Option<Running>,
        chunk: Chunk,
    ) -> Result<UploadState> {
        let mut state = self
            .read_state(id)
            .await?
            .ok_or(StorageError::UploadUnknown)?;
        if chunk.start.is_some_and(|s| s != state.offset) {
            return Err(StorageError::RangeMismatch {
                offset: state.offset,
            });
        }
        let dir = self.upload_dir(id).ok_or(StorageError::UploadUnknown)?;
        let data = dir.join("data");
        let ctx = || format!("writing {}", data.display());
        // Until this chunk is committed the cached hash is not trusted: an
        // I/O error below leaves it empty, and the next chunk re-hashes.
        let mut hasher = self
            .hasher_at(&data, running.take(), state.offset, state.algorithm)
            .await?;
        let before = hasher.clone();
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .await
            .map_err(StorageError::io(ctx()))?;
        // Bytes past the acknowledged offset were never acknowledged.
        file.set_len(state.offset)
            .await
            .map_err(StorageError::io(ctx()))?;
        file.seek(io::SeekFrom::Start(state.offset))
            .await
            .map_err(StorageError::io(ctx()))?;
        let (file, received, broken) = copy_hashing(file, chunk.body, &mut hasher)
            .await
            .map_err(StorageError::io(ctx()))?;
        if broken.is_none() {
            if let Some(declared) = chunk.len.filter(|&l| l != received) {
                file.set_len(state.offset)
                    .await
                    .map_err(StorageError::io(ctx()))?;
                *running = Some(Running {
                    hasher: before,
                    offset: state.offset,
                });
                return Err(StorageError::SizeMismatch { declared, received });
            }
        }
        if received == 0 && broken.is_none() {
            *running = Some(Running {
                hasher,
                offset: state.offset,
            });
            return Ok(state);
        }
        file.sync_data().await.map_err(StorageError::io(ctx()))?;
        state.offset += received;
        self.write_state(&dir, &state).await?;
        *running = Some(Running {
            hasher,
            offset: state.offset,
        });
        match broken {
            Some(e) => Err(StorageError::Body(e)),
            None => Ok(state),
        }
    }

    /// Moves a verified, fsynced file into its place as a blob.
    async fn promote(&self, from: &Path, digest: &Digest) -> Result<()> {
        let to = self.blob_path(digest);
        let Some(parent) = to.parent() else {
            return Err(StorageError::io("blob path")(io::Error::other("no parent")));
        };
        if tokio::fs::metadata(parent).await.is_err() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(StorageError::io(format!("creating {}", parent.display())))?;
            if let Some(alg_dir) = parent.parent() {
                sync_dir(alg_dir).await?;
            }
        }
        tokio::fs::rename(from, &to)
            .await
            .map_err(StorageError::io(format!("renaming into {}", to.display())))?;
        sync_dir(parent).await
    }
}

/// Streams `body` into `file` through `hasher`; a body that breaks off ends
/// the copy early (its error is returned beside what was written), a write
/// error fails it.
async fn copy_hashing(
    file: tokio::fs::File,
    mut body: ByteStream,
    hasher: &mut Hasher,
) -> io::Result<(tokio::fs::File, u64, Option<io::Error>)> {
    let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut received = 0u64;
    let mut broken = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(b) => {
                w.write_all(&b).await?;
                hasher.update(&b);
                received += b.len() as u64;
            }
            Err(e) => {
                broken = Some(e);
                break;
            }
        }
    }
    w.flush().await?;
    Ok((w.into_inner(), received, broken))
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let ctx = || format!("syncing directory {}", dir.display());
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(StorageError::io(ctx()))?;
    d.sync_all().await.map_err(StorageError::io(ctx()))
}

/// Upload ids are UUIDs; anything else (`..`, slashes) never reaches a path.
fn is_upload_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// A random (version 4) UUID.
fn new_upload_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(format!("stat {digest}"))(e)),
        }
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<Option<ByteStream>> {
        let path = self.blob_path(digest);
        let ctx = || format!("reading {}", path.display());
        let mut f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(ctx())(e)),
        };
        if start > 0 {
            f.seek(io::SeekFrom::Start(start))
                .await
                .map_err(StorageError::io(ctx()))?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), READ_BUFFER);
        Ok(Some(Box::pin(stream)))
    }

    async fn write(&self, digest: &Digest, body: ByteStream) -> Result<u64> {
        let tmp = self.root.join("tmp").join(new_upload_id());
        let ctx = || format!("writing {}", tmp.display());
        let result = async {
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(StorageError::io(ctx()))?;
            let mut hasher = digest.algorithm().hasher();
            let (file, size, broken) = copy_hashing(file, body, &mut hasher)
                .await
                .map_err(StorageError::io(ctx()))?;
            if let Some(e) = broken {
                return Err(StorageError::Body(e));
            }
            let actual = hasher.finish();
            if &actual != digest {
                return Err(StorageError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            file.sync_data().await.map_err(StorageError::io(ctx()))?;
            drop(file);
            self.promote(&tmp, digest).await?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(format!("deleting {digest}"))(e)),
        }
    }

    async fn start_upload(&self, repository: &str, algorithm: Algorithm) -> Result<UploadState> {
        let id = new_upload_id();
        let dir = self.root.join("uploads").join(&id);
        tokio::fs::create_dir(&dir)
            .await
            .map_err(StorageError::io(format!("creating {}", dir.display())))?;
        let data = dir.join("data");
        let f = tokio::fs::File::create(&data)
            .await
            .map_err(StorageError::io(format!("creating {}", data.display())))?;
        f.sync_all()
            .await
            .map_err(StorageError::io(format!("creating {}", data.display())))?;
        let state = UploadState {
            id,
            repository: repository.to_string(),
            offset: 0,
            algorithm,
            started_unix: now_unix(),
        };
        self.write_state(&dir, &state).await?;
        sync_dir(&self.root.join("uploads")).await?;
        Ok(state)
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadState>> {
        self.read_state(id).await
    }

    async fn append(&self, id: &str, chunk: Chunk) -> Result<UploadState> {
        if !is_upload_id(id) {
            return Err(StorageError::UploadUnknown);
        }
        let session = self.session(id);
        let mut running = session.lock().await;
        self.append_locked(id, &mut running, chunk).await
    }

    async fn finish(&self, id: &str, last: Option<Chunk>, digest: &Digest) -> Result<u64> {
        let dir = self.upload_dir(id).ok_or(StorageError::UploadUnknown)?;
        let session = self.session(id);
        let mut running = session.lock().await;
        let state = match last {
            Some(chunk) => self.append_locked(id, &mut running, chunk).await?,
            None => self
                .read_state(id)
                .await?
                .ok_or(StorageError::UploadUnknown)?,
        };
        let data = dir.join("data");
        let hasher = self
            .hasher_at(&data, running.take(), state.offset, digest.algorithm())
            .await?;
        let actual = hasher.finish();
        if &actual != digest {
            // The bytes can never become this digest: drop the upload rather
            // than keep a session the client cannot repair.
            let _ = tokio::fs::remove_dir_all(&dir).await;
            self.forget(id);
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Only the acknowledged bytes become the blob.
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .await
            .map_err(StorageError::io(format!("opening {}", data.display())))?;
        if f.metadata().await.map(|m| m.len()).unwrap_or(0) != state.offset {
            f.set_len(state.offset)
                .await
                .map_err(StorageError::io(format!("truncating {}", data.display())))?;
            f.sync_all()
                .await
                .map_err(StorageError::io(format!("syncing {}", data.display())))?;
        }
        drop(f);
        self.promote(&data, digest).await?;
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!("registry: removing finished upload {id}: {e}");
        }
        self.forget(id);
        Ok(state.offset)
    }

    async fn cancel(&self, id: &str) -> Result<bool> {
        let Some(dir) = self.upload_dir(id) else {
            return Ok(false);
        };
        let session = self.session(id);
        let _running = session.lock().await;
        let result = match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(format!("removing {}", dir.display()))(e)),
        };
        self.forget(id);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_uuids_and_nothing_else_names_a_directory() {
        for _ in 0..100 {
            let id = new_upload_id();
            assert!(is_upload_id(&id), "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
        }
        for bad in [
            "",
            "..",
            "../../etc/passwd",
            &"a".repeat(36),
            "0123456789abcdef0123456789abcdef",
        ] {
            assert!(!is_upload_id(bad), "{bad}");
        }
    }
}
