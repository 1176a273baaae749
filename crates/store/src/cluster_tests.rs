//! In-process clusters of three managers: each store serves its Raft service
//! on its own tonic server on 127.0.0.1, and reaches the others through a
//! test [`Connector`] that can cut a manager off (refusing its connections
//! both ways and shutting down the ones it had), as a crash would, or
//! silence it (its connections stay open but carry nothing either way, and
//! new ones never complete), as a firewall that drops packets does.
//! Failover times are printed (`cargo test -p store -- --nocapture`).

use super::*;
use api::rpc::raft::raft_server::RaftServer;
use api::{ApplyError, Meta, Op, Task, TaskSpec, TaskState};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};

/// Bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);
/// "Fast", for a write refused for lost quorum: well under the 10 s timeout.
const FAST: Duration = Duration::from_secs(2);

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

fn create(id: &str) -> Vec<Op> {
    vec![Op::Create(task(id).into())]
}

/// Which managers are cut off, and the live connections to shut down when
/// one is; which are silenced, and who waits for a silence to end. Shared by
/// every manager's connector and server.
#[derive(Default)]
struct Net {
    cut: Mutex<HashSet<String>>,
    conns: Mutex<Vec<(String, String, std::net::TcpStream)>>,
    /// Connections made by these addresses carry nothing, either way.
    silent_from: Mutex<HashSet<String>>,
    /// Connections made to these addresses carry nothing, either way.
    silent_to: Mutex<HashSet<String>>,
    /// Reads, writes and connects held by a silence, woken when one ends.
    held: Mutex<Vec<Waker>>,
}

impl Net {
    /// Whether the connection that `from` makes to `to` carries nothing.
    fn is_silent(&self, from: &str, to: &str) -> bool {
        self.silent_from.lock().expect("lock").contains(from)
            || self.silent_to.lock().expect("lock").contains(to)
    }

    /// Ready once the connection from `from` to `to` carries data.
    fn poll_passable(&self, from: &str, to: &str, cx: &mut Context<'_>) -> Poll<()> {
        if !self.is_silent(from, to) {
            return Poll::Ready(());
        }
        self.held.lock().expect("lock").push(cx.waker().clone());
        // Checked again now that the waker is registered: a silence that
        // ended in between has already drained the list.
        if self.is_silent(from, to) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Silences `addr`: what it sends and what is sent to it is dropped
    /// from now on, as by a firewall: open connections stall, new ones never
    /// complete, nobody is told.
    fn silence(&self, addr: &str) {
        self.silent_from
            .lock()
            .expect("lock")
            .insert(addr.to_string());
        self.silent_to
            .lock()
            .expect("lock")
            .insert(addr.to_string());
    }

    /// Silences only the connections `addr` makes (its replication,
    /// heartbeats and probes), not those the others make to it.
    fn silence_outgoing(&self, addr: &str) {
        self.silent_from
            .lock()
            .expect("lock")
            .insert(addr.to_string());
    }

    /// Ends the silence of `addr`; what was held goes through.
    fn unsilence(&self, addr: &str) {
        self.silent_from.lock().expect("lock").remove(addr);
        self.silent_to.lock().expect("lock").remove(addr);
        for w in std::mem::take(&mut *self.held.lock().expect("lock")) {
            w.wake();
        }
    }

    fn is_cut(&self, from: &str, to: &str) -> bool {
        let cut = self.cut.lock().expect("lock");
        cut.contains(from) || cut.contains(to)
    }

    /// Cuts `addr` off: new connections from or to it are refused, open
    /// ones are shut down (their reads see the end, their writes fail).
    fn cut(&self, addr: &str) {
        self.cut.lock().expect("lock").insert(addr.to_string());
        self.conns.lock().expect("lock").retain(|(from, to, s)| {
            if from == addr || to == addr {
                let _ = s.shutdown(std::net::Shutdown::Both);
                false
            } else {
                true
            }
        });
    }

    fn heal(&self, addr: &str) {
        self.cut.lock().expect("lock").remove(addr);
    }
}

/// The connector of the manager at `from`.
struct NetConnector {
    net: Arc<Net>,
    from: String,
}

impl Connector for NetConnector {
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let endpoint = Endpoint::try_from(format!("http://{addr}"))?;
        let (net, from, to) = (self.net.clone(), self.from.clone(), addr.to_string());
        Ok(endpoint.connect_with_connector_lazy(tower::service_fn(
            move |_: tonic::codegen::http::Uri| {
                let (net, from, to) = (net.clone(), from.clone(), to.clone());
                async move {
                    let refused = || {
                        std::io::Error::new(
                            std::io::ErrorKind::ConnectionRefused,
                            "cut by the test",
                        )
                    };
                    if net.is_cut(&from, &to) {
                        return Err(refused());
                    }
                    // A silenced link drops the handshake: the connection
                    // completes only once the silence ends.
                    std::future::poll_fn(|cx| net.poll_passable(&from, &to, cx)).await;
                    let stream = tokio::net::TcpStream::connect(&to).await?;
                    stream.set_nodelay(true)?;
                    let stream = stream.into_std()?;
                    let handle = stream.try_clone()?;
                    let stream = tokio::net::TcpStream::from_std(stream)?;
                    {
                        let mut conns = net.conns.lock().expect("lock");
                        // Checked again under the lock that `cut` takes, so a
                        // cut cannot slip between the check and the record.
                        if net.is_cut(&from, &to) {
                            return Err(refused());
                        }
                        conns.push((from.clone(), to.clone(), handle));
                    }
                    let link = Link {
                        io: stream,
                        net,
                        from,
                        to,
                    };
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(link))
                }
            },
        )))
    }
}

