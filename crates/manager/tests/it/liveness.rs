//! The dispatcher's liveness rule over a real store, with a gossip view the
//! test drives: a blip of suspicion never marks a node down; gossip's word
//! alone does not either while the node's stream is open and its
//! heartbeats fresh; gossip down with the stream closed marks it down at
//! once (and its tasks run elsewhere), as it does after a heartbeat period
//! for a node that never opened a stream at this leader; the heartbeat grace
//! alone still does.
//! Short periods and real time (the store runs on real I/O), so every wait
//! is on a condition with a deadline.

use crate::support::{sleep_service, tasks_of, FakeAgent, Harness, TIMEOUT};
use api::{NodeState, State, TaskState};
use manager::liveness::{GossipState, HEARTBEAT_FAILURE, STREAM_GAP};
use manager::DispatcherConfig;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Heartbeats every third of it (the fake agent), grace 3 s.
const PERIOD: Duration = Duration::from_secs(1);

type View = watch::Sender<BTreeMap<String, GossipState>>;

async fn harness(with_manager: bool) -> (Harness, View) {
    let (view, rx) = watch::channel(BTreeMap::new());
    let mut config = DispatcherConfig::new(api::NodeRole::Manager);
    config.gossip = Some(rx);
    (
        Harness::start_with(PERIOD, with_manager, config).await,
        view,
    )
}

fn say(view: &View, node: &str, state: GossipState) {
    view.send_modify(|v| {
        v.insert(node.to_string(), state);
    });
}

fn node_status(s: &State, id: &str) -> Option<(NodeState, String)> {
    s.node(id)
        .map(|n| (n.status.state, n.status.message.clone()))
}

