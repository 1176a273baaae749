//! The openraft type configuration of berth's store: what a log entry carries
//! (an [`api::Batch`]), what applying it answers, and the node identity types.

use std::io::Cursor;

/// What applying one log entry answers to its proposer: the change it made, or
/// why the state machine refused the whole batch. Deterministic: every manager
/// computes the same answer for the same entry.
pub type Response = Result<api::Change, api::ApplyError>;

openraft::declare_raft_types!(
    /// Raft types of the store. Nodes are identified by a `u64` Raft id and carry
    /// their RPC address in a [`openraft::BasicNode`] (unused while the group has a
    /// single voter).
    pub TypeConfig:
        D = api::Batch,
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