/// One connection, made by the manager at `from` to the one at `to`: while
/// the link is silenced its reads and writes wait, so nothing goes through
/// either way (what the server sent meanwhile arrives once it ends, as TCP
/// would retransmit it).
struct Link {
    io: tokio::net::TcpStream,
    net: Arc<Net>,
    from: String,
    to: String,
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.net.poll_passable(&this.from, &this.to, cx));
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.net.poll_passable(&this.from, &this.to, cx));
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.net.poll_passable(&this.from, &this.to, cx));
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A cut manager's server refuses every call, too.
#[derive(Clone)]
struct Refuser {
    net: Arc<Net>,
    me: String,
}

impl tonic::service::Interceptor for Refuser {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.net.is_cut(&self.me, &self.me) {
            Err(tonic::Status::unavailable("cut by the test"))
        } else {
            Ok(req)
        }
    }
}

/// One manager: its store, its address and its server.
struct Manager {
    store: Store,
    addr: String,
    config: StoreConfig,
    server: JoinHandle<()>,
}

impl Manager {
    fn id(&self) -> u64 {
        self.store.raft_id()
    }
}

struct Cluster {
    net: Arc<Net>,
    dir: tempfile::TempDir,
    managers: Vec<Option<Manager>>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            net: Arc::new(Net::default()),
            dir: tempfile::tempdir().expect("tempdir"),
            managers: Vec::new(),
        }
    }

    /// Opens manager `name` as a member (nothing founded) and serves it.
    async fn start(&mut self, name: &str) -> usize {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let config = StoreConfig {
            node_id: raft_id(name),
            ..StoreConfig::new(self.dir.path().join(name))
        };
        let store = Store::open_member(config.clone(), self.connector(&addr))
            .await
            .expect("open member");
        let server = self.serve(&store, &addr, listener);
        self.managers.push(Some(Manager {
            store,
            addr,
            config,
            server,
        }));
        self.managers.len() - 1
    }

    fn connector(&self, addr: &str) -> Arc<dyn Connector> {
        Arc::new(NetConnector {
            net: self.net.clone(),
            from: addr.to_string(),
        })
    }

    fn serve(
        &self,
        store: &Store,
        addr: &str,
        listener: tokio::net::TcpListener,
    ) -> JoinHandle<()> {
        let refuse = Refuser {
            net: self.net.clone(),
            me: addr.to_string(),
        };
        let service: InterceptedService<RaftServer<rpc::RaftService>, Refuser> =
            InterceptedService::new(store.raft_service(), refuse);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                eprintln!("test server stopped: {e}");
            }
        })
    }

    fn m(&self, i: usize) -> &Manager {
        self.managers[i].as_ref().expect("manager is running")
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Manager)> {
        self.managers
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    }

    /// Three managers: the first founds the group and adds the second; the
    /// third is added through the second, a follower.
    async fn three() -> Cluster {
        let mut c = Cluster::new();
        let a = c.start("manager-a").await;
        c.m(a)
            .store
            .initialize(&c.m(a).addr)
            .await
            .expect("initialize");
        let b = c.start("manager-b").await;
        c.m(a)
            .store
            .add_manager(c.m(b).id(), &c.m(b).addr)
            .await
            .expect("add b");
        let d = c.start("manager-c").await;
        c.m(b)
            .store
            .add_manager(c.m(d).id(), &c.m(d).addr)
            .await
            .expect("add c through a follower");
        c.wait_for_leader(&[0, 1, 2]).await;
        c
    }

    /// Waits until all of `among` agree on a leader that is one of them.
    async fn wait_for_leader(&self, among: &[usize]) -> usize {
        let start = Instant::now();
        loop {
            let leaders: Vec<Option<u64>> = among
                .iter()
                .map(|i| self.m(*i).store.leader().map(|(id, _)| id))
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) {
                    if let Some(i) = among.iter().find(|i| self.m(**i).id() == *l) {
                        if self.m(*i).store.is_leader() {
                            return *i;
                        }
                    }
                }
            }
            assert!(
                start.elapsed() < WAIT,
                "no common leader among {among:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Simulates a crash of manager `i`: its links go down at once, its
    /// server stops, its store stops.
    async fn kill(&mut self, i: usize) -> Manager {
        let m = self.managers[i].take().expect("manager is running");
        self.net.cut(&m.addr);
        m.server.abort();
        m.store.shutdown().await.expect("shutdown");
        m
    }
}

