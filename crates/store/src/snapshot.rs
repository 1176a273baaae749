//! The snapshot format and its file.
//!
//! A snapshot is the whole [`api::State`] at one applied log id, with the Raft
//! membership at that point. The same bytes are the file on disk and the data
//! openraft would stream to a lagging follower, so a follower installs exactly
//! what a leader wrote. The bytes start with a text header that names the format
//! version (`berth-store-snapshot v1\n`), then the JSON body of that version; a
//! reader refuses a version it does not know instead of guessing. Version 1 is
//! pinned by a golden-bytes test that must never be edited: a change of the body
//! is a new version with its own decoder.

use crate::types::SnapshotMeta;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What every snapshot starts with, followed by the version number and `\n`.
const MAGIC: &[u8] = b"berth-store-snapshot v";
/// The version this build writes.
pub(crate) const VERSION: u32 = 1;
/// The current snapshot in the store's directory.
const FILE: &str = "snapshot";
/// Prefix of snapshots being written; a leftover one is an interrupted write.
const TMP_PREFIX: &str = "snapshot.tmp.";
/// How much of a snapshot is written before it is flushed (see `write_atomic`).
const SYNC_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("not a berth store snapshot (bad header)")]
    BadHeader,
    #[error("snapshot format version {0} is not supported by this build (it reads version 1)")]
    UnsupportedVersion(String),
    #[error("corrupt snapshot body: {0}")]
    Body(#[from] serde_json::Error),
    #[error("snapshot file: {0}")]
    Io(#[from] io::Error),
}

/// Version 1 body. Field names are part of the format.
#[derive(Serialize)]
struct BodyV1Ref<'a> {
    meta: &'a SnapshotMeta,
    state: &'a api::State,
}

#[derive(Deserialize)]
struct BodyV1 {
    meta: SnapshotMeta,
    state: api::State,
}

/// Serializes a snapshot in the current format version.
pub(crate) fn encode(meta: &SnapshotMeta, state: &api::State) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(VERSION.to_string().as_bytes());
    out.push(b'\n');
    serde_json::to_writer(&mut out, &BodyV1Ref { meta, state })?;
    Ok(out)
}

/// Serializes a snapshot as [`encode`] does, as background work: it sleeps
/// after every [`PACE_CHUNK`] bytes for long enough that encoding takes at
/// most `share` of the time it runs (the time it is busy includes time the
/// scheduler gave to other threads, so a loaded machine slows it further).
/// Encoding the whole state takes a core for a while; all at once, it would
/// take that time from the writes that every manager is serving (and on one
/// machine, three managers take their snapshots at the same index at once).
/// `capacity` is the expected size (the last snapshot's), so that the
/// buffer is not copied as it grows.
pub(crate) fn encode_paced(
    meta: &SnapshotMeta,
    state: &api::State,
    capacity: usize,
    share: f64,
) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Paced {
        out: Vec::with_capacity(capacity.max(4096)),
        pause_per_busy: (1.0 - share.clamp(0.01, 1.0)) / share.clamp(0.01, 1.0),
        busy_since: Instant::now(),
        mark: 0,
    };
    out.out.extend_from_slice(MAGIC);
    out.out.extend_from_slice(VERSION.to_string().as_bytes());
    out.out.push(b'\n');
    serde_json::to_writer(&mut out, &BodyV1Ref { meta, state })?;
    Ok(out.out)
}

/// How much of a paced snapshot is encoded between two pauses.
const PACE_CHUNK: usize = 256 << 10;

/// The buffer of [`encode_paced`].
struct Paced {
    out: Vec<u8>,
    /// Pause per unit of busy time.
    pause_per_busy: f64,
    busy_since: Instant,
    /// Length of `out` at the last pause.
    mark: usize,
}

