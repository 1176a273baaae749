//! The dispatcher's gRPC service (`proto/dispatcher.proto`): how agents on
//! other machines reach the leader's dispatcher.
//!
//! [`DispatcherService`] serves any [`Dispatcher`] (the leader's
//! [`crate::LocalDispatcher`]) over the cluster RPC. The trait's long-poll of
//! assignments becomes a server stream: the complete set first, then only
//! what changed, computed here between consecutive polls.
//!
//! Two checks come before any call reaches the dispatcher:
//! - who calls: over mutual TLS the client certificate names a node, and a node
//!   may only speak for itself; a caller with no certificate is refused unless
//!   the service was built for tests with
//!   [`DispatcherService::allow_unauthenticated_for_tests`];
//! - who leads: sessions and store writes live on the leader, so a follower
//!   answers `UNAVAILABLE` with the leader's address in the `berth-leader`
//!   metadata, and the agent goes there.

use api::dispatch::{DispatchError, Dispatcher, Session, TaskStatusUpdate};
use api::rpc::dispatcher as pb;
use api::rpc::dispatcher::dispatcher_server::{self, DispatcherServer};
use api::Task;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
// tonic's generated code names its stream trait through this re-export; using
// it too keeps tokio-stream out of our own dependencies.
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The response metadata key that carries the leader's cluster RPC address
/// when a follower refuses a call. The agent's client reads the same key.
pub const LEADER_METADATA_KEY: &str = "berth-leader";

/// How long one poll of the dispatcher may wait before the stream sends a
/// keepalive: the client takes a stream silent for several of these as dead.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

/// Largest message the service decodes: a status batch of a busy node.
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// Messages of an assignments stream that may wait for a slow client before
/// the stream stops polling (backpressure instead of memory).
const STREAM_BUFFER: usize = 4;

/// Whether this manager leads, as the node's wiring knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderHint {
    /// This manager is the leader: serve.
    Leader,
    /// Another manager leads; its cluster RPC address (`host:port`) if known.
    Follower { leader_addr: Option<String> },
}

type LeaderFn = dyn Fn() -> LeaderHint + Send + Sync;

/// The gRPC face of a [`Dispatcher`].
#[derive(Clone)]
pub struct DispatcherService {
    dispatcher: Arc<dyn Dispatcher>,
    leader: Arc<LeaderFn>,
    allow_unauthenticated: bool,
    keepalive: Duration,
}

impl std::fmt::Debug for DispatcherService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherService")
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

impl DispatcherService {
    /// Serves `dispatcher` as the leader, to callers with a node certificate.
    pub fn new(dispatcher: Arc<dyn Dispatcher>) -> DispatcherService {
        DispatcherService {
            dispatcher,
            leader: Arc::new(|| LeaderHint::Leader),
            allow_unauthenticated: false,
            keepalive: DEFAULT_KEEPALIVE,
        }
    }

    /// Asks `leader` before every call (and between polls of a stream) whether
    /// this manager still leads; a follower sends callers to the leader.
    pub fn with_leader_hint(
        mut self,
        leader: impl Fn() -> LeaderHint + Send + Sync + 'static,
    ) -> DispatcherService {
        self.leader = Arc::new(leader);
        self
    }

    /// Serves callers that show no certificate, trusting the node ids they
    /// send. Only for tests over plain loopback: a node never serves this.
    pub fn allow_unauthenticated_for_tests(mut self) -> DispatcherService {
        self.allow_unauthenticated = true;
        self
    }

    /// How long an assignments stream stays silent at most (see [`DEFAULT_KEEPALIVE`]).
    pub fn with_keepalive(mut self, keepalive: Duration) -> DispatcherService {
        self.keepalive = keepalive.max(Duration::from_millis(10));
        self
    }

    /// The tonic service to add to the cluster RPC server.
    pub fn into_server(self) -> DispatcherServer<DispatcherService> {
        DispatcherServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// The node the caller may speak for: the certificate's node, or `None`
    /// (anyone) when unauthenticated callers are allowed and it showed none.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        match api::rpc::peer(request) {
            Some(identity) => Ok(Some(identity.node_id.clone())),
            None if self.allow_unauthenticated => Ok(None),
            None => Err(Status::unauthenticated(
                "the dispatcher serves nodes with a cluster certificate only",
            )),
        }
    }

    /// Refuses the call unless this manager leads.
    fn check_leader(&self) -> Result<(), Status> {
        leader_status((self.leader)())
    }

    /// Authenticates the caller, checks it speaks for its own node, and that
    /// this manager leads; returns the session named in the request.
    fn session<T>(
        &self,
        request: &Request<T>,
        session: Option<&pb::SessionRef>,
    ) -> Result<Session, Status> {
        let caller = self.caller(request)?;
        let session = session.ok_or_else(|| Status::invalid_argument("no session given"))?;
        check_speaks_for(caller.as_deref(), &session.node_id)?;
        self.check_leader()?;
        Ok(Session {
            node_id: session.node_id.clone(),
            session_id: session.session_id.clone(),
            // Not used by the dispatcher's calls after registration.
            heartbeat_period: Duration::ZERO,
        })
    }
}

