//! Request and response bodies of the API that are not stored objects
//! themselves. The CLI uses these same types.

use api::{NodeSpec, Service, ServiceSpec};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/info`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Info {
    /// berth version of the answering manager.
    pub version: String,
    pub cluster_name: String,
    /// Store index the answer was read at.
    pub index: u64,
    pub leader: bool,
    pub nodes: usize,
    pub services: usize,
    pub tasks: usize,
}

/// A service with counts of its tasks, as `service ls` shows them.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceWithStatus {
    #[serde(flatten)]
    pub service: Service,
    pub service_status: ServiceStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceStatus {
    /// Tasks whose desired and observed state are both running.
    pub running_tasks: u64,
    /// Tasks that should be running.
    pub desired_tasks: u64,
}

/// `POST /api/v1/services` answers with the new service's id and version.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Created {
    pub id: String,
    pub version: u64,
}

/// `POST /api/v1/services/{id}/update`: the new spec and the version it was
/// based on (a stale version is refused with 409, as `docker service update`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    pub version: u64,
    pub spec: ServiceSpec,
}

/// `POST /api/v1/services/{id}/rollback`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub version: u64,
}

/// `POST /api/v1/nodes/{id}/update`: the node's new spec (role, availability,
/// labels) and the version it was based on, as `docker node update`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNode {
    pub version: u64,
    pub spec: NodeSpec,
}

/// `GET /api/v1/cluster`: the cluster's settings (`docker swarm update`'s).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterSettings {
    pub name: String,
    /// The cluster object's version, for an update against it.
    pub version: u64,
    /// Terminated tasks kept per slot.
    pub task_history_limit: u64,
    /// How often agents heartbeat (human text, e.g. "5s").
    #[schema(value_type = String)]
    #[serde(with = "api::duration")]
    pub dispatcher_heartbeat: std::time::Duration,
    /// How long node certificates are valid (e.g. "90d").
    #[schema(value_type = String)]
    #[serde(with = "api::duration")]
    pub cert_expiry: std::time::Duration,
}

/// `POST /api/v1/cluster/update`: the settings to change; the others stay.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCluster {
    /// The version the change is based on; none: whatever is current.
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub task_history_limit: Option<u64>,
    /// Human text ("5s"); at least 500ms, at most 1h.
    #[serde(default)]
    pub dispatcher_heartbeat: Option<String>,
    /// Human text ("2160h"); at least 1h (Swarm's minimum), at most 10 years.
    #[serde(default)]
    pub cert_expiry: Option<String>,
}

/// `GET /api/v1/cluster/ca`: the cluster root CA, and the progress of a
/// rotation (`berth ca --rotate`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaStatus {
    /// The roots nodes trust now (PEM): two during a rotation.
    pub trust_pem: String,
    /// SHA-256 of the current root's certificate (what join tokens pin).
    pub root_digest: String,
    /// A rotation under way, if any.
    pub rotation: Option<CaRotationStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaRotationStatus {
    /// SHA-256 of the new root's certificate.
    pub new_root_digest: String,
    /// Nodes in the cluster, and how many hold a certificate of the new root.
    pub nodes: usize,
    pub renewed: usize,
    /// Hostnames of the nodes still holding a certificate of the old root.
    pub waiting_for: Vec<String>,
}

/// `GET /api/v1/cluster/join-tokens`: the commands that add nodes.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
    /// Cluster RPC addresses of the managers, the leader first: where `berth join` goes.
    pub managers: Vec<String>,
}

impl std::fmt::Debug for JoinTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTokens")
            .field("managers", &self.managers)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/cluster/join-tokens/rotate`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateJoinToken {
    /// "worker" or "manager".
    pub role: String,
}
