//! The dispatcher of another machine, over gRPC (`proto/dispatcher.proto`):
//! [`RemoteDispatcher`] implements [`Dispatcher`] so the agent's loops run
//! unchanged whether the leader is in process or across the network.
//!
//! - Calls go to one manager at a time. A follower answers with the leader's
//!   address and the call goes there; a manager that cannot be reached is
//!   left for the next one, and once every known manager failed in a row the
//!   next attempts wait an exponential, jittered, bounded backoff.
//! - Assignments arrive on one server stream per session (the complete set,
//!   then increments); a background task rebuilds the full set from it, and
//!   [`Dispatcher::assignments`] long-polls that rebuilt set, so the agent
//!   keeps its "set after an index" view. A dropped stream is reopened (its
//!   first message is the complete set again).
//! - Errors keep the agent's meaning: `InvalidSession` when the manager
//!   answered that the session (or the node) is not valid, so the agent
//!   registers again; `Unavailable` for everything that may pass, so it backs
//!   off and retries.

use api::dispatch::{Assignments, DispatchError, Dispatcher, Session, TaskStatusUpdate};
use api::rpc::dispatcher as pb;
use api::rpc::dispatcher::dispatcher_client::DispatcherClient;
use api::rpc::Connector;
use api::{NodeDescription, Task};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The response metadata key under which a follower names the leader's
/// address; the manager's service writes the same key.
pub const LEADER_METADATA_KEY: &str = "berth-leader";

/// Leader hints followed in a row before the target counts as failed: two
/// managers that name each other during an election must not make the agent
/// spin.
const MAX_REDIRECTS: usize = 3;

/// Largest message decoded: a complete assignment set of a busy node.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The shortest heartbeat period taken from a manager, so that a zero (a
/// manager's mistake) cannot make the agent heartbeat in a busy loop.
const MIN_HEARTBEAT_PERIOD: Duration = Duration::from_millis(10);

#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// Longest one call may take, every attempt and wait included.
    pub call_timeout: Duration,
    /// The first wait once every known manager failed in a row; it doubles
    /// with each further failure, up to `backoff_max`, and is jittered.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// An assignments stream silent this long is taken as dead and reopened.
    /// The server sends a keepalive every 10 s by default: keep this above.
    pub stream_idle_timeout: Duration,
}

impl Default for RemoteConfig {
    fn default() -> RemoteConfig {
        RemoteConfig {
            call_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            stream_idle_timeout: Duration::from_secs(45),
        }
    }
}

/// A [`Dispatcher`] on other machines, reached through `connector`.
pub struct RemoteDispatcher {
    shared: Arc<Shared>,
    /// The assignment feed of the latest session asked about.
    feed: Mutex<Option<Feed>>,
}

impl std::fmt::Debug for RemoteDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDispatcher")
            .field("managers", &self.managers())
            .field("target", &self.target())
            .finish()
    }
}

/// What the calls and the feed task share.
struct Shared {
    connector: Arc<dyn Connector>,
    config: RemoteConfig,
    route: Mutex<Route>,
    channels: Mutex<HashMap<String, Channel>>,
}

/// Which manager to call, and how long to wait before the next attempt.
#[derive(Debug)]
struct Route {
    managers: Vec<String>,
    /// The manager tried when no leader is known (an index into `managers`).
    next: usize,
    /// The leader named by the last redirect; preferred until it fails.
    leader: Option<String>,
    /// Failed attempts since the last success.
    failures: u32,
    not_before: Instant,
}

impl Route {
    fn target(&self) -> Option<String> {
        self.leader.clone().or_else(|| {
            (!self.managers.is_empty())
                .then(|| self.managers[self.next % self.managers.len()].clone())
        })
    }

    fn succeeded(&mut self, addr: &str) {
        if self.target().as_deref() == Some(addr) {
            self.failures = 0;
            self.not_before = Instant::now();
        }
    }

