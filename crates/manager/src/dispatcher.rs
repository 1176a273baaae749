//! The dispatcher: the manager's side of the conversation with agents
//! (SwarmKit's dispatcher), served in process over the store.
//!
//! It registers nodes and opens sessions, long-polls each node's assignments
//! from the store's watch, batches the task status reports of all sessions
//! into few store updates, and marks a node down when [`crate::liveness`]
//! says so: its heartbeats stopped, or gossip says it died and its
//! assignments long-poll (or its heartbeat) agrees.
//! The liveness monitor judges a node only when its verdict may change: at
//! the next instant [`crate::liveness::next_change`] names (kept in a queue
//! of deadlines), or at once when one of its signals changes in a way that
//! can matter (a registration, a suspicion that a heartbeat may clear,
//! gossip's word, a new ready node, a new heartbeat period, a new term). A
//! heartbeat of a well node only moves its deadlines later, so it costs no
//! judgement; the queue finds that out when the old deadline comes up.
//! Sessions live in memory only: after a manager restart every agent gets
//! `InvalidSession` and registers again with its node id, which keeps the node
//! and its tasks.

use crate::liveness::{judge, next_change, GossipState, GossipView, Signals, Stream, Verdict};
use api::dispatch::{Assignments, DispatchError, Dispatcher, Session, TaskStatusUpdate};
use api::{Event, Node, NodeDescription, NodeRole, NodeState, Object, Op, State, TaskState};
use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use store::{Store, StoreError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::Instant;

/// The heartbeat period when the cluster object does not set one (Swarm's).
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);

/// The status message of a node marked down by its heartbeat grace.
pub use crate::liveness::HEARTBEAT_FAILURE;

/// The longest the liveness monitor sleeps: it looks whether this manager
/// still leads (nothing announces it) and retries a failed write this often.
const MAX_CHECK_TICK: Duration = Duration::from_millis(250);

/// Attempts at a read-modify-write of a node before giving up on conflicts.
const NODE_WRITE_ATTEMPTS: usize = 5;

/// A node id, shared by the maps and the deadline queue without copying it.
type NodeId = Arc<str>;

/// Node id → gossip state, as the [`GossipView`] holds it.
type GossipMap = BTreeMap<String, GossipState>;

/// How a [`LocalDispatcher`] makes nodes and writes status reports.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// The role given to nodes this dispatcher creates (`berth up`'s node is a
    /// manager; nodes that join as workers are workers).
    pub role: NodeRole,
    /// The address recorded as a node's `status.addr`. In process the agent
    /// runs on this machine.
    pub addr: String,
    /// Most status reports written in one store entry, so that an entry stays
    /// small however many reports queue up.
    pub max_status_batch: usize,
    /// What this manager's gossip member says of the nodes; without it,
    /// only heartbeats decide (see [`crate::liveness`]).
    pub gossip: Option<GossipView>,
}

impl DispatcherConfig {
    pub fn new(role: NodeRole) -> DispatcherConfig {
        DispatcherConfig {
            role,
            addr: "127.0.0.1".into(),
            max_status_batch: 1000,
            gossip: None,
        }
    }
}

/// The in-process [`Dispatcher`] over the store. Cloning shares the sessions.
#[derive(Clone)]
pub struct LocalDispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: DispatcherConfig,
    sessions: Mutex<Sessions>,
    status_tx: mpsc::Sender<PendingStatus>,
    /// Wakes the liveness monitor (a node must be judged sooner than it
    /// planned to wake).
    wake: Arc<Notify>,
}

struct Sessions {
    /// Session id → node id.
    by_id: HashMap<String, String>,
    /// Node id → what this dispatcher knows of the node's liveness.
    nodes: HashMap<NodeId, Liveness>,
    /// Node id → its assignments polls at this dispatcher, whatever session
    /// they belong to (an old session's poll ends only when it next wakes).
    polls: HashMap<NodeId, Polls>,
    /// This manager led at the liveness monitor's last look.
    leading: bool,
    /// The cluster's heartbeat period, as the monitor last read it.
    period: Duration,
    /// When to judge which node, soonest first. An entry counts only while
    /// it is its node's `due`; any other is stale and skipped when it comes
    /// up (a node judged sooner since, or forgotten).
    deadlines: BinaryHeap<Reverse<(Instant, NodeId)>>,
    /// When the sleeping monitor wakes by itself; `None` while it works.
    monitor_wakes_at: Option<Instant>,
    /// Judgements made, for tests of how little the monitor works.
    judged: u64,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            by_id: HashMap::new(),
            nodes: HashMap::new(),
            polls: HashMap::new(),
            leading: false,
            period: DEFAULT_HEARTBEAT_PERIOD,
            deadlines: BinaryHeap::new(),
            monitor_wakes_at: None,
            judged: 0,
        }
    }
}

impl Sessions {
    /// This manager (again) leads: what it knew from an earlier term is
    /// stale (the agents spoke to another leader meanwhile), so every node
    /// is timed afresh from now, as if it had just registered, and judged
    /// at once. Without this, a manager that regains the lead would mark
    /// every node down.
    fn start_leading(&mut self, now: Instant) {
        self.leading = true;
        self.deadlines.clear();
        for (id, l) in self.nodes.iter_mut() {
            l.last_seen = now;
            l.tracked_since = now;
            l.due = None;
            if !l.down {
                l.due = Some(now);
                self.deadlines.push(Reverse((now, id.clone())));
            }
        }
        for p in self.polls.values_mut() {
            p.closed_at = None;
        }
    }

