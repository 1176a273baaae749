//! The Raft log's write-ahead log on disk: segment files of checksummed
//! frames, appended sequentially, one `fdatasync` per frame.
//!
//! A durable write of the log costs one `pwrite` and one `fdatasync` of the
//! bytes it adds (redb, which held the log before, rewrote a dozen B-tree
//! pages per commit). Everything the log must keep is a record: an entry,
//! a truncation (`truncate`: entries from an index on are gone), a purge
//! (entries up to a log id are gone, and that id is the last purged), the
//! vote and the committed id. Replaying the records in order rebuilds what
//! openraft was told is durable, so a truncation or a purge is durable the
//! moment its record is.
//!
//! Layout of `wal/` (format version 1, pinned by a golden-bytes test):
//! - segments `<seq>.wal` (`seq`: 20 decimal digits, from 1 up), replayed in
//!   that order. Each starts with [`SEGMENT_MAGIC`] and then holds frames
//!   back to back; the rest of a preallocated file is zeros.
//! - a frame: payload length (u32 LE), CRC-32 of the payload (u32 LE), then
//!   the payload: records back to back, each a kind byte, a length (u32 LE)
//!   and its bytes. The writer makes each group of writes one frame, written
//!   with one `pwrite` and made durable with one `fdatasync`, so a frame is
//!   the unit that a crash tears, and only the last frame of the last
//!   segment can be torn: every earlier one was durable before the next was
//!   written.
//! - the first frame of every segment holds the vote, the committed id and
//!   the last purged id as they were when the segment was started, so a
//!   segment needs none of the segments before it: a purge deletes every
//!   segment whose entries are all purged (never the one being written).
//!
//! Replay: a torn tail (a frame running past the end of the last segment,
//! or failing its CRC with nothing but zeros after it) is cut off, with a
//! warning, as is anything after the zeros that end the data; the file is
//! trimmed there so later frames never follow garbage. Any other bad frame,
//! and anything wrong in an earlier segment, is an error naming the file
//! and the offset.

use crate::types::{Entry, LogId, Vote};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What every segment file starts with: the format and its version.
pub(crate) const SEGMENT_MAGIC: &[u8] = b"berth-store-wal v1\n";
/// A segment is closed, and the next one started, once it holds this much.
pub(crate) const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Frame header: payload length and CRC-32, both u32 LE.
const FRAME_HEADER: usize = 8;
/// Record header: kind byte and length (u32 LE).
const RECORD_HEADER: usize = 5;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_VOTE: u8 = 4;
const KIND_COMMITTED: u8 = 5;

/// How the WAL lays out its files.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalOptions {
    /// Size at which a segment is closed and a new one started.
    pub(crate) segment_bytes: u64,
    /// Allocate each new segment's blocks up front (`fallocate`), so that an
    /// append neither grows the file nor allocates blocks: its
    /// `fdatasync` then has less metadata to flush with the data.
    pub(crate) preallocate: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            preallocate: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("corrupt raft log: {path} at offset {offset}: {what}")]
    Corrupt {
        path: String,
        offset: u64,
        what: String,
    },
    #[error("encoding a raft log record: {0}")]
    Encode(String),
    #[error("the raft log stopped taking writes after an earlier failure: {0}")]
    Failed(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// What the log holds: what replaying the WAL gives, and what the store
/// keeps in memory for openraft. Both change only through the methods
/// below, so memory and disk agree record for record.
#[derive(Default, Debug)]
pub(crate) struct Contents {
    pub(crate) entries: BTreeMap<u64, Entry>,
    pub(crate) last_purged: Option<LogId>,
    pub(crate) vote: Option<Vote>,
    pub(crate) committed: Option<LogId>,
}

impl Contents {
    pub(crate) fn append(&mut self, entry: Entry) {
        self.entries.insert(entry.log_id.index, entry);
    }

    /// Deletes the entries at `since` and after.
    pub(crate) fn truncate(&mut self, since: u64) {
        self.entries.split_off(&since);
    }

    /// Deletes the entries up to `upto` and records it as the last purged.
    pub(crate) fn purge(&mut self, upto: LogId) {
        self.entries = self.entries.split_off(&(upto.index + 1));
        self.last_purged = Some(upto);
    }
}

/// One segment file, as the writer knows it.
#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// The highest entry index ever written to it (entries truncated since
    /// included): it may be deleted once the purge reaches this.
    max_index: Option<u64>,
}

