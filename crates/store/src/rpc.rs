//! The `berth.raft.Raft` gRPC service a manager serves to the other managers:
//! openraft's RPCs into this manager's Raft node, the writes and membership
//! changes followers hand to the leader, and the reachability ping.
//!
//! The node adds [`Store::raft_service`] to its cluster RPC router, behind
//! the mutual-TLS server, and lets only manager certificates call it (the
//! service itself does not look at the caller: tests serve it in plain text).
//! The service holds the store weakly: once the store is dropped or shut
//! down every call answers `Unavailable`, which a caller's Raft treats as an
//! unreachable peer, as it would a stopped process.

use crate::cluster::Change;
use crate::network::MAX_MESSAGE_BYTES;
use crate::proposer::{Failure, Request};
use crate::{Inner, Store, StoreError};
use api::rpc::raft::raft_server::{Raft, RaftServer};
use api::rpc::raft::{
    change_managers_reply, forward_reply, Applied, ChangeManagersReply, ChangeManagersRequest,
    ForwardReply, ForwardRequest, NotLeader, Payload, PingReply, PingRequest,
};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::sync::oneshot;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use crate::types::{NodeId, TypeConfig};

/// The service; build it with [`Store::raft_service`].
#[derive(Clone)]
pub struct RaftService {
    store: Weak<Inner>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

impl Store {
    /// The gRPC service of this manager's Raft node, for the node's cluster
    /// RPC router. Messages may be large (a log entry batches many updates),
    /// so its size limits are raised to 256 MiB each way.
    pub fn raft_service(&self) -> RaftServer<RaftService> {
        RaftServer::new(RaftService {
            store: Arc::downgrade(&self.inner),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

impl RaftService {
    fn store(&self) -> Result<Arc<Inner>, Status> {
        match self.store.upgrade() {
            Some(inner) if !inner.closed.load(Ordering::SeqCst) => Ok(inner),
            _ => Err(Status::unavailable("this manager's store is shut down")),
        }
    }
}

fn decode<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("decoding {what}: {e}")))
}

fn reply<T: Serialize>(result: &T) -> Result<GrpcResponse<Payload>, Status> {
    let json = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("encoding the answer: {e}")))?;
    Ok(GrpcResponse::new(Payload { json }))
}

fn not_leader(hint: Option<NodeId>) -> NotLeader {
    NotLeader { leader_id: hint }
}

/// The text a follower hands its caller for `e`, as the leader's own
/// `update` would answer it.
fn unavailable_text(e: StoreError) -> String {
    match e {
        StoreError::Unavailable(why) | StoreError::OutcomeUnknown(why) => why,
        other => format!("the leader failed: {other}"),
    }
}

/// What a follower is told of a forwarded write that failed with `e`: a
/// refusal only when the leader surely did not propose it.
fn forward_failure(e: StoreError) -> forward_reply::Outcome {
    use forward_reply::Outcome;
    match e {
        e @ StoreError::Unavailable(_) => Outcome::Refused(unavailable_text(e)),
        e => Outcome::OutcomeUnknown(unavailable_text(e)),
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        request: GrpcRequest<Payload>,
    ) -> Result<GrpcResponse<Payload>, Status> {
        let inner = self.store()?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&request.get_ref().json, "AppendEntries")?;
        if let Some(leader) = rpc.vote.leader_id().voted_for() {
            inner.core.peers.heard_from(leader);
        }
        let result = inner.core.raft.append_entries(rpc).await;
        reply(&result)
    }

    async fn vote(&self, request: GrpcRequest<Payload>) -> Result<GrpcResponse<Payload>, Status> {
        let inner = self.store()?;
        let rpc: VoteRequest<NodeId> = decode(&request.get_ref().json, "Vote")?;
        if let Some(candidate) = rpc.vote.leader_id().voted_for() {
            inner.core.peers.heard_from(candidate);
        }
        let result = inner.core.raft.vote(rpc).await;
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: GrpcRequest<Payload>,
    ) -> Result<GrpcResponse<Payload>, Status> {
        let inner = self.store()?;
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&request.get_ref().json, "InstallSnapshot")?;
        let result: Result<_, RaftError<NodeId, InstallSnapshotError>> =
            inner.core.raft.install_snapshot(rpc).await;
        reply(&result)
    }

    async fn forward(
        &self,
        request: GrpcRequest<ForwardRequest>,
    ) -> Result<GrpcResponse<ForwardReply>, Status> {
        use forward_reply::Outcome;
        let answer = |outcome| {
            Ok(GrpcResponse::new(ForwardReply {
                outcome: Some(outcome),
            }))
        };
        let Ok(inner) = self.store() else {
            // Proposed nothing: the follower may retry at the next leader.
            return answer(Outcome::NotLeader(not_leader(None)));
        };
        if !inner.core.is_leader() {
            // Said at once rather than after the writes queued here: this
            // manager's own writes may be waiting for a leader to appear.
            let hint = inner.core.metrics.borrow().current_leader;
            return answer(Outcome::NotLeader(not_leader(hint)));
        }
        let batches: Vec<api::Batch> = decode(&request.get_ref().batches, "the batches")?;
        let timeout = inner.core.config.write_timeout;
        let (tx, rx) = oneshot::channel();
        let queued = inner.proposals.send(Request {
            count: batches.len(),
            batches,
            forwarded: true,
            deadline: tokio::time::Instant::now() + timeout,
            reply: tx,
        });
        // The proposer must not outlive this call's hold on the store.
        drop(inner);
        if queued.is_err() {
            return answer(Outcome::NotLeader(not_leader(None)));
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => answer(Outcome::OutcomeUnknown(format!(
                "the leader did not apply the write within {timeout:?}"
            ))),
            Ok(Err(_)) => answer(Outcome::OutcomeUnknown(
                "the leader's store stopped before answering".into(),
            )),
            Ok(Ok(Ok((index, results)))) => {
                let results = serde_json::to_vec(&results)
                    .map_err(|e| Status::internal(format!("encoding the results: {e}")))?;
                answer(Outcome::Applied(Applied { index, results }))
            }
            Ok(Ok(Err(Failure::NotLeader(hint)))) => answer(Outcome::NotLeader(not_leader(hint))),
            Ok(Ok(Err(Failure::Store(e)))) => answer(forward_failure(e)),
        }
    }

    async fn change_managers(
        &self,
        request: GrpcRequest<ChangeManagersRequest>,
    ) -> Result<GrpcResponse<ChangeManagersReply>, Status> {
        use change_managers_reply::Outcome;
        let answer = |outcome| {
            Ok(GrpcResponse::new(ChangeManagersReply {
                outcome: Some(outcome),
            }))
        };
        let Ok(inner) = self.store() else {
            return answer(Outcome::NotLeader(not_leader(None)));
        };
        let Some(change) = Change::from_request(request.into_inner()) else {
            return Err(Status::invalid_argument("no change given"));
        };
        let store = Store { inner };
        match store.change_here(change).await {
            Ok(()) => answer(Outcome::Done(true)),
            Err(Failure::NotLeader(hint)) => answer(Outcome::NotLeader(not_leader(hint))),
            Err(Failure::Store(e)) => answer(Outcome::Unavailable(unavailable_text(e))),
        }
    }

    async fn ping(
        &self,
        request: GrpcRequest<PingRequest>,
    ) -> Result<GrpcResponse<PingReply>, Status> {
        let inner = self.store()?;
        inner.core.peers.heard_from(request.get_ref().from);
        Ok(GrpcResponse::new(PingReply {
            raft_id: inner.core.me,
        }))
    }
}
