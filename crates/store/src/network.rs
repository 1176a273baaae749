//! Raft's network to other managers, which does not exist yet.
//!
//! berth's store is a single-voter group for now: openraft only opens a
//! connection to replicate to other members or to ask them for votes, and a
//! group whose only voter is this node never does either. This factory is what
//! `Raft::new` requires; every connection it makes answers each RPC with
//! [`openraft::error::Unreachable`], which openraft treats as "back off and try
//! again later". It never reports success. The manager-to-manager transport
//! (gRPC over mTLS on the cluster port) replaces it when the store gains members.

use crate::types::{NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

/// Why every RPC fails.
#[derive(Debug, thiserror::Error)]
#[error("no network to Raft node {target}: this store is a single-voter group")]
pub struct NoNetworkError {
    pub target: NodeId,
}

/// Makes [`NoConnection`]s.
#[derive(Debug, Default, Clone)]
pub struct NoNetwork;

/// A connection to a peer that cannot be reached.
#[derive(Debug)]
pub struct NoConnection {
    target: NodeId,
}

impl NoConnection {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoNetworkError {
            target: self.target,
        }))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoConnection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> NoConnection {
        NoConnection { target }
    }
}

impl RaftNetwork<TypeConfig> for NoConnection {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Vote;
    use std::time::Duration;

    #[tokio::test]
    async fn every_rpc_is_unreachable() {
        let mut net = NoNetwork;
        let mut conn = net.new_client(2, &BasicNode::default()).await;
        let err = conn
            .vote(
                VoteRequest::new(Vote::new(1, 1), None),
                RPCOption::new(Duration::from_secs(1)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains("node 2"), "{err}");
    }
}
