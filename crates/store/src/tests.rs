//! Tests of the whole store: Raft, the WAL, state machine and snapshots
//! together, on a temporary directory.

use super::*;
use api::{
    ApplyError, Kind, Meta, Op, Service, ServiceMode, ServiceSpec, Task, TaskSpec, TaskState,
};
use std::time::Instant;
use tokio::sync::broadcast::error::TryRecvError;

const WAIT: Duration = Duration::from_secs(20);

fn task(id: &str) -> Task {
    Task {
        meta: Meta::new(id),
        service_id: "s1".into(),
        slot: 1,
        node_id: Some("n1".into()),
        spec: TaskSpec::exec(["sleep", "1000"]),
        spec_version: 1,
        desired_state: TaskState::Running,
        status: Default::default(),
        restarts: vec![],
    }
}

fn service(id: &str, name: &str) -> Service {
    Service::new(
        id,
        ServiceSpec {
            name: name.into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 1 },
            task_template: TaskSpec::exec(["sleep", "1"]),
            update_config: Default::default(),
            rollback_config: Default::default(),
        },
    )
}

fn create(t: Task) -> Vec<Op> {
    vec![Op::Create(t.into())]
}

/// Opens `config`, retrying while the previous store on the same directory is
/// still releasing its log (it does so in the background when dropped).
async fn reopen(config: &StoreConfig) -> Store {
    let deadline = Instant::now() + WAIT;
    loop {
        match Store::open(config.clone()).await {
            Ok(s) => return s,
            Err(StoreError::Unavailable(e))
                if e.contains("in use") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("reopening the store: {e}"),
        }
    }
}

/// Waits until the Raft metrics satisfy `f`, or fails with `what`.
async fn wait_metrics(
    store: &Store,
    what: &str,
    f: impl Fn(&RaftMetrics<NodeId, openraft::BasicNode>) -> bool + Send,
) {
    store
        .inner
        .core
        .raft
        .wait(Some(WAIT))
        .metrics(f, what)
        .await
        .unwrap_or_else(|e| panic!("waiting until {what}: {e}"));
}

#[tokio::test]
async fn open_update_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path()))
        .await
        .expect("open");
    assert!(store.is_leader());
    let change = store.update(create(task("t1"))).await.expect("update");
    assert_eq!(change.events.len(), 1);
    store.view(|s| {
        let t = s.task("t1").expect("task stored");
        assert_eq!(t.meta.version, change.index, "version is the entry's index");
        assert!(
            t.meta.created_at.as_millis() > 0,
            "time comes from the proposer"
        );
        assert_eq!(s.index(), change.index);
    });
    store.shutdown().await.expect("shutdown");
    assert!(!store.is_leader());
    let err = store.update(create(task("t2"))).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(_)) && err.is_retryable(),
        "{err}"
    );
}

