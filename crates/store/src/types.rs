//! The openraft type configuration of berth's store: what a log entry carries
//! (a [`Proposal`] of [`api::Batch`]es), what applying it answers, and the node
//! identity types.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

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
/// and apply it, and an entry can carry a thousand batches. For the same
/// reason their JSON is made once and kept with them: the leader writes an
/// entry to its log and sends it to every follower, and a follower writes
/// to its log the very JSON it received. Entries are only ever encoded as
/// JSON (the log and the Raft RPCs), which this relies on.
#[derive(Clone, Debug, Default)]
pub struct Proposal {
    /// Read-only (see [`Proposal::batches`]): the JSON kept with them must
    /// stay theirs.
    batches: Arc<[api::Batch]>,
    /// On the leader that proposes it, the proposer's handle on the entry
    /// (see [`crate::log_store::Appends`]); never stored or sent, so 0
    /// everywhere else.
    pub(crate) tag: u64,
    /// The JSON of `batches`, once something encoded or decoded it.
    json: Arc<OnceLock<Box<RawValue>>>,
}

impl Proposal {
    pub(crate) fn new(batches: Arc<[api::Batch]>, tag: u64) -> Proposal {
        Proposal {
            batches,
            tag,
            json: Arc::default(),
        }
    }

    /// The batches of the `update()` calls the entry carries, in order.
    pub fn batches(&self) -> &[api::Batch] {
        &self.batches
    }
}

impl PartialEq for Proposal {
    fn eq(&self, other: &Self) -> bool {
        self.batches == other.batches && self.tag == other.tag
    }
}

/// A proposal as it is stored and sent: `{"batches":[...]}`.
#[derive(Serialize)]
struct WireRef<'a> {
    batches: &'a RawValue,
}

#[derive(Deserialize)]
struct Wire {
    batches: Box<RawValue>,
}

impl Serialize for Proposal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let json = match self.json.get() {
            Some(json) => json,
            None => {
                let json = serde_json::value::to_raw_value(&*self.batches)
                    .map_err(serde::ser::Error::custom)?;
                self.json.get_or_init(|| json)
            }
        };
        WireRef { batches: json }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        let batches: Vec<api::Batch> =
            serde_json::from_str(wire.batches.get()).map_err(serde::de::Error::custom)?;
        Ok(Proposal {
            batches: batches.into(),
            tag: 0,
            json: Arc::new(OnceLock::from(wire.batches)),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Batch, Cluster, Op, Timestamp};

    fn batches() -> Arc<[Batch]> {
        vec![
            Batch {
                time: Timestamp(5),
                ops: vec![Op::Create(Cluster::new("c").into())],
            },
            Batch {
                time: Timestamp(6),
                ops: vec![],
            },
        ]
        .into()
    }

    #[test]
    fn a_proposal_is_the_json_of_its_batches_made_once_and_kept_when_read() {
        let p = Proposal::new(batches(), 7);
        let plain = serde_json::to_string(&*batches()).expect("encodes");
        let json = serde_json::to_string(&p).expect("encodes");
        assert_eq!(json, format!(r#"{{"batches":{plain}}}"#));
        assert_eq!(serde_json::to_string(&p).expect("encodes again"), json);
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(2, 1), 9),
            payload: openraft::EntryPayload::Normal(p.clone()),
        };
        let entry_json = serde_json::to_string(&entry).expect("encodes");
        assert!(
            entry_json.ends_with(&format!(r#""payload":{{"Normal":{json}}}}}"#)),
            "{entry_json}"
        );
        let back: Proposal = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back.batches, p.batches);
        assert_eq!(back.tag, 0, "the tag is never sent");
        assert_eq!(serde_json::to_string(&back).expect("re-encodes"), json);
        let back: Entry = serde_json::from_str(&entry_json).expect("decodes");
        assert_eq!(
            serde_json::to_string(&back).expect("re-encodes"),
            entry_json
        );
    }
}
