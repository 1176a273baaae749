//! Failover time of the managers' Raft group: three managers in this process
//! on loopback (plain gRPC), the leader killed (its store stopped and its
//! server aborted), then writes through a surviving follower until one is
//! committed. Ten runs, each on a fresh cluster; prints every run and the
//! median next to the goal (1 s; SwarmKit takes 10-20 s).
//!
//! Run: `cargo bench -p store --bench failover`.

use api::rpc::{Connector, PlainConnector};
use api::{Meta, Op, Task, TaskSpec, TaskState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{raft_id, Store, StoreConfig};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

const RUNS: usize = 10;
const GOAL: Duration = Duration::from_secs(1);
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(20);

type Error = Box<dyn std::error::Error + Send + Sync>;

fn create(id: String) -> Vec<Op> {
    vec![Op::Create(
        Task {
            meta: Meta::new(id),
            service_id: "bench".into(),
            slot: 1,
            node_id: None,
            spec: TaskSpec::exec(["sleep", "1000"]),
            spec_version: 1,
            desired_state: TaskState::Running,
            status: Default::default(),
            restarts: vec![],
        }
        .into(),
    )]
}

struct Manager {
    store: Store,
    addr: String,
    server: JoinHandle<()>,
}

async fn start(dir: &std::path::Path, name: &str) -> Result<Manager, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let config = StoreConfig {
        node_id: raft_id(name),
        ..StoreConfig::new(dir.join(name))
    };
    let connector: Arc<dyn Connector> = Arc::new(PlainConnector);
    let store = Store::open_member(config, connector).await?;
    let service = store.raft_service();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(Manager {
        store,
        addr,
        server,
    })
}

/// One run: a fresh cluster of three, some writes, the leader killed.
async fn run() -> Result<Duration, Error> {
    let dir = tempfile::tempdir()?;
    let mut managers = Vec::new();
    for name in ["a", "b", "c"] {
        managers.push(start(dir.path(), name).await?);
    }
    managers[0].store.initialize(&managers[0].addr).await?;
    for m in &managers[1..] {
        managers[0]
            .store
            .add_manager(m.store.raft_id(), &m.addr)
            .await?;
    }
    for (i, m) in managers.iter().enumerate() {
        m.store.update(create(format!("before-{i}"))).await?;
    }
    let leader = managers
        .iter()
        .position(|m| m.store.is_leader())
        .ok_or("no leader")?;
    let survivor = (leader + 1) % managers.len();

    let killed = Instant::now();
    managers[leader].server.abort();
    managers[leader].store.shutdown().await?;
    let mut n = 0;
    let took = loop {
        n += 1;
        match managers[survivor]
            .store
            .update(create(format!("after-{n}")))
            .await
        {
            Ok(_) => break killed.elapsed(),
            Err(e) if e.is_retryable() && killed.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(2)).await
            }
            Err(e) => return Err(e.into()),
        }
    };
    for m in &managers {
        m.server.abort();
        m.store.shutdown().await?;
    }
    Ok(took)
}

fn main() -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut times = Vec::new();
    for i in 0..RUNS {
        let took = rt.block_on(run())?;
        println!(
            "run {:2}: leader killed -> write committed through a follower in {took:?}",
            i + 1
        );
        times.push(took);
    }
    times.sort();
    let median = (times[RUNS / 2 - 1] + times[RUNS / 2]) / 2;
    println!(
        "failover (3 managers, loopback): median {median:?} over {RUNS} runs, min {:?}, max {:?}; goal {GOAL:?} ({})",
        times[0],
        times[RUNS - 1],
        if median <= GOAL { "met" } else { "NOT met" }
    );
    Ok(())
}