/// Waits until `f` holds, polling; fails with `what` after [`WAIT`].
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes through `store` until a write succeeds; returns how long it took.
async fn first_write(store: &Store, id: &str) -> Duration {
    let start = Instant::now();
    loop {
        match store.update(create(id)).await {
            Ok(_) => return start.elapsed(),
            Err(StoreError::Apply(ApplyError::AlreadyExists { .. })) => return start.elapsed(),
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(start.elapsed() < WAIT, "no write succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_leader_and_followers_reach_every_manager() {
    let c = Cluster::three().await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut watch = c.m(followers[0]).store.watch();

    let mut ids = Vec::new();
    for (n, i) in [leader, followers[0], followers[1]].into_iter().enumerate() {
        for k in 0..5 {
            let id = format!("t{n}-{k}");
            let change = c.m(i).store.update(create(&id)).await.expect("update");
            // Read-your-write on the manager written through, leader or not.
            assert!(
                c.m(i)
                    .store
                    .view(|s| s.task(&id).is_some() && s.index() >= change.index),
                "{id} not visible on manager {i} right after its update"
            );
            ids.push(id);
        }
    }
    for (i, m) in c.running() {
        wait_until(&format!("manager {i} has every write"), || {
            m.store.view(|s| ids.iter().all(|id| s.task(id).is_some()))
        })
        .await;
    }
    // A follower's caller gets exactly what the leader's update would answer.
    let dup = c
        .m(followers[1])
        .store
        .update(create("t0-0"))
        .await
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::Apply(ApplyError::AlreadyExists { .. })),
        "{dup}"
    );
    // Followers apply the same entries, so their watchers see them.
    let change = tokio::time::timeout(WAIT, watch.recv())
        .await
        .expect("a change within the wait")
        .expect("no lag");
    assert!(!change.events.is_empty());

    let members = c.m(followers[0]).store.members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.voter));
    assert_eq!(
        members
            .iter()
            .filter(|m| m.leader)
            .map(|m| m.raft_id)
            .collect::<Vec<_>>(),
        vec![c.m(leader).id()]
    );
    wait_until("every manager sees the others reachable", || {
        c.running()
            .all(|(_, m)| m.store.members().iter().all(|x| x.reachable == Some(true)))
    })
    .await;
    assert_eq!(
        c.m(followers[1]).store.leader(),
        Some((c.m(leader).id(), c.m(leader).addr.clone()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_within_a_second_and_no_acknowledged_write_is_lost() {
    let mut c = Cluster::three().await;
    let mut acked = Vec::new();
    for k in 0..3 {
        for i in 0..3 {
            let id = format!("before-{i}-{k}");
            c.m(i).store.update(create(&id)).await.expect("update");
            acked.push(id);
        }
    }
    let old = c.wait_for_leader(&[0, 1, 2]).await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let killed = c.kill(old).await;
    // Through a follower of the dead leader, from the moment of the crash.
    let took = first_write(&c.m(survivors[0]).store, "after-crash").await;
    println!(
        "failover: leader killed -> first write committed through another manager in {took:?}"
    );
    acked.push("after-crash".into());
    assert!(took < Duration::from_secs(3), "failover took {took:?}");

    let new = c.wait_for_leader(&survivors).await;
    assert_ne!(c.m(new).id(), killed.id());
    for i in &survivors {
        let id = format!("after-{i}");
        c.m(*i)
            .store
            .update(create(&id))
            .await
            .expect("write through a survivor");
        acked.push(id);
    }
    for i in &survivors {
        wait_until(
            &format!("survivor {i} holds every acknowledged write"),
            || {
                c.m(*i)
                    .store
                    .view(|s| acked.iter().all(|id| s.task(id).is_some()))
            },
        )
        .await;
    }
    let members = c.m(new).store.members();
    let dead = members
        .iter()
        .find(|m| m.raft_id == killed.id())
        .expect("still a member");
    wait_until("the leader sees the dead manager unreachable", || {
        c.m(new)
            .store
            .members()
            .iter()
            .any(|m| m.raft_id == dead.raft_id && m.reachable == Some(false))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_refuses_writes_fast_and_catches_up_when_healed() {
    let c = Cluster::three().await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let alone = (0..3).find(|i| *i != leader).expect("a follower");
    let other = (0..3)
        .find(|i| *i != leader && *i != alone)
        .expect("another");
    c.m(alone)
        .store
        .update(create("before"))
        .await
        .expect("update");

    c.net.cut(&c.m(alone).addr);
    let start = Instant::now();
    let err = c
        .m(alone)
        .store
        .update(create("refused"))
        .await
        .unwrap_err();
    let took = start.elapsed();
    println!("minority follower refused a write in {took:?}: {err}");
    assert!(took < FAST, "refusing took {took:?}");
    // A 503 either way: refused, or of unknown outcome when the forward was
    // already being written to the connection the cut broke.
    assert!(
        matches!(
            err,
            StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("no leader: lost contact with a majority of managers (1 of 3 reachable)"),
        "{err}"
    );
    // Once it knows, it refuses at once; its local copy still reads.
    let start = Instant::now();
    let again = c
        .m(alone)
        .store
        .update(create("refused"))
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(100), "{again}");
    assert!(matches!(again, StoreError::Unavailable(_)), "{again}");
    assert!(c.m(alone).store.view(|s| s.task("before").is_some()));

    // The majority goes on.
    c.m(leader)
        .store
        .update(create("majority-1"))
        .await
        .expect("leader writes");
    c.m(other)
        .store
        .update(create("majority-2"))
        .await
        .expect("follower writes");

    c.net.heal(&c.m(alone).addr);
    wait_until("the healed follower catches up", || {
        c.m(alone)
            .store
            .view(|s| s.task("majority-1").is_some() && s.task("majority-2").is_some())
    })
    .await;
    first_write(&c.m(alone).store, "healed").await;
    wait_until("the others see the healed follower's write", || {
        c.m(leader).store.view(|s| s.task("healed").is_some())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_refuses_writes_fast_while_the_others_elect_a_new_one() {
    let c = Cluster::three().await;
    let old = c.wait_for_leader(&[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();

    c.net.cut(&c.m(old).addr);
    let cut_at = Instant::now();
    let start = Instant::now();
    let err = c.m(old).store.update(create("refused")).await.unwrap_err();
    let took = start.elapsed();
    println!("minority leader refused a write in {took:?}: {err}");
    assert!(took < FAST, "refusing took {took:?}");
    assert!(
        err.to_string()
            .contains("lost contact with a majority of managers (1 of 3 reachable)"),
        "{err}"
    );
    first_write(&c.m(others[0]).store, "majority").await;
    let took = cut_at.elapsed();
    println!(
        "failover: leader cut off -> first write committed through another manager {took:?} after the cut"
    );
    let new = c.wait_for_leader(&others).await;
    assert_ne!(new, old);

    c.net.heal(&c.m(old).addr);
    wait_until("the old leader follows the new one and catches up", || {
        !c.m(old).store.is_leader() && c.m(old).store.view(|s| s.task("majority").is_some())
    })
    .await;
    assert!(
        c.m(old).store.view(|s| s.task("refused").is_none()),
        "the write refused on the cut-off leader was never committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_manager_shrinks_the_group_and_writes_go_on() {
    let mut c = Cluster::three().await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let gone = c.m(followers[1]).id();
    // Asked at a follower, carried out by the leader.
    c.m(followers[0])
        .store
        .remove_manager(gone)
        .await
        .expect("remove");
    for i in [leader, followers[0]] {
        wait_until(&format!("manager {i} sees two members"), || {
            let m = c.m(i).store.members();
            m.len() == 2 && m.iter().all(|x| x.raft_id != gone)
        })
        .await;
    }
    // The removed manager is no longer needed for a quorum.
    c.kill(followers[1]).await;
    c.m(followers[0])
        .store
        .update(create("after-removal"))
        .await
        .expect("write with two managers");
    // Removing one that is not a member does nothing; the last voter stays.
    c.m(leader)
        .store
        .remove_manager(gone)
        .await
        .expect("idempotent");
    c.m(leader)
        .store
        .remove_manager(c.m(followers[0]).id())
        .await
        .expect("down to one manager");
    let last = c
        .m(leader)
        .store
        .remove_manager(c.m(leader).id())
        .await
        .unwrap_err();
    assert!(last.to_string().contains("last voter"), "{last}");
    c.m(leader)
        .store
        .update(create("alone"))
        .await
        .expect("write alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_on_the_survivor_keeps_every_write_and_takes_new_ones() {
    let mut c = Cluster::three().await;
    let mut acked = Vec::new();
    for k in 0..4 {
        for i in 0..3 {
            let id = format!("w{i}-{k}");
            c.m(i).store.update(create(&id)).await.expect("update");
            acked.push(id);
        }
    }
    let survivor = c.wait_for_leader(&[0, 1, 2]).await;
    // The survivor must hold every acknowledged write: wait until it has
    // applied what the others wrote (a follower's write returns once the
    // follower applied it, not the survivor).
    wait_until("the survivor applied every write", || {
        c.m(survivor)
            .store
            .view(|s| acked.iter().all(|id| s.task(id).is_some()))
    })
    .await;
    let index_before = c.m(survivor).store.view(|s| s.index());
    for i in (0..3).filter(|i| *i != survivor) {
        c.kill(i).await;
    }
    let err = first_error(&c.m(survivor).store).await;
    assert!(
        err.to_string().contains("lost contact with a majority"),
        "{err}"
    );

    let old = c.kill(survivor).await;
    c.net.heal(&old.addr);
    let listener = bind_again(&old.addr).await;
    let store = Store::force_new_cluster(old.config.clone(), c.connector(&old.addr), &old.addr)
        .await
        .expect("force new cluster");
    let server = c.serve(&store, &old.addr, listener);
    store.view(|s| {
        for id in &acked {
            assert!(s.task(id).is_some(), "{id} lost by force-new-cluster");
        }
        assert!(s.index() > index_before, "indexes carry on");
    });
    assert!(store.is_leader());
    let members = store.members();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!((members[0].raft_id, members[0].voter), (old.id(), true));
    store
        .update(create("after-force"))
        .await
        .expect("new write");

    // The new group grows again: a fresh manager catches up from a snapshot
    // (the forced group's log starts after the old entries).
    c.managers[survivor] = Some(Manager {
        store: store.clone(),
        addr: old.addr.clone(),
        config: old.config.clone(),
        server,
    });
    let fresh = c.start("manager-d").await;
    store
        .add_manager(c.m(fresh).id(), &c.m(fresh).addr)
        .await
        .expect("add a manager to the forced group");
    wait_until("the new manager has the whole state", || {
        c.m(fresh).store.view(|s| {
            s.task("after-force").is_some() && acked.iter().all(|id| s.task(id).is_some())
        })
    })
    .await;
    c.m(fresh)
        .store
        .update(create("through-new"))
        .await
        .expect("write through the new manager");
}

/// Binds `addr` again once the killed server that held it has let it go
/// (aborting its task drops the listener at the task's next poll).
async fn bind_again(addr: &str) -> tokio::net::TcpListener {
    let start = Instant::now();
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(start.elapsed() < WAIT, "binding {addr} again: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Writes through `store` until one fails (within [`FAST`] of the first
/// try), and returns the error.
async fn first_error(store: &Store) -> StoreError {
    let start = Instant::now();
    for n in 0.. {
        match store.update(create(&format!("probe-{n}"))).await {
            Ok(_) => assert!(start.elapsed() < FAST, "writes still succeed"),
            Err(e) => {
                assert!(start.elapsed() < FAST, "failing took {:?}", start.elapsed());
                return e;
            }
        }
    }
    unreachable!("the loop only ends by returning")
}

/// What became of each write a test made, for the check against the logs.
#[derive(Default)]
struct Ledger {
    written: Vec<(String, Result<(), StoreError>)>,
}

impl Ledger {
    /// Creates the task `id` (an id never written before) through `store`,
    /// once, and records the answer.
    async fn write(&mut self, store: &Store, id: &str) -> Result<(), StoreError> {
        let result = store.update(create(id)).await.map(|_| ());
        self.record(id, result.clone());
        result
    }

    fn record(&mut self, id: &str, result: Result<(), StoreError>) {
        assert!(
            self.written.iter().all(|(w, _)| w != id),
            "{id} written twice by the test"
        );
        self.written.push((id.to_string(), result));
    }

    /// Writes fresh tasks through `store` until one is acknowledged (each
    /// attempt once, never retried under the same id); returns the time
    /// since `from`.
    async fn first_acknowledged(&mut self, store: &Store, prefix: &str, from: Instant) -> Duration {
        for n in 0..10_000 {
            match self.write(store, &format!("{prefix}-{n}")).await {
                Ok(()) => return from.elapsed(),
                Err(e) => {
                    assert!(e.is_retryable(), "{e}");
                    assert!(from.elapsed() < WAIT, "no write was acknowledged: {e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        panic!("no write of {prefix} acknowledged in 10000 attempts")
    }
}

/// Once the managers can all talk again: a write through each is
/// committed, and every manager applies all of them. Returns the highest
/// of their indexes, which every manager's log holds committed.
async fn settle(c: &Cluster) -> u64 {
    let mut upto = 0;
    for (i, m) in c.running() {
        let id = format!("settle-{i}");
        first_write(&m.store, &id).await;
        let index = m
            .store
            .view(|s| s.task(&id).map(|t| t.meta.version))
            .expect("the write is visible where it was made");
        upto = upto.max(index);
    }
    for (i, m) in c.running() {
        wait_until(&format!("manager {i} applied index {upto}"), || {
            m.store.view(|s| s.index()) >= upto
        })
        .await;
    }
    upto
}

/// How many entries of the log in `dir`, up to index `upto`, create each
/// object (whether the state machine then accepted it or not): a write
/// applied twice is in two entries.
async fn creations_in_log(dir: &Path, upto: u64) -> HashMap<String, usize> {
    use openraft::storage::RaftLogReader;
    let dir = dir.to_path_buf();
    let (mut log, writer) = tokio::task::spawn_blocking(move || open_log(&dir, Default::default()))
        .await
        .expect("join")
        .expect("open the log");
    let entries = log
        .try_get_log_entries(..=upto)
        .await
        .expect("read the log");
    writer.stop().await;
    let mut counts = HashMap::new();
    for entry in entries {
        if let openraft::EntryPayload::Normal(proposal) = entry.payload {
            for op in proposal.batches().iter().flat_map(|b| b.ops.iter()) {
                if let Op::Create(object) = op {
                    *counts.entry(object.id().to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    counts
}

/// Stops every manager and reads its log up to `upto` (committed on all):
/// an acknowledged write is in it once, a refused one not at all, one of
/// unknown outcome at most once. Returns how many entries created each
/// write of the ledger, per manager.
async fn check_logs(c: &mut Cluster, ledger: &Ledger, upto: u64) -> Vec<HashMap<String, usize>> {
    let mut all = Vec::new();
    for i in 0..c.managers.len() {
        if c.managers[i].is_none() {
            continue;
        }
        let m = c.kill(i).await;
        let counts = creations_in_log(&m.config.dir, upto).await;
        for (id, result) in &ledger.written {
            let n = counts.get(id).copied().unwrap_or(0);
            match result {
                Ok(()) => assert_eq!(n, 1, "manager {i}: acknowledged {id} is in {n} entries"),
                Err(StoreError::Apply(e)) => {
                    panic!("{id}, written once, was refused by the state machine (applied twice?): {e}")
                }
                Err(e) if e.outcome_unknown() => {
                    assert!(n <= 1, "manager {i}: {id} ({e}) is in {n} entries")
                }
                Err(e) => assert_eq!(n, 0, "manager {i}: {id}, refused ({e}), is in {n} entries"),
            }
        }
        all.push(counts);
    }
    all
}

/// How many times `id` is in the logs, per manager.
fn count_of(counts: &[HashMap<String, usize>], id: &str) -> Vec<usize> {
    counts
        .iter()
        .map(|c| c.get(id).copied().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_follower_whose_leader_goes_silent_is_answered_within_a_second() {
    let mut c = Cluster::three().await;
    let old = c.wait_for_leader(&[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let via = others[0];
    let mut ledger = Ledger::default();
    // The follower's connection to the leader is open and in use.
    ledger
        .write(&c.m(via).store, "before")
        .await
        .expect("write through a follower");

    // Packets to and from the leader are dropped from now on: the write
    // goes out on the open connection and nothing comes back.
    c.net.silence(&c.m(old).addr);
    let silenced = Instant::now();
    let err = ledger
        .write(&c.m(via).store, "in-flight")
        .await
        .expect_err("the silenced leader cannot answer");
    let took = silenced.elapsed();
    println!("leader silenced: a write forwarded to it at once was answered in {took:?}: {err}");
    assert!(took < FAST, "answering took {took:?}: {err}");
    assert!(err.outcome_unknown(), "{err}");
    let cause = format!(
        "lost contact with the leader (manager {} at {})",
        c.m(old).id(),
        c.m(old).addr
    );
    assert!(err.to_string().contains(&cause), "{err}");

    // The next writes wait for the new leader rather than go to the old one.
    let took = ledger
        .first_acknowledged(&c.m(via).store, "after", silenced)
        .await;
    println!(
        "failover: leader silenced -> first write committed through a follower {took:?} after"
    );
    assert!(took < Duration::from_secs(3), "failover took {took:?}");
    let new = c.wait_for_leader(&others).await;
    assert_ne!(new, old);
    ledger
        .write(&c.m(others[1]).store, "through-the-other")
        .await
        .expect("the majority takes writes");

    c.net.unsilence(&c.m(old).addr);
    wait_until("the old leader follows the new one", || {
        !c.m(old).store.is_leader()
            && c.m(old).store.leader().map(|(id, _)| id) == Some(c.m(new).id())
    })
    .await;
    let upto = settle(&c).await;
    let counts = check_logs(&mut c, &ledger, upto).await;
    println!(
        "in-flight write of unknown outcome: in {:?} entries",
        count_of(&counts, "in-flight")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_to_a_leader_that_loses_its_quorum_is_answered_fast_as_unknown_and_not_retried(
) {
    let mut c = Cluster::three().await;
    let old = c.wait_for_leader(&[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let via = others[0];
    let mut ledger = Ledger::default();
    ledger
        .write(&c.m(via).store, "before")
        .await
        .expect("write through a follower");

    // The leader still hears the others, but what it sends is dropped: it
    // proposes a forwarded write and cannot replicate it.
    let last_index = |c: &Cluster| c.m(old).store.inner.core.metrics.borrow().last_log_index;
    let before = last_index(&c);
    c.net.silence_outgoing(&c.m(old).addr);
    let write = {
        let store = c.m(via).store.clone();
        tokio::spawn(async move { store.update(create("in-flight")).await.map(|_| ()) })
    };
    wait_until("the leader proposed the forwarded write", || {
        last_index(&c) > before
    })
    .await;
    // Then it is cut off entirely: it loses its quorum, and the follower
    // loses the leader, with the write still waiting for its answer.
    c.net.silence(&c.m(old).addr);
    let silenced = Instant::now();
    let result = tokio::time::timeout(WAIT, write)
        .await
        .expect("the write is answered")
        .expect("join");
    let took = silenced.elapsed();
    ledger.record("in-flight", result.clone());
    let err = result.expect_err("the write cannot be committed");
    println!(
        "a proposed write whose leader lost its quorum was answered {took:?} after the loss: {err}"
    );
    assert!(took < FAST, "answering took {took:?}: {err}");
    assert!(err.outcome_unknown(), "{err}");

    let took = ledger
        .first_acknowledged(&c.m(via).store, "after", silenced)
        .await;
    println!("the majority took a write {took:?} after the leader was cut off");
    let new = c.wait_for_leader(&others).await;

    c.net.unsilence(&c.m(old).addr);
    wait_until("the old leader follows the new one", || {
        !c.m(old).store.is_leader()
            && c.m(old).store.leader().map(|(id, _)| id) == Some(c.m(new).id())
    })
    .await;
    let upto = settle(&c).await;
    let counts = check_logs(&mut c, &ledger, upto).await;
    // Its only copy was the old leader's, which the new leader's entries
    // replaced: it is committed nowhere, so the follower did not retry it
    // at the new leader.
    assert_eq!(count_of(&counts, "in-flight"), vec![0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_follower_answers_a_write_on_its_way_to_the_leader_fast_naming_the_lost_majority(
) {
    let mut c = Cluster::three().await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let alone = (0..3).find(|i| *i != leader).expect("a follower");
    let mut ledger = Ledger::default();
    ledger
        .write(&c.m(alone).store, "before")
        .await
        .expect("write through a follower");

    c.net.silence(&c.m(alone).addr);
    let silenced = Instant::now();
    let err = ledger
        .write(&c.m(alone).store, "in-flight")
        .await
        .expect_err("a silenced follower cannot be answered");
    let took = silenced.elapsed();
    println!("silenced follower: a write forwarded at once was answered in {took:?}: {err}");
    assert!(took < FAST, "answering took {took:?}: {err}");
    assert!(err.outcome_unknown(), "{err}");
    assert!(
        err.to_string()
            .contains("no leader: lost contact with a majority of managers (1 of 3 reachable)"),
        "{err}"
    );
    // From then on it refuses before sending anything: surely not applied.
    let again = ledger
        .write(&c.m(alone).store, "refused")
        .await
        .expect_err("still silenced");
    assert!(matches!(again, StoreError::Unavailable(_)), "{again}");
    assert!(!again.outcome_unknown() && again.is_retryable());

    c.net.unsilence(&c.m(alone).addr);
    wait_until("the follower hears its leader again", || {
        c.m(alone)
            .store
            .members()
            .iter()
            .all(|m| m.reachable == Some(true))
    })
    .await;
    let upto = settle(&c).await;
    check_logs(&mut c, &ledger, upto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_entry_a_new_leader_replaces_answers_unknown_and_never_proposes_it_again() {
    let mut c = Cluster::three().await;
    let old = c.wait_for_leader(&[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let mut ledger = Ledger::default();
    ledger
        .write(&c.m(old).store, "before")
        .await
        .expect("write through the leader");

    // The leader still hears the others (their probes keep its quorum), but
    // what it sends is dropped: it appends the write and cannot replicate
    // it, the others hear no heartbeat and elect a new leader, and that
    // leader's first entries replace the old one's. openraft then answers
    // "forward to the leader", as it does to a write it never proposed.
    c.net.silence_outgoing(&c.m(old).addr);
    let silenced = Instant::now();
    let err = ledger
        .write(&c.m(old).store, "replaced")
        .await
        .expect_err("the entry cannot be committed");
    let took = silenced.elapsed();
    println!("a leader's entry replaced by a new leader's: answered in {took:?}: {err}");
    assert!(err.outcome_unknown(), "{err}");
    assert!(err.to_string().contains("lost the leadership"), "{err}");
    // An election and one AppendEntries, not the write timeout.
    assert!(
        took < Duration::from_secs(3),
        "answering took {took:?}: {err}"
    );
    let new = c.wait_for_leader(&others).await;
    assert_ne!(new, old);

    c.net.unsilence(&c.m(old).addr);
    let upto = settle(&c).await;
    let counts = check_logs(&mut c, &ledger, upto).await;
    // Its only copy was the old leader's, which is gone: it was not
    // proposed again at the new leader.
    assert_eq!(count_of(&counts, "replaced"), vec![0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_managers_through_a_follower_whose_leader_goes_silent_is_answered_fast() {
    let c = Cluster::three().await;
    let old = c.wait_for_leader(&[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let via = others[0];
    // The follower's connection to the leader is open and in use.
    c.m(via)
        .store
        .update(create("before"))
        .await
        .expect("write through a follower");

    c.net.silence(&c.m(old).addr);
    let silenced = Instant::now();
    let err = c
        .m(via)
        .store
        .remove_manager(c.m(others[1]).id())
        .await
        .expect_err("the silenced leader cannot carry it out");
    let took = silenced.elapsed();
    println!(
        "leader silenced: a change of managers forwarded at once was answered in {took:?}: {err}"
    );
    assert!(took < FAST, "answering took {took:?}: {err}");
    assert!(
        err.to_string().contains(&format!(
            "lost contact with the leader (manager {} at {}) while the change of managers was on its way to it",
            c.m(old).id(),
            c.m(old).addr
        )),
        "{err}"
    );
    c.net.unsilence(&c.m(old).addr);
}
