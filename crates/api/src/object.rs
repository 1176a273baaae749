//! Stored objects: every one has a [`Meta`] (id, version, times) and belongs to
//! one [`Kind`]. The version is the Raft log index of the entry that last wrote
//! the object, so it is the same on every manager and only ever grows.

use crate::auth::{ClientBundle, Collection, Grant, Organization, Role, Team, Token, User};
use crate::registry::{RepoBlob, RepoGrant, RepoManifest, RepoTag, Repository};
use crate::spec::{Resources, ServiceSpec, TaskSpec};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Cluster,
    Node,
    Service,
    Task,
    User,
    Organization,
    Team,
    Collection,
    Role,
    Grant,
    Token,
    ClientBundle,
    Repository,
    RepoBlob,
    RepoManifest,
    RepoTag,
    RepoGrant,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::User => "user",
            Kind::Organization => "organization",
            Kind::Team => "team",
            Kind::Collection => "collection",
            Kind::Role => "role",
            Kind::Grant => "grant",
            Kind::Token => "token",
            Kind::ClientBundle => "client_bundle",
            Kind::Repository => "repository",
            Kind::RepoBlob => "repo_blob",
            Kind::RepoManifest => "repo_manifest",
            Kind::RepoTag => "repo_tag",
            Kind::RepoGrant => "repo_grant",
        }
    }

    /// The kinds kept by id in the state's keyed map, with unique keys
    /// and references checked: the auth store's (`crate::auth`) and the
    /// registry's (`crate::registry`).
    pub fn is_auth(self) -> bool {
        !matches!(
            self,
            Kind::Cluster | Kind::Node | Kind::Service | Kind::Task
        )
    }

    /// The auth kinds that authorization decisions depend on: who a user
    /// is and what is granted, not its tokens or bundles (a login's new
    /// session must not invalidate every cached decision).
    pub fn decides_access(self) -> bool {
        matches!(
            self,
            Kind::User
                | Kind::Organization
                | Kind::Team
                | Kind::Role
                | Kind::Grant
                | Kind::Collection
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub id: String,
    /// Raft index of the last write; 0 for an object not yet stored.
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Timestamp,
}

impl Meta {
    pub fn new(id: impl Into<String>) -> Meta {
        Meta {
            id: id.into(),
            ..Meta::default()
        }
    }
}

// ---------------------------------------------------------------- cluster

/// Cluster-wide settings; exactly one exists, with id [`Cluster::ID`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub meta: Meta,
    pub name: String,
    /// Terminated tasks kept per slot for `service ps` (Swarm's default: 5).
    pub task_history_limit: u64,
    /// How often agents heartbeat.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration")]
    pub heartbeat_period: std::time::Duration,
    /// How long node certificates are valid (Swarm's `--cert-expiry`); nodes
    /// renew theirs between half and four fifths of the way through.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration", default = "default_node_cert_validity")]
    pub node_cert_validity: std::time::Duration,
    /// How often the leader replaces the gossip key (Swarm rotates its
    /// network keys every 12 hours); zero never rotates.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration", default = "default_gossip_key_rotation")]
    pub gossip_key_rotation: std::time::Duration,
    /// The cluster's identity and secrets, made by `berth init` (and `berth
    /// up`). Held only in the managers' store: the API never serves it.
    #[serde(default)]
    pub security: Option<ClusterSecurity>,
    /// Access control's settings: sessions, lockout, audit, LDAP.
    #[serde(default, skip_serializing_if = "crate::auth::AuthSettings::is_default")]
    pub auth: crate::auth::AuthSettings,
}

/// A certificate authority: its certificate and private key, in PEM.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaKeys {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaKeys")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The secrets a node shows to join, one per role (`BERTH-1-<ca digest>-<secret>`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

impl std::fmt::Debug for JoinTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinTokens { <redacted> }")
    }
}

