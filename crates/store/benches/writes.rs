//! Committed writes per second through the store, with fsync on every log
//! commit: one `update()` per write, each creating one small Task. Runs with 1
//! and with 64 concurrent writers, a fixed number of writes each time, three
//! runs per setting, and prints the median next to the goal.
//!
//! Run: `cargo bench -p store --bench writes` (data goes to a temporary
//! directory; set TMPDIR to measure a particular disk).

use api::{Meta, Op, Task, TaskSpec, TaskState};
use std::time::{Duration, Instant};
use store::{Store, StoreConfig};

const WRITES: usize = 5_000;
const RUNS: usize = 3;
/// Goal for 64 writers (issue 2).
const GOAL_64: f64 = 5_000.0;

fn task(id: String) -> Task {
    Task {
        meta: Meta::new(id),
        service_id: "bench".into(),
        slot: 1,
        node_id: Some("node-1".into()),
        spec: TaskSpec::exec(["sleep", "1000"]),
        spec_version: 1,
        desired_state: TaskState::Running,
        status: Default::default(),
        restarts: vec![],
    }
}

/// One run: a fresh store, `writers` tasks sharing `WRITES` updates.
async fn run(writers: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let count = WRITES / writers + usize::from(w < WRITES % writers);
        handles.push(tokio::spawn(async move {
            for i in 0..count {
                store
                    .update(vec![Op::Create(task(format!("w{w}-{i}")).into())])
                    .await?;
            }
            Ok::<_, store::StoreError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let elapsed = start.elapsed();
    let stored = store.view(|s| s.task_count());
    if stored != WRITES {
        return Err(format!("{stored} tasks stored, expected {WRITES}").into());
    }
    store.shutdown().await?;
    Ok(elapsed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("store writes: {WRITES} committed updates per run, median of {RUNS} runs, fsync per log commit");
    for writers in [1usize, 64] {
        let mut rates = Vec::new();
        for _ in 0..RUNS {
            let elapsed = rt.block_on(run(writers))?;
            rates.push(WRITES as f64 / elapsed.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[RUNS / 2];
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        let goal = if writers == 64 {
            format!(
                "goal >= {GOAL_64:.0}/s: {}",
                if median >= GOAL_64 { "met" } else { "NOT met" }
            )
        } else {
            "no goal (one writer waits for each fsync)".into()
        };
        println!(
            "{writers:>3} writer(s): median {median:.0} writes/s (runs: {}); {goal}",
            runs.join(", ")
        );
    }
    Ok(())
}
