//! The audit log (UCP's audit logging): one JSON line per API call — who,
//! what, the decision, and at level `Request` the body with its secrets
//! redacted — in rotated files of the manager's data dir, and the query that
//! reads them back newest first.
//!
//! Writing never blocks or slows a request: [`AuditLog::record`] only puts
//! the entry into a bounded channel that a writer thread serves. When the
//! writer falls that far behind, entries are dropped and counted
//! ([`AuditLog::dropped`]), and a warning is logged at most once per
//! [`DROP_WARN_INTERVAL`]: losing audit lines under overload is preferred
//! to making every call wait for the disk.
//!
//! Each manager keeps its own log of the calls it served (the `manager` field
//! says which); nothing here is replicated through the store.

use api::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Entries waiting for the writer before [`AuditLog::record`] drops them.
pub const CHANNEL_CAPACITY: usize = 10_000;
/// Request bodies larger than this are recorded as a placeholder, never
/// parsed: the log must not grow by a megabyte per upload.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// What a query returns when its filter names no limit (or zero).
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// The most a query returns, whatever its filter asks.
pub const MAX_QUERY_LIMIT: usize = 10_000;
/// Dropped entries are reported at most this often.
pub const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// What replaces a secret's value.
pub const REDACTED: &str = "<redacted>";

/// The current file's name in the log's directory; rotated ones add `.1` (the
/// newest) to `.N`.
const CURRENT: &str = "audit.log";
/// Entries are recorded when a call ends, so concurrent calls reach the file
/// slightly out of time order. A query by `since` reads on this far past the
/// first entry older than `since` before it stops, so such an entry is not
/// missed.
const SINCE_SLACK: Duration = Duration::from_secs(60);
/// A query reads files backwards in blocks of this size.
const READ_BLOCK: usize = 64 * 1024;
/// A line longer than any the writer makes (a body is at most
/// [`MAX_BODY_BYTES`] before redaction) is corrupt; a query skips it without
/// holding it in memory.
const MAX_LINE_BYTES: usize = 1024 * 1024;
/// The writer takes at most this many entries per hold of the files' lock, so
/// a query waits for at most one such batch.
const WRITE_BATCH: usize = 1_000;

/// One API call as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub time: Timestamp,
    /// The caller's user name; `None` when the call was not authenticated.
    pub user: Option<String>,
    pub method: String,
    pub path: String,
    /// What the call was about, e.g. "service web".
    pub object: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The caller's address.
    pub remote: String,
    pub decision: AuditDecision,
    /// The request body, secrets redacted: only at audit level `Request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The manager that served the call (and wrote the entry). [`AuditLog`]
    /// fills it in: a caller may leave it empty.
    pub manager: String,
}

/// What access control decided about a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditDecision {
    Allowed,
    Denied,
    /// No valid credential was presented.
    Unauthenticated,
}

/// Which entries a query returns. Every field left `None` matches anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Calls of this user only (by name).
    pub user: Option<String>,
    /// Calls at or after this time.
    pub since: Option<Timestamp>,
    /// Calls at or before this time.
    pub until: Option<Timestamp>,
    /// Calls with this HTTP method only (any case).
    pub method: Option<String>,
    pub decision: Option<AuditDecision>,
    /// At most this many entries (0: the default, 100; never more than 10,000).
    pub limit: usize,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            user: None,
            since: None,
            until: None,
            method: None,
            decision: None,
            limit: DEFAULT_QUERY_LIMIT,
        }
    }
}

impl AuditFilter {
    /// The number of entries a query with this filter returns at most.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => DEFAULT_QUERY_LIMIT,
            n => n.min(MAX_QUERY_LIMIT),
        }
    }

    /// Whether `entry` passes every condition but `since` (which the query
    /// also uses to stop reading).
    fn matches(&self, entry: &AuditEntry) -> bool {
        self.until.is_none_or(|until| entry.time <= until)
            && self.since.is_none_or(|since| entry.time >= since)
            && self
                .user
                .as_deref()
                .is_none_or(|u| entry.user.as_deref() == Some(u))
            && self
                .method
                .as_deref()
                .is_none_or(|m| entry.method.eq_ignore_ascii_case(m))
            && self.decision.is_none_or(|d| entry.decision == d)
    }
}