/// What makes a cluster one: its id, its two roots of trust (DESIGN §5), the
/// join tokens, and the keys of the gossip network.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecurity {
    /// Random, in every node certificate: a certificate of another cluster
    /// signed by a look-alike CA is still refused.
    pub cluster_id: String,
    /// Signs node certificates (mutual TLS between nodes).
    pub root_ca: CaKeys,
    /// Signs client bundles (users' certificates).
    pub client_ca: CaKeys,
    pub join_tokens: JoinTokens,
    /// Keys of the gossip network (hex), the one to send with first; nodes
    /// accept all of them, so a rotation adds a key before it drops one.
    #[serde(default)]
    pub gossip_keys: Vec<String>,
    /// SHA-256 (hex) of the admin API token, so every manager's API accepts
    /// it; the token itself is only in the admin's credentials file.
    #[serde(default)]
    pub admin_token_sha256: String,
    /// A rotation of the cluster root CA under way (`berth ca --rotate`).
    #[serde(default)]
    pub root_rotation: Option<RootRotation>,
    /// Where the gossip keys stand in their rotation.
    #[serde(default)]
    pub gossip_key_stage: GossipKeyStage,
    /// The registry's token signing key (ES256, PKCS#8 PEM), made by the
    /// first manager that serves the registry; every manager signs and
    /// verifies with it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry_key_pem: String,
}

/// The gossip keys' rotation, in three steps so that no node ever seals with
/// a key another node cannot open yet: a new key is first accepted
/// everywhere, then sent with, then the old one is dropped.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeyStage {
    pub step: GossipKeyStep,
    /// When the keys entered this step (the proposer's clock); none in a
    /// cluster made before rotations, whose clock the leader then starts.
    #[serde(default)]
    pub since: Option<Timestamp>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GossipKeyStep {
    /// One key (the first of `gossip_keys`) until the next rotation.
    #[default]
    Steady,
    /// The last key is new: accepted by every node, not yet sent with.
    Adding,
    /// The first key is new and sent with; the others are old, still
    /// accepted until they are dropped.
    Retiring,
}

/// A cluster root CA rotation, as Swarm does it: the new root signs every
/// certificate from the start of the rotation, each presented with the new
/// root cross-signed by the old one, so nodes that still trust only the old
/// root accept them; every node trusts both roots until every node holds a
/// certificate of the new one, and then only the new.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotation {
    pub new_root: CaKeys,
    /// The new root's certificate signed by the old root (PEM).
    pub cross_signed_pem: String,
}

impl ClusterSecurity {
    /// The root that signs node certificates now.
    pub fn signing_root(&self) -> &CaKeys {
        match &self.root_rotation {
            Some(r) => &r.new_root,
            None => &self.root_ca,
        }
    }

    /// What follows a new leaf in its chain: the cross-signed new root
    /// during a rotation, nothing otherwise.
    pub fn chain_suffix(&self) -> &str {
        self.root_rotation
            .as_ref()
            .map_or("", |r| r.cross_signed_pem.as_str())
    }

    /// The roots every node trusts (PEM): both during a rotation.
    pub fn trust_pem(&self) -> String {
        match &self.root_rotation {
            Some(r) => format!(
                "{}\n{}",
                self.root_ca.cert_pem.trim_end(),
                r.new_root.cert_pem
            ),
            None => self.root_ca.cert_pem.clone(),
        }
    }
}

fn default_node_cert_validity() -> std::time::Duration {
    Cluster::DEFAULT_NODE_CERT_VALIDITY
}

fn default_gossip_key_rotation() -> std::time::Duration {
    Cluster::DEFAULT_GOSSIP_KEY_ROTATION
}

impl Cluster {
    pub const ID: &'static str = "default";
    /// Swarm's default certificate expiry: 90 days.
    pub const DEFAULT_NODE_CERT_VALIDITY: std::time::Duration =
        std::time::Duration::from_secs(90 * 24 * 3600);
    /// Swarm's network key rotation: every 12 hours.
    pub const DEFAULT_GOSSIP_KEY_ROTATION: std::time::Duration =
        std::time::Duration::from_secs(12 * 3600);

    pub fn new(name: impl Into<String>) -> Cluster {
        Cluster {
            meta: Meta::new(Cluster::ID),
            name: name.into(),
            task_history_limit: 5,
            heartbeat_period: std::time::Duration::from_secs(5),
            node_cert_validity: Cluster::DEFAULT_NODE_CERT_VALIDITY,
            gossip_key_rotation: Cluster::DEFAULT_GOSSIP_KEY_ROTATION,
            security: None,
            auth: Default::default(),
        }
    }
}

// ---------------------------------------------------------------- node

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    #[default]
    Worker,
    Manager,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

/// What the user sets on a node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub role: NodeRole,
    #[serde(default)]
    pub availability: Availability,
}