fn leader_status(hint: LeaderHint) -> Result<(), Status> {
    match hint {
        LeaderHint::Leader => Ok(()),
        LeaderHint::Follower { leader_addr } => {
            let mut status = Status::unavailable("this manager is not the leader");
            if let Some(addr) = leader_addr {
                match addr.parse() {
                    Ok(value) => {
                        status.metadata_mut().insert(LEADER_METADATA_KEY, value);
                    }
                    // Without the hint the agent still finds the leader by
                    // trying the managers it knows.
                    Err(_) => tracing::warn!(%addr, "leader address not valid in metadata"),
                }
            }
            Err(status)
        }
    }
}

fn check_speaks_for(caller: Option<&str>, node_id: &str) -> Result<(), Status> {
    match caller {
        Some(certified) if certified != node_id => Err(Status::permission_denied(format!(
            "node {certified} cannot speak for node {node_id}"
        ))),
        _ => Ok(()),
    }
}

/// The status a dispatcher error travels as (see the proto's comment).
pub fn status_of(e: DispatchError) -> Status {
    match e {
        DispatchError::InvalidSession(m) => {
            Status::failed_precondition(format!("invalid session: {m}"))
        }
        DispatchError::Unavailable(m) => Status::unavailable(m),
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
}

fn encode(task: &Task) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(task).map_err(|e| {
        tracing::error!(task = %task.meta.id, "encoding a task: {e}");
        Status::internal("a task could not be encoded")
    })
}

/// What changed from the set the client holds to `tasks`: the added or changed
/// tasks and the ids that left. Updates `held` to `tasks`.
pub fn diff(held: &mut BTreeMap<String, Task>, tasks: Vec<Task>) -> (Vec<Task>, Vec<String>) {
    let mut next: BTreeMap<String, Task> =
        tasks.into_iter().map(|t| (t.meta.id.clone(), t)).collect();
    let removed: Vec<String> = held
        .keys()
        .filter(|id| !next.contains_key(*id))
        .cloned()
        .collect();
    let updated: Vec<Task> = next
        .iter()
        .filter(|(id, t)| held.get(*id) != Some(*t))
        .map(|(_, t)| t.clone())
        .collect();
    std::mem::swap(held, &mut next);
    (updated, removed)
}

fn message(
    kind: pb::assignments_message::Kind,
    index: u64,
    tasks: &[Task],
    removed: Vec<String>,
) -> Result<pb::AssignmentsMessage, Status> {
    Ok(pb::AssignmentsMessage {
        kind: kind as i32,
        index,
        tasks_json: tasks.iter().map(encode).collect::<Result<_, _>>()?,
        removed,
    })
}

type Outbox = mpsc::Sender<Result<pb::AssignmentsMessage, Status>>;

impl DispatcherService {
    /// Feeds one assignments stream until the client leaves, the session ends
    /// or this manager stops leading.
    async fn feed(self, session: Session, out: Outbox) {
        if let Err(status) = self.feed_until_error(&session, &out).await {
            tracing::debug!(node = %session.node_id, "assignments stream ends: {status}");
            // The client may be gone already; then nobody needs to know.
            let _ = out.send(Err(status)).await;
        }
    }