#[tokio::test]
async fn stale_version_is_refused_and_nothing_of_the_batch_is_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path()))
        .await
        .expect("open");
    store
        .update(vec![Op::Create(service("s1", "web").into())])
        .await
        .expect("create");
    let mut stale = store.view(|s| s.service("s1").cloned()).expect("service");
    let good_version = stale.meta.version;
    stale.meta.version -= 1;
    stale.spec.name = "renamed".into();
    let err = store
        .update(vec![
            Op::Create(task("t1").into()),
            Op::Update(stale.into()),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Apply(ApplyError::Conflict { actual, .. }) if actual == good_version),
        "{err}"
    );
    assert!(!err.is_retryable());
    store.view(|s| {
        assert!(s.task("t1").is_none(), "the batch's create was rolled back");
        assert_eq!(s.service("s1").map(|s| s.spec.name.as_str()), Some("web"));
    });
    store.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn watch_receives_changes_in_order_and_not_refused_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path()))
        .await
        .expect("open");
    let mut rx = store.watch();
    let mut want = Vec::new();
    for i in 0..20 {
        want.push(
            store
                .update(create(task(&format!("t{i}"))))
                .await
                .expect("update")
                .index,
        );
    }
    let dup = store.update(create(task("t0"))).await.unwrap_err();
    assert!(
        matches!(dup, StoreError::Apply(ApplyError::AlreadyExists { .. })),
        "{dup}"
    );
    // An update with no effect (status for a missing task) is not published either.
    store
        .update(vec![Op::SetTaskStatus {
            id: "gone".into(),
            status: Default::default(),
        }])
        .await
        .expect("no-op update");
    let last = store
        .update(vec![Op::Delete {
            kind: Kind::Task,
            id: "t0".into(),
            version: None,
        }])
        .await
        .expect("delete");
    want.push(last.index);

    let mut got = Vec::new();
    while got.len() < want.len() {
        let change = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a change within the wait")
            .expect("no lag");
        assert!(!change.events.is_empty());
        got.push(change.index);
    }
    assert_eq!(got, want);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    store.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn reopen_after_drop_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path());
    let store = Store::open(config.clone()).await.expect("open");
    let mut last = 0;
    for i in 0..50 {
        last = store
            .update(create(task(&format!("t{i}"))))
            .await
            .expect("update")
            .index;
    }
    drop(store);

    let store = reopen(&config).await;
    store.view(|s| {
        assert_eq!(s.task_count(), 50);
        assert!(
            s.index() > last,
            "the reopen barrier follows the old entries"
        );
    });
    let next = store
        .update(create(task("after")))
        .await
        .expect("update after reopen");
    assert!(next.index > last);
    store.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn reopen_after_a_crash_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path());
    let store = Store::open(config.clone()).await.expect("open");
    // Writers still in flight when the crash hits may or may not survive;
    // every one that was acknowledged must.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (store, acked) = (store.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i}");
                match store.update(create(task(&id))).await {
                    Ok(_) => acked.lock().expect("lock").push(id),
                    Err(_) => break,
                }
            }
        }));
    }
    let deadline = Instant::now() + WAIT;
    while acked.lock().expect("lock").len() < 200 {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.crash().await;
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("lock").clone();
    drop(store);

    let store = reopen(&config).await;
    store.view(|s| {
        for id in &acked {
            assert!(s.task(id).is_some(), "acknowledged write {id} was lost");
        }
    });
    store.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn reopen_after_snapshot_and_purge_keeps_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        snapshot_every: 10,
        // Small segments, so that purging has whole ones to delete.
        log_segment_bytes: 4 << 10,
        ..StoreConfig::new(dir.path())
    };
    let store = Store::open(config.clone()).await.expect("open");
    let mut last = 0;
    for i in 0..200 {
        last = store
            .update(create(task(&format!("t{i}"))))
            .await
            .expect("update")
            .index;
    }
    // Snapshots are built in the background, and openraft starts one only
    // as an entry is applied with none under way: on a loaded machine the
    // last may have been skipped while an earlier one was still being
    // built. Further writes (bounded) make a late one come, as they would.
    let late = |last: u64| {
        move |m: &RaftMetrics<NodeId, openraft::BasicNode>| {
            m.snapshot.map(|s| s.index).unwrap_or(0) + 10 >= last
                && m.purged.map(|p| p.index).unwrap_or(0) + LOG_KEPT_AFTER_SNAPSHOT + 10 >= last
        }
    };
    let mut writes: usize = 200;
    loop {
        let reached = store
            .inner
            .core
            .raft
            .wait(Some(Duration::from_secs(2)))
            .metrics(late(last), "a late snapshot is built and the log purged")
            .await
            .is_ok();
        if reached {
            break;
        }
        assert!(writes < 260, "no late snapshot after {writes} writes");
        last = store
            .update(create(task(&format!("t{writes}"))))
            .await
            .expect("update")
            .index;
        writes += 1;
    }
    store.shutdown().await.expect("shutdown");

    let (indexes, purged, segments) = log_store::disk_log_indexes(dir.path()).expect("log");
    let purged = purged.expect("the purge is recorded").index;
    assert!(purged >= 100, "purged only up to {purged}");
    // Whole segments go: only the one the purge cut through keeps entries
    // behind it (a 4 KiB segment holds a handful of these entries).
    let behind = indexes.iter().filter(|&&i| i <= purged).count();
    assert!(
        behind < 10,
        "{behind} entries at or below {purged} left in {segments} segments: {indexes:?}"
    );
    assert!(
        indexes.len() < 100,
        "{} entries left on disk",
        indexes.len()
    );
    assert!(dir.path().join("snapshot").exists());

    let store = reopen(&config).await;
    store.view(|s| {
        assert_eq!(s.task_count(), writes);
        assert!(s.index() > last);
    });
    store
        .update(create(task("after")))
        .await
        .expect("update after reopen");
    store.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_past_its_byte_budget_is_snapshotted_and_purged() {
    // The entry count never reaches `snapshot_every`: only the size can
    // trigger the snapshot (large batched entries must not grow the log forever).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        snapshot_every: 1_000_000,
        snapshot_log_bytes: 32 << 10,
        log_segment_bytes: 4 << 10,
        ..StoreConfig::new(dir.path())
    };
    let store = Store::open(config.clone()).await.expect("open");
    let mut last = 0;
    for i in 0..200 {
        last = store
            .update(create(task(&format!("t{i}"))))
            .await
            .expect("update")
            .index;
    }
    wait_metrics(&store, "a snapshot by size and the purge behind it", |m| {
        m.snapshot.is_some() && m.purged.is_some()
    })
    .await;
    store.shutdown().await.expect("shutdown");
    let (indexes, purged, _) = log_store::disk_log_indexes(dir.path()).expect("log");
    let purged = purged.expect("the purge is recorded").index;
    assert!(
        indexes.len() < 200,
        "{} entries left on disk after purging to {purged}",
        indexes.len()
    );
    let store = reopen(&config).await;
    store.view(|s| {
        assert_eq!(s.task_count(), 200);
        assert!(s.index() >= last);
    });
    store.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_from_64_tasks_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path()))
        .await
        .expect("open");
    let mut writers = Vec::new();
    for w in 0..64 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut indexes = Vec::new();
            for i in 0..20 {
                let change = store
                    .update(create(task(&format!("w{w}-{i}"))))
                    .await
                    .expect("update");
                indexes.push(change.index);
            }
            indexes
        }));
    }
    for w in writers {
        let indexes = w.await.expect("writer");
        assert!(
            indexes.windows(2).all(|p| p[0] < p[1]),
            "one writer's updates apply in order"
        );
    }
    assert_eq!(store.view(|s| s.task_count()), 64 * 20);
    store.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_store_answers_unavailable_instead_of_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig {
        write_timeout: Duration::from_millis(300),
        ..StoreConfig::new(dir.path())
    })
    .await
    .expect("open");
    let stuck = store.clone();
    // Holding the state's write lock stalls the state machine, as a wedged
    // Raft would: the entry commits but is never applied in time.
    let guard = store.inner.core.shared.write();
    let handle = tokio::spawn(async move { stuck.update(create(task("t1"))).await });
    let deadline = Instant::now() + WAIT;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "update() hung past its timeout");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(guard);
    let err = handle.await.expect("update task");
    let err = err.unwrap_err();
    // Proposed, so its outcome is unknown to the caller.
    assert!(err.outcome_unknown() && err.is_retryable(), "{err}");
    // Once unstuck, the write that timed out is applied after all.
    wait_metrics(&store, "the stalled entry is applied", |m| {
        m.last_applied.map(|l| l.index) == m.last_log_index
    })
    .await;
    assert!(store.view(|s| s.task("t1").is_some()));
    store.shutdown().await.expect("shutdown");
}

