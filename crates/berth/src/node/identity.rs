//! The node's identity on disk (`<data dir>/node/identity.json`): who it is
//! (node id, role, cluster id), its key and certificate, the roots it trusts,
//! the managers it knows and the gossip keys. Written once the node has
//! joined or founded a cluster, so that a restart resumes instead of joining
//! again; a node without this file has never been part of a cluster.

use anyhow::Context;
use api::rpc::PeerRole;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: String,
    pub cluster_id: String,
    pub role: Role,
    /// The node certificate (and any intermediate), PEM.
    pub cert_pem: String,
    pub key_pem: String,
    /// The cluster root CA certificates this node trusts, PEM.
    pub trust_pem: String,
    /// Cluster RPC addresses of the managers, as last learnt.
    pub managers: Vec<String>,
    /// Gossip keys (hex), the one to send with first.
    #[serde(default)]
    pub gossip_keys: Vec<String>,
    /// Gossip addresses of the managers, as last learnt: where gossip
    /// (re)joins the group.
    #[serde(default)]
    pub gossip_seeds: Vec<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("role", &self.role)
            .field("managers", &self.managers)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub fn peer_role(self) -> PeerRole {
        match self {
            Role::Manager => PeerRole::Manager,
            Role::Worker => PeerRole::Worker,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "manager" => Some(Role::Manager),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("node").join("identity.json")
}

impl Identity {
    /// The identity in `data_dir`, or `None` for a node that never joined.
    pub fn load(data_dir: &Path) -> anyhow::Result<Option<Identity>> {
        let p = path(data_dir);
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the node identity {}", p.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Writes the identity atomically, readable by its owner only (it holds
    /// the node's private key).
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let p = path(data_dir);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(self)?;
        controller::tls::write_private(&p, &bytes)
            .with_context(|| format!("writing {}", p.display()))
    }

    pub fn tls_identity(&self) -> anyhow::Result<ca::NodeIdentity> {
        ca::NodeIdentity::from_pem(&self.cert_pem, &self.key_pem)
            .context("the node certificate in the identity is not usable")
    }

    pub fn trust(&self) -> anyhow::Result<ca::TrustBundle> {
        ca::TrustBundle::from_pem(&self.trust_pem).context("the trusted roots in the identity")
    }
}