/// Watches the node for `window` and fails if it is ever marked down.
async fn never_down(h: &Harness, id: &str, window: Duration) {
    let mut changes = h.store.watch();
    let end = Instant::now() + window;
    loop {
        let status = h.store.view(|s| node_status(s, id));
        assert_eq!(
            status.as_ref().map(|s| s.0),
            Some(NodeState::Ready),
            "the node was marked down: {status:?}"
        );
        if tokio::time::timeout_at(end, changes.recv()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_of_suspicion_is_noted_and_never_marks_the_node_down() {
    let (h, view) = harness(false).await;
    let agent = FakeAgent::start(&h.dispatcher, "blip").await;
    let id = agent.node_id.clone();
    say(&view, &id, GossipState::Alive);

    say(&view, &id, GossipState::Suspect);
    h.wait_for("the suspicion noted", |s| {
        (node_status(s, &id) == Some((NodeState::Ready, "gossip: suspect".into()))).then_some(())
    })
    .await;
    never_down(&h, &id, STREAM_GAP * 3).await;

    say(&view, &id, GossipState::Alive);
    h.wait_for("the suspicion cleared", |s| {
        (node_status(s, &id) == Some((NodeState::Ready, String::new()))).then_some(())
    })
    .await;
    agent.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_down_alone_is_not_enough_while_the_dispatcher_hears_the_node() {
    let (h, view) = harness(false).await;
    let agent = FakeAgent::start(&h.dispatcher, "udp-blocked").await;
    let id = agent.node_id.clone();

    // Gossip has lost the node (its UDP is cut, say), but its assignments
    // stream is open and its heartbeats come: ready, with a note.
    say(&view, &id, GossipState::Down);
    h.wait_for("gossip's verdict noted", |s| {
        node_status(s, &id)
            .filter(|(state, m)| *state == NodeState::Ready && m.starts_with("gossip: down, but"))
            .map(|_| ())
    })
    .await;
    // Past the stream gap and one heartbeat period: nothing more happens.
    never_down(&h, &id, PERIOD + STREAM_GAP * 2).await;
    agent.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_down_and_a_closed_stream_mark_the_node_down_and_its_tasks_move() {
    let (h, view) = harness(true).await;
    let keep = FakeAgent::start(&h.dispatcher, "keep").await;
    let lost = FakeAgent::start(&h.dispatcher, "lost").await;
    let (keep_id, lost_id) = (keep.node_id.clone(), lost.node_id.clone());
    let svc = h.create_service(sleep_service("web", 4)).await;
    h.wait_for("tasks running on both nodes", |s| {
        let running: Vec<_> = tasks_of(s, &svc)
            .into_iter()
            .filter(|t| t.status.state == TaskState::Running)
            .collect();
        let on = |n: &str| running.iter().any(|t| t.node_id.as_deref() == Some(n));
        (running.len() == 4 && on(&keep_id) && on(&lost_id)).then_some(())
    })
    .await;

    // The process dies: its stream closes and heartbeats stop; then gossip
    // declares it down.
    lost.stop().await;
    let died = Instant::now();
    say(&view, &lost_id, GossipState::Down);
    h.wait_for("the node marked down by gossip and its stream", |s| {
        (node_status(s, &lost_id)
            == Some((
                NodeState::Down,
                "gossip: down; assignments stream closed".into(),
            )))
        .then_some(())
    })
    .await;
    let marked = died.elapsed();
    eprintln!("gossip down + stream closed → node down in {marked:?}");
    // Well before the heartbeat grace would have (three periods).
    assert!(marked < PERIOD * 3, "took {marked:?}");
    h.wait_for("every task running on the node that stayed", |s| {
        let running: Vec<_> = tasks_of(s, &svc)
            .into_iter()
            .filter(|t| t.desired_state == TaskState::Running)
            .filter(|t| t.status.state == TaskState::Running)
            .collect();
        (running.len() == 4
            && running
                .iter()
                .all(|t| t.node_id.as_deref() == Some(keep_id.as_str())))
        .then_some(())
    })
    .await;

    // It restarts before gossip has heard of its new run: registering is a
    // sign of life, so gossip's stale verdict does not mark it down again.
    let back = FakeAgent::start_as(&h.dispatcher, "lost", Some(lost_id.clone())).await;
    h.wait_for("the node ready again", |s| {
        (node_status(s, &lost_id).map(|s| s.0) == Some(NodeState::Ready)).then_some(())
    })
    .await;
    never_down(&h, &lost_id, STREAM_GAP * 3).await;
    say(&view, &lost_id, GossipState::Alive);
    back.stop().await;
    keep.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_grace_alone_marks_a_node_down_whatever_gossip_says() {
    let (h, view) = harness(false).await;
    let agent = FakeAgent::start(&h.dispatcher, "hung").await;
    let id = agent.node_id.clone();
    say(&view, &id, GossipState::Alive);
    // A hung agent: its stream stays open, gossip still answers for the
    // machine, but heartbeats stop.
    agent.set_heartbeats(false);
    let stopped = Instant::now();
    h.wait_for("heartbeats late, noted", |s| {
        (node_status(s, &id) == Some((NodeState::Ready, "heartbeat late".into()))).then_some(())
    })
    .await;
    h.wait_for("the node marked down by its heartbeat grace", |s| {
        (node_status(s, &id) == Some((NodeState::Down, HEARTBEAT_FAILURE.into()))).then_some(())
    })
    .await;
    assert!(stopped.elapsed() >= PERIOD * 3, "{:?}", stopped.elapsed());
    assert!(stopped.elapsed() < TIMEOUT);
    agent.set_heartbeats(true);
    h.wait_for("the node ready again", |s| {
        (node_status(s, &id) == Some((NodeState::Ready, String::new()))).then_some(())
    })
    .await;
    agent.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_reached_this_leader_is_down_after_a_period_if_gossip_agrees() {
    // A node the store holds as ready from before this leader (a failover)
    // that died before its agent found the new leader: no stream was ever
    // open here, so that counts once a live agent would have reconnected.
    let (h, view) = harness(false).await;
    let node = api::Node {
        meta: api::Meta::new(api::new_id()),
        spec: api::NodeSpec::default(),
        description: crate::support::description("died-in-failover"),
        status: api::NodeStatus {
            state: NodeState::Ready,
            ..Default::default()
        },
        manager_status: None,
    };
    let id = node.meta.id.clone();
    // Before the node exists, so before this dispatcher tracks it.
    let start = Instant::now();
    h.store
        .update(vec![api::Op::Create(node.into())])
        .await
        .expect("node from before");
    say(&view, &id, GossipState::Down);
    h.wait_for(
        "the node marked down by gossip and its missing stream",
        |s| {
            (node_status(s, &id)
                == Some((
                    NodeState::Down,
                    "gossip: down; no assignments stream".into(),
                )))
            .then_some(())
        },
    )
    .await;
    let marked = start.elapsed();
    eprintln!("never connected + gossip down → node down in {marked:?}");
    assert!(marked >= PERIOD, "sooner than a period: {marked:?}");
    assert!(marked < PERIOD * 3, "no sooner than the grace: {marked:?}");
    h.stop().await;
}