/// The last segment of the WAL in `dir` and where its data ends (the rest
/// of the preallocated file is zeros).
fn last_segment(dir: &Path) -> (PathBuf, usize) {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join(log_store::WAL_DIR))
        .expect("the WAL")
        .flatten()
        .map(|e| e.path())
        .collect();
    segments.sort();
    let path = segments.pop().expect("a segment");
    let bytes = std::fs::read(&path).expect("read");
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (path, end)
}

#[tokio::test]
async fn a_torn_write_at_the_tail_is_cut_off_and_every_acknowledged_write_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path());
    let store = Store::open(config.clone()).await.expect("open");
    for i in 0..30 {
        store
            .update(create(task(&format!("t{i}"))))
            .await
            .expect("update");
    }
    store.crash().await;
    drop(store);
    // What a crash in the middle of the next write leaves: a frame header
    // that promises more than reached the disk, and some of its bytes.
    let (path, end) = last_segment(dir.path());
    let mut torn = 4000u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0x5a; 4]);
    torn.extend_from_slice(br#"{"log_id":{"leader_id":{"term":1,"#);
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open the segment");
        file.write_all_at(&torn, end as u64).expect("write");
    }

    let store = reopen(&config).await;
    store.view(|s| {
        for i in 0..30 {
            assert!(s.task(&format!("t{i}")).is_some(), "t{i} was lost");
        }
    });
    store
        .update(create(task("after")))
        .await
        .expect("a write after the cut");
    store.shutdown().await.expect("shutdown");
    let store = reopen(&config).await;
    assert!(store.view(|s| s.task("after").is_some() && s.task_count() == 31));
    store.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_damaged_frame_before_the_tail_stops_the_store_from_opening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path());
    let store = Store::open(config.clone()).await.expect("open");
    for i in 0..10 {
        store
            .update(create(task(&format!("t{i}"))))
            .await
            .expect("update");
    }
    store.shutdown().await.expect("shutdown");
    drop(store);
    let (path, end) = last_segment(dir.path());
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[end / 2] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let err = Store::open(config).await.expect_err("refused");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Storage(_))
            && text.contains(&path.display().to_string())
            && text.contains("offset"),
        "{text}"
    );
}