    /// Moves on from `addr`, unless a concurrent call already did.
    fn failed(&mut self, addr: &str, config: &RemoteConfig) {
        if self.target().as_deref() != Some(addr) {
            return;
        }
        if self.leader.as_deref() == Some(addr) {
            self.leader = None;
        } else if !self.managers.is_empty() {
            self.next = (self.next + 1) % self.managers.len();
        }
        self.failures = self.failures.saturating_add(1);
        // As many quick tries in a row as there are known managers (a failed
        // leader hint counts as one); after that each attempt is held back.
        let round = self.managers.len().max(1) as u32;
        if self.failures >= round {
            let exponent = (self.failures - round).min(16);
            self.not_before = Instant::now() + jittered(backoff(config, exponent));
        }
    }

    fn redirect(&mut self, leader: String) {
        self.leader = Some(leader);
    }
}

/// `backoff_min · 2^exponent`, at most `backoff_max`.
fn backoff(config: &RemoteConfig, exponent: u32) -> Duration {
    config
        .backoff_min
        .saturating_mul(1u32 << exponent.min(16))
        .min(config.backoff_max)
}

/// A wait between half and all of `d`, so that agents that lost the same
/// manager at once do not all come back at the same instant.
fn jittered(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::thread_rng().gen_range(nanos / 2..=nanos))
}

/// How one failed attempt is handled.
#[derive(Debug, PartialEq)]
enum Failure {
    /// A follower named the leader: go there.
    Redirect(String),
    /// The manager answered that the session or node is not valid.
    Invalid(String),
    /// Anything else: try another manager, later.
    Retry(String),
}