/// The vote, committed and last purged ids as written so far: what a new
/// segment's first frame records.
#[derive(Default, Clone, Copy)]
struct Meta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// The WAL, open for appending; owned by the log's writer thread.
pub(crate) struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// Oldest first; the last one is being written.
    segments: Vec<Segment>,
    file: File,
    /// Where the next frame goes in the last segment.
    offset: u64,
    meta: Meta,
    /// The frame being built (see [`Wal::begin`]), with whatever must be
    /// written before it.
    buf: Vec<u8>,
    /// Where the frame's header is in `buf`.
    frame_at: usize,
    /// Of the frame being built: its highest entry index, its last purge,
    /// and the meta it leaves.
    frame_max_index: Option<u64>,
    frame_purge: Option<LogId>,
    frame_meta: Meta,
    /// Set by a failed write: what follows a write that may have landed
    /// halfway must not be appended after it.
    failed: Option<String>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Makes the directory entries in `dir` (new, renamed or removed files)
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing the directory", dir))
}

/// The segments in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let item = item.map_err(io_err("listing", dir))?;
        let name = item.file_name();
        match name.to_str().and_then(parse_segment_name) {
            Some(seq) => found.push((seq, item.path())),
            None => tracing::warn!(file = ?item.path(), "not a raft log segment; ignored"),
        }
    }
    found.sort();
    Ok(found)
}

/// How one segment's replay ended.
struct Replayed {
    max_index: Option<u64>,
    /// Where its valid data ends.
    end: u64,
    /// Whether bytes after `end` must be cut off before anything is
    /// appended (a torn frame, or leftovers after the end of the data).
    cut: bool,
}