    /// The node's signals at `now`, for [`judge`].
    fn signals(&self, id: &str, l: &Liveness, now: Instant) -> Signals {
        signals(self.period, self.polls.get(id), l, now)
    }

    /// Makes sure the node is judged at `at` or sooner (while this manager
    /// leads; a new term judges every node anyway). Returns whether the
    /// monitor sleeps past `at`, so must be woken.
    fn judge_at(&mut self, id: &str, at: Instant) -> bool {
        if !self.leading {
            return false;
        }
        let Some((key, l)) = self.nodes.get_key_value(id) else {
            return false;
        };
        if l.down || l.due.is_some_and(|due| due <= at) {
            // Not judged before it is well again, or judged soon enough:
            // that judgement names the next.
            return false;
        }
        let key = key.clone();
        if let Some(l) = self.nodes.get_mut(id) {
            l.due = Some(at);
        }
        self.deadlines.push(Reverse((at, key)));
        self.monitor_wakes_at.is_none_or(|wakes| at < wakes)
    }

    /// Judges every node judged at `now` all the same (a new heartbeat
    /// period, a re-read of the store).
    fn judge_all(&mut self, now: Instant) {
        for (id, l) in self.nodes.iter_mut() {
            if !l.down && l.due.is_none_or(|due| due > now) {
                l.due = Some(now);
                self.deadlines.push(Reverse((now, id.clone())));
            }
        }
    }

    /// Starts tracking a node the store holds as ready that never spoke to
    /// this dispatcher (it just started, or just became the leader): it
    /// gets a full grace period to reconnect before it is marked down.
    fn track_ready(&mut self, id: &str, gossip: Option<&GossipMap>, now: Instant) -> bool {
        if self.nodes.contains_key(id) {
            return false;
        }
        let mut l = Liveness::new(None, now);
        l.gossip = gossip.and_then(|g| g.get(id).copied());
        self.nodes.insert(id.into(), l);
        self.judge_at(id, now)
    }

    /// Takes gossip's view in: every node whose state in it changed is
    /// judged at `now`.
    fn take_gossip(&mut self, view: &GossipMap, now: Instant) {
        for (id, l) in self.nodes.iter_mut() {
            let state = view.get(&**id).copied();
            if state != l.gossip {
                l.gossip = state;
                if !l.down && l.due.is_none_or(|due| due > now) {
                    l.due = Some(now);
                    self.deadlines.push(Reverse((now, id.clone())));
                }
            }
        }
    }

    /// Judges the nodes whose deadline has come, queues their next one, and
    /// pushes onto `news` the verdicts that differ from what the store was
    /// told. Allocates nothing unless a verdict is not [`Verdict::Ready`].
    fn judge_due(&mut self, now: Instant, news: &mut Vec<(NodeId, Verdict)>) {
        loop {
            let Some(top) = self.deadlines.peek_mut() else {
                return;
            };
            if top.0 .0 > now {
                return;
            }
            let Reverse((at, id)) = PeekMut::pop(top);
            let Some(l) = self.nodes.get_mut(&*id) else {
                continue;
            };
            if l.down || l.due != Some(at) {
                continue;
            }
            let s = signals(self.period, self.polls.get(&*id), l, now);
            let verdict = judge(&s);
            self.judged += 1;
            l.due = next_change(&s).map(|d| now + d);
            if let Some(due) = l.due {
                self.deadlines.push(Reverse((due, id.clone())));
            }
            let is_news = match &verdict {
                Verdict::Ready => !l.noted.is_empty(),
                Verdict::Suspect(m) => l.noted != *m,
                Verdict::Down(_) => true,
            };
            if is_news {
                news.push((id, verdict));
            }
        }
    }

    /// One of the node's assignments polls ended at `now`. Returns whether
    /// the monitor must be woken.
    fn poll_closed(&mut self, id: &str, now: Instant) -> bool {
        let Some(p) = self.polls.get_mut(id) else {
            return false;
        };
        p.open = p.open.saturating_sub(1);
        if p.open > 0 {
            return false;
        }
        p.closed_at = Some(now);
        // A stream that closed just now reads as an open one, so nothing
        // changes yet (a test of the rule holds it to that); the stream's
        // own deadline may come before the node's next judgement.
        let due = self
            .nodes
            .get(id)
            .filter(|l| !l.down)
            .and_then(|l| next_change(&self.signals(id, l, now)));
        match due {
            Some(d) => self.judge_at(id, now + d),
            None => false,
        }
    }

    /// When the monitor must wake next: its soonest deadline, or a tick.
    fn next_wake(&self, now: Instant) -> Instant {
        let tick = now + MAX_CHECK_TICK;
        match self.deadlines.peek() {
            Some(Reverse((at, _))) => (*at).min(tick),
            None => tick,
        }
    }
}

/// A node's signals at `now`, for [`judge`].
fn signals(period: Duration, polls: Option<&Polls>, l: &Liveness, now: Instant) -> Signals {
    Signals {
        since_heartbeat: now.saturating_duration_since(l.last_seen),
        heartbeat_period: period,
        gossip: l.gossip,
        stream: stream(polls, l, now),
    }
}

#[derive(Default)]
struct Polls {
    open: usize,
    /// When the last open poll ended; cleared when the node registers, so
    /// that only a poll of the new session closing counts.
    closed_at: Option<Instant>,
}

