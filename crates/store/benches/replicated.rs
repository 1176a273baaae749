//! Replicated writes per second and their latency: three berth managers
//! against a three-member etcd cluster (Debian's `etcd-server`, 3.4), in the
//! same run, both on loopback, both fsyncing on every member before a write
//! is acknowledged.
//!
//! - **berth**: three stores (`Store::open_member`) in this process, each
//!   serving its Raft service over plain gRPC on its own 127.79.1.x address;
//!   every member appends its log to its WAL with an fdatasync per group
//!   of writes. Each client write is one `berth.raft.Raft/Forward` call
//!   over loopback to the leader carrying one batch that creates one small
//!   task: the client pays a network hop (HTTP/2, encoding, the kernel's
//!   loopback) as etcd's clients do, and the leader's proposer batches
//!   concurrent calls into log entries exactly as it does for `update()`
//!   and for followers.
//! - **berth, in process** (secondary row): the same cluster, the clients
//!   calling `Store::update` on the leader directly, without the hop.
//! - **etcd**: three `etcd` processes on 127.79.0.x with their default
//!   durability (the WAL is fsynced before a member acknowledges), each put
//!   sent to the leader with a minimal client written here: etcd's
//!   `etcdserverpb.KV/Put` messages defined by hand for prost and called
//!   through tonic's generic client.
//!
//! Both sides send writes of the same size (the etcd value is as long as
//! the JSON of berth's batch) with distinct keys, through the same number of
//! HTTP/2 connections, from client tasks on a runtime of their own (two
//! threads). Each client writes sequentially; after a warm-up, writes are
//! counted and timed for a fixed window. Every configuration runs on fresh
//! clusters; each of the three runs measures every system at 1, 64 and 1,000
//! clients, alternating which system goes first, and the summary gives the
//! medians and the ratios next to the goal (at least etcd's throughput at an
//! equal or lower p99). Before each configuration the file system is
//! synced, so that none pays for the files the previous one deleted. CPU
//! per write is the CPU time of this process (the clients, and berth's
//! managers) plus that of the etcd processes, over the window, divided by
//! the writes.
//!
//! Run: `scripts/install-bench-deps.sh` (etcd), then
//! `cargo bench -p store --bench replicated`. Data goes to a temporary
//! directory (set TMPDIR to measure a particular disk);
//! `BERTH_BENCH_SECONDS` changes the measured window (default 5 s);
//! `BERTH_BENCH_ONLY=forward|update|etcd` and `BERTH_BENCH_CLIENTS=N` run
//! one configuration alone, to profile it; `BERTH_BENCH_NO_SNAPSHOTS=1`
//! keeps berth's managers from taking snapshots, to see what they cost.

use api::rpc::raft::{forward_reply::Outcome, raft_client::RaftClient, ForwardRequest};
use api::rpc::{Connector, PlainConnector};
use api::{Batch, Meta, Op, Task, TaskSpec, TaskState};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{raft_id, Store, StoreConfig};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};

type Error = Box<dyn std::error::Error + Send + Sync>;
/// One client's latencies in the window (µs) and its acknowledged writes.
type ClientResult = Result<(Vec<u32>, u64), Error>;

const CLIENTS: [usize; 3] = [1, 64, 1_000];
const RUNS: usize = 3;
const WARMUP: Duration = Duration::from_secs(2);
const DEFAULT_WINDOW: Duration = Duration::from_secs(5);
/// HTTP/2 connections the clients share (client `i` uses connection
/// `i % CONNECTIONS`), the same for every system.
const CONNECTIONS: usize = 8;
/// Bound of every wait for a cluster to form.
const WAIT: Duration = Duration::from_secs(30);
/// Bound of one write: a write slower than this fails the run.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// etcd's v3 API messages, only the fields used here; the field numbers are
/// those of etcd's published `etcdserverpb/rpc.proto`.
mod etcd {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        #[prost(int64, tag = "3")]
        pub revision: i64,
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(int64, tag = "3")]
        pub db_size: i64,
        #[prost(uint64, tag = "4")]
        pub leader: u64,
    }

    pub const PUT: &str = "/etcdserverpb.KV/Put";
    pub const STATUS: &str = "/etcdserverpb.Maintenance/Status";
}