    async fn feed_until_error(&self, session: &Session, out: &Outbox) -> Result<(), Status> {
        use pb::assignments_message::Kind;
        let first = self
            .dispatcher
            .assignments(session, None, Duration::ZERO)
            .await
            .map_err(status_of)?;
        let mut held = BTreeMap::new();
        let mut poll_after = first.index;
        // The index of the last message that changed the set: a keepalive
        // repeats it, so the agent does not take an unchanged set for news.
        let mut sent_index = first.index;
        let (tasks, _) = diff(&mut held, first.tasks);
        if out
            .send(message(Kind::Complete, first.index, &tasks, vec![]))
            .await
            .is_err()
        {
            return Ok(());
        }
        loop {
            self.check_leader()?;
            let next = tokio::select! {
                r = self.dispatcher.assignments(session, Some(poll_after), self.keepalive) => r,
                // The client left: stop polling for it.
                _ = out.closed() => return Ok(()),
            };
            let next = next.map_err(status_of)?;
            // Leadership may have moved during the wait: from then on the
            // agent must hear from the new leader, whose sessions count.
            self.check_leader()?;
            poll_after = next.index;
            let (updated, removed) = diff(&mut held, next.tasks);
            if !updated.is_empty() || !removed.is_empty() {
                sent_index = next.index;
            }
            let msg = message(Kind::Incremental, sent_index, &updated, removed);
            if out.send(msg).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[tonic::async_trait]
impl dispatcher_server::Dispatcher for DispatcherService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.get_ref();
        let asked = (!req.node_id.is_empty()).then(|| req.node_id.clone());
        // A certified node is the node of its certificate, whether or not it
        // remembers its id.
        let node_id = match (&caller, asked) {
            (Some(certified), Some(asked)) => {
                check_speaks_for(Some(certified), &asked)?;
                Some(asked)
            }
            (Some(certified), None) => Some(certified.clone()),
            (None, asked) => asked,
        };
        self.check_leader()?;
        let description = decode(&req.description_json, "description_json")?;
        let session = self
            .dispatcher
            .register(node_id, description)
            .await
            .map_err(status_of)?;
        if let Some(certified) = &caller {
            if session.node_id != *certified {
                // The dispatcher did not know the certificate's node and made
                // a new one: the certificate belongs to a node that is not (or
                // no longer) a member, which must join again.
                return Err(Status::permission_denied(format!(
                    "node {certified} is not a member of this cluster"
                )));
            }
        }
        Ok(Response::new(pb::RegisterResponse {
            node_id: session.node_id,
            session_id: session.session_id,
            heartbeat_period_ms: u64::try_from(session.heartbeat_period.as_millis())
                .unwrap_or(u64::MAX),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let session = self.session(&request, request.get_ref().session.as_ref())?;
        self.dispatcher
            .heartbeat(&session)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn update_task_status(
        &self,
        request: Request<pb::UpdateTaskStatusRequest>,
    ) -> Result<Response<pb::UpdateTaskStatusResponse>, Status> {
        let session = self.session(&request, request.get_ref().session.as_ref())?;
        let updates = request
            .into_inner()
            .updates
            .into_iter()
            .map(|u| {
                Ok(TaskStatusUpdate {
                    status: decode(&u.status_json, "status_json")?,
                    task_id: u.task_id,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        self.dispatcher
            .update_task_status(&session, updates)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::UpdateTaskStatusResponse {}))
    }

    type AssignmentsStream = ReceiverStream<Result<pb::AssignmentsMessage, Status>>;

    async fn assignments(
        &self,
        request: Request<pb::AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let session = self.session(&request, request.get_ref().session.as_ref())?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().feed(session, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Meta, TaskSpec, TaskState};

    fn task(id: &str, desired: TaskState) -> Task {
        Task {
            meta: Meta::new(id),
            service_id: "s".into(),
            slot: 1,
            node_id: Some("n1".into()),
            spec: TaskSpec::exec(["sleep", "1"]),
            spec_version: 1,
            desired_state: desired,
            status: api::TaskStatus::default(),
            restarts: vec![],
        }
    }

    fn ids(tasks: &[Task]) -> Vec<&str> {
        tasks.iter().map(|t| t.meta.id.as_str()).collect()
    }

    #[test]
    fn diff_names_added_changed_and_removed_tasks() {
        let mut held = BTreeMap::new();
        let (updated, removed) = diff(
            &mut held,
            vec![task("a", TaskState::Running), task("b", TaskState::Running)],
        );
        assert_eq!((ids(&updated), removed.len()), (vec!["a", "b"], 0));

        // Same set: nothing to send.
        let (updated, removed) = diff(
            &mut held,
            vec![task("b", TaskState::Running), task("a", TaskState::Running)],
        );
        assert!(updated.is_empty() && removed.is_empty());

        // b changes, a leaves, c arrives.
        let (updated, removed) = diff(
            &mut held,
            vec![
                task("b", TaskState::Shutdown),
                task("c", TaskState::Running),
            ],
        );
        assert_eq!(ids(&updated), vec!["b", "c"]);
        assert_eq!(removed, vec!["a".to_string()]);
        assert_eq!(held.keys().collect::<Vec<_>>(), vec!["b", "c"]);
    }

    #[test]
    fn a_follower_names_the_leader_in_its_refusal() {
        assert!(leader_status(LeaderHint::Leader).is_ok());
        let status = leader_status(LeaderHint::Follower {
            leader_addr: Some("10.0.0.1:7377".into()),
        })
        .expect_err("a follower refuses");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status
                .metadata()
                .get(LEADER_METADATA_KEY)
                .and_then(|v| v.to_str().ok()),
            Some("10.0.0.1:7377")
        );
        let status = leader_status(LeaderHint::Follower { leader_addr: None })
            .expect_err("a follower refuses");
        assert!(status.metadata().get(LEADER_METADATA_KEY).is_none());
    }

    #[test]
    fn a_node_speaks_only_for_itself() {
        assert!(check_speaks_for(None, "n1").is_ok());
        assert!(check_speaks_for(Some("n1"), "n1").is_ok());
        assert_eq!(
            check_speaks_for(Some("n2"), "n1").map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied)
        );
    }

    #[test]
    fn dispatcher_errors_keep_their_meaning_on_the_wire() {
        let s = status_of(DispatchError::InvalidSession("s1".into()));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        let s = status_of(DispatchError::Unavailable("no quorum".into()));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(s.metadata().get(LEADER_METADATA_KEY).is_none());
    }
}
