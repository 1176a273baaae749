//! Raft's network to the other managers: openraft's RPCs over the cluster's
//! gRPC channels (`berth.raft.Raft`, see `crates/api/proto/raft.proto`), and
//! what this manager knows of its peers.
//!
//! [`Peers`] is shared by everything that talks to another manager: openraft's
//! replication and elections ([`Network`]), the forwarding of a follower's
//! writes to the leader, and the reachability probes. It keeps one channel per
//! peer address (made by the node's [`Connector`]: mutual TLS in a cluster,
//! plain loopback in tests; tonic reconnects a channel by itself after a
//! failure) and when each peer last answered. That record is what lets a
//! write fail fast when this manager cannot reach a majority, instead of
//! waiting out its timeout: openraft only knows it on the leader, and a
//! follower never talks to the other followers, so every manager also pings
//! every other member each heartbeat interval (see [`probe_peers`]).
//!
//! Errors map onto openraft's retry rules: a peer that cannot be connected to,
//! or whose store is shut down, is `Unreachable` (openraft backs off); an RPC
//! that runs out of its time is `Timeout`; an answer we cannot decode is a
//! `Network` error; an AppendEntries too big to send in one heartbeat interval
//! is `PayloadTooLarge`, which makes openraft send fewer entries at a time.

use crate::types::{NodeId, TypeConfig};
use api::rpc::raft::raft_client::RaftClient;
use api::rpc::raft::{
    ChangeManagersReply, ChangeManagersRequest, ForwardReply, ForwardRequest, Payload, PingRequest,
};
use api::rpc::Connector;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftMetrics};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::transport::Channel;

/// Largest gRPC message between managers, either way. A log entry can carry
/// a thousand updates, and a snapshot chunk is up to openraft's chunk size;
/// tonic's default of 4 MiB would refuse both. The Raft service only ever
/// answers manager certificates, so the bound guards against bugs, not peers.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// An AppendEntries whose JSON passes this many bytes is split (see the
/// module comment): it must be sent, decoded and fsynced by the follower
/// within one heartbeat interval, which is openraft's timeout for it.
const APPEND_BUDGET_BYTES: usize = 4 << 20;

/// How long openraft waits before it retries a peer that was `Unreachable`.
/// Short, so that a manager that comes back is caught up quickly; an attempt
/// on a dead address costs one refused connection.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Why an RPC to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkFailure {
    #[error("no network to Raft node {target}: this store runs as a single node")]
    NoNetwork { target: NodeId },
    #[error("making a channel to Raft node {target} at {addr}: {source}")]
    Channel {
        target: NodeId,
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("Raft node {target} at {addr}: {status}")]
    Status {
        target: NodeId,
        addr: String,
        status: tonic::Status,
    },
    #[error("Raft node {target} at {addr} answered something this build cannot read: {source}")]
    Decode {
        target: NodeId,
        addr: String,
        source: serde_json::Error,
    },
    #[error("encoding a request to Raft node {target}: {source}")]
    Encode {
        target: NodeId,
        source: serde_json::Error,
    },
}