/// A copy of `body` in which the value of every key that carries a secret,
/// at any depth (objects within objects and arrays), is replaced by
/// [`REDACTED`]. See [`is_secret_key`] for which keys do.
pub fn redact(body: &Value) -> Value {
    match body {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// A request body as the audit log may keep it: `None` when empty, the
/// [`redact`]ed JSON when it parses, and otherwise a placeholder that gives
/// only its size (`{"<not json>": n}`, or `{"<too large>": n}` past
/// [`MAX_BODY_BYTES`]) — never the raw bytes, which may be a secret.
pub fn redact_bytes(body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    if body.len() > MAX_BODY_BYTES {
        return Some(serde_json::json!({ "<too large>": body.len() }));
    }
    Some(match serde_json::from_slice::<Value>(body) {
        Ok(v) => redact(&v),
        Err(_) => serde_json::json!({ "<not json>": body.len() }),
    })
}

/// Whether a JSON key names a secret: `password`, `old_password`,
/// `new_password`, `reader_password`, `secret`, `token`, `key`, `key_pem`,
/// `private_key`, and any key that contains "password", "secret" or "token"
/// or ends with "_key" or "key_pem". Keys are compared in snake case, so
/// `newPassword`, `API-Key` and `privateKey` count as well.
pub fn is_secret_key(key: &str) -> bool {
    const EXACT: [&str; 9] = [
        "password",
        "old_password",
        "new_password",
        "reader_password",
        "secret",
        "token",
        "key",
        "key_pem",
        "private_key",
    ];
    let k = snake_case(key);
    EXACT.contains(&k.as_str())
        || k.contains("password")
        || k.contains("secret")
        || k.contains("token")
        || k.ends_with("_key")
        || k.ends_with("key_pem")
}

/// `newPassword` → `new_password`, `APIKey` → `api_key`, `x-api-key` →
/// `x_api_key`: the one form [`is_secret_key`] compares.
fn snake_case(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::with_capacity(key.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if matches!(c, '-' | ' ' | '.') {
            out.push('_');
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower)
            {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The audit log of one manager. Cloning it is cheap and every clone writes to
/// the same files; the writer thread ends once the last clone is dropped,
/// after writing what was recorded.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.shared.dir)
            .field("manager", &self.shared.manager)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

struct Shared {
    dir: PathBuf,
    manager: String,
    keep_files: usize,
    dropped: AtomicU64,
    /// When dropped entries were last reported: milliseconds since `started`,
    /// plus one (0: never).
    last_drop_warn: AtomicU64,
    started: Instant,
    /// The writer holds it exclusively while it appends or rotates, a query
    /// shared while it reads, so a query never sees a rotation half done.
    files: RwLock<()>,
}

enum Msg {
    Entry(Box<AuditEntry>),
    /// Answered once everything sent before it is written and synced.
    Flush(SyncSender<io::Result<()>>),
}

impl AuditLog {
    /// Opens (or creates, owner-only) the log in `dir`: JSON lines in
    /// `dir/audit.log`, rotated to `audit.log.1` … `audit.log.<keep_files>`
    /// (the oldest dropped) when the current file would grow past
    /// `max_file_bytes`. Files are mode 0600. `manager` names this manager
    /// in every entry it writes.
    pub fn open(
        dir: &Path,
        manager: String,
        max_file_bytes: u64,
        keep_files: usize,
    ) -> io::Result<AuditLog> {
        Self::open_with_capacity(dir, manager, max_file_bytes, keep_files, CHANNEL_CAPACITY)
    }

    fn open_with_capacity(
        dir: &Path,
        manager: String,
        max_file_bytes: u64,
        keep_files: usize,
        capacity: usize,
    ) -> io::Result<AuditLog> {
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        remove_files_beyond(dir, keep_files)?;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            manager,
            keep_files,
            dropped: AtomicU64::new(0),
            last_drop_warn: AtomicU64::new(0),
            started: Instant::now(),
            files: RwLock::new(()),
        });
        let mut writer = Writer {
            shared: shared.clone(),
            max_file_bytes,
            file: None,
            size: 0,
            error: None,
            line: Vec::with_capacity(1024),
            last_error_log: None,
        };
        // Open the file here, so that a log that cannot be written is refused
        // at startup rather than found out by the first call.
        writer.open_current()?;
        let (tx, rx) = mpsc::sync_channel(capacity);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(AuditLog { shared, tx })
    }

    /// Records `entry` (stamped with this manager's name) without waiting:
    /// if the writer is [`CHANNEL_CAPACITY`] entries behind, the entry is
    /// dropped and counted instead.
    pub fn record(&self, entry: AuditEntry) {
        match self.tx.try_send(Msg::Entry(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.count_dropped(),
        }
    }

    /// Entries dropped since the log was opened because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn count_dropped(&self) {
        let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.shared.started.elapsed().as_millis() as u64 + 1;
        let last = self.shared.last_drop_warn.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= DROP_WARN_INTERVAL.as_millis() as u64;
        // Of the callers that find a warning due, one wins the exchange and
        // logs; the rest go on without waiting.
        if due
            && self
                .shared
                .last_drop_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped = total,
                dir = %self.shared.dir.display(),
                "the audit log's writer is behind: entries are being dropped"
            );
        }
    }

    /// Waits until everything recorded before this call is written and
    /// synced to disk; an error says that some of it could not be written
    /// (a write error since the previous flush). It blocks: from async code
    /// use [`AuditLog::flush_async`].
    pub fn flush(&self) -> io::Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        let stopped = || io::Error::other("the audit log's writer has stopped");
        self.tx.send(Msg::Flush(tx)).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// [`AuditLog::flush`] on tokio's blocking pool.
    pub async fn flush_async(&self) -> io::Result<()> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.flush())
            .await
            .map_err(io::Error::other)?
    }

    /// The entries that pass `filter`, newest first, read from the current
    /// file and then the rotated ones; reading stops once the limit is
    /// reached or the entries are older than `filter.since`. A line that does
    /// not parse (a torn last line after a crash) is skipped. It reads files
    /// and blocks: from async code call it on the blocking pool. Entries
    /// recorded but not yet written are not seen ([`AuditLog::flush`] first
    /// for that).
    pub fn query(&self, filter: &AuditFilter) -> io::Result<Vec<AuditEntry>> {
        let limit = filter.effective_limit();
        let stop_before = filter
            .since
            .map(|since| Timestamp(since.0.saturating_sub(SINCE_SLACK.as_millis() as u64)));
        let _files = self
            .shared
            .files
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut found = Vec::new();
        for path in file_paths(&self.shared.dir, self.shared.keep_files) {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut lines = ReverseLines::new(file)?;
            while let Some(line) = lines.next_line()? {
                let Ok(entry) = serde_json::from_slice::<AuditEntry>(&line) else {
                    continue;
                };
                if stop_before.is_some_and(|stop| entry.time < stop) {
                    return Ok(found);
                }
                if filter.matches(&entry) {
                    found.push(entry);
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// `audit.log`, `audit.log.1` … `audit.log.<keep>`: newest first.
fn file_paths(dir: &Path, keep: usize) -> impl Iterator<Item = PathBuf> + '_ {
    (0..=keep).map(move |i| dir.join(file_name(i)))
}

fn file_name(i: usize) -> String {
    match i {
        0 => CURRENT.to_owned(),
        i => format!("{CURRENT}.{i}"),
    }
}

/// Removes rotated files a larger `keep_files` left, which rotation would
/// otherwise never drop.
fn remove_files_beyond(dir: &Path, keep: usize) -> io::Result<()> {
    let prefix = format!("{CURRENT}.");
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if n > keep {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The writer thread's state: the current file and its size.
struct Writer {
    shared: Arc<Shared>,
    max_file_bytes: u64,
    /// `None` after a failure, reopened by the next write.
    file: Option<BufWriter<File>>,
    size: u64,
    /// The first write error since the last flush, which that flush reports.
    error: Option<io::Error>,
    /// Reused for each entry's line.
    line: Vec<u8>,
    last_error_log: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let shared = self.shared.clone();
            let _files = shared
                .files
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Entry(entry) => self.append(*entry),
                    Msg::Flush(reply) => {
                        let result = self.flush(true);
                        let _ = reply.send(result);
                    }
                }
                taken += 1;
                if taken < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // The channel is empty (or the batch full): hand what is buffered
            // to the OS, so that a query sees it and a crash loses little.
            if let Err(e) = self.flush_buffer() {
                self.failed(e);
            }
        }
        // Every sender is gone: the log is closing.
        if let Err(e) = self.flush(true) {
            tracing::error!(error = %e, "closing the audit log");
        }
    }

    fn append(&mut self, mut entry: AuditEntry) {
        entry.manager.clone_from(&self.shared.manager);
        self.line.clear();
        if let Err(e) = serde_json::to_writer(&mut self.line, &entry) {
            self.failed(e.into());
            return;
        }
        self.line.push(b'\n');
        if let Err(e) = self.write_line() {
            self.failed(e);
        }
    }

    fn write_line(&mut self) -> io::Result<()> {
        let len = self.line.len() as u64;
        if self.file.is_some() && self.size > 0 && self.size + len > self.max_file_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.open_current()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the audit log is not open"));
        };
        file.write_all(&self.line)?;
        self.size += len;
        Ok(())
    }

    /// `audit.log` becomes `audit.log.1`, each `.i` becomes `.i+1`, and the
    /// last one is overwritten: the oldest is dropped.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let dir = &self.shared.dir;
        let keep = self.shared.keep_files;
        if keep == 0 {
            remove_if_present(&dir.join(CURRENT))?;
        } else {
            for i in (1..keep).rev() {
                rename_if_present(&dir.join(file_name(i)), &dir.join(file_name(i + 1)))?;
            }
            rename_if_present(&dir.join(CURRENT), &dir.join(file_name(1)))?;
        }
        self.open_current()
    }

    fn open_current(&mut self) -> io::Result<()> {
        let path = self.shared.dir.join(CURRENT);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&path)?;
        // An older file may have been made with other permissions.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        let mut size = file.metadata()?.len();
        if size > 0 {
            // A crash can leave a torn last line; end it, so the next entry
            // starts a line of its own and only the torn one is lost.
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        self.file = Some(BufWriter::with_capacity(64 * 1024, file));
        self.size = size;
        Ok(())
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }

    /// Flushes the buffer (and syncs the file when `sync`) and reports the
    /// first error since the last flush.
    fn flush(&mut self, sync: bool) -> io::Result<()> {
        let mut result = self.flush_buffer();
        if sync && result.is_ok() {
            if let Some(file) = self.file.as_ref() {
                result = file.get_ref().sync_data();
            }
        }
        if let Err(e) = result {
            self.failed(e);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Remembers a write error for the next flush, logs it (at most once per
    /// [`DROP_WARN_INTERVAL`]), and closes the file so that the next write
    /// reopens it.
    fn failed(&mut self, e: io::Error) {
        if self
            .last_error_log
            .is_none_or(|at| at.elapsed() >= DROP_WARN_INTERVAL)
        {
            self.last_error_log = Some(Instant::now());
            tracing::error!(error = %e, dir = %self.shared.dir.display(), "writing the audit log");
        }
        if self.error.is_none() {
            self.error = Some(e);
        }
        // Whatever is still buffered may be lost with the file; dropping the
        // BufWriter would try to write it again, so take the file out of it.
        if let Some(file) = self.file.take() {
            let _ = file.into_parts();
        }
    }
}

/// A file's lines from the last to the first, read in blocks from the end, so
/// that a query for the newest entries reads only the end of the file.
struct ReverseLines {
    file: File,
    /// Bytes before this offset are not read yet.
    pos: u64,
    /// The start of the file's unread part holds the rest of this line.
    carry: Vec<u8>,
    /// Whether `carry`'s line grew past [`MAX_LINE_BYTES`]: it is discarded.
    overlong: bool,
    /// Complete lines of the last block read, the last one on top.
    ready: Vec<Vec<u8>>,
}

impl ReverseLines {
    fn new(file: File) -> io::Result<ReverseLines> {
        let pos = file.metadata()?.len();
        Ok(ReverseLines {
            file,
            pos,
            carry: Vec::new(),
            overlong: false,
            ready: Vec::new(),
        })
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.ready.pop() {
                return Ok(Some(line));
            }
            if self.pos == 0 {
                let line = std::mem::take(&mut self.carry);
                let overlong = std::mem::replace(&mut self.overlong, false);
                return Ok((!line.is_empty() && !overlong).then_some(line));
            }
            let n = READ_BLOCK.min(self.pos as usize);
            self.pos -= n as u64;
            let mut block = vec![0u8; n];
            self.file.read_exact_at(&mut block, self.pos)?;
            block.extend_from_slice(&self.carry);
            let mut parts: Vec<&[u8]> = block.split(|b| *b == b'\n').collect();
            // The first part may continue in the block before; every other
            // part is a whole line (the last one ends where the carry did).
            let first = parts.remove(0);
            if !parts.is_empty() {
                if std::mem::replace(&mut self.overlong, false) {
                    parts.pop();
                }
                self.ready = parts
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
            }
            self.carry = first.to_vec();
            if self.carry.len() > MAX_LINE_BYTES {
                self.carry = Vec::new();
                self.overlong = true;
            }
        }
    }
}