/// What the agent reports about its machine.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    /// Total resources of the machine.
    pub resources: Resources,
    /// berth version of the agent.
    pub version: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub state: NodeState,
    #[serde(default)]
    pub message: String,
    /// Address the node was last seen from.
    #[serde(default)]
    pub addr: String,
    /// Where the node's gossip listens (UDP `host:port`), as it advertised
    /// when it joined; managers' addresses are the seeds others join through.
    #[serde(default)]
    pub gossip_addr: String,
    /// SHA-256 (hex) of the root CA that issued the node's current
    /// certificate, written by the CA when it signs; a root rotation ends
    /// once every node's is the new root's.
    #[serde(default)]
    pub cert_root: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    pub leader: bool,
    /// "reachable" or "unreachable".
    pub reachability: String,
    /// The manager's cluster RPC address (Raft, dispatcher, CA).
    pub addr: String,
    /// The manager's HTTPS API address.
    #[serde(default)]
    pub api_addr: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub meta: Meta,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    #[serde(default)]
    pub manager_status: Option<ManagerStatus>,
}

// ---------------------------------------------------------------- service

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    #[default]
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

/// Progress of the last rolling update or rollback, owned by the updater.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: Timestamp,
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    #[serde(default)]
    pub message: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub meta: Meta,
    pub spec: ServiceSpec,
    /// The spec before the last update, for `service rollback`.
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    /// Grows by one at every spec change; tasks record the one they run.
    pub spec_version: u64,
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
}

impl Service {
    /// A service as first created: spec version 1, nothing to roll back to,
    /// no update under way. Version and times are set by the store.
    pub fn new(id: impl Into<String>, spec: ServiceSpec) -> Service {
        Service {
            meta: Meta::new(id),
            spec,
            previous_spec: None,
            spec_version: 1,
            update_status: None,
        }
    }
}

// ---------------------------------------------------------------- task

/// A task's life, in Swarm's order; a task only moves forward.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    #[default]
    New,
    /// Waiting for a node (the scheduler says why in `status.err`).
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    /// Desired state only: stop the task and delete it.
    Remove,
    /// Its node was lost and it cannot be accounted for.
    Orphaned,
}

impl TaskState {
    /// The task will not run again.
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is observed of a task; written by the agent once the task is assigned
/// (and by the scheduler while it is pending).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    /// When the task entered `state`.
    pub timestamp: Timestamp,
    #[serde(default)]
    pub message: String,
    /// Why the task failed, or why it is still pending.
    #[serde(default)]
    pub err: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub pid: Option<u32>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub meta: Meta,
    pub service_id: String,
    /// Replicated services: 1..=replicas. Global services: 0 (the node identifies the task).
    pub slot: u64,
    /// Set by the scheduler (replicated) or at creation (global).
    #[serde(default)]
    pub node_id: Option<String>,
    pub spec: TaskSpec,
    /// The service's `spec_version` this task was created from.
    pub spec_version: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    /// Times at which this slot was restarted, newest last, pruned to the
    /// restart policy's window; carried from a task to its replacement.
    #[serde(default)]
    pub restarts: Vec<Timestamp>,
}

impl Task {
    /// The name shown in `service ps`: `web.3`, or `web.<node id>` for a global task.
    pub fn display_name(&self, service_name: &str) -> String {
        if self.slot > 0 {
            format!("{service_name}.{}", self.slot)
        } else {
            let node = self.node_id.as_deref().unwrap_or("");
            format!("{service_name}.{}", crate::id::short(node))
        }
    }
}

// ---------------------------------------------------------------- any object

/// Any stored object. Its JSON is the object's own fields with its kind in a
/// `kind` field, which berth writes first; see the `Deserialize` impl below.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Objects are moved whole between the store, events and plans; boxing the
// larger variants would add an allocation to every one of those moves.
#[allow(clippy::large_enum_variant)]
pub enum Object {
    Cluster(Cluster),
    Node(Node),
    Service(Service),
    Task(Task),
    User(User),
    Organization(Organization),
    Team(Team),
    Collection(Collection),
    Role(Role),
    Grant(Grant),
    Token(Token),
    ClientBundle(ClientBundle),
    Repository(Repository),
    RepoBlob(RepoBlob),
    RepoManifest(RepoManifest),
    RepoTag(RepoTag),
    RepoGrant(RepoGrant),
}