/// The other managers as this one knows them: channels, and when each last
/// answered.
pub(crate) struct Peers {
    me: NodeId,
    connector: Option<Arc<dyn Connector>>,
    channels: Mutex<HashMap<String, Channel>>,
    heard: Mutex<HashMap<NodeId, Instant>>,
    started: Instant,
    /// A peer that answered within this long counts as reachable.
    window: Duration,
    /// Set when the store shuts down; ends the probes.
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one map operation: a panic cannot leave the
    // map in a state later users could not read.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Peers {
    pub(crate) fn new(
        me: NodeId,
        connector: Option<Arc<dyn Connector>>,
        window: Duration,
    ) -> Peers {
        Peers {
            me,
            connector,
            channels: Mutex::new(HashMap::new()),
            heard: Mutex::new(HashMap::new()),
            started: Instant::now(),
            window,
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn has_network(&self) -> bool {
        self.connector.is_some()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Records that `id` answered (or called us) just now.
    pub(crate) fn heard_from(&self, id: NodeId) {
        if id != self.me {
            lock(&self.heard).insert(id, Instant::now());
        }
    }

    /// Whether `id` answered within the reachability window. This manager
    /// always reaches itself.
    pub(crate) fn reachable(&self, id: NodeId) -> bool {
        id == self.me
            || lock(&self.heard)
                .get(&id)
                .is_some_and(|t| t.elapsed() <= self.window)
    }

    /// True until one reachability window has passed since the store opened:
    /// before that, "not heard from" means "not asked yet", not "unreachable".
    pub(crate) fn too_early_to_judge(&self) -> bool {
        self.started.elapsed() < self.window
    }

    /// The client for the manager at `addr`, on the cached channel.
    fn client(&self, target: NodeId, addr: &str) -> Result<RaftClient<Channel>, NetworkFailure> {
        let Some(connector) = &self.connector else {
            return Err(NetworkFailure::NoNetwork { target });
        };
        let channel = {
            let mut channels = lock(&self.channels);
            match channels.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let c = connector
                        .channel(addr)
                        .map_err(|source| NetworkFailure::Channel {
                            target,
                            addr: addr.to_string(),
                            source,
                        })?;
                    channels.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Asks the manager `id` at `addr` whether it is there; records the
    /// answer if it comes from `id` within `ttl`.
    async fn ping(&self, id: NodeId, addr: &str, ttl: Duration) {
        let Ok(mut client) = self.client(id, addr) else {
            return;
        };
        let call = client.ping(PingRequest { from: self.me });
        if let Ok(Ok(reply)) = tokio::time::timeout(ttl, call).await {
            // Another manager now at that address does not count for `id`.
            if reply.into_inner().raft_id == id {
                self.heard_from(id);
            }
        }
    }

    /// Sends a follower's write to the leader `id` at `addr`.
    pub(crate) async fn forward(
        &self,
        id: NodeId,
        addr: &str,
        request: ForwardRequest,
        ttl: Duration,
    ) -> Result<ForwardReply, ForwardFailure> {
        let mut client = self.client(id, addr).map_err(ForwardFailure::NotSent)?;
        match tokio::time::timeout(ttl, client.forward(request)).await {
            Err(_) => Err(ForwardFailure::TimedOut),
            Ok(Err(status)) if never_sent(&status) => {
                Err(ForwardFailure::NotSent(NetworkFailure::Status {
                    target: id,
                    addr: addr.to_string(),
                    status,
                }))
            }
            Ok(Err(status)) => Err(ForwardFailure::Lost(status)),
            Ok(Ok(reply)) => {
                self.heard_from(id);
                Ok(reply.into_inner())
            }
        }
    }

    /// Sends a change of the managers to the leader `id` at `addr`.
    pub(crate) async fn change_managers(
        &self,
        id: NodeId,
        addr: &str,
        request: ChangeManagersRequest,
        ttl: Duration,
    ) -> Result<ChangeManagersReply, ForwardFailure> {
        let mut client = self.client(id, addr).map_err(ForwardFailure::NotSent)?;
        match tokio::time::timeout(ttl, client.change_managers(request)).await {
            Err(_) => Err(ForwardFailure::TimedOut),
            Ok(Err(status)) if never_sent(&status) => {
                Err(ForwardFailure::NotSent(NetworkFailure::Status {
                    target: id,
                    addr: addr.to_string(),
                    status,
                }))
            }
            Ok(Err(status)) => Err(ForwardFailure::Lost(status)),
            Ok(Ok(reply)) => Ok(reply.into_inner()),
        }
    }
}

/// Why a request to the leader got no answer.
#[derive(Debug)]
pub(crate) enum ForwardFailure {
    /// It never left this manager (no channel, connection refused): safe to
    /// send again.
    NotSent(NetworkFailure),
    /// It may have reached the leader, which may have acted on it.
    Lost(tonic::Status),
    TimedOut,
}

/// Whether a failed call surely never reached the server: the connection
/// could not be made, or the request was dropped from the queue of a
/// connection that closed before taking it (hyper's "canceled"). Anything
/// else (a reset mid-call, a timeout) may have delivered it.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_canceled())
        {
            return true;
        }
        // hyper-util's connect error wraps the io error in a type of its
        // own that is not public; its text is stable.
        if e.to_string().starts_with("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// Pings every other member each `every`, until the store shuts down, so
/// that [`Peers::reachable`] is fresh on every manager.
pub(crate) async fn probe_peers(
    peers: Arc<Peers>,
    metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if peers.is_closed() {
            return;
        }
        let members: Vec<(NodeId, String)> = metrics
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != peers.me)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        // One round at a time, each ping bounded by the interval, so that a
        // dead peer never delays the others' pings by more than one round.
        let mut round = tokio::task::JoinSet::new();
        for (id, addr) in members {
            let peers = peers.clone();
            round.spawn(async move { peers.ping(id, &addr, every).await });
        }
        while round.join_next().await.is_some() {}
    }
}

/// openraft's network factory: one [`Connection`] per peer, over [`Peers`].
#[derive(Clone)]
pub(crate) struct Network {
    peers: Arc<Peers>,
}

impl Network {
    pub(crate) fn new(peers: Arc<Peers>) -> Network {
        Network { peers }
    }
}

/// openraft's view of one peer.
pub(crate) struct Connection {
    peers: Arc<Peers>,
    target: NodeId,
    node: BasicNode,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            peers: self.peers.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// What a failed exchange turns into, before it becomes an `RPCError` of the
/// caller's error type.
enum Failure {
    Unreachable(NetworkFailure),
    Timeout(Duration),
    Network(NetworkFailure),
}

impl Connection {
    fn failure_to_rpc<E: std::error::Error>(
        &self,
        action: RPCTypes,
        f: Failure,
    ) -> RPCError<NodeId, BasicNode, E> {
        match f {
            Failure::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            Failure::Network(e) => RPCError::Network(NetworkError::new(&e)),
            Failure::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.peers.me,
                target: self.target,
                timeout,
            }),
        }
    }

    /// One exchange of JSON payloads, within `ttl`.
    async fn exchange(
        &self,
        action: RPCTypes,
        json: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, Failure> {
        let addr = self.node.addr.as_str();
        let mut client = self
            .peers
            .client(self.target, addr)
            .map_err(Failure::Unreachable)?;
        let payload = Payload { json };
        let call = async {
            match action {
                RPCTypes::AppendEntries => client.append_entries(payload).await,
                RPCTypes::Vote => client.vote(payload).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        match tokio::time::timeout(ttl, call).await {
            Err(_) => Err(Failure::Timeout(ttl)),
            Ok(Ok(reply)) => {
                self.peers.heard_from(self.target);
                Ok(reply.into_inner().json)
            }
            Ok(Err(status)) => {
                let code = status.code();
                let e = NetworkFailure::Status {
                    target: self.target,
                    addr: addr.to_string(),
                    status,
                };
                Err(match code {
                    // Down, refused, shut down, or not allowed to talk to us
                    // (a certificate problem): wait before trying again.
                    tonic::Code::Unavailable
                    | tonic::Code::Unimplemented
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated => Failure::Unreachable(e),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Failure::Timeout(ttl),
                    _ => Failure::Network(e),
                })
            }
        }
    }

    /// Sends `request` and decodes the peer's `Result<Resp, RaftError<E>>`.
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json = serde_json::to_vec(request).map_err(|source| {
            self.failure_to_rpc(
                action,
                Failure::Network(NetworkFailure::Encode {
                    target: self.target,
                    source,
                }),
            )
        })?;
        let reply = self
            .exchange(action, json, option.hard_ttl())
            .await
            .map_err(|f| self.failure_to_rpc(action, f))?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply).map_err(|source| {
                self.failure_to_rpc(
                    action,
                    Failure::Network(NetworkFailure::Decode {
                        target: self.target,
                        addr: self.node.addr.clone(),
                        source,
                    }),
                )
            })?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        if rpc.entries.len() > 1 {
            // Measured on the encoding actually sent; cheap next to sending it.
            let size = serde_json::to_vec(&rpc.entries)
                .map(|v| v.len())
                .unwrap_or(0);
            if size > APPEND_BUDGET_BYTES {
                let fit = (rpc.entries.len() * APPEND_BUDGET_BYTES / size).max(1);
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(fit as u64),
                ));
            }
        }
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Vote;

    #[tokio::test]
    async fn a_single_node_store_reaches_no_one() {
        let peers = Arc::new(Peers::new(1, None, Duration::from_millis(400)));
        let mut net = Network::new(peers.clone());
        let conn = net.new_client(2, &BasicNode::new("127.0.0.1:1")).await;
        let err = conn
            .call::<_, VoteResponse<NodeId>, openraft::error::Infallible>(
                RPCTypes::Vote,
                &VoteRequest::new(Vote::new(1, 1), None),
                &RPCOption::new(Duration::from_secs(1)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains("node 2"), "{err}");
        assert!(peers.reachable(1) && !peers.reachable(2));
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_and_never_sent() {
        // A port that was just free: nothing listens there.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let peers = Arc::new(Peers::new(
            1,
            Some(Arc::new(api::rpc::PlainConnector)),
            Duration::from_millis(400),
        ));
        let mut net = Network::new(peers.clone());
        let conn = net.new_client(2, &BasicNode::new(&addr)).await;
        let err = conn
            .call::<_, VoteResponse<NodeId>, openraft::error::Infallible>(
                RPCTypes::Vote,
                &VoteRequest::new(Vote::new(1, 1), None),
                &RPCOption::new(Duration::from_secs(5)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
        let forwarded = peers
            .forward(
                2,
                &addr,
                ForwardRequest { batches: vec![] },
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(forwarded, Err(ForwardFailure::NotSent(_))),
            "{forwarded:?}"
        );
    }
}
