//! The one-time move of a store directory's Raft log from the redb file of
//! earlier builds (`raft.redb`, table layout version 1) to the WAL, so that
//! a manager upgraded in place keeps its log, vote, committed and last
//! purged ids.
//!
//! The WAL is built whole in `wal.tmp/`, made durable, and renamed to
//! `wal/`; only then is `raft.redb` removed. A crash at any step leaves
//! either `raft.redb` alone (a `wal.tmp/` beside it is a leftover, built
//! again), or both with a complete `wal/` (the rename happened; the redb
//! file is only removed), so running it again always ends in the same place.

use crate::types::{Entry, LogId, Vote};
use crate::wal::{self, Wal, WalError, WalOptions};
use redb::{Database, ReadableTable, TableDefinition};
use std::fs;
use std::path::Path;

/// The redb log of earlier builds, inside the store's directory.
pub(crate) const REDB_FILE: &str = "raft.redb";
/// Where the WAL is built before it is renamed into place.
const WAL_TMP: &str = "wal.tmp";

/// Log entries by index, each the JSON of an openraft entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, committed id, last purged id and the format version, by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const KEY_FORMAT: &str = "format";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
/// The only layout version redb logs were ever written in.
const FORMAT_VERSION: &[u8] = b"1";

/// Entry bytes per frame while copying, so that no frame comes near the
/// format's 4 GiB limit however long the old log is.
const CHUNK_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    #[error("{0} is in use by another store (another berth process, or one still closing)")]
    InUse(String),
    #[error("reading the redb raft log {path}: {what}")]
    Read { path: String, what: String },
    #[error(
        "redb raft log format version {0:?} is not supported by this build (it reads version 1)"
    )]
    UnsupportedFormat(String),
    #[error("moving the raft log to the WAL: {0}")]
    Wal(#[from] WalError),
}

/// What the redb log held.
#[derive(Default)]
struct Old {
    entries: Vec<Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// Moves `dir`'s redb log, if it has one, to the WAL at `dir/wal_name`.
/// Returns whether there was one. The caller holds the directory's lock.
pub(crate) fn from_redb(
    dir: &Path,
    wal_name: &str,
    options: WalOptions,
) -> Result<bool, MigrateError> {
    let redb = dir.join(REDB_FILE);
    let tmp = dir.join(WAL_TMP);
    let wal_dir = dir.join(wal_name);
    let io = |op: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| WalError::Io { op, path, source }
    };
    if !redb.exists() {
        if tmp.exists() {
            // Cannot be from a migration (the redb file goes last), but
            // holds nothing the store uses either.
            fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
        }
        return Ok(false);
    }
    if !wal_dir.exists() {
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
        }
        let old = read(&redb)?;
        write(&tmp, &old, options)?;
        fs::rename(&tmp, &wal_dir).map_err(io("renaming", &tmp))?;
        wal::sync_dir(dir)?;
        tracing::info!(
            entries = old.entries.len(),
            dir = %dir.display(),
            "moved the raft log from redb to the WAL"
        );
    }
    fs::remove_file(&redb).map_err(io("removing", &redb))?;
    wal::sync_dir(dir)?;
    Ok(true)
}

/// Everything the redb file holds, read as the old builds wrote it.
fn read(path: &Path) -> Result<Old, MigrateError> {
    let err = |what: String| MigrateError::Read {
        path: path.display().to_string(),
        what,
    };
    let db = Database::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => MigrateError::InUse(path.display().to_string()),
        e => err(e.to_string()),
    })?;
    let txn = db.begin_read().map_err(|e| err(e.to_string()))?;
    let mut old = Old::default();
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        // Created and never written: an empty log.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(old),
        Err(e) => return Err(err(e.to_string())),
    };
    let get = |key: &str| -> Result<Option<Vec<u8>>, MigrateError> {
        Ok(meta
            .get(key)
            .map_err(|e| err(e.to_string()))?
            .map(|v| v.value().to_vec()))
    };
    match get(KEY_FORMAT)? {
        Some(v) if v != FORMAT_VERSION => {
            return Err(MigrateError::UnsupportedFormat(
                String::from_utf8_lossy(&v).into_owned(),
            ))
        }
        _ => {}
    }
    if let Some(b) = get(KEY_VOTE)? {
        old.vote =
            Some(serde_json::from_slice(&b).map_err(|e| err(format!("decoding the vote: {e}")))?);
    }
    // Both were written as JSON of a log id or of an optional one.
    if let Some(b) = get(KEY_COMMITTED)? {
        old.committed = serde_json::from_slice(&b)
            .map_err(|e| err(format!("decoding the committed log id: {e}")))?;
    }
    if let Some(b) = get(KEY_PURGED)? {
        old.last_purged = serde_json::from_slice(&b)
            .map_err(|e| err(format!("decoding the last purged log id: {e}")))?;
    }
    let log = match txn.open_table(LOG) {
        Ok(log) => log,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(old),
        Err(e) => return Err(err(e.to_string())),
    };
    for item in log.iter().map_err(|e| err(e.to_string()))? {
        let (k, v) = item.map_err(|e| err(e.to_string()))?;
        let entry: Entry = serde_json::from_slice(v.value())
            .map_err(|e| err(format!("decoding log entry {}: {e}", k.value())))?;
        old.entries.push(entry);
    }
    Ok(old)
}