/// One unary call through tonic's generic client with prost's codec.
async fn unary<Q, R>(channel: Channel, path: &'static str, request: Q) -> Result<R, tonic::Status>
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Q, R>::default();
    let reply = grpc
        .unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            codec,
        )
        .await?;
    Ok(reply.into_inner())
}

fn task(id: String) -> Task {
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
}

fn create(id: String) -> Vec<Op> {
    vec![Op::Create(task(id).into())]
}

/// What a `Forward` call carries for one write: one batch creating one task.
fn forward_body(id: String) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(&vec![Batch::new(create(id))])?)
}

/// The system under test, as one client sees it.
#[derive(Clone)]
enum Target {
    Forward(RaftClient<Channel>),
    Update(Store),
    Etcd {
        channel: Channel,
        value: Arc<Vec<u8>>,
    },
}

impl Target {
    async fn write(&mut self, client: usize, i: u64) -> Result<(), Error> {
        let id = format!("c{client}-{i}");
        match self {
            Target::Forward(raft) => {
                let batches = forward_body(id)?;
                let reply = raft.forward(ForwardRequest { batches }).await?.into_inner();
                match reply.outcome {
                    Some(Outcome::Applied(_)) => Ok(()),
                    other => Err(format!("forward was not applied: {other:?}").into()),
                }
            }
            Target::Update(store) => {
                store.update(create(id)).await?;
                Ok(())
            }
            Target::Etcd { channel, value } => {
                let request = etcd::PutRequest {
                    key: format!("bench/{id}").into_bytes(),
                    value: value.to_vec(),
                };
                let _: etcd::PutResponse = unary(channel.clone(), etcd::PUT, request).await?;
                Ok(())
            }
        }
    }
}

/// What one measurement found.
#[derive(Clone, Debug)]
struct Sample {
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time per write over the window: this process (the clients, and
    /// berth's managers), and the etcd processes.
    cpu_per_write: Duration,
    /// The share of it spent by this process.
    cpu_here_per_write: Duration,
    /// Every acknowledged write, warm-up included, for the check.
    acknowledged: u64,
}

fn cpu_ticks(pid: &str) -> Result<u64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it are
    // counted from its closing parenthesis. utime and stime are fields 14, 15.
    let rest = stat.rsplit_once(')').ok_or("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU ticks of this process, and of `pids` together.
fn cpu(pids: &[String]) -> Result<(u64, u64), Error> {
    let mut others = 0;
    for pid in pids {
        others += cpu_ticks(pid)?;
    }
    Ok((cpu_ticks("self")?, others))
}

/// Runs `clients` sequential writers against `targets` (one per connection)
/// for the warm-up and the window; `pids` are other processes whose CPU
/// counts towards the system's.
async fn drive(
    targets: Vec<Target>,
    clients: usize,
    window: Duration,
    pids: Vec<String>,
) -> Result<Sample, Error> {
    let begin = Instant::now();
    let measure_from = begin + WARMUP;
    let end = measure_from + window;
    let mut handles: Vec<JoinHandle<ClientResult>> = Vec::new();
    for c in 0..clients {
        let mut target = targets[c % targets.len()].clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                tokio::time::timeout(WRITE_TIMEOUT, target.write(c, i))
                    .await
                    .map_err(|_| format!("a write took more than {WRITE_TIMEOUT:?}"))??;
                i += 1;
                if start >= measure_from {
                    let micros = start.elapsed().as_micros();
                    latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
            }
            Ok((latencies, i))
        }));
    }
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = cpu(&pids)?;
        tokio::time::sleep_until(end.into()).await;
        let after = cpu(&pids)?;
        Ok::<_, Error>((after.0 - before.0, after.1 - before.1))
    });
    let mut all = Vec::new();
    let mut acknowledged = 0;
    for h in handles {
        let (latencies, n) = h.await??;
        all.extend(latencies);
        acknowledged += n;
    }
    let (here, others) = cpu.await??;
    if all.is_empty() {
        return Err("no write completed in the window".into());
    }
    all.sort_unstable();
    let at = |q: f64| {
        let i = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
        Duration::from_micros(u64::from(all[i]))
    };
    let per_write = |ticks: u64| {
        let secs = ticks as f64 / clock_ticks_per_second() as f64;
        Duration::from_secs_f64(secs / all.len() as f64)
    };
    Ok(Sample {
        rate: all.len() as f64 / window.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        cpu_per_write: per_write(here + others),
        cpu_here_per_write: per_write(here),
        acknowledged,
    })
}

