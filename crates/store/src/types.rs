//! The openraft type configuration of berth's store: what a log entry carries
//! (a [`Proposal`] of [`api::Batch`]es), what applying it answers, and the node
//! identity types.

use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;

/// What one normal log entry carries: the batches of the `update()` calls that
/// were waiting while the previous entry was being made durable. openraft 0.9
/// writes and fsyncs each entry before it takes the next, so putting the waiting
/// batches in one entry is what lets concurrent writers share an fsync.
///
/// Each batch is applied on its own, whole or not at all, in order, with the
/// entry's index: objects written by different batches of one entry share a
/// version, which still identifies the write since no reader could have seen
/// any of them before the entry was applied.
///
/// The batches are shared (`Arc`; stored and sent as a plain list): openraft
/// clones an entry each time it reads it from the log, to append, replicate
/// and apply it, and an entry can carry a thousand batches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub batches: Arc<[api::Batch]>,
    /// On the leader that proposes it, the proposer's handle on the entry
    /// (see [`crate::log_store::Appends`]); never stored or sent, so 0
    /// everywhere else.
    #[serde(skip)]
    pub(crate) tag: u64,
}

/// What applying one log entry answers: for each batch of its [`Proposal`], in
/// order, the change it made or why the state machine refused it.
/// Deterministic: every manager computes the same answer for the same entry.
pub type Response = Vec<Result<api::Change, api::ApplyError>>;

openraft::declare_raft_types!(
    /// Raft types of the store. Nodes are identified by a `u64` Raft id and carry
    /// their RPC address in a [`openraft::BasicNode`] (unused while the group has a
    /// single voter).
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