fn classify(status: &Status, addr: &str) -> Failure {
    match status.code() {
        Code::FailedPrecondition => Failure::Invalid(status.message().to_string()),
        // The certificate does not allow this node's calls: registering again
        // is the only way on (and tells the agent at start if it fails).
        Code::PermissionDenied | Code::Unauthenticated => {
            Failure::Invalid(format!("refused by {addr}: {}", status.message()))
        }
        Code::Unavailable => match status
            .metadata()
            .get(LEADER_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
        {
            Some(leader) if !leader.is_empty() && leader != addr => {
                Failure::Redirect(leader.to_string())
            }
            _ => Failure::Retry(format!("{addr}: {}", status.message())),
        },
        code => Failure::Retry(format!("{addr}: {code:?}: {}", status.message())),
    }
}

type Client = DispatcherClient<Channel>;

impl Shared {
    fn route(&self) -> MutexGuard<'_, Route> {
        // Plain data stays consistent whatever panicked while holding it.
        self.route.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self, addr: &str) -> Result<Client, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = self
                    .connector
                    .channel(addr)
                    .map_err(|e| format!("{addr}: {e}"))?;
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(DispatcherClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// The manager to try next and when, or why there is none.
    fn pick(&self) -> Result<(String, Instant), String> {
        let route = self.route();
        match route.target() {
            Some(addr) => Ok((addr, route.not_before)),
            None => Err("no manager address is known".into()),
        }
    }

    fn failed(&self, addr: &str) {
        self.route().failed(addr, &self.config);
    }

    /// One unary call, through redirects and other managers, within the call timeout.
    async fn call<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, DispatchError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.config.call_timeout;
        let managers = self.route().managers.len().max(1);
        let mut redirects = 0;
        let mut last = String::from("no attempt made");
        for _ in 0..managers + MAX_REDIRECTS {
            let (addr, not_before) = self.pick().map_err(DispatchError::Unavailable)?;
            if not_before > deadline {
                return Err(DispatchError::Unavailable(format!(
                    "{what}: backing off after failures; last: {last}"
                )));
            }
            tokio::time::sleep_until(not_before).await;
            let client = match self.client(&addr) {
                Ok(c) => c,
                Err(e) => {
                    self.failed(&addr);
                    last = e;
                    continue;
                }
            };
            match tokio::time::timeout_at(deadline, attempt(client)).await {
                Err(_) => {
                    self.failed(&addr);
                    return Err(DispatchError::Unavailable(format!(
                        "{what}: {addr} did not answer within {:?}",
                        self.config.call_timeout
                    )));
                }
                Ok(Ok(response)) => {
                    self.route().succeeded(&addr);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => match classify(&status, &addr) {
                    Failure::Redirect(leader) => {
                        tracing::debug!(from = %addr, to = %leader, "{what}: following the leader");
                        redirects += 1;
                        if redirects > MAX_REDIRECTS {
                            self.failed(&addr);
                        } else {
                            self.route().redirect(leader);
                        }
                        last = format!("{addr} is not the leader");
                    }
                    Failure::Invalid(m) => {
                        self.route().succeeded(&addr);
                        return Err(DispatchError::InvalidSession(m));
                    }
                    Failure::Retry(m) => {
                        tracing::debug!("{what} failed: {m}");
                        self.failed(&addr);
                        last = m;
                    }
                },
            }
        }
        Err(DispatchError::Unavailable(format!("{what}: {last}")))
    }
}

/// What the feed task knows of a session's assignments.
#[derive(Clone, Debug, Default)]
struct FeedState {
    /// The set rebuilt from the stream, once its first message arrived.
    set: Option<Assignments>,
    /// A stream is open and delivered its complete set.
    connected: bool,
    /// Why the stream is not open, when it is not.
    error: Option<String>,
    /// The manager said the session is not valid: the feed has ended.
    invalid: Option<String>,
}

/// The background task that keeps one session's assignment stream open.
struct Feed {
    session_id: String,
    state: watch::Receiver<FeedState>,
    task: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The set a client holds, rebuilt from stream messages.
#[derive(Debug, Default)]
struct Rebuilt {
    tasks: BTreeMap<String, Task>,
    index: u64,
    /// A complete set arrived on the current stream.
    complete: bool,
}

impl Rebuilt {
    /// Applies one message; an increment before the stream's complete set, or
    /// a task that does not decode, is the server's mistake.
    fn apply(&mut self, msg: pb::AssignmentsMessage) -> Result<(), String> {
        use pb::assignments_message::Kind;
        let tasks = msg
            .tasks_json
            .iter()
            .map(|b| serde_json::from_slice::<Task>(b).map_err(|e| format!("a task: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        match Kind::try_from(msg.kind) {
            Ok(Kind::Complete) => {
                self.tasks = tasks.into_iter().map(|t| (t.meta.id.clone(), t)).collect();
                self.complete = true;
            }
            Ok(Kind::Incremental) if self.complete => {
                for id in &msg.removed {
                    self.tasks.remove(id);
                }
                for t in tasks {
                    self.tasks.insert(t.meta.id.clone(), t);
                }
            }
            Ok(Kind::Incremental) => return Err("an increment before the complete set".into()),
            Err(_) => return Err(format!("unknown message kind {}", msg.kind)),
        }
        self.index = msg.index;
        Ok(())
    }

    fn assignments(&self) -> Assignments {
        Assignments {
            index: self.index,
            tasks: self.tasks.values().cloned().collect(),
        }
    }
}

/// Keeps the session's stream open and publishes the rebuilt set, until the
/// session is found invalid or the feed is dropped.
async fn run_feed(shared: Arc<Shared>, session: Session, out: watch::Sender<FeedState>) {
    let request = pb::AssignmentsRequest {
        session: Some(session_ref(&session)),
    };
    let mut redirects = 0;
    let set_error = |e: String| {
        out.send_modify(|s| {
            s.connected = false;
            s.error = Some(e);
        })
    };
    loop {
        let (addr, not_before) = match shared.pick() {
            Ok(target) => target,
            Err(e) => {
                // Nothing to try until the list is set: look again later.
                set_error(e);
                tokio::time::sleep(shared.config.backoff_max).await;
                continue;
            }
        };
        tokio::time::sleep_until(not_before).await;
        let mut client = match shared.client(&addr) {
            Ok(c) => c,
            Err(e) => {
                shared.failed(&addr);
                set_error(e);
                continue;
            }
        };
        let opened = tokio::time::timeout(
            shared.config.call_timeout,
            client.assignments(request.clone()),
        )
        .await;
        let failure = match opened {
            Err(_) => Failure::Retry(format!("{addr} did not open the stream in time")),
            Ok(Err(status)) => classify(&status, &addr),
            Ok(Ok(stream)) => {
                read_stream(&shared, &addr, stream.into_inner(), &out, &mut redirects).await
            }
        };
        match failure {
            Failure::Redirect(leader) => {
                tracing::debug!(from = %addr, to = %leader, "assignments: following the leader");
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    redirects = 0;
                    shared.failed(&addr);
                } else {
                    shared.route().redirect(leader);
                }
                set_error(format!("{addr} is not the leader"));
            }
            Failure::Invalid(m) => {
                out.send_modify(|s| {
                    s.connected = false;
                    s.invalid = Some(m);
                });
                return;
            }
            Failure::Retry(m) => {
                tracing::debug!("assignments stream: {m}");
                shared.failed(&addr);
                set_error(m);
            }
        }
    }
}

/// Reads one open stream until it fails; returns how.
async fn read_stream(
    shared: &Shared,
    addr: &str,
    mut stream: tonic::Streaming<pb::AssignmentsMessage>,
    out: &watch::Sender<FeedState>,
    redirects: &mut usize,
) -> Failure {
    let mut rebuilt = Rebuilt::default();
    loop {
        let msg =
            match tokio::time::timeout(shared.config.stream_idle_timeout, stream.message()).await {
                Err(_) => {
                    return Failure::Retry(format!(
                        "{addr} sent nothing for {:?}",
                        shared.config.stream_idle_timeout
                    ))
                }
                // A stream ends only with an error status; a clean end means
                // the server is going away.
                Ok(Ok(None)) => return Failure::Retry(format!("{addr} ended the stream")),
                Ok(Err(status)) => return classify(&status, addr),
                Ok(Ok(Some(msg))) => msg,
            };
        if let Err(e) = rebuilt.apply(msg) {
            return Failure::Retry(format!("{addr} sent a bad assignments message: {e}"));
        }
        shared.route().succeeded(addr);
        *redirects = 0;
        let set = rebuilt.assignments();
        out.send_if_modified(|s| {
            let news = s.set.as_ref() != Some(&set) || !s.connected;
            s.set = Some(set);
            s.connected = true;
            s.error = None;
            news
        });
    }
}

fn session_ref(session: &Session) -> pb::SessionRef {
    pb::SessionRef {
        node_id: session.node_id.clone(),
        session_id: session.session_id.clone(),
    }
}

impl RemoteDispatcher {
    /// A dispatcher reached at the first of `managers` (`host:port` cluster
    /// RPC addresses) that answers. Makes no connection yet.
    pub fn new(connector: Arc<dyn Connector>, managers: Vec<String>) -> RemoteDispatcher {
        RemoteDispatcher::with_config(connector, managers, RemoteConfig::default())
    }

    pub fn with_config(
        connector: Arc<dyn Connector>,
        managers: Vec<String>,
        config: RemoteConfig,
    ) -> RemoteDispatcher {
        RemoteDispatcher {
            shared: Arc::new(Shared {
                connector,
                config,
                route: Mutex::new(Route {
                    managers,
                    next: 0,
                    leader: None,
                    failures: 0,
                    not_before: Instant::now(),
                }),
                channels: Mutex::new(HashMap::new()),
            }),
            feed: Mutex::new(None),
        }
    }

    /// Replaces the list of managers (the cluster's membership changed).
    /// A known leader stays preferred until it fails.
    pub fn set_managers(&self, managers: Vec<String>) {
        let mut route = self.shared.route();
        route.managers = managers;
        route.next = 0;
        let keep: Vec<String> = route
            .managers
            .iter()
            .cloned()
            .chain(route.leader.clone())
            .collect();
        drop(route);
        self.shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|addr, _| keep.contains(addr));
    }

    pub fn managers(&self) -> Vec<String> {
        self.shared.route().managers.clone()
    }

    /// The manager the next call goes to: the leader if one was named.
    pub fn target(&self) -> Option<String> {
        self.shared.route().target()
    }

    fn feed(&self, session: &Session) -> watch::Receiver<FeedState> {
        let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = feed.as_ref() {
            if f.session_id == session.session_id {
                return f.state.clone();
            }
        }
        let (tx, rx) = watch::channel(FeedState::default());
        let task = tokio::spawn(run_feed(self.shared.clone(), session.clone(), tx));
        // Replacing the feed of an older session aborts its task.
        *feed = Some(Feed {
            session_id: session.session_id.clone(),
            state: rx.clone(),
            task,
        });
        rx
    }
}

#[async_trait::async_trait]
impl Dispatcher for RemoteDispatcher {
    async fn register(
        &self,
        node_id: Option<String>,
        description: NodeDescription,
    ) -> Result<Session, DispatchError> {
        let request = pb::RegisterRequest {
            node_id: node_id.unwrap_or_default(),
            description_json: serde_json::to_vec(&description).map_err(|e| {
                DispatchError::Unavailable(format!("encoding the description: {e}"))
            })?,
        };
        let r = self
            .shared
            .call("register", |mut c| {
                let request = request.clone();
                async move { c.register(request).await }
            })
            .await?;
        // The old session's stream has nothing more to say.
        let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        if feed.as_ref().is_some_and(|f| f.session_id != r.session_id) {
            *feed = None;
        }
        Ok(Session {
            node_id: r.node_id,
            session_id: r.session_id,
            heartbeat_period: Duration::from_millis(r.heartbeat_period_ms)
                .max(MIN_HEARTBEAT_PERIOD),
        })
    }

    async fn assignments(
        &self,
        session: &Session,
        after: Option<u64>,
        timeout: Duration,
    ) -> Result<Assignments, DispatchError> {
        let mut state = self.feed(session);
        let deadline = Instant::now() + timeout;
        loop {
            {
                let s = state.borrow_and_update();
                if let Some(m) = &s.invalid {
                    return Err(DispatchError::InvalidSession(m.clone()));
                }
                if let Some(set) = &s.set {
                    // Any other index than the agent's is news: after a
                    // failover the new leader's set may even be older.
                    if after != Some(set.index) {
                        return Ok(set.clone());
                    }
                }
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(DispatchError::Unavailable(
                        "the assignments feed has stopped".into(),
                    ))
                }
                Err(_) => break,
            }
        }
        let s = state.borrow();
        match (&s.set, s.connected) {
            (Some(set), true) => Ok(set.clone()),
            _ => Err(DispatchError::Unavailable(
                s.error
                    .clone()
                    .unwrap_or_else(|| "no assignments received yet".into()),
            )),
        }
    }

    async fn update_task_status(
        &self,
        session: &Session,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        let updates = updates
            .into_iter()
            .map(|u| {
                Ok(pb::TaskStatusUpdate {
                    status_json: serde_json::to_vec(&u.status).map_err(|e| {
                        DispatchError::Unavailable(format!("encoding a task status: {e}"))
                    })?,
                    task_id: u.task_id,
                })
            })
            .collect::<Result<Vec<_>, DispatchError>>()?;
        let request = pb::UpdateTaskStatusRequest {
            session: Some(session_ref(session)),
            updates,
        };
        self.shared
            .call("update_task_status", |mut c| {
                let request = request.clone();
                async move { c.update_task_status(request).await }
            })
            .await?;
        Ok(())
    }

    async fn heartbeat(&self, session: &Session) -> Result<(), DispatchError> {
        let request = pb::HeartbeatRequest {
            session: Some(session_ref(session)),
        };
        self.shared
            .call("heartbeat", |mut c| {
                let request = request.clone();
                async move { c.heartbeat(request).await }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Meta, TaskSpec, TaskState};
    use pb::assignments_message::Kind;

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

    fn msg(kind: Kind, index: u64, tasks: &[Task], removed: &[&str]) -> pb::AssignmentsMessage {
        pb::AssignmentsMessage {
            kind: kind as i32,
            index,
            tasks_json: tasks
                .iter()
                .map(|t| serde_json::to_vec(t).expect("encode"))
                .collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn desired(r: &Rebuilt) -> Vec<(&str, TaskState)> {
        r.tasks
            .values()
            .map(|t| (t.meta.id.as_str(), t.desired_state))
            .collect()
    }

    #[test]
    fn the_set_is_rebuilt_from_a_complete_set_and_increments() {
        use TaskState::*;
        let mut r = Rebuilt::default();
        assert!(r
            .apply(msg(Kind::Incremental, 1, &[task("a", Running)], &[]))
            .is_err());
        r.apply(msg(
            Kind::Complete,
            5,
            &[task("a", Running), task("b", Running)],
            &[],
        ))
        .expect("complete");
        assert_eq!(r.index, 5);
        r.apply(msg(
            Kind::Incremental,
            7,
            &[task("b", Shutdown), task("c", Running)],
            &["a"],
        ))
        .expect("increment");
        assert_eq!(desired(&r), vec![("b", Shutdown), ("c", Running)]);
        assert_eq!(r.assignments().index, 7);
        // A keepalive changes nothing.
        r.apply(msg(Kind::Incremental, 7, &[], &[]))
            .expect("keepalive");
        assert_eq!(desired(&r), vec![("b", Shutdown), ("c", Running)]);
        // A new complete set replaces everything.
        r.apply(msg(Kind::Complete, 9, &[task("d", Running)], &[]))
            .expect("complete");
        assert_eq!(desired(&r), vec![("d", Running)]);
        let mut bad = msg(Kind::Incremental, 10, &[], &[]);
        bad.tasks_json.push(b"not json".to_vec());
        assert!(r.apply(bad).is_err());
    }

    #[test]
    fn statuses_map_to_what_the_agent_does_next() {
        let addr = "10.0.0.2:7377";
        let mut follower = Status::unavailable("not the leader");
        follower.metadata_mut().insert(
            LEADER_METADATA_KEY,
            "10.0.0.1:7377".parse().expect("metadata value"),
        );
        let cases = [
            (follower, Failure::Redirect("10.0.0.1:7377".into())),
            (
                Status::unavailable("down"),
                Failure::Retry(format!("{addr}: down")),
            ),
            (
                Status::failed_precondition("invalid session: s1"),
                Failure::Invalid("invalid session: s1".into()),
            ),
            (
                Status::permission_denied("node a cannot speak for node b"),
                Failure::Invalid(format!("refused by {addr}: node a cannot speak for node b")),
            ),
            (
                Status::internal("boom"),
                Failure::Retry(format!("{addr}: Internal: boom")),
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(classify(&status, addr), expected, "{status:?}");
        }
        // A hint that names the manager itself is no way forward.
        let mut itself = Status::unavailable("not the leader");
        itself
            .metadata_mut()
            .insert(LEADER_METADATA_KEY, addr.parse().expect("metadata value"));
        assert!(matches!(classify(&itself, addr), Failure::Retry(_)));
    }

    fn route(managers: &[&str]) -> Route {
        Route {
            managers: managers.iter().map(|s| s.to_string()).collect(),
            next: 0,
            leader: None,
            failures: 0,
            not_before: Instant::now(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_manager_gets_a_quick_try_before_the_backoff() {
        let config = RemoteConfig::default();
        let mut r = route(&["a", "b"]);
        r.redirect("c".into());
        assert_eq!(r.target().as_deref(), Some("c"));
        r.failed("c", &config);
        assert_eq!(
            r.target().as_deref(),
            Some("a"),
            "a failed leader is dropped"
        );
        // A stale report about another manager changes nothing.
        r.failed("b", &config);
        assert_eq!(r.target().as_deref(), Some("a"));
        r.failed("a", &config);
        assert_eq!(r.target().as_deref(), Some("b"));
        assert!(r.not_before > Instant::now(), "all failed: back off");
        let mut waits = vec![];
        for _ in 0..12 {
            let t = r.target().expect("target");
            r.failed(&t, &config);
            waits.push(r.not_before - Instant::now());
        }
        assert!(waits.iter().all(|w| *w <= config.backoff_max), "{waits:?}");
        assert!(waits[0] < waits[3], "the backoff grows: {waits:?}");
        assert!(*waits.last().expect("waits") >= config.backoff_max / 2);
        let t = r.target().expect("target");
        r.succeeded(&t);
        assert!(r.not_before <= Instant::now(), "a success ends the backoff");
        assert_eq!(r.failures, 0);
    }

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        let config = RemoteConfig::default();
        assert_eq!(backoff(&config, 0), config.backoff_min);
        assert_eq!(backoff(&config, 1), config.backoff_min * 2);
        assert_eq!(backoff(&config, 40), config.backoff_max);
        for _ in 0..100 {
            let j = jittered(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100));
        }
    }
}