struct Liveness {
    /// The node's open session; a re-registration replaces it.
    session_id: Option<String>,
    last_seen: Instant,
    /// Since when this dispatcher tracks the node (its registration, or this
    /// manager's taking the lead).
    tracked_since: Instant,
    /// This dispatcher marked the node down and has not marked it ready since.
    down: bool,
    /// The assignments last returned to the session, to tell whether a new
    /// store change is news to the agent.
    last_sent: Option<Sent>,
    /// The suspicion this dispatcher wrote into the node's status message
    /// (the node still ready), cleared once the node is well again.
    noted: String,
    /// What gossip says of the node, as the monitor last took it in.
    gossip: Option<GossipState>,
    /// When the node is next judged (its entry in `Sessions::deadlines`);
    /// `None` while down, or when time alone changes nothing more.
    due: Option<Instant>,
}

impl Liveness {
    fn new(session_id: Option<String>, now: Instant) -> Liveness {
        Liveness {
            session_id,
            last_seen: now,
            tracked_since: now,
            down: false,
            last_sent: None,
            noted: String::new(),
            gossip: None,
            due: None,
        }
    }
}

/// Counts an assignments poll as open while it lives; dropped when the poll
/// returns or is abandoned (the agent's stream closed).
struct PollGuard<'a> {
    inner: &'a Inner,
    node_id: NodeId,
}

impl<'a> PollGuard<'a> {
    fn open(inner: &'a Inner, node_id: &str) -> PollGuard<'a> {
        let mut sessions = inner.sessions();
        let node_id = match sessions.polls.get_key_value(node_id) {
            Some((key, _)) => key.clone(),
            None => {
                let key: NodeId = node_id.into();
                sessions.polls.insert(key.clone(), Polls::default());
                key
            }
        };
        if let Some(p) = sessions.polls.get_mut(&*node_id) {
            p.open += 1;
        }
        drop(sessions);
        PollGuard { inner, node_id }
    }
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let wake = self
            .inner
            .sessions()
            .poll_closed(&self.node_id, Instant::now());
        if wake {
            self.inner.wake.notify_one();
        }
    }
}

struct Sent {
    index: u64,
    tasks: Fingerprint,
}

/// What an agent acts on in its assignments: which tasks, in which desired
/// state, from which spec. Status changes are left out: the agent wrote them.
type Fingerprint = BTreeMap<String, (TaskState, u64)>;

/// Status reports of one call, waiting for the batch writer.
struct PendingStatus {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<(), DispatchError>>,
}

impl LocalDispatcher {
    /// A dispatcher whose new nodes get `role`. Must be called within a tokio
    /// runtime: it starts the status writer and the heartbeat monitor, which
    /// end when the last clone of the dispatcher is dropped.
    pub fn new(store: Store, role: NodeRole) -> LocalDispatcher {
        LocalDispatcher::with_config(store, DispatcherConfig::new(role))
    }

