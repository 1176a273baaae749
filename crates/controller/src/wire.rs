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
    /// How often the leader replaces the gossip network's key ("12h"; "0s": never).
    #[schema(value_type = String)]
    #[serde(with = "api::duration", default)]
    pub gossip_key_rotation: std::time::Duration,
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
    /// Human text ("12h"); "0" never rotates; otherwise at least 10m, at most a year.
    #[serde(default)]
    pub gossip_key_rotation: Option<String>,
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

// ------------------------------------------------------------ access control

/// `POST /api/v1/auth/login`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A new session or API token: the secret is shown this once.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub token: String,
    #[serde(default)]
    pub expires_at: Option<api::Timestamp>,
    pub user: UserView,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A user as the API shows it (never its password hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    pub admin: bool,
    pub disabled: bool,
    /// `local` or `ldap`.
    pub source: String,
    #[serde(default)]
    pub ldap_dn: Option<String>,
    #[serde(default)]
    pub locked_until: Option<api::Timestamp>,
    pub created_at: api::Timestamp,
    /// "org/team" names.
    #[serde(default)]
    pub teams: Vec<String>,
}

/// `POST /api/v1/users`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    /// Absent: the user can sign in only through LDAP or a bundle made by an admin.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/users/{name}/update`: only the fields given change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub admin: Option<bool>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// `true` lifts a lockout.
    #[serde(default)]
    pub unlock: bool,
}

/// `POST /api/v1/users/{name}/password`. A user changing its own password
/// gives the old one; an admin resetting another's does not.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password: String,
    #[serde(default)]
    pub old_password: Option<String>,
}

impl std::fmt::Debug for SetPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetPassword { .. }")
    }
}

/// `POST /api/v1/orgs`, `POST /api/v1/collections`, `POST /api/v1/teams/{org}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNamed {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub teams: Vec<String>,
}

/// `POST /api/v1/teams/{org}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub name: String,
    /// The LDAP group the sync takes this team's members from.
    #[serde(default)]
    pub ldap_group_dn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeamView {
    pub id: String,
    pub org: String,
    pub name: String,
    /// User names.
    pub members: Vec<String>,
    #[serde(default)]
    pub ldap_group_dn: Option<String>,
}

/// `POST /api/v1/teams/{org}/{team}/members`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMember {
    pub user: String,
}

/// `POST /api/v1/collections`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CollectionView {
    pub id: String,
    pub path: String,
    /// Made by berth (`/`, `/System`, `/Shared`, private collections); never removed by hand.
    pub builtin: bool,
}

/// `POST /api/v1/roles`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    pub name: String,
    /// Operation names, `resource.action` (see `GET /api/v1/roles/operations`).
    pub operations: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleView {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub builtin: bool,
    pub operations: Vec<String>,
}

/// Who a grant is for, by name: a user `alice`, a team `eng/web`, an organization `eng`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    User,
    Team,
    Org,
}

/// `POST /api/v1/grants`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrant {
    pub subject_kind: SubjectKind,
    pub subject: String,
    pub role: String,
    pub collection: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantView {
    pub id: String,
    pub subject_kind: SubjectKind,
    pub subject: String,
    pub role: String,
    pub collection: String,
}

/// `POST /api/v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// A duration such as `30d` or `12h`; absent: never expires.
    #[serde(default)]
    pub expires_in: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub user: String,
    pub created_at: api::Timestamp,
    #[serde(default)]
    pub expires_at: Option<api::Timestamp>,
}

/// `GET /api/v1/auth/whoami`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub user: UserView,
    /// `session`, `api_token`, `bundle` or `admin_token`.
    pub credential: String,
}

/// `POST /api/v1/bundles`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBundle {
    /// Unique among the caller's bundles [default: bundle-<short id>].
    #[serde(default)]
    pub label: Option<String>,
    /// `ucp` (default: every file at the top, to unzip and `source env.sh`)
    /// or `docker-context` (only what `docker context import` accepts).
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleView {
    pub id: String,
    pub label: String,
    pub user: String,
    pub created_at: api::Timestamp,
    pub expires_at: api::Timestamp,
    pub public_key_sha256: String,
}