impl Write for Paced {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(bytes);
        if self.out.len() - self.mark >= PACE_CHUNK {
            let busy = self.busy_since.elapsed();
            std::thread::sleep(busy.mul_f64(self.pause_per_busy));
            self.mark = self.out.len();
            self.busy_since = Instant::now();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a snapshot of any supported version.
pub(crate) fn decode(bytes: &[u8]) -> Result<(SnapshotMeta, api::State), SnapshotError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::BadHeader)?;
    let eol = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(SnapshotError::BadHeader)?;
    let (version, body) = (&rest[..eol], &rest[eol + 1..]);
    match version {
        b"1" => {
            let body: BodyV1 = serde_json::from_slice(body)?;
            Ok((body.meta, body.state))
        }
        other => Err(SnapshotError::UnsupportedVersion(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// The current snapshot's bytes, if there is one.
pub(crate) fn read(dir: &Path) -> Result<Option<Vec<u8>>, io::Error> {
    match fs::read(dir.join(FILE)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the current snapshot with `bytes` so that a crash at any point
/// leaves either the old or the new snapshot whole: write a temporary file,
/// fsync it, rename it over the old one, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, bytes: &[u8]) -> Result<(), io::Error> {
    // Builds run in their own task and a received snapshot may be installed
    // meanwhile, so each write gets its own temporary name.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        // Flushed a chunk at a time: one sync of a whole large snapshot would
        // queue all of it on the disk at once, ahead of the log's small syncs
        // (every write waits for one), and stall them for as long.
        for chunk in bytes.chunks(SYNC_CHUNK) {
            f.write_all(chunk)?;
            f.sync_data()?;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(FILE))?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files left by a write that a crash interrupted.
pub(crate) fn remove_leftovers(dir: &Path) -> Result<(), io::Error> {
    let leftovers: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(TMP_PREFIX))
        .map(|e| e.path())
        .collect();
    for path in leftovers {
        fs::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Batch, Cluster, Meta, Op, Task, TaskSpec, TaskState, TaskStatus, Timestamp};
    use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
    use std::collections::{BTreeMap, BTreeSet};

    /// The state and metadata that the golden bytes hold.
    fn golden_content() -> (SnapshotMeta, api::State) {
        let mut state = api::State::default();
        let task = Task {
            meta: Meta::new("t1"),
            service_id: "s1".into(),
            slot: 1,
            node_id: Some("n1".into()),
            spec: TaskSpec::exec(["sleep", "1000"]),
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            restarts: vec![],
        };
        state
            .apply(
                3,
                &Batch {
                    time: Timestamp(1_700_000_000_000),
                    ops: vec![
                        Op::Create(Cluster::new("berth").into()),
                        Op::Create(task.into()),
                    ],
                },
            )
            .expect("golden batch applies");
        let voters = BTreeSet::from([1u64]);
        let nodes = BTreeMap::from([(1u64, BasicNode::new("127.0.0.1:7377"))]);
        let membership = Membership::new(vec![voters], nodes);
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 3)),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(0, 0), 0)),
                membership,
            ),
            snapshot_id: "1-1-3".into(),
        };
        (meta, state)
    }

    /// Version 1 as this build first wrote it. NEVER EDIT: a store written by
    /// an older build must stay readable. A format change is a new version.
    const GOLDEN_V1: &str = concat!(
        "berth-store-snapshot v1\n",
        r#"{"meta":{"last_log_id":{"leader_id":{"term":1,"node_id":1},"index":3},"last_membership":{"log_id":{"leader_id":{"term":0,"node_id":0},"index":0},"membership":{"configs":[[1]],"nodes":{"1":{"addr":"127.0.0.1:7377"}}}},"snapshot_id":"1-1-3"},"state":{"index":3,"cluster":{"meta":{"id":"default","version":3,"created_at":"2023-11-14T22:13:20.000Z","updated_at":"2023-11-14T22:13:20.000Z"},"name":"berth","task_history_limit":5,"heartbeat_period":"5s"},"nodes":[],"services":[],"tasks":[{"meta":{"id":"t1","version":3,"created_at":"2023-11-14T22:13:20.000Z","updated_at":"2023-11-14T22:13:20.000Z"},"service_id":"s1","slot":1,"node_id":"n1","spec":{"runtime":"exec","command":["sleep","1000"],"args":[],"env":[],"dir":null,"restart_policy":{"condition":"any","delay":"5s","max_attempts":0,"window":"0s"},"resources":{"reservations":{"nano_cpus":0,"memory_bytes":0},"limits":{"nano_cpus":0,"memory_bytes":0}},"placement":{"constraints":[]},"stop_grace_period":"10s"},"spec_version":1,"desired_state":"running","status":{"state":"new","timestamp":"1970-01-01T00:00:00.000Z","message":"","err":null,"exit_code":null,"pid":null},"restarts":[]}]}}"#
    );

    #[test]
    fn golden_bytes_of_version_1_still_decode() {
        let (meta, state) = decode(GOLDEN_V1.as_bytes()).expect("golden v1 decodes");
        let (want_meta, _) = golden_content();
        assert_eq!(meta, want_meta);
        // Field by field rather than against a freshly built State, so that a
        // compatible change of the object model (a new defaulted field, new
        // defaults in TaskSpec::exec) does not break this test; an
        // incompatible one does.
        assert_eq!(state.index(), 3);
        assert_eq!(state.cluster().map(|c| c.name.as_str()), Some("berth"));
        let t = state.task("t1").expect("task t1");
        assert_eq!(t.meta.version, 3);
        assert_eq!(t.meta.created_at, Timestamp(1_700_000_000_000));
        assert_eq!(t.service_id, "s1");
        assert_eq!(t.desired_state, TaskState::Running);
        assert_eq!(state.tasks_by_node("n1").count(), 1, "indexes are rebuilt");
        assert_eq!(state.tasks_by_service("s1").count(), 1);
    }

    #[test]
    fn encode_writes_version_1_and_round_trips() {
        let (meta, state) = golden_content();
        let bytes = encode(&meta, &state).expect("encodes");
        assert!(bytes.starts_with(b"berth-store-snapshot v1\n"));
        let (m, s) = decode(&bytes).expect("decodes");
        assert_eq!((m, s), (meta, state));
    }

    #[test]
    fn a_paced_encoding_is_the_same_bytes() {
        let (meta, mut state) = golden_content();
        // Enough objects for several pauses.
        for i in 0..2_000 {
            let task = Task {
                meta: Meta::new(format!("bulk-{i}")),
                service_id: "s1".into(),
                slot: i,
                node_id: None,
                spec: TaskSpec::exec(["sleep", "1000"]),
                spec_version: 1,
                desired_state: TaskState::Running,
                status: TaskStatus::default(),
                restarts: vec![],
            };
            let batch = Batch {
                time: Timestamp(1_700_000_000_000),
                ops: vec![Op::Create(task.into())],
            };
            state.apply(4 + i, &batch).expect("applies");
        }
        let plain = encode(&meta, &state).expect("encodes");
        assert!(plain.len() > 2 * PACE_CHUNK, "{} bytes", plain.len());
        let paced = encode_paced(&meta, &state, 0, 0.5).expect("encodes");
        assert!(plain == paced, "paced encoding differs");
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let err = decode(b"berth-store-snapshot v2\n{}").unwrap_err();
        assert!(
            matches!(err, SnapshotError::UnsupportedVersion(ref v) if v == "2"),
            "{err}"
        );
        assert!(matches!(
            decode(b"{\"meta\":1}"),
            Err(SnapshotError::BadHeader)
        ));
        assert!(matches!(
            decode(b"berth-store-snapshot v1\n{\"meta\":"),
            Err(SnapshotError::Body(_))
        ));
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path()).expect("read").is_none());
        write_atomic(dir.path(), b"one").expect("write");
        write_atomic(dir.path(), b"two").expect("write");
        assert_eq!(
            read(dir.path()).expect("read").as_deref(),
            Some(&b"two"[..])
        );
        fs::write(dir.path().join(format!("{TMP_PREFIX}9.9")), b"partial").expect("write");
        remove_leftovers(dir.path()).expect("cleanup");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE)]);
    }
}