/// Calls `$f` with the object of whatever kind `$o` holds.
macro_rules! each_object {
    ($o:expr, $x:ident => $f:expr) => {
        match $o {
            Object::Cluster($x) => $f,
            Object::Node($x) => $f,
            Object::Service($x) => $f,
            Object::Task($x) => $f,
            Object::User($x) => $f,
            Object::Organization($x) => $f,
            Object::Team($x) => $f,
            Object::Collection($x) => $f,
            Object::Role($x) => $f,
            Object::Grant($x) => $f,
            Object::Token($x) => $f,
            Object::ClientBundle($x) => $f,
            Object::Repository($x) => $f,
            Object::RepoBlob($x) => $f,
            Object::RepoManifest($x) => $f,
            Object::RepoTag($x) => $f,
            Object::RepoGrant($x) => $f,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::Task(_) => Kind::Task,
            Object::User(_) => Kind::User,
            Object::Organization(_) => Kind::Organization,
            Object::Team(_) => Kind::Team,
            Object::Collection(_) => Kind::Collection,
            Object::Role(_) => Kind::Role,
            Object::Grant(_) => Kind::Grant,
            Object::Token(_) => Kind::Token,
            Object::ClientBundle(_) => Kind::ClientBundle,
            Object::Repository(_) => Kind::Repository,
            Object::RepoBlob(_) => Kind::RepoBlob,
            Object::RepoManifest(_) => Kind::RepoManifest,
            Object::RepoTag(_) => Kind::RepoTag,
            Object::RepoGrant(_) => Kind::RepoGrant,
        }
    }

    /// The keys an auth object keeps unique (none for the other kinds).
    pub fn unique_keys(&self) -> Vec<String> {
        use crate::auth::AuthObject;
        match self {
            Object::Cluster(_) | Object::Node(_) | Object::Service(_) | Object::Task(_) => vec![],
            Object::User(o) => o.unique_keys(),
            Object::Organization(o) => o.unique_keys(),
            Object::Team(o) => o.unique_keys(),
            Object::Collection(o) => o.unique_keys(),
            Object::Role(o) => o.unique_keys(),
            Object::Grant(o) => o.unique_keys(),
            Object::Token(o) => o.unique_keys(),
            Object::ClientBundle(o) => o.unique_keys(),
            // Their ids are made from their names: unique by themselves.
            Object::Repository(_)
            | Object::RepoBlob(_)
            | Object::RepoManifest(_)
            | Object::RepoTag(_)
            | Object::RepoGrant(_) => vec![],
        }
    }

    pub fn meta(&self) -> &Meta {
        each_object!(self, o => &o.meta)
    }

    pub fn meta_mut(&mut self) -> &mut Meta {
        each_object!(self, o => &mut o.meta)
    }

    pub fn id(&self) -> &str {
        &self.meta().id
    }
}

/// Reads what serde's internally tagged `Object` wrote, without its cost
/// on the hot path: serde's derive buffers every field of every object into
/// a tree of its own before it looks for the tag, which made decoding the
/// writes that followers forward and the entries the leader replicates
/// about twice as costly. berth always writes `kind` first (the derived
/// `Serialize`), so the object's fields are decoded straight into the right
/// type after it; an object whose `kind` comes later (written by hand) is
/// buffered as a JSON value first, as before.
impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

/// The first key of an object: the tag, or any other field.
enum FirstKey {
    Kind,
    Other(String),
}

impl<'de> Deserialize<'de> for FirstKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FirstKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FirstKey, E> {
                Ok(match v {
                    "kind" => FirstKey::Kind,
                    other => FirstKey::Other(other.to_string()),
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

fn object_of<'de, D: serde::Deserializer<'de>>(kind: Kind, d: D) -> Result<Object, D::Error> {
    Ok(match kind {
        Kind::Cluster => Object::Cluster(Cluster::deserialize(d)?),
        Kind::Node => Object::Node(Node::deserialize(d)?),
        Kind::Service => Object::Service(Service::deserialize(d)?),
        Kind::Task => Object::Task(Task::deserialize(d)?),
        Kind::User => Object::User(User::deserialize(d)?),
        Kind::Organization => Object::Organization(Organization::deserialize(d)?),
        Kind::Team => Object::Team(Team::deserialize(d)?),
        Kind::Collection => Object::Collection(Collection::deserialize(d)?),
        Kind::Role => Object::Role(Role::deserialize(d)?),
        Kind::Grant => Object::Grant(Grant::deserialize(d)?),
        Kind::Token => Object::Token(Token::deserialize(d)?),
        Kind::ClientBundle => Object::ClientBundle(ClientBundle::deserialize(d)?),
        Kind::Repository => Object::Repository(Repository::deserialize(d)?),
        Kind::RepoBlob => Object::RepoBlob(RepoBlob::deserialize(d)?),
        Kind::RepoManifest => Object::RepoManifest(RepoManifest::deserialize(d)?),
        Kind::RepoTag => Object::RepoTag(RepoTag::deserialize(d)?),
        Kind::RepoGrant => Object::RepoGrant(RepoGrant::deserialize(d)?),
    })
}

impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with a `kind` field")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        use serde::de::Error;
        match map.next_key::<FirstKey>()? {
            None => Err(A::Error::missing_field("kind")),
            Some(FirstKey::Kind) => {
                let kind: Kind = map.next_value()?;
                object_of(kind, serde::de::value::MapAccessDeserializer::new(map))
            }
            Some(FirstKey::Other(first)) => {
                let mut fields = serde_json::Map::new();
                fields.insert(first, map.next_value()?);
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    fields.insert(k, v);
                }
                let kind = fields
                    .remove("kind")
                    .ok_or_else(|| A::Error::missing_field("kind"))?;
                let kind = Kind::deserialize(kind).map_err(A::Error::custom)?;
                object_of(kind, serde_json::Value::Object(fields)).map_err(A::Error::custom)
            }
        }
    }
}