#[tokio::test]
async fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path());
    let store = Store::open(config.clone()).await.expect("open");
    let err = Store::open(config.clone()).await.expect_err("refused");
    assert!(
        matches!(&err, StoreError::Unavailable(e) if e.contains("in use")),
        "{err}"
    );
    store.shutdown().await.expect("shutdown");
    let store = Store::open(config).await.expect("free once shut down");
    store.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_store_with_the_redb_log_of_an_earlier_build_opens_with_its_state() {
    // A log as the old builds left it: made here by a store, then written
    // in the old layout in a directory of its own.
    let made = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(made.path()))
        .await
        .expect("open");
    let mut last = 0;
    for i in 0..20 {
        last = store
            .update(create(task(&format!("t{i}"))))
            .await
            .expect("update")
            .index;
    }
    store.shutdown().await.expect("shutdown");
    let (_, old) = crate::wal::Wal::open(
        &made.path().join(log_store::WAL_DIR),
        StoreConfig::new(made.path()).wal_options(),
    )
    .expect("the WAL");
    let entries: Vec<_> = old.entries.values().cloned().collect();
    assert!(entries.len() as u64 >= last);

    let dir = tempfile::tempdir().expect("tempdir");
    // Directories from before `raft_id` existed have none: node 1's.
    migrate::write_old_redb(
        &dir.path().join(migrate::REDB_FILE),
        &entries,
        old.vote,
        old.committed,
        old.last_purged,
    );
    let config = StoreConfig::new(dir.path());
    let store = Store::open(config.clone())
        .await
        .expect("open the old directory");
    store.view(|s| {
        assert_eq!(s.task_count(), 20);
        assert!(s.index() > last, "the log goes on after the old entries");
    });
    assert!(!dir.path().join(migrate::REDB_FILE).exists());
    assert!(dir.path().join(log_store::WAL_DIR).is_dir());
    store
        .update(create(task("after")))
        .await
        .expect("update after the move");
    store.shutdown().await.expect("shutdown");
    let store = reopen(&config).await;
    assert_eq!(store.view(|s| s.task_count()), 21);
    store.shutdown().await.expect("shutdown");
}