/// Writes `old` as a new WAL in `dir`, durably.
fn write(dir: &Path, old: &Old, options: WalOptions) -> Result<(), MigrateError> {
    let (mut wal, _) = Wal::open(dir, options)?;
    wal.begin()?;
    if let Some(vote) = &old.vote {
        wal.add_vote(vote)?;
    }
    if let Some(purged) = old.last_purged {
        wal.add_purge(purged)?;
    }
    let mut bytes = 0;
    for entry in &old.entries {
        bytes += wal.add_entry(entry)?;
        if bytes >= CHUNK_BYTES {
            wal.commit()?;
            wal.begin()?;
            bytes = 0;
        }
    }
    // Last, as openraft writes it: after the entries it covers.
    wal.add_committed(old.committed)?;
    wal.commit()?;
    // Every segment's name was made durable as it was created, and every
    // frame by its commit.
    Ok(())
}

/// The redb log as the builds before the WAL wrote it, for tests: their
/// writer (`log_store.rs` at commit 94e36e7), reduced to what it left on
/// disk. Table names, keys and encodings are spelled out again here rather
/// than taken from the reader above, so that a change to the reader that no
/// longer reads what those builds wrote fails the tests.
#[cfg(test)]
pub(crate) fn write_old_redb(
    path: &Path,
    entries: &[Entry],
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
) {
    let log: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
    let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
    fn json(v: &impl serde::Serialize) -> Vec<u8> {
        serde_json::to_vec(v).expect("encodes")
    }
    let db = Database::create(path).expect("create the redb file");
    let txn = db.begin_write().expect("begin");
    {
        let mut m = txn.open_table(meta).expect("meta");
        m.insert("format", &b"1"[..]).expect("format");
        let mut l = txn.open_table(log).expect("log");
        for entry in entries {
            l.insert(entry.log_id.index, json(entry).as_slice())
                .expect("entry");
        }
        if let Some(vote) = vote {
            m.insert("vote", json(&vote).as_slice()).expect("vote");
        }
        // The old writer stored the committed id as an Option and the last
        // purged id bare.
        m.insert("committed", json(&committed).as_slice())
            .expect("committed");
        if let Some(purged) = last_purged {
            m.insert("last_purged", json(&purged).as_slice())
                .expect("purged");
        }
    }
    txn.commit().expect("commit");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Contents;
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

    fn options() -> WalOptions {
        WalOptions {
            segment_bytes: 1 << 20,
            preallocate: false,
        }
    }

    fn old_log(dir: &Path) {
        let entries: Vec<Entry> = (4..=9).map(|i| entry(2, i)).collect();
        write_old_redb(
            &dir.join(REDB_FILE),
            &entries,
            Some(Vote::new(2, 1)),
            Some(id(2, 8)),
            Some(id(1, 3)),
        );
    }

    fn wal_of(dir: &Path) -> Contents {
        Wal::open(&dir.join("wal"), options())
            .expect("open the WAL")
            .1
    }

    fn assert_migrated(dir: &Path) {
        let c = wal_of(dir);
        let ids: Vec<LogId> = c.entries.values().map(|e| e.log_id).collect();
        assert_eq!(ids, (4..=9).map(|i| id(2, i)).collect::<Vec<_>>());
        assert_eq!(c.vote, Some(Vote::new(2, 1)));
        assert_eq!(c.committed, Some(id(2, 8)));
        assert_eq!(c.last_purged, Some(id(1, 3)));
        assert!(!dir.join(REDB_FILE).exists(), "the redb file is gone");
        assert!(!dir.join(WAL_TMP).exists());
    }

    #[test]
    fn every_entry_and_id_of_the_redb_log_moves_to_the_wal_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        old_log(tmp.path());
        assert!(from_redb(tmp.path(), "wal", options()).expect("migrate"));
        assert_migrated(tmp.path());
        assert!(
            !from_redb(tmp.path(), "wal", options()).expect("again"),
            "nothing left to move"
        );
        assert_migrated(tmp.path());
    }

    #[test]
    fn an_interrupted_migration_is_finished_by_the_next_open() {
        // Killed while building the WAL: a partial wal.tmp beside the redb
        // file is built again.
        let tmp = tempfile::tempdir().expect("tempdir");
        old_log(tmp.path());
        fs::create_dir(tmp.path().join(WAL_TMP)).expect("mkdir");
        fs::write(
            tmp.path().join(WAL_TMP).join("00000000000000000001.wal"),
            b"berth-st",
        )
        .expect("write");
        from_redb(tmp.path(), "wal", options()).expect("migrate");
        assert_migrated(tmp.path());

        // Killed after the rename, before the redb file went: the WAL is
        // whole and is the log from then on.
        let tmp = tempfile::tempdir().expect("tempdir");
        old_log(tmp.path());
        from_redb(tmp.path(), "wal", options()).expect("migrate");
        write_old_redb(
            &tmp.path().join(REDB_FILE),
            &[entry(9, 1)],
            None,
            None,
            None,
        );
        from_redb(tmp.path(), "wal", options()).expect("finish");
        assert_migrated(tmp.path());
    }

    #[test]
    fn a_redb_log_of_an_unknown_format_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join(REDB_FILE);
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        txn.open_table(META)
            .expect("meta")
            .insert(KEY_FORMAT, &b"2"[..])
            .expect("insert");
        txn.commit().expect("commit");
        drop(db);
        let err = from_redb(tmp.path(), "wal", options()).expect_err("refused");
        assert!(
            matches!(&err, MigrateError::UnsupportedFormat(v) if v == "2"),
            "{err}"
        );
        assert!(path.exists() && !tmp.path().join("wal").exists());
    }
}
