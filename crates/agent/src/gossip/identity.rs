//! The identity foca gossips about: who a member is (node id), where to reach
//! it (advertised address), and which run of it this is (generation), so that
//! a restarted node, or one wrongly declared down, rejoins at once under a
//! newer identity instead of waiting for the cluster to forget the old one.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member of the gossip group, as foca sees it.
///
/// foca's "address" of an identity (the key under which it keeps one entry
/// per member) is the advertised socket address: that is all a seed is known
/// by before the first reply, and foca only accepts an announce whose
/// destination has the receiver's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct NodeIdentity {
    pub(crate) node_id: String,
    pub(crate) addr: SocketAddr,
    /// Grows with every start and every renewal: among identities with the
    /// same address, the larger generation is the live one.
    pub(crate) generation: u64,
}

impl NodeIdentity {
    /// The identity used to announce to a seed whose node id is not known
    /// yet. foca accepts an announce addressed to any identity with the
    /// receiver's address, and the reply carries the seed's real identity.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self {
            node_id: String::new(),
            addr,
            generation: 0,
        }
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    /// When the cluster declares us down (a false suspicion, a pause, a
    /// partition), come back at once as the next generation. foca requires the
    /// renewed identity to win the address conflict, which it does.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            node_id: self.node_id.clone(),
            addr: self.addr,
            generation: self.generation.saturating_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Ties cannot happen between two runs of one node (the generation
        // starts from the clock and only grows); break them on the node id so
        // that every member picks the same winner.
        (self.generation, &self.node_id) > (adversary.generation, &adversary.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn id(gen: u64) -> NodeIdentity {
        NodeIdentity {
            node_id: "n1".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
            generation: gen,
        }
    }

    #[test]
    fn renewal_keeps_the_address_and_wins() {
        let old = id(5);
        let new = old.renew().expect("renewable");
        assert_eq!(new.addr(), old.addr());
        assert_eq!(new.node_id, old.node_id);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn a_restart_wins_over_the_previous_run() {
        assert!(id(1_700_000_000_001).win_addr_conflict(&id(1_700_000_000_000)));
    }
}