// ------------------------------------------------------------------ berth

struct Manager {
    store: Store,
    addr: String,
    server: JoinHandle<()>,
}

struct Berth {
    rt: Runtime,
    managers: Vec<Manager>,
    leader: usize,
    _dir: tempfile::TempDir,
}

async fn start_manager(dir: &Path, i: u8) -> Result<Manager, Error> {
    let ip = Ipv4Addr::new(127, 79, 1, i);
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?.to_string();
    let name = format!("m{i}");
    let mut config = StoreConfig {
        node_id: raft_id(&name),
        ..StoreConfig::new(dir.join(&name))
    };
    if std::env::var_os("BERTH_BENCH_NO_SNAPSHOTS").is_some() {
        // Profiling only: what the snapshots cost.
        config.snapshot_every = u64::MAX / 2;
        config.snapshot_log_bytes = u64::MAX / 2;
    }
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

fn runtime() -> Result<Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

impl Berth {
    fn start() -> Result<Berth, Error> {
        let rt = runtime()?;
        let dir = tempfile::tempdir()?;
        let (managers, leader) = rt.block_on(async {
            let mut managers = Vec::new();
            for i in 1..=3 {
                managers.push(start_manager(dir.path(), i).await?);
            }
            managers[0].store.initialize(&managers[0].addr).await?;
            for m in &managers[1..] {
                managers[0]
                    .store
                    .add_manager(m.store.raft_id(), &m.addr)
                    .await?;
            }
            // One write through each manager: every one knows the leader.
            for (i, m) in managers.iter().enumerate() {
                m.store.update(create(format!("ready-{i}"))).await?;
            }
            let leader = managers
                .iter()
                .position(|m| m.store.is_leader())
                .ok_or("no leader among the managers")?;
            Ok::<_, Error>((managers, leader))
        })?;
        Ok(Berth {
            rt,
            managers,
            leader,
            _dir: dir,
        })
    }

    fn leader(&self) -> &Store {
        &self.managers[self.leader].store
    }

    /// Tasks in the leader's state, the ready writes left out.
    fn written(&self) -> usize {
        self.leader().view(|s| s.task_count()) - self.managers.len()
    }

    fn stop(self) -> Result<(), Error> {
        let Berth { rt, managers, .. } = self;
        rt.block_on(async {
            for m in &managers {
                m.server.abort();
                m.store.shutdown().await?;
            }
            Ok::<_, Error>(())
        })?;
        rt.shutdown_timeout(Duration::from_secs(5));
        Ok(())
    }
}

async fn channel(addr: &str) -> Result<Channel, Error> {
    Ok(Endpoint::try_from(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

fn measure_berth(
    clients_rt: &Runtime,
    clients: usize,
    window: Duration,
    in_process: bool,
) -> Result<Sample, Error> {
    let berth = Berth::start()?;
    let leader_addr = berth.managers[berth.leader].addr.clone();
    let leader = berth.leader().clone();
    let sample = clients_rt.block_on(async {
        let mut targets = Vec::new();
        for _ in 0..clients.min(CONNECTIONS) {
            targets.push(match in_process {
                true => Target::Update(leader.clone()),
                false => Target::Forward(RaftClient::new(channel(&leader_addr).await?)),
            });
        }
        drive(targets, clients, window, Vec::new()).await
    })?;
    let written = berth.written();
    if written as u64 != sample.acknowledged {
        return Err(format!(
            "berth: {} writes acknowledged but {written} tasks stored",
            sample.acknowledged
        )
        .into());
    }
    drop(leader);
    berth.stop()?;
    Ok(sample)
}

// ------------------------------------------------------------------- etcd

/// etcd's binary, from `PATH` or where Debian's package puts it.
fn etcd_binary() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"));
    in_path
        .chain([PathBuf::from("/usr/bin/etcd")])
        .find(|p| p.is_file())
}

/// A free port on `ip`, as the kernel picks one (released at once, so
/// another process could take it before etcd does; unlikely on 127.79.x).
fn free_port(ip: Ipv4Addr) -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

struct Etcd {
    children: Vec<Child>,
    leader: SocketAddr,
    /// The cluster's revision after the ready write.
    start_revision: i64,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Etcd {
    fn start(binary: &Path, rt: &Runtime) -> Result<Etcd, Error> {
        let dir = tempfile::tempdir()?;
        let mut members = Vec::new();
        for i in 1..=3u8 {
            let ip = Ipv4Addr::new(127, 79, 0, i);
            members.push((
                format!("m{i}"),
                SocketAddr::new(IpAddr::V4(ip), free_port(ip)?),
                SocketAddr::new(IpAddr::V4(ip), free_port(ip)?),
            ));
        }
        let initial_cluster: Vec<String> = members
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://{peer}"))
            .collect();
        let mut etcd = Etcd {
            children: Vec::new(),
            leader: members[0].1,
            start_revision: 0,
            _dir: dir,
        };
        for (name, client, peer) in &members {
            let log = std::fs::File::create(etcd._dir.path().join(format!("{name}.log")))?;
            let child = Command::new(binary)
                .arg("--name")
                .arg(name)
                .arg("--data-dir")
                .arg(etcd._dir.path().join(name))
                .arg("--listen-client-urls")
                .arg(format!("http://{client}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://{client}"))
                .arg("--listen-peer-urls")
                .arg(format!("http://{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://{peer}"))
                .arg("--initial-cluster")
                .arg(initial_cluster.join(","))
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--initial-cluster-token")
                .arg("berth-bench")
                .arg("--logger")
                .arg("zap")
                .arg("--log-level")
                .arg("warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            etcd.children.push(child);
        }
        let clients: Vec<SocketAddr> = members.iter().map(|(_, c, _)| *c).collect();
        let (leader, revision) = rt.block_on(etcd_ready(&clients))?;
        etcd.leader = leader;
        etcd.start_revision = revision;
        Ok(etcd)
    }

    fn pids(&self) -> Vec<String> {
        self.children.iter().map(|c| c.id().to_string()).collect()
    }
}

/// Waits until the members agree on a leader and a put through it is
/// acknowledged; answers the leader's client address and the revision.
async fn etcd_ready(clients: &[SocketAddr]) -> Result<(SocketAddr, i64), Error> {
    let deadline = Instant::now() + WAIT;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match etcd_leader(clients).await {
            Ok(leader) => {
                let put = etcd::PutRequest {
                    key: b"bench/ready".to_vec(),
                    value: b"1".to_vec(),
                };
                match etcd_put(leader, put).await {
                    Ok(revision) => return Ok((leader, revision)),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("etcd did not form a cluster within {WAIT:?}: {last}").into())
}

async fn etcd_leader(clients: &[SocketAddr]) -> Result<SocketAddr, Error> {
    let mut leader_id = None;
    let mut ids = Vec::new();
    for addr in clients {
        let status: etcd::StatusResponse = unary(
            channel(&addr.to_string()).await?,
            etcd::STATUS,
            etcd::StatusRequest {},
        )
        .await?;
        let header = status.header.ok_or("status without a header")?;
        if status.leader == 0 {
            return Err(format!("member {addr} knows no leader yet").into());
        }
        if leader_id.is_some_and(|l| l != status.leader) {
            return Err("the members name different leaders".into());
        }
        leader_id = Some(status.leader);
        ids.push((header.member_id, *addr));
    }
    ids.into_iter()
        .find(|(id, _)| Some(*id) == leader_id)
        .map(|(_, addr)| addr)
        .ok_or_else(|| "the leader is not one of the members".into())
}

async fn etcd_put(addr: SocketAddr, put: etcd::PutRequest) -> Result<i64, Error> {
    let reply: etcd::PutResponse = unary(channel(&addr.to_string()).await?, etcd::PUT, put).await?;
    Ok(reply.header.ok_or("put without a header")?.revision)
}

fn measure_etcd(
    binary: &Path,
    clients_rt: &Runtime,
    clients: usize,
    window: Duration,
    value_len: usize,
) -> Result<Sample, Error> {
    let etcd = Etcd::start(binary, clients_rt)?;
    let value = Arc::new(vec![b'x'; value_len]);
    let (sample, revision) = clients_rt.block_on(async {
        let mut targets = Vec::new();
        for _ in 0..clients.min(CONNECTIONS) {
            targets.push(Target::Etcd {
                channel: channel(&etcd.leader.to_string()).await?,
                value: value.clone(),
            });
        }
        let sample = drive(targets, clients, window, etcd.pids()).await?;
        let last = etcd::PutRequest {
            key: b"bench/last".to_vec(),
            value: b"1".to_vec(),
        };
        let revision = etcd_put(etcd.leader, last).await?;
        Ok::<_, Error>((sample, revision))
    })?;
    // Every put makes one revision: the last one counts them.
    let counted = revision - etcd.start_revision - 1;
    if counted != sample.acknowledged as i64 {
        return Err(format!(
            "etcd: {} puts acknowledged but the revision moved by {counted}",
            sample.acknowledged
        )
        .into());
    }
    drop(etcd);
    Ok(sample)
}

// ------------------------------------------------------------------- main

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    BerthForward,
    BerthUpdate,
    Etcd,
}

impl System {
    fn key(self) -> &'static str {
        match self {
            System::BerthForward => "forward",
            System::BerthUpdate => "update",
            System::Etcd => "etcd",
        }
    }

    fn label(self) -> &'static str {
        match self {
            System::BerthForward => "berth (Forward RPC)",
            System::BerthUpdate => "berth (in-process update)",
            System::Etcd => "etcd 3.4",
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), Error> {
    let Some(binary) = etcd_binary() else {
        eprintln!(
            "replicated: etcd is not installed; this benchmark compares berth with a 3-member etcd cluster.\n\
             Install it with `scripts/install-bench-deps.sh` (Debian's etcd-server package), then run\n\
             `cargo bench -p store --bench replicated` again."
        );
        std::process::exit(2);
    };
    let window = std::env::var("BERTH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_WINDOW);
    let value_len = forward_body("c999-99999".into())?.len();
    let version = Command::new(&binary).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout);
    println!(
        "replicated writes: 3 members on loopback, fsync per commit on every member; {} ({})",
        version.lines().next().unwrap_or("etcd"),
        binary.display()
    );
    println!(
        "each write: {value_len} bytes (berth: one batch creating one task; etcd: a value of the same length), \
         distinct keys; warm-up {WARMUP:?}, window {window:?}, {CONNECTIONS} connections at most, {RUNS} runs"
    );
    let clients_rt = runtime()?;
    let systems = [System::BerthForward, System::Etcd, System::BerthUpdate];
    // For profiling one configuration: BERTH_BENCH_ONLY=forward|update|etcd
    // and BERTH_BENCH_CLIENTS=N skip the others (the summary then has gaps).
    let only = std::env::var("BERTH_BENCH_ONLY").ok();
    let only_clients: Option<usize> = std::env::var("BERTH_BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok());
    // samples[clients index][system index] = one sample per run
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); systems.len()]; CLIENTS.len()];
    for run in 0..RUNS {
        for (ci, &clients) in CLIENTS.iter().enumerate() {
            if only_clients.is_some_and(|n| n != clients) {
                continue;
            }
            // Alternate which of the two compared systems goes first.
            let order: Vec<usize> = match run % 2 {
                0 => vec![0, 1, 2],
                _ => vec![1, 0, 2],
            };
            for si in order {
                let system = systems[si];
                if only.as_deref().is_some_and(|o| o != system.key()) {
                    continue;
                }
                // Each configuration starts on a quiet disk: the previous
                // cluster's files were deleted as it stopped, and what that
                // leaves the file system to do (journal commits, and
                // discards where it is mounted with `discard`) would
                // otherwise fall in this one's window and slow its fsyncs.
                nix::unistd::sync();
                let sample = match system {
                    System::BerthForward => measure_berth(&clients_rt, clients, window, false)?,
                    System::BerthUpdate => measure_berth(&clients_rt, clients, window, true)?,
                    System::Etcd => measure_etcd(&binary, &clients_rt, clients, window, value_len)?,
                };
                println!(
                    "run {} | {clients:>5} clients | {:<26} | {:>8.0} writes/s | p50 {:>9} | p99 {:>9} | CPU {:>6.1} µs/write ({:.1} in this process)",
                    run + 1,
                    system.label(),
                    sample.rate,
                    ms(sample.p50),
                    ms(sample.p99),
                    sample.cpu_per_write.as_secs_f64() * 1e6,
                    sample.cpu_here_per_write.as_secs_f64() * 1e6,
                );
                samples[ci][si].push(sample);
            }
        }
    }
    println!();
    println!("medians of {RUNS} runs:");
    println!(
        "| clients | system | writes/s | p50 | p99 | CPU per write (all processes) |\n|---|---|---|---|---|---|"
    );
    let mut verdicts = Vec::new();
    for (ci, &clients) in CLIENTS.iter().enumerate() {
        let mut medians = Vec::new();
        for (si, system) in systems.iter().enumerate() {
            let s = &samples[ci][si];
            if s.is_empty() {
                medians.push((f64::NAN, f64::NAN));
                continue;
            }
            let rate = median(s.iter().map(|x| x.rate).collect());
            let p50 = median(s.iter().map(|x| x.p50.as_secs_f64()).collect());
            let p99 = median(s.iter().map(|x| x.p99.as_secs_f64()).collect());
            let cpu = median(s.iter().map(|x| x.cpu_per_write.as_secs_f64()).collect());
            let here = median(
                s.iter()
                    .map(|x| x.cpu_here_per_write.as_secs_f64())
                    .collect(),
            );
            println!(
                "| {clients} | {} | {rate:.0} | {:.2} ms | {:.2} ms | {:.0} µs ({:.0} µs in the bench process) |",
                system.label(),
                p50 * 1e3,
                p99 * 1e3,
                cpu * 1e6,
                here * 1e6
            );
            medians.push((rate, p99));
        }
        let (berth, etcd) = (medians[0], medians[1]);
        if berth.0.is_nan() || etcd.0.is_nan() {
            continue;
        }
        let met = berth.0 >= etcd.0 && berth.1 <= etcd.1;
        verdicts.push(format!(
            "{clients:>5} clients: berth/etcd throughput {:.2}x, p99 {:.2}x; goal (throughput >= etcd at p99 <= etcd): {}",
            berth.0 / etcd.0,
            berth.1 / etcd.1,
            if met { "met" } else { "NOT met" }
        ));
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }
    Ok(())
}