    pub fn with_config(store: Store, config: DispatcherConfig) -> LocalDispatcher {
        let (status_tx, status_rx) = mpsc::channel(1024);
        let max_batch = config.max_status_batch.max(1);
        let inner = Arc::new(Inner {
            store: store.clone(),
            config,
            sessions: Mutex::new(Sessions::default()),
            status_tx,
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(status_writer(store, status_rx, max_batch));
        let wake = inner.wake.clone();
        let gossip = inner.config.gossip.clone();
        tokio::spawn(liveness_monitor(Arc::downgrade(&inner), wake, gossip));
        LocalDispatcher { inner }
    }
}

impl Inner {
    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock leaves plain maps behind, still
        // consistent enough to serve: recover them instead of failing forever.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node of a valid session.
    fn session_node(&self, session: &Session) -> Result<String, DispatchError> {
        let sessions = self.sessions();
        match sessions.by_id.get(&session.session_id) {
            Some(node) if *node == session.node_id => Ok(node.clone()),
            _ => Err(DispatchError::InvalidSession(session.session_id.clone())),
        }
    }

    /// Writes a node's readiness, retrying when a concurrent write moved it.
    /// Returns false if the node no longer exists.
    async fn set_node_state(
        &self,
        node_id: &str,
        state: NodeState,
        message: &str,
    ) -> Result<bool, DispatchError> {
        for _ in 0..NODE_WRITE_ATTEMPTS {
            let Some(mut node) = self.store.view(|s| s.node(node_id).cloned()) else {
                return Ok(false);
            };
            if node.status.state == state && node.status.message == message {
                return Ok(true);
            }
            node.status.state = state;
            node.status.message = message.to_string();
            match self.store.update(vec![Op::Update(node.into())]).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Apply(e)) => {
                    tracing::debug!(node = node_id, "node write refused, retrying: {e}")
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(DispatchError::Unavailable(format!(
            "node {node_id} kept changing concurrently"
        )))
    }

    /// One round of the liveness monitor: takes in what changed (the
    /// store's changes since the last round, starting with `received`, and
    /// gossip's view if `gossip_changed`), judges the nodes whose deadline
    /// has come, and writes the verdicts that are news. Returns when it
    /// must run again at the latest. Judges nothing while this manager does
    /// not lead.
    async fn liveness_round(
        &self,
        changes: &mut Option<broadcast::Receiver<Arc<api::Change>>>,
        mut received: Option<Result<Arc<api::Change>, RecvError>>,
        gossip_changed: bool,
    ) -> Instant {
        let now = Instant::now();
        if !self.store.is_leader() {
            *changes = None;
            let mut sessions = self.sessions();
            sessions.leading = false;
            let wake = now + MAX_CHECK_TICK;
            sessions.monitor_wakes_at = Some(wake);
            return wake;
        }
        self.sessions().monitor_wakes_at = None;
        let new_term = !self.sessions().leading;
        let mut reread = new_term;
        let mut period_changed = false;
        let mut closed = false;
        if new_term {
            // Subscribe before reading, so that no change falls between.
            *changes = Some(self.store.watch());
            received = None;
        }
        if let Some(rx) = changes.as_mut() {
            let gossip = self.config.gossip.as_ref().map(|g| g.borrow());
            let mut sessions = self.sessions();
            loop {
                let next = match received.take() {
                    Some(r) => r,
                    None => match rx.try_recv() {
                        Ok(c) => Ok(c),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(TryRecvError::Closed) => Err(RecvError::Closed),
                    },
                };
                match next {
                    Ok(change) => {
                        for event in &change.events {
                            match event {
                                Event::Created(Object::Node(n))
                                | Event::Updated {
                                    new: Object::Node(n),
                                    ..
                                } if n.status.state == NodeState::Ready && !new_term => {
                                    sessions.track_ready(&n.meta.id, gossip.as_deref(), now);
                                }
                                Event::Created(Object::Cluster(_))
                                | Event::Updated {
                                    new: Object::Cluster(_),
                                    ..
                                }
                                | Event::Deleted(Object::Cluster(_)) => period_changed = true,
                                _ => {}
                            }
                        }
                    }
                    // Changes were lost: read the whole state again.
                    Err(RecvError::Lagged(_)) => reread = true,
                    Err(RecvError::Closed) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed {
            // The store has shut down; it no longer leads either.
            *changes = None;
        }
        if reread || period_changed {
            let (period, ready) = self.store.view(|s| {
                let ready: Option<Vec<String>> = reread.then(|| {
                    s.nodes()
                        .filter(|n| n.status.state == NodeState::Ready)
                        .map(|n| n.meta.id.clone())
                        .collect()
                });
                (heartbeat_period(s), ready)
            });
            let gossip = self.config.gossip.as_ref().map(|g| g.borrow());
            let mut sessions = self.sessions();
            if new_term {
                sessions.start_leading(now);
            }
            for id in ready.iter().flatten() {
                sessions.track_ready(id, gossip.as_deref(), now);
            }
            if sessions.period != period || reread {
                sessions.period = period;
                sessions.judge_all(now);
            }
        }
        let mut news = Vec::new();
        {
            let gossip = self.config.gossip.as_ref().map(|g| g.borrow());
            let mut sessions = self.sessions();
            if let Some(view) = gossip.as_deref().filter(|_| gossip_changed || reread) {
                sessions.take_gossip(view, now);
            }
            sessions.judge_due(now, &mut news);
        }
        for (id, verdict) in news {
            let (state, message) = match &verdict {
                Verdict::Ready => (NodeState::Ready, ""),
                Verdict::Suspect(m) => (NodeState::Ready, m.as_str()),
                Verdict::Down(m) => (NodeState::Down, m.as_str()),
            };
            let written = self.set_node_state(&id, state, message).await;
            let mut sessions = self.sessions();
            match written {
                Ok(true) => {
                    let Some(l) = sessions.nodes.get_mut(&*id) else {
                        continue;
                    };
                    match verdict {
                        Verdict::Down(m) => {
                            tracing::warn!(node = %id, "node marked down: {m}");
                            l.down = true;
                            l.due = None;
                            l.noted.clear();
                        }
                        Verdict::Suspect(m) => {
                            tracing::info!(node = %id, "node still ready, but {m}");
                            l.noted = m;
                            // A heartbeat during the write did not know of
                            // the note it may clear.
                            sessions.judge_at(&id, Instant::now());
                        }
                        Verdict::Ready => {
                            tracing::info!(node = %id, "node well again");
                            l.noted.clear();
                        }
                    }
                }
                Ok(false) => {
                    forget_node(&mut sessions, &id);
                    sessions.polls.remove(&*id);
                }
                Err(e) => {
                    tracing::warn!(node = %id, "could not write the node's liveness: {e}");
                    sessions.judge_at(&id, Instant::now() + MAX_CHECK_TICK);
                }
            }
        }
        let mut sessions = self.sessions();
        let wake = sessions.next_wake(Instant::now());
        sessions.monitor_wakes_at = Some(wake);
        wake
    }

    /// The node's assignments now, with what the agent acts on in them.
    fn current_assignments(&self, node_id: &str) -> (Assignments, Fingerprint) {
        self.store.view(|s| {
            let tasks: Vec<api::Task> = s
                .tasks_by_node(node_id)
                .filter(|t| is_assigned(t.status.state))
                .cloned()
                .collect();
            let fingerprint = tasks
                .iter()
                .map(|t| (t.meta.id.clone(), (t.desired_state, t.spec_version)))
                .collect();
            (
                Assignments {
                    index: s.index(),
                    tasks,
                },
                fingerprint,
            )
        })
    }

    /// Whether the set differs from what the session was last sent at `after`.
    fn is_news(&self, node_id: &str, after: u64, tasks: &Fingerprint) -> bool {
        let sessions = self.sessions();
        match sessions
            .nodes
            .get(node_id)
            .and_then(|l| l.last_sent.as_ref())
        {
            // The agent has seen exactly what it was last sent: only a
            // different set is news.
            Some(sent) if sent.index == after => sent.tasks != *tasks,
            // Nothing known of what the agent holds (a new session, or it
            // lost a reply): tell it now.
            _ => true,
        }
    }

    fn record_sent(&self, node_id: &str, index: u64, tasks: Fingerprint) {
        if let Some(l) = self.sessions().nodes.get_mut(node_id) {
            l.last_sent = Some(Sent { index, tasks });
        }
    }
}

/// The node's assignments polls as a liveness signal.
fn stream(polls: Option<&Polls>, l: &Liveness, now: Instant) -> Stream {
    match polls {
        Some(p) if p.open > 0 => Stream::Open,
        Some(Polls {
            closed_at: Some(at),
            ..
        }) => Stream::ClosedFor(now.duration_since(*at)),
        _ => Stream::NeverSeenFor(now.duration_since(l.tracked_since)),
    }
}

/// Tasks the agent must account for: placed on its node (assigned or later)
/// and not yet finished. Tasks still pending belong to the scheduler.
fn is_assigned(state: TaskState) -> bool {
    state >= TaskState::Assigned && !state.is_terminal()
}

fn heartbeat_period(state: &State) -> Duration {
    state
        .cluster()
        .map(|c| c.heartbeat_period)
        .filter(|p| !p.is_zero())
        .unwrap_or(DEFAULT_HEARTBEAT_PERIOD)
}

fn forget_node(sessions: &mut Sessions, node_id: &str) {
    if let Some(l) = sessions.nodes.remove(node_id) {
        if let Some(s) = l.session_id {
            sessions.by_id.remove(&s);
        }
    }
}

fn unavailable(e: StoreError) -> DispatchError {
    DispatchError::Unavailable(e.to_string())
}

/// Whether an event concerns the tasks of `node_id`.
fn touches_node(event: &Event, node_id: &str) -> bool {
    let on_node =
        |o: &Object| matches!(o, Object::Task(t) if t.node_id.as_deref() == Some(node_id));
    match event {
        Event::Created(o) | Event::Deleted(o) => on_node(o),
        Event::Updated { old, new } => on_node(old) || on_node(new),
    }
}

/// Waits for a change that concerns the node's tasks (or for lost changes,
/// which might have). Returns false when the store has closed.
async fn next_touching_change(
    changes: &mut broadcast::Receiver<Arc<api::Change>>,
    node_id: &str,
) -> bool {
    loop {
        match changes.recv().await {
            Ok(change) if change.events.iter().any(|e| touches_node(e, node_id)) => return true,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return true,
            Err(RecvError::Closed) => return false,
        }
    }
}

#[async_trait::async_trait]
impl Dispatcher for LocalDispatcher {
    async fn register(
        &self,
        node_id: Option<String>,
        description: NodeDescription,
    ) -> Result<Session, DispatchError> {
        let inner = &self.inner;
        let mut attempts = 0;
        let (node_id, heartbeat_period) = loop {
            attempts += 1;
            let (op, id, period) = inner.store.view(|s| {
                let period = heartbeat_period(s);
                match node_id.as_deref().and_then(|id| s.node(id)) {
                    Some(existing) => {
                        // A known node keeps its spec (the user's role,
                        // availability and labels); only what the agent
                        // reports is replaced.
                        let mut node = existing.clone();
                        node.description = description.clone();
                        node.status.state = NodeState::Ready;
                        node.status.message = String::new();
                        // The address the CA recorded when the node joined
                        // (its own) stays; only a node without one gets
                        // the dispatcher's.
                        if node.status.addr.is_empty() {
                            node.status.addr = inner.config.addr.clone();
                        }
                        let id = node.meta.id.clone();
                        (Op::Update(node.into()), id, period)
                    }
                    None => {
                        let node = new_node(&inner.config, &description, inner.store.is_leader());
                        let id = node.meta.id.clone();
                        (Op::Create(node.into()), id, period)
                    }
                }
            });
            match inner.store.update(vec![op]).await {
                Ok(_) => break (id, period),
                Err(StoreError::Apply(e)) if attempts < NODE_WRITE_ATTEMPTS => {
                    tracing::debug!(node = %id, "registration raced another write, retrying: {e}")
                }
                Err(e) => return Err(unavailable(e)),
            }
        };

        let session_id = api::new_id();
        let wake = {
            // Gossip's view before the sessions, as the monitor takes them,
            // so that its state cannot change between the two.
            let gossip = inner.config.gossip.as_ref().map(|g| g.borrow());
            let mut sessions = inner.sessions();
            forget_node(&mut sessions, &node_id);
            sessions.by_id.insert(session_id.clone(), node_id.clone());
            let now = Instant::now();
            let mut l = Liveness::new(Some(session_id.clone()), now);
            l.gossip = gossip.as_ref().and_then(|g| g.get(&node_id).copied());
            sessions.nodes.insert(node_id.as_str().into(), l);
            // Only a poll of the new session closing is a signal from now on.
            if let Some(p) = sessions.polls.get_mut(node_id.as_str()) {
                p.closed_at = None;
            }
            // Gossip may already say it is suspect or down: judged now.
            sessions.judge_at(&node_id, now)
        };
        if wake {
            inner.wake.notify_one();
        }
        tracing::info!(node = %node_id, "node registered");
        Ok(Session {
            node_id,
            session_id,
            heartbeat_period,
        })
    }

    async fn assignments(
        &self,
        session: &Session,
        after: Option<u64>,
        timeout: Duration,
    ) -> Result<Assignments, DispatchError> {
        let inner = &self.inner;
        let node_id = inner.session_node(session)?;
        let _open = PollGuard::open(inner, &node_id);
        // Subscribe before reading, so that no change falls between the two.
        let mut changes = inner.store.watch();
        let deadline = Instant::now() + timeout;
        loop {
            let (assignments, fingerprint) = inner.current_assignments(&node_id);
            let news = match after {
                None => true,
                Some(after) => inner.is_news(&node_id, after, &fingerprint),
            };
            let timed_out = Instant::now() >= deadline;
            if news || timed_out {
                inner.record_sent(&node_id, assignments.index, fingerprint);
                return Ok(assignments);
            }
            match tokio::time::timeout_at(deadline, next_touching_change(&mut changes, &node_id))
                .await
            {
                Ok(true) | Err(_) => {}
                Ok(false) => return Err(DispatchError::Unavailable("the store has closed".into())),
            }
            // The session may have been replaced while it waited.
            inner.session_node(session)?;
        }
    }

    async fn update_task_status(
        &self,
        session: &Session,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        let inner = &self.inner;
        let node_id = inner.session_node(session)?;
        let ops: Vec<Op> = inner.store.view(|s| {
            updates
                .into_iter()
                .filter_map(|u| match s.task(&u.task_id) {
                    Some(t) if t.node_id.as_deref() == Some(node_id.as_str()) => {
                        Some(Op::SetTaskStatus {
                            id: u.task_id,
                            status: u.status,
                        })
                    }
                    Some(t) => {
                        tracing::warn!(
                            node = %node_id,
                            task = %u.task_id,
                            assigned_to = ?t.node_id,
                            "ignoring a status report for a task of another node"
                        );
                        None
                    }
                    // The task was deleted since: nothing left to report on.
                    None => None,
                })
                .collect()
        });
        if ops.is_empty() {
            return Ok(());
        }
        let (reply, done) = oneshot::channel();
        inner
            .status_tx
            .send(PendingStatus { ops, reply })
            .await
            .map_err(|_| DispatchError::Unavailable("the status writer has stopped".into()))?;
        done.await
            .map_err(|_| DispatchError::Unavailable("the status writer has stopped".into()))?
    }

    async fn heartbeat(&self, session: &Session) -> Result<(), DispatchError> {
        let inner = &self.inner;
        let node_id = inner.session_node(session)?;
        let was_down = {
            let mut sessions = inner.sessions();
            let now = Instant::now();
            let (was_down, noted) = match sessions.nodes.get_mut(node_id.as_str()) {
                Some(l) => {
                    l.last_seen = now;
                    (l.down, !l.noted.is_empty())
                }
                None => (false, false),
            };
            // A well node's heartbeat only moves its deadlines later: its
            // next judgement, when it comes, finds that out. A suspicion
            // the heartbeat may clear is judged now.
            if noted && sessions.judge_at(&node_id, now) {
                inner.wake.notify_one();
            }
            was_down
        };
        if !inner.store.view(|s| s.node(&node_id).is_some()) {
            // The node was removed from the cluster: its agent must register anew.
            forget_node(&mut inner.sessions(), &node_id);
            return Err(DispatchError::InvalidSession(session.session_id.clone()));
        }
        if was_down {
            inner.set_node_state(&node_id, NodeState::Ready, "").await?;
            let mut sessions = inner.sessions();
            if let Some(l) = sessions.nodes.get_mut(node_id.as_str()) {
                l.down = false;
                l.noted.clear();
            }
            // Judged again from now on.
            if sessions.judge_at(&node_id, Instant::now()) {
                inner.wake.notify_one();
            }
            drop(sessions);
            tracing::info!(node = %node_id, "node ready again");
        }
        Ok(())
    }
}

fn new_node(config: &DispatcherConfig, description: &NodeDescription, leader: bool) -> Node {
    let manager_status = (config.role == NodeRole::Manager).then(|| api::ManagerStatus {
        leader,
        reachability: "reachable".into(),
        addr: config.addr.clone(),
        api_addr: String::new(),
    });
    Node {
        meta: api::Meta::new(api::new_id()),
        spec: api::NodeSpec {
            role: config.role,
            ..api::NodeSpec::default()
        },
        description: description.clone(),
        status: api::NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: config.addr.clone(),
            ..Default::default()
        },
        manager_status,
    }
}

/// Writes the status reports of all sessions: whatever queued up while the
/// previous write was in flight goes into the next entry, so an idle
/// dispatcher writes a report at once and a busy one batches them.
async fn status_writer(store: Store, mut rx: mpsc::Receiver<PendingStatus>, max_ops: usize) {
    while let Some(first) = rx.recv().await {
        let mut ops = first.ops;
        let mut replies = vec![first.reply];
        while ops.len() < max_ops {
            match rx.try_recv() {
                Ok(p) => {
                    ops.extend(p.ops);
                    replies.push(p.reply);
                }
                Err(_) => break,
            }
        }
        let n = ops.len();
        let result = store.update(ops).await.map(|_| ()).map_err(unavailable);
        match &result {
            Ok(()) => tracing::trace!(reports = n, calls = replies.len(), "task status written"),
            Err(e) => tracing::warn!(reports = n, "task status not written: {e}"),
        }
        for reply in replies {
            // A caller that gave up no longer needs the answer.
            let _ = reply.send(result.clone());
        }
    }
}

/// Judges the nodes' liveness when a deadline comes, a signal changes,
/// gossip's view or the store changes, and looks at least every
/// [`MAX_CHECK_TICK`] whether this manager leads; ends with the dispatcher.
async fn liveness_monitor(inner: Weak<Inner>, wake: Arc<Notify>, mut gossip: Option<GossipView>) {
    let mut changes: Option<broadcast::Receiver<Arc<api::Change>>> = None;
    let mut received = None;
    // The first round takes gossip's view in whatever its version.
    let mut gossip_changed = true;
    loop {
        let wake_at = match inner.upgrade() {
            Some(inner) => {
                inner
                    .liveness_round(&mut changes, received.take(), gossip_changed)
                    .await
            }
            None => return,
        };
        gossip_changed = false;
        let gossip_news = async {
            match gossip.as_mut() {
                Some(g) => g.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let store_news = async {
            match changes.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at) => {}
            () = wake.notified() => {}
            alive = gossip_news => {
                if alive {
                    gossip_changed = true;
                } else {
                    // The node's gossip stopped: its last view stands.
                    gossip = None;
                }
            }
            change = store_news => received = Some(change),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::STREAM_GAP;
    use api::{Meta, Task, TaskSpec, TaskStatus};

    fn task(node: Option<&str>, state: TaskState) -> Task {
        Task {
            meta: Meta::new("t1"),
            service_id: "s1".into(),
            slot: 1,
            node_id: node.map(Into::into),
            spec: TaskSpec::exec(["sleep", "1"]),
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                ..TaskStatus::default()
            },
            restarts: vec![],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_term_times_every_node_afresh_and_polls_read_as_signals() {
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        sessions
            .nodes
            .insert("n1".into(), Liveness::new(Some("s1".into()), t0));
        let l = &sessions.nodes["n1"];
        let open = Polls {
            open: 1,
            closed_at: None,
        };
        let closed = Polls {
            open: 0,
            closed_at: Some(t0),
        };
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(stream(Some(&open), l, now), Stream::Open);
        assert_eq!(stream(Some(&closed), l, now), Stream::ClosedFor(minute));
        assert_eq!(stream(None, l, now), Stream::NeverSeenFor(minute));
        sessions.polls.insert("n1".into(), closed);

        // Another manager led for that minute: nothing of before counts.
        sessions.start_leading(now);
        let l = &sessions.nodes["n1"];
        assert_eq!(l.last_seen, now);
        assert_eq!(
            stream(sessions.polls.get("n1"), l, now),
            Stream::NeverSeenFor(Duration::ZERO)
        );
        // ... and is judged at once.
        assert_eq!(l.due, Some(now));
        let mut news = Vec::new();
        sessions.judge_due(now, &mut news);
        assert_eq!(sessions.judged, 1);
    }

    const PERIOD: Duration = Duration::from_secs(5);
    const TICK: Duration = Duration::from_millis(250);

    /// `n` registered nodes with an open poll, judged once at registration.
    fn leading_with(n: usize, now: Instant) -> Sessions {
        let mut s = Sessions {
            leading: true,
            period: PERIOD,
            ..Sessions::default()
        };
        for i in 0..n {
            let id = format!("n{i}");
            s.nodes.insert(
                id.as_str().into(),
                Liveness::new(Some(format!("s{i}")), now),
            );
            s.polls.insert(
                id.as_str().into(),
                Polls {
                    open: 1,
                    closed_at: None,
                },
            );
            s.judge_at(&id, now);
        }
        s
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_node_is_judged_once_per_heartbeat_not_on_every_tick() {
        let n = 1000;
        let t0 = Instant::now();
        let mut s = leading_with(n, t0);
        let mut news = Vec::new();
        s.judge_due(t0, &mut news);
        assert!(news.is_empty(), "{:?}", news.first());
        assert_eq!(s.judged, n as u64);

        // A minute of heartbeats, every period, all but "n0" which stops
        // after the first; the monitor looks every tick (it wakes sooner
        // only for a deadline).
        let minute = Duration::from_secs(60);
        let mut heard = Vec::new();
        let mut n0 = Vec::new();
        let mut beat = t0 + PERIOD;
        while t0.elapsed() < minute {
            tokio::time::advance(TICK).await;
            let now = Instant::now();
            if now >= beat {
                for (id, l) in s.nodes.iter_mut() {
                    if &**id != "n0" || now - t0 <= PERIOD {
                        l.last_seen = now;
                    }
                }
                beat += PERIOD;
            }
            let before = s.judged;
            news.clear();
            s.judge_due(now, &mut news);
            heard.push(s.judged - before);
            for (id, verdict) in news.drain(..) {
                assert_eq!(&*id, "n0", "{verdict:?}");
                n0.push((now - t0, verdict.clone()));
                // As the monitor does once the verdict is written.
                if let Some(l) = s.nodes.get_mut(&*id) {
                    match verdict {
                        Verdict::Down(_) => l.down = true,
                        Verdict::Suspect(m) => l.noted = m,
                        Verdict::Ready => l.noted.clear(),
                    }
                }
            }
            // One entry per node: the queue does not fill with stale ones.
            assert!(s.deadlines.len() <= n, "{} deadlines", s.deadlines.len());
        }
        // Each well node judged once per heartbeat (its "late" deadline
        // moved on), not four times a second: 12 a minute, not 240.
        let judged: u64 = heard.iter().sum();
        assert!(judged <= (n as u64) * 13, "{judged} judgements in a minute");
        // And the silent one noted late, then down, on its deadlines
        // (heard last at 5 s: late past 12.5 s, down past 20 s), to the tick.
        let at = |ms: u64| Duration::from_millis(ms);
        assert_eq!(
            n0,
            vec![
                (at(12_750), Verdict::Suspect("heartbeat late".into())),
                (at(20_250), Verdict::Down(HEARTBEAT_FAILURE.into())),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_that_closes_under_gossips_verdict_is_judged_at_the_stream_gap() {
        let t0 = Instant::now();
        let mut s = leading_with(2, t0);
        let mut news = Vec::new();
        s.judge_due(t0, &mut news);
        // Gossip says both are down; both streams are open: noted.
        for l in s.nodes.values_mut() {
            l.gossip = Some(GossipState::Down);
        }
        s.judge_all(t0);
        s.judge_due(t0, &mut news);
        assert_eq!(news.len(), 2);
        for (id, verdict) in news.drain(..) {
            let Verdict::Suspect(m) = verdict else {
                panic!("{id}: {verdict:?}");
            };
            if let Some(l) = s.nodes.get_mut(&*id) {
                l.noted = m;
            }
        }
        // n1's poll ends (its process died); n0's keeps going.
        tokio::time::advance(Duration::from_millis(100)).await;
        let closed = Instant::now();
        // The monitor sleeps until later than the stream gap: woken.
        s.monitor_wakes_at = Some(closed + Duration::from_secs(1));
        assert!(s.poll_closed("n1", closed), "the monitor was not woken");
        assert_eq!(s.nodes["n1"].due, Some(closed + STREAM_GAP));
        s.judge_due(closed + STREAM_GAP - Duration::from_millis(1), &mut news);
        assert!(news.is_empty(), "{news:?}");
        s.judge_due(closed + STREAM_GAP, &mut news);
        let verdicts: Vec<(&str, &Verdict)> = news.iter().map(|(id, v)| (&**id, v)).collect();
        assert_eq!(
            verdicts,
            vec![(
                "n1",
                &Verdict::Down("gossip: down; assignments stream closed".into())
            )]
        );
        // Without gossip's verdict a closing poll schedules nothing sooner.
        let mut quiet = leading_with(1, t0);
        quiet.judge_due(t0, &mut Vec::new());
        let due = quiet.nodes["n0"].due;
        quiet.monitor_wakes_at = Some(closed + TICK);
        assert!(!quiet.poll_closed("n0", closed));
        assert_eq!(quiet.nodes["n0"].due, due);
    }

    #[test]
    fn only_placed_unfinished_tasks_are_assigned() {
        let cases = [
            (TaskState::New, false),
            (TaskState::Pending, false),
            (TaskState::Assigned, true),
            (TaskState::Starting, true),
            (TaskState::Running, true),
            (TaskState::Complete, false),
            (TaskState::Shutdown, false),
            (TaskState::Failed, false),
            (TaskState::Rejected, false),
            (TaskState::Orphaned, false),
        ];
        for (state, expected) in cases {
            assert_eq!(is_assigned(state), expected, "{state}");
        }
    }

    #[test]
    fn events_touch_the_node_of_their_task_before_or_after() {
        let here = Object::Task(task(Some("n1"), TaskState::Running));
        let there = Object::Task(task(Some("n2"), TaskState::Running));
        let nowhere = Object::Task(task(None, TaskState::Pending));
        assert!(touches_node(&Event::Created(here.clone()), "n1"));
        assert!(touches_node(&Event::Deleted(here.clone()), "n1"));
        assert!(!touches_node(&Event::Created(there.clone()), "n1"));
        assert!(touches_node(
            &Event::Updated {
                old: nowhere.clone(),
                new: here.clone()
            },
            "n1"
        ));
        assert!(touches_node(
            &Event::Updated {
                old: here,
                new: there
            },
            "n1"
        ));
        assert!(!touches_node(
            &Event::Created(api::Cluster::new("c").into()),
            "n1"
        ));
    }

    #[test]
    fn the_heartbeat_period_falls_back_to_the_default() {
        let mut state = State::default();
        assert_eq!(heartbeat_period(&state), DEFAULT_HEARTBEAT_PERIOD);
        let mut cluster = api::Cluster::new("c");
        cluster.heartbeat_period = Duration::from_millis(300);
        state
            .apply(1, &api::Batch::new(vec![Op::Create(cluster.into())]))
            .expect("create cluster");
        assert_eq!(heartbeat_period(&state), Duration::from_millis(300));
    }

    #[test]
    fn new_manager_nodes_are_ready_with_a_manager_status() {
        let d = NodeDescription {
            hostname: "h".into(),
            ..NodeDescription::default()
        };
        let n = new_node(&DispatcherConfig::new(NodeRole::Manager), &d, true);
        assert_eq!(n.spec.role, NodeRole::Manager);
        assert_eq!(n.status.state, NodeState::Ready);
        assert_eq!(n.description.hostname, "h");
        assert!(n.manager_status.is_some_and(|m| m.leader));
        let w = new_node(&DispatcherConfig::new(NodeRole::Worker), &d, true);
        assert_eq!(w.spec.role, NodeRole::Worker);
        assert!(w.manager_status.is_none());
        assert_ne!(n.meta.id, w.meta.id);
    }
}