impl Wal {
    /// Opens the WAL in `dir` (creating it if new), replays it and returns
    /// it, ready to append, with what it holds.
    pub(crate) fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Contents), WalError> {
        if !dir.exists() {
            fs::create_dir(dir).map_err(io_err("creating", dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let found = list_segments(dir)?;
        let mut contents = Contents::default();
        let mut segments = Vec::with_capacity(found.len() + 1);
        let mut tail = None;
        for (i, (seq, path)) in found.iter().enumerate() {
            let last = i + 1 == found.len();
            let replayed = replay_segment(path, last, &mut contents)?;
            segments.push(Segment {
                seq: *seq,
                path: path.clone(),
                max_index: replayed.max_index,
            });
            if last {
                tail = Some(replayed);
            }
        }
        let meta = Meta {
            vote: contents.vote,
            committed: contents.committed,
            purged: contents.last_purged,
        };
        let (file, offset) = match (segments.last(), tail) {
            (Some(segment), Some(tail)) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&segment.path)
                    .map_err(io_err("opening", &segment.path))?;
                if tail.cut {
                    // Anything after the valid data would be read back
                    // after the frames appended next: drop it for good.
                    file.set_len(tail.end)
                        .map_err(io_err("trimming", &segment.path))?;
                    if options.preallocate {
                        preallocate(&file, &segment.path, options.segment_bytes)?;
                    }
                    file.sync_all().map_err(io_err("syncing", &segment.path))?;
                }
                (file, tail.end)
            }
            _ => {
                let (segment, file) = create_segment(dir, 1, options)?;
                segments.push(segment);
                (file, 0)
            }
        };
        let wal = Wal {
            dir: dir.to_path_buf(),
            options,
            segments,
            file,
            offset,
            meta,
            buf: Vec::with_capacity(64 << 10),
            frame_at: 0,
            frame_max_index: None,
            frame_purge: None,
            frame_meta: meta,
            failed: None,
        };
        Ok((wal, contents))
    }

    /// Starts a frame: records added until [`Wal::commit`] are written
    /// together and made durable with one `fdatasync`.
    pub(crate) fn begin(&mut self) -> Result<(), WalError> {
        if let Some(why) = &self.failed {
            return Err(WalError::Failed(why.clone()));
        }
        self.buf.clear();
        if self.offset >= self.options.segment_bytes {
            let seq = self.segments.last().map(|s| s.seq).unwrap_or(0) + 1;
            let (segment, file) = create_segment(&self.dir, seq, self.options)
                .inspect_err(|e| self.failed = Some(e.to_string()))?;
            self.segments.push(segment);
            self.file = file;
            self.offset = 0;
        }
        if self.offset == 0 {
            // A segment's first write: the magic, then the meta as of now,
            // so that the segment stands on its own once older ones go.
            self.buf.extend_from_slice(SEGMENT_MAGIC);
            let meta = self.meta;
            self.start_frame();
            if let Some(vote) = &meta.vote {
                self.add_json(KIND_VOTE, vote)?;
            }
            if let Some(purged) = &meta.purged {
                self.add_json(KIND_PURGE, purged)?;
            }
            if meta.committed.is_some() {
                self.add_json(KIND_COMMITTED, &meta.committed)?;
            }
            self.end_frame()?;
        }
        self.start_frame();
        self.frame_max_index = None;
        self.frame_purge = None;
        self.frame_meta = self.meta;
        Ok(())
    }

    /// Adds an entry to the frame; returns the size of its encoding.
    pub(crate) fn add_entry(&mut self, entry: &Entry) -> Result<u64, WalError> {
        let len = self.add_json(KIND_ENTRY, entry)?;
        let index = entry.log_id.index;
        self.frame_max_index = Some(self.frame_max_index.map_or(index, |m| m.max(index)));
        Ok(len)
    }

    /// Adds the deletion of the entries at `since` and after.
    pub(crate) fn add_truncate(&mut self, since: u64) {
        self.buf.push(KIND_TRUNCATE);
        self.buf.extend_from_slice(&8u32.to_le_bytes());
        self.buf.extend_from_slice(&since.to_le_bytes());
    }

    /// Adds the deletion of the entries up to `upto`; once the frame is
    /// durable, segments with nothing after `upto` are deleted.
    pub(crate) fn add_purge(&mut self, upto: LogId) -> Result<(), WalError> {
        self.add_json(KIND_PURGE, &upto)?;
        self.frame_meta.purged = Some(upto);
        self.frame_purge = Some(upto);
        Ok(())
    }

    pub(crate) fn add_vote(&mut self, vote: &Vote) -> Result<(), WalError> {
        self.add_json(KIND_VOTE, vote)?;
        self.frame_meta.vote = Some(*vote);
        Ok(())
    }

    pub(crate) fn add_committed(&mut self, committed: Option<LogId>) -> Result<(), WalError> {
        self.add_json(KIND_COMMITTED, &committed)?;
        self.frame_meta.committed = committed;
        Ok(())
    }

    /// Writes the frame begun last and returns once it is durable. A frame
    /// without records writes nothing (unless a new segment's first frame
    /// is due).
    pub(crate) fn commit(&mut self) -> Result<(), WalError> {
        self.end_frame()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = &self.segments[self.segments.len() - 1].path;
        let written = self
            .file
            .write_all_at(&self.buf, self.offset)
            .and_then(|()| self.file.sync_data())
            .map_err(io_err("writing", path));
        if let Err(e) = written {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.offset += self.buf.len() as u64;
        self.meta = self.frame_meta;
        if let Some(max) = self.frame_max_index {
            let last = self.segments.len() - 1;
            let segment = &mut self.segments[last];
            segment.max_index = Some(segment.max_index.map_or(max, |m| m.max(max)));
        }
        if let Some(upto) = self.frame_purge {
            self.delete_purged(upto.index);
        }
        Ok(())
    }

    /// Deletes the oldest segments whose entries are all at or below
    /// `upto`, never the one being written. Their records are no longer
    /// needed: the purge record is durable in a later segment, and each
    /// later segment starts with the meta. A deletion lost in a crash only
    /// leaves a segment whose entries replay then purges again.
    fn delete_purged(&mut self, upto: u64) {
        let mut deleted = 0;
        while self.segments.len() > 1 + deleted
            && self.segments[deleted].max_index.is_none_or(|m| m <= upto)
        {
            let path = &self.segments[deleted].path;
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(file = ?path, error = %e, "could not delete a purged raft log segment");
                break;
            }
            deleted += 1;
        }
        self.segments.drain(..deleted);
    }

    fn start_frame(&mut self) {
        self.frame_at = self.buf.len();
        self.buf.extend_from_slice(&[0; FRAME_HEADER]);
    }

    /// Ends the frame that starts at `frame_at`: fills in its header, or
    /// drops it if it holds no record (a frame is never empty: a zero
    /// length marks the end of the data).
    fn end_frame(&mut self) -> Result<(), WalError> {
        if self.buf.len() == self.frame_at + FRAME_HEADER {
            self.buf.truncate(self.frame_at);
            return Ok(());
        }
        let payload = &self.buf[self.frame_at + FRAME_HEADER..];
        let len = u32::try_from(payload.len())
            .map_err(|_| WalError::Encode(format!("a frame of {} bytes", payload.len())))?;
        let crc = crc32fast::hash(payload);
        self.buf[self.frame_at..self.frame_at + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[self.frame_at + 4..self.frame_at + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Adds a record of `value`'s JSON; returns the JSON's size.
    fn add_json(&mut self, kind: u8, value: &impl serde::Serialize) -> Result<u64, WalError> {
        let at = self.buf.len();
        self.buf.push(kind);
        self.buf.extend_from_slice(&[0; 4]);
        if let Err(e) = serde_json::to_writer(&mut self.buf, value) {
            self.buf.truncate(at);
            return Err(WalError::Encode(e.to_string()));
        }
        let len = self.buf.len() - at - RECORD_HEADER;
        let Ok(len32) = u32::try_from(len) else {
            self.buf.truncate(at);
            return Err(WalError::Encode(format!("a record of {len} bytes")));
        };
        self.buf[at + 1..at + RECORD_HEADER].copy_from_slice(&len32.to_le_bytes());
        Ok(len as u64)
    }

    /// How many segment files the WAL has.
    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// Creates segment `seq` in `dir`, preallocated if asked, and makes its
/// name durable. It holds nothing yet: its first write puts the magic.
fn create_segment(dir: &Path, seq: u64, options: WalOptions) -> Result<(Segment, File), WalError> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("creating", &path))?;
    if options.preallocate {
        preallocate(&file, &path, options.segment_bytes)?;
    }
    sync_dir(dir)?;
    Ok((
        Segment {
            seq,
            path,
            max_index: None,
        },
        file,
    ))
}

/// Allocates `len` bytes of `file` (read back as zeros), growing its size.
fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), WalError> {
    use std::os::fd::AsRawFd;
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    match nix::fcntl::fallocate(
        file.as_raw_fd(),
        nix::fcntl::FallocateFlags::empty(),
        0,
        len,
    ) {
        Ok(()) => Ok(()),
        // A file system without fallocate: appends grow the file instead.
        Err(nix::errno::Errno::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(WalError::Io {
            op: "preallocating",
            path: path.display().to_string(),
            source: e.into(),
        }),
    }
}

/// Replays one segment into `contents`. `last`: it is the segment being
/// written, the only one whose tail may be torn.
fn replay_segment(path: &Path, last: bool, contents: &mut Contents) -> Result<Replayed, WalError> {
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    let corrupt = |offset: usize, what: String| WalError::Corrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        what,
    };
    let zeros = |from: usize| bytes[from.min(bytes.len())..].iter().all(|&b| b == 0);
    let mut replayed = Replayed {
        max_index: None,
        end: 0,
        cut: false,
    };
    if !bytes.starts_with(SEGMENT_MAGIC) {
        // A segment created just before a crash has no write yet: zeros,
        // or as much of the magic as reached the disk.
        let head = &bytes[..bytes.len().min(SEGMENT_MAGIC.len())];
        let torn_magic = SEGMENT_MAGIC.starts_with(head) && zeros(head.len());
        if last && (zeros(0) || torn_magic) {
            replayed.cut = !bytes.is_empty();
            return Ok(replayed);
        }
        return Err(corrupt(
            0,
            "not a berth raft log segment (bad header)".into(),
        ));
    }
    let mut pos = SEGMENT_MAGIC.len();
    loop {
        if pos + FRAME_HEADER > bytes.len() {
            if zeros(pos) {
                break;
            }
            if last {
                tracing::warn!(file = ?path, offset = pos, "cut a torn frame header off the raft log");
                replayed.cut = true;
                break;
            }
            return Err(corrupt(pos, "a truncated frame header".into()));
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len == 0 {
            // The end of the data: frames are never empty.
            if !zeros(pos) {
                if !last {
                    return Err(corrupt(pos, "data after the end of the frames".into()));
                }
                tracing::warn!(file = ?path, offset = pos, "cut leftovers after the last frame off the raft log");
                replayed.cut = true;
            }
            break;
        }
        let end = pos + FRAME_HEADER + len;
        if end > bytes.len() {
            if last {
                tracing::warn!(file = ?path, offset = pos, "cut a torn frame off the raft log (it runs past the end of the file)");
                replayed.cut = true;
                break;
            }
            return Err(corrupt(
                pos,
                format!("a frame of {len} bytes runs past the end of the file"),
            ));
        }
        let payload = &bytes[pos + FRAME_HEADER..end];
        if crc32fast::hash(payload) != crc {
            if last && zeros(end) {
                tracing::warn!(file = ?path, offset = pos, "cut a torn frame off the raft log (checksum mismatch, nothing after it)");
                replayed.cut = true;
                break;
            }
            return Err(corrupt(pos, "frame checksum mismatch".into()));
        }
        replay_frame(payload, contents, &mut replayed.max_index)
            .map_err(|(at, what)| corrupt(pos + FRAME_HEADER + at, what))?;
        pos = end;
        replayed.end = end as u64;
    }
    if replayed.end == 0 {
        // The magic alone: the segment's first frame never made it (or it
        // was cut). Rewrite it whole, as for a fresh segment.
        replayed.cut = true;
    }
    Ok(replayed)
}

/// Applies a frame's records to `contents`. A bad record in a frame whose
/// checksum holds is a bug, not a tear: the error gives its offset in the
/// payload.
fn replay_frame(
    payload: &[u8],
    contents: &mut Contents,
    max_index: &mut Option<u64>,
) -> Result<(), (usize, String)> {
    let mut at = 0;
    while at < payload.len() {
        if at + RECORD_HEADER > payload.len() {
            return Err((at, "a truncated record header".into()));
        }
        let kind = payload[at];
        let len =
            u32::from_le_bytes(payload[at + 1..at + 5].try_into().unwrap_or_default()) as usize;
        let start = at + RECORD_HEADER;
        let Some(data) = payload.get(start..start + len) else {
            return Err((at, format!("a record of {len} bytes runs past its frame")));
        };
        let json = |what: &str| format!("decoding {what}");
        match kind {
            KIND_ENTRY => {
                let entry: Entry = serde_json::from_slice(data)
                    .map_err(|e| (at, format!("{}: {e}", json("an entry"))))?;
                let index = entry.log_id.index;
                *max_index = Some(max_index.map_or(index, |m| m.max(index)));
                contents.append(entry);
            }
            KIND_TRUNCATE => {
                let since: [u8; 8] = data
                    .try_into()
                    .map_err(|_| (at, format!("a truncation of {len} bytes")))?;
                contents.truncate(u64::from_le_bytes(since));
            }
            KIND_PURGE => {
                let upto: LogId = serde_json::from_slice(data)
                    .map_err(|e| (at, format!("{}: {e}", json("a purge"))))?;
                contents.purge(upto);
            }
            KIND_VOTE => {
                contents.vote = Some(
                    serde_json::from_slice(data)
                        .map_err(|e| (at, format!("{}: {e}", json("the vote"))))?,
                );
            }
            KIND_COMMITTED => {
                contents.committed = serde_json::from_slice(data)
                    .map_err(|e| (at, format!("{}: {e}", json("the committed id"))))?;
            }
            other => return Err((at, format!("unknown record kind {other}"))),
        }
        at = start + len;
    }
    Ok(())
}

/// What the segments in `dir` hold on disk, record by record: the index of
/// every entry record in them (whether or not a later record deleted it),
/// the last purged id after replay, and how many segments there are. For
/// tests that check that purging deletes.
#[cfg(test)]
pub(crate) fn disk_indexes(dir: &Path) -> Result<(Vec<u64>, Option<LogId>, usize), WalError> {
    let found = list_segments(dir)?;
    let mut raw = Vec::new();
    let mut replayed = Contents::default();
    for (i, (_, path)) in found.iter().enumerate() {
        replay_segment(path, i + 1 == found.len(), &mut replayed)?;
        let bytes = fs::read(path).map_err(io_err("reading", path))?;
        raw.extend(entry_indexes(&bytes));
    }
    Ok((raw, replayed.last_purged, found.len()))
}

/// The indexes of the entry records in a segment's bytes.
#[cfg(test)]
fn entry_indexes(bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_MAGIC.len();
    while pos + FRAME_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        if len == 0 || pos + FRAME_HEADER + len > bytes.len() {
            break;
        }
        let payload = &bytes[pos + FRAME_HEADER..pos + FRAME_HEADER + len];
        let mut at = 0;
        while at + RECORD_HEADER <= payload.len() {
            let rlen =
                u32::from_le_bytes(payload[at + 1..at + 5].try_into().unwrap_or_default()) as usize;
            let data = &payload[at + RECORD_HEADER..at + RECORD_HEADER + rlen];
            if payload[at] == KIND_ENTRY {
                if let Ok(entry) = serde_json::from_slice::<Entry>(data) {
                    out.push(entry.log_id.index);
                }
            }
            at += RECORD_HEADER + rlen;
        }
        pos += FRAME_HEADER + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    /// Small segments, not preallocated unless asked: tests reopen often.
    fn options(segment_bytes: u64) -> WalOptions {
        WalOptions {
            segment_bytes,
            preallocate: false,
        }
    }

    fn write(wal: &mut Wal, f: impl FnOnce(&mut Wal) -> Result<(), WalError>) {
        wal.begin().expect("begin");
        f(wal).expect("records");
        wal.commit().expect("commit");
    }

    fn append(wal: &mut Wal, entries: impl IntoIterator<Item = Entry>) {
        write(wal, |w| {
            for e in entries {
                w.add_entry(&e)?;
            }
            Ok(())
        });
    }

    /// The log ids it holds, its vote, committed and last purged ids.
    fn summary(c: &Contents) -> (Vec<LogId>, Option<Vote>, Option<LogId>, Option<LogId>) {
        (
            c.entries.values().map(|e| e.log_id).collect(),
            c.vote,
            c.committed,
            c.last_purged,
        )
    }

    fn reopen(dir: &Path, options: WalOptions) -> (Wal, Contents) {
        Wal::open(dir, options).unwrap_or_else(|e| panic!("reopening: {e}"))
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        list_segments(dir)
            .expect("list")
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn replay_gives_back_what_was_written_in_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let (mut wal, contents) = Wal::open(&dir, options(1 << 20)).expect("open");
        assert!(contents.entries.is_empty() && contents.vote.is_none());
        let vote = Vote::new(2, 1);
        write(&mut wal, |w| w.add_vote(&vote));
        append(&mut wal, (1..=5).map(|i| entry(1, i)));
        write(&mut wal, |w| w.add_committed(Some(id(1, 3))));
        write(&mut wal, |w| {
            w.add_truncate(4);
            Ok(())
        });
        append(&mut wal, (4..=6).map(|i| entry(2, i)));
        write(&mut wal, |w| w.add_purge(id(1, 2)));
        drop(wal);

        let (_, contents) = reopen(&dir, options(1 << 20));
        let want: Vec<LogId> = vec![id(1, 3), id(2, 4), id(2, 5), id(2, 6)];
        assert_eq!(
            summary(&contents),
            (want, Some(vote), Some(id(1, 3)), Some(id(1, 2)))
        );
    }

    /// Every way the last frame can reach the disk partly: cut at any byte
    /// (a file that was growing), or its tail zeros (a preallocated file),
    /// or a page in its middle lost. Replay gives the state before the
    /// frame, which was never acknowledged, and the log takes writes after.
    #[test]
    fn a_torn_last_frame_is_cut_off_wherever_the_crash_hit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let (mut wal, _) = Wal::open(&dir, options(1 << 20)).expect("open");
        write(&mut wal, |w| w.add_vote(&Vote::new(1, 1)));
        append(&mut wal, (1..=10).map(|i| entry(1, i)));
        let before = wal.offset as usize;
        // The frame a crash tears: a truncation and the new leader's entries.
        write(&mut wal, |w| {
            w.add_truncate(6);
            for i in 6..=8 {
                w.add_entry(&entry(2, i))?;
            }
            Ok(())
        });
        let after = wal.offset as usize;
        drop(wal);
        let path = segment_files(&dir).pop().expect("a segment");
        let whole = fs::read(&path).expect("read");
        assert_eq!(whole.len(), after);
        let old: Vec<LogId> = (1..=10).map(|i| id(1, i)).collect();
        let new: Vec<LogId> = (1..=5)
            .map(|i| id(1, i))
            .chain((6..=8).map(|i| id(2, i)))
            .collect();

        let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
        for cut in before..after {
            damaged.push((format!("cut at {cut}"), whole[..cut].to_vec()));
            let mut zeroed = whole.clone();
            zeroed[cut..].fill(0);
            zeroed.extend_from_slice(&[0; 4096]);
            damaged.push((format!("zeros from {cut}"), zeroed));
        }
        let mut hole = whole.clone();
        hole[before + 20..before + 60].fill(0);
        damaged.push(("a hole in the frame".into(), hole));

        for (how, bytes) in damaged {
            fs::write(&path, &bytes).expect("write");
            let (mut wal, contents) = reopen(&dir, options(1 << 20));
            assert_eq!(summary(&contents).0, old, "{how}");
            append(&mut wal, [entry(1, 11)]);
            drop(wal);
            let (_, contents) = reopen(&dir, options(1 << 20));
            let mut want = old.clone();
            want.push(id(1, 11));
            assert_eq!(summary(&contents).0, want, "{how}, then a write");
        }
        fs::write(&path, &whole).expect("write");
        let (_, contents) = reopen(&dir, options(1 << 20));
        assert_eq!(summary(&contents).0, new, "the whole frame");
    }

    #[test]
    fn a_truncation_survives_a_crash_right_after_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let opts = WalOptions {
            preallocate: true,
            ..options(1 << 20)
        };
        let (mut wal, _) = Wal::open(&dir, opts).expect("open");
        append(&mut wal, (1..=10).map(|i| entry(1, i)));
        write(&mut wal, |w| {
            w.add_truncate(6);
            Ok(())
        });
        // A crash: no clean stop, nothing else written.
        drop(wal);
        let (mut wal, contents) = reopen(&dir, opts);
        let kept: Vec<LogId> = (1..=5).map(|i| id(1, i)).collect();
        assert_eq!(summary(&contents).0, kept);
        append(&mut wal, [entry(2, 6)]);
        drop(wal);
        let (_, contents) = reopen(&dir, opts);
        let mut want = kept;
        want.push(id(2, 6));
        assert_eq!(summary(&contents).0, want);
    }

    #[test]
    fn a_bad_checksum_before_the_tail_is_an_error_naming_the_file_and_offset() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let (mut wal, _) = Wal::open(&dir, options(1 << 20)).expect("open");
        append(&mut wal, [entry(1, 1)]);
        let second = wal.offset as usize;
        append(&mut wal, [entry(1, 2)]);
        append(&mut wal, [entry(1, 3)]);
        drop(wal);
        let path = segment_files(&dir).pop().expect("a segment");
        let mut bytes = fs::read(&path).expect("read");
        bytes[second + FRAME_HEADER + 10] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let err = Wal::open(&dir, options(1 << 20))
            .err()
            .expect("corruption is an error");
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string())
                && text.contains(&format!("offset {second}"))
                && text.contains("checksum"),
            "{text}"
        );
    }

    #[test]
    fn an_earlier_segment_must_be_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let (mut wal, _) = Wal::open(&dir, options(256)).expect("open");
        for i in 1..=10 {
            append(&mut wal, [entry(1, i)]);
        }
        drop(wal);
        let first = segment_files(&dir).remove(0);
        let bytes = fs::read(&first).expect("read");
        // Cut inside its last frame: a tail tear, but not in the last segment.
        fs::write(&first, &bytes[..bytes.len() - 3]).expect("write");
        let err = Wal::open(&dir, options(256)).err().expect("an error");
        assert!(
            matches!(&err, WalError::Corrupt { path, .. } if *path == first.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_purge_deletes_the_segments_behind_it_and_each_segment_stands_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let opts = options(512);
        let (mut wal, _) = Wal::open(&dir, opts).expect("open");
        let vote = Vote::new(3, 1);
        write(&mut wal, |w| w.add_vote(&vote));
        for i in 1..=50 {
            write(&mut wal, |w| {
                w.add_entry(&entry(3, i))?;
                w.add_committed(Some(id(3, i - 1)))
            });
        }
        let before = segment_files(&dir).len();
        assert!(before > 10, "{before} segments");
        assert_eq!(wal.segment_count(), before);
        write(&mut wal, |w| w.add_purge(id(3, 30)));
        let left = segment_files(&dir);
        assert_eq!(wal.segment_count(), left.len());
        drop(wal);
        let (raw, purged, count) = disk_indexes(&dir).expect("disk");
        assert_eq!(count, left.len());
        assert_eq!(purged, Some(id(3, 30)));
        let behind = raw.iter().filter(|&&i| i <= 30).count();
        // Only the segment the purge cut through keeps entries behind it.
        let per_segment = 50 / before + 2;
        assert!(
            behind < per_segment,
            "{behind} entries at or below 30 left: {raw:?}"
        );
        // The vote was written in a deleted segment; it lives on in the
        // first frame of each later one.
        let (_, contents) = reopen(&dir, opts);
        let want: Vec<LogId> = (31..=50).map(|i| id(3, i)).collect();
        assert_eq!(
            summary(&contents),
            (want, Some(vote), Some(id(3, 49)), Some(id(3, 30)))
        );
    }

    #[test]
    fn a_segment_created_just_before_a_crash_is_started_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let opts = options(128);
        let (mut wal, _) = Wal::open(&dir, opts).expect("open");
        let vote = Vote::new(1, 1);
        write(&mut wal, |w| w.add_vote(&vote));
        append(&mut wal, (1..=3).map(|i| entry(1, i)));
        drop(wal);
        // The next segment's file exists, with nothing or part of its magic.
        for content in [&b""[..], &SEGMENT_MAGIC[..5], &[0; 64][..]] {
            let next = dir.join(segment_name(99));
            fs::write(&next, content).expect("write");
            let (mut wal, contents) = reopen(&dir, opts);
            assert_eq!(contents.entries.len(), 3);
            append(&mut wal, [entry(1, 4)]);
            drop(wal);
            let (_, contents) = reopen(&dir, opts);
            assert_eq!(contents.entries.len(), 4, "{content:?}");
            assert_eq!(contents.vote, Some(vote));
            // Undo, for the next case.
            fs::remove_file(&next).expect("remove");
            let (mut wal, _) = reopen(&dir, opts);
            write(&mut wal, |w| {
                w.add_truncate(4);
                Ok(())
            });
        }
    }

    /// Version 1 of the format, byte for byte. Never edit this test: a
    /// change of the format is a new version, read beside this one.
    #[test]
    fn format_version_1_is_pinned() {
        let golden: &[u8] = b"berth-store-wal v1\n\
            \x8b\x00\x00\x00\x70\x19\xb3\x0c\
            \x04\x36\x00\x00\x00{\"leader_id\":{\"term\":1,\"node_id\":1},\"committed\":false}\
            \x01\x4b\x00\x00\x00{\"log_id\":{\"leader_id\":{\"term\":1,\"node_id\":1},\"index\":1},\"payload\":\"Blank\"}";
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let (mut wal, _) = Wal::open(&dir, options(1 << 20)).expect("open");
        write(&mut wal, |w| {
            w.add_vote(&Vote::new(1, 1))?;
            w.add_entry(&entry(1, 1)).map(drop)
        });
        drop(wal);
        let path = segment_files(&dir).pop().expect("a segment");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some("00000000000000000001.wal")
        );
        let bytes = fs::read(&path).expect("read");
        assert_eq!(
            bytes,
            golden,
            "{}",
            String::from_utf8_lossy(&bytes).escape_debug()
        );
        let (_, contents) = reopen(&dir, options(1 << 20));
        assert_eq!(
            summary(&contents),
            (vec![id(1, 1)], Some(Vote::new(1, 1)), None, None)
        );
    }
}