impl From<Cluster> for Object {
    fn from(o: Cluster) -> Self {
        Object::Cluster(o)
    }
}
impl From<Node> for Object {
    fn from(o: Node) -> Self {
        Object::Node(o)
    }
}
impl From<Service> for Object {
    fn from(o: Service) -> Self {
        Object::Service(o)
    }
}
impl From<Task> for Object {
    fn from(o: Task) -> Self {
        Object::Task(o)
    }
}

macro_rules! from_auth {
    ($($t:ident),*) => {$(
        impl From<$t> for Object {
            fn from(o: $t) -> Self {
                Object::$t(o)
            }
        }
    )*};
}
from_auth!(
    User,
    Organization,
    Team,
    Collection,
    Role,
    Grant,
    Token,
    ClientBundle,
    Repository,
    RepoBlob,
    RepoManifest,
    RepoTag,
    RepoGrant
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskSpec;

    fn task() -> Task {
        Task {
            meta: Meta::new("t1"),
            service_id: "s1".into(),
            slot: 2,
            node_id: Some("n1".into()),
            spec: TaskSpec::exec(["sleep", "1"]),
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            restarts: vec![],
        }
    }

    #[test]
    fn every_kind_round_trips_with_its_tag_first() {
        let objects = vec![
            Object::Cluster(Cluster::new("c")),
            Object::Node(Node {
                meta: Meta::new("n1"),
                spec: Default::default(),
                description: Default::default(),
                status: Default::default(),
                manager_status: None,
            }),
            Object::Service(Service::new(
                "s1",
                ServiceSpec {
                    name: "web".into(),
                    labels: Default::default(),
                    mode: Default::default(),
                    task_template: TaskSpec::exec(["true"]),
                    update_config: Default::default(),
                    rollback_config: Default::default(),
                },
            )),
            Object::Task(task()),
        ];
        for o in objects {
            let json = serde_json::to_string(&o).expect("encodes");
            let tag = format!(r#"{{"kind":"{}","#, o.kind());
            assert!(json.starts_with(&tag), "{json}");
            let back: Object = serde_json::from_str(&json).expect("decodes");
            assert_eq!(back, o);
        }
    }

    #[test]
    fn a_tag_after_other_fields_still_decodes() {
        let mut value = serde_json::to_value(Object::Task(task())).expect("encodes");
        let fields = value.as_object_mut().expect("an object");
        let kind = fields.remove("kind").expect("kind");
        fields.insert("kind".into(), kind);
        let json = serde_json::to_string(&value).expect("encodes");
        assert!(!json.starts_with(r#"{"kind""#), "{json}");
        let back: Object = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, Object::Task(task()));
    }

    #[test]
    fn a_missing_or_unknown_tag_is_refused() {
        let err = serde_json::from_str::<Object>(r#"{"meta":{"id":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `kind`"), "{err}");
        let err = serde_json::from_str::<Object>("{}").unwrap_err();
        assert!(err.to_string().contains("missing field `kind`"), "{err}");
        let err =
            serde_json::from_str::<Object>(r#"{"kind":"volume","meta":{"id":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
        let err =
            serde_json::from_str::<Object>(r#"{"kind":"task","meta":{"id":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
