//! The node's member of the cluster's gossip group (`agent::gossip`, SWIM
//! over UDP): every node runs one, under its berth node id, sealed with the
//! cluster's gossip keys, joining through the managers' gossip addresses.
//!
//! Its socket is bound before the node joins a cluster, since the joining
//! node's advertised gossip address (the advertised IP and the bound port,
//! so port 0 works) goes into its join request. What gossip learns of the
//! other members is bridged into a [`manager::GossipView`], the node id →
//! alive/suspect/down map the leader's dispatcher weighs with its own
//! signals (`manager::liveness`); the manager crate never sees the agent's
//! types.

use super::{Identity, NodeAddrs, Shared};
use agent::gossip::{Gossip, GossipConfig, GossipKey, Keyring, Member, MemberState, KEY_LEN};
use anyhow::{anyhow, Context};
use manager::GossipState;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// How often a manager retries recording its gossip address.
const RECORD_RETRY: Duration = Duration::from_millis(500);
/// How many times it tries (a minute in all) before it gives up.
const RECORD_ATTEMPTS: usize = 120;

/// A gossip socket bound early, and the address it is advertised at.
pub(crate) struct BoundGossip {
    socket: std::net::UdpSocket,
    advertised: SocketAddr,
}

impl BoundGossip {
    pub(crate) fn bind(addrs: &NodeAddrs) -> anyhow::Result<BoundGossip> {
        let socket = agent::gossip::bind(addrs.gossip)
            .with_context(|| format!("binding the gossip socket on {}", addrs.gossip))?;
        let port = socket
            .local_addr()
            .context("reading the gossip socket's address")?
            .port();
        Ok(BoundGossip {
            socket,
            advertised: SocketAddr::new(addrs.advertise, port),
        })
    }

    /// What other members send to: the advertised IP, the bound port.
    pub(crate) fn advertised(&self) -> SocketAddr {
        self.advertised
    }
}

/// The node's running gossip member, and its view for the dispatcher.
pub(crate) struct NodeGossip {
    gossip: std::sync::Mutex<Option<Gossip>>,
    addr: SocketAddr,
    view: watch::Receiver<BTreeMap<String, GossipState>>,
    bridge: tokio::task::JoinHandle<()>,
}

impl NodeGossip {
    /// Starts gossip on `bound` as the node of `identity`, with its keys,
    /// announcing to the seeds it knows until it has joined.
    pub(crate) async fn start(
        bound: BoundGossip,
        identity: &Identity,
    ) -> anyhow::Result<NodeGossip> {
        let keys = keyring(&identity.gossip_keys)?;
        let mut config = GossipConfig::new(identity.node_id.clone(), bound.advertised, keys);
        config.bind = bound.socket.local_addr().context("the gossip socket")?;
        config.advertise = bound.advertised;
        config.seeds = parse_seeds(&identity.gossip_seeds);
        let gossip = Gossip::start_with_socket(config, bound.socket)
            .await
            .context("starting gossip")?;
        let (view_tx, view) = watch::channel(view_of(&gossip.members()));
        let bridge = tokio::spawn(bridge(gossip.watch_members(), view_tx));
        Ok(NodeGossip {
            gossip: std::sync::Mutex::new(Some(gossip)),
            addr: bound.advertised,
            view,
            bridge,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Gossip) -> T) -> Option<T> {
        self.gossip
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }

    /// The advertised gossip address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What gossip says of the other nodes, for the dispatcher.
    pub(crate) fn view(&self) -> manager::GossipView {
        self.view.clone()
    }

    /// Seals with the first of `keys` from the next datagram on and opens
    /// with any of them (a rotation's steps, as the cluster follower hears
    /// them).
    pub(crate) fn set_keys(&self, keys: &[String]) -> anyhow::Result<()> {
        let ring = keyring(keys)?;
        self.with(|g| g.set_keys(ring))
            .transpose()
            .context("replacing the gossip keys")?;
        Ok(())
    }

    /// The managers' gossip addresses, announced to while not joined.
    pub(crate) fn set_seeds(&self, seeds: &[String]) {
        let seeds = parse_seeds(seeds);
        self.with(|g| g.set_seeds(seeds));
    }

    /// Leaves the group gracefully (the others hear of it at once instead
    /// of by probing); a second call does nothing.
    pub(crate) async fn leave(&self) {
        let gossip = self.gossip.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(g) = gossip {
            if let Err(e) = g.leave().await {
                tracing::debug!(error = %e, "leaving the gossip group");
            }
        }
        self.bridge.abort();
    }
}

impl Drop for NodeGossip {
    fn drop(&mut self) {
        self.bridge.abort();
    }
}

impl Shared {
    /// Applies the gossip keys and seeds the cluster follower heard, if
    /// this node runs gossip.
    pub(super) fn apply_gossip(&self, keys: &[String], seeds: &[String]) {
        let Some(g) = self.gossip.as_ref() else {
            return;
        };
        if !keys.is_empty() {
            if let Err(e) = g.set_keys(keys) {
                tracing::warn!("the cluster's gossip keys are unusable: {e:#}");
            }
        }
        g.set_seeds(seeds);
    }
}

/// Starts the node's gossip; a node whose identity holds no usable key (an
/// identity from before gossip) runs without it, on heartbeats alone.
pub(crate) async fn start(bound: BoundGossip, identity: &Identity) -> Option<NodeGossip> {
    match NodeGossip::start(bound, identity).await {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(
                "running without gossip (dead nodes are noticed by heartbeats only): {e:#}"
            );
            None
        }
    }
}

/// The keyring of the cluster's keys (hex, the one to send with first). A
/// key's id is its first byte, as the managers make them
/// (`manager::gossip_keys::new_key` keeps ids apart).
pub(crate) fn keyring(keys: &[String]) -> anyhow::Result<Keyring> {
    let mut parsed = keys.iter().map(|k| {
        let bytes = hex::decode(k.trim()).map_err(|_| anyhow!("a gossip key is not hex"))?;
        let secret: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| anyhow!("a gossip key is not {KEY_LEN} bytes"))?;
        Ok::<_, anyhow::Error>(GossipKey::new(secret[0], secret))
    });
    let primary = parsed
        .next()
        .ok_or_else(|| anyhow!("the identity holds no gossip key"))??;
    Ok(Keyring {
        primary,
        others: parsed.collect::<anyhow::Result<_>>()?,
    })
}

fn parse_seeds(seeds: &[String]) -> Vec<SocketAddr> {
    seeds
        .iter()
        .filter_map(|s| match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                tracing::warn!(seed = %s, "ignoring a gossip seed that is not host:port");
                None
            }
        })
        .collect()
}

/// Node id → state, from gossip's member table: of several runs of a node
/// (a restart, a rejoin after a false down) the newest generation speaks.
pub(crate) fn view_of(members: &[(Member, MemberState)]) -> BTreeMap<String, GossipState> {
    let mut newest: BTreeMap<&str, (u64, MemberState)> = BTreeMap::new();
    for (m, state) in members {
        let e = newest.entry(&m.node_id).or_insert((m.generation, *state));
        if m.generation > e.0 {
            *e = (m.generation, *state);
        }
    }
    newest
        .into_iter()
        .map(|(id, (_, state))| {
            let state = match state {
                MemberState::Alive => GossipState::Alive,
                MemberState::Suspect => GossipState::Suspect,
                MemberState::Down => GossipState::Down,
            };
            (id.to_string(), state)
        })
        .collect()
}

/// Keeps the view in step with gossip's member table until gossip stops.
async fn bridge(
    mut members: watch::Receiver<Vec<(Member, MemberState)>>,
    view: watch::Sender<BTreeMap<String, GossipState>>,
) {
    while members.changed().await.is_ok() {
        let next = view_of(&members.borrow_and_update());
        view.send_if_modified(|v| {
            let changed = *v != next;
            if changed {
                for (id, state) in &next {
                    if v.get(id) != Some(state) {
                        tracing::info!(node = %id, ?state, "gossip");
                    }
                }
                *v = next;
            }
            changed
        });
    }
}

/// Writes this manager's gossip address into its node record unless it is
/// there already (after a restart on another port, or a promotion): the
/// managers' addresses are the seeds every node joins gossip through.
pub(crate) async fn record_gossip_addr(
    store: store::Store,
    node_id: String,
    addr: Option<SocketAddr>,
) {
    let Some(addr) = addr.map(|a| a.to_string()) else {
        return;
    };
    for _ in 0..RECORD_ATTEMPTS {
        let Some(mut node) = store.view(|s| s.node(&node_id).cloned()) else {
            tokio::time::sleep(RECORD_RETRY).await;
            continue;
        };
        if node.status.gossip_addr == addr {
            return;
        }
        node.status.gossip_addr = addr.clone();
        match store.update(vec![api::Op::Update(node.into())]).await {
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(error = %e, "recording this manager's gossip address; retrying");
                tokio::time::sleep(RECORD_RETRY).await;
            }
        }
    }
    tracing::warn!("could not record this manager's gossip address in its node record");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Membership, Node, NodeAddrs, NodeConfig};

    fn member(id: &str, generation: u64, port: u16) -> Member {
        Member {
            node_id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            generation,
        }
    }

    #[test]
    fn the_newest_run_of_a_node_speaks_for_it() {
        let members = vec![
            (member("a", 5, 1), MemberState::Down),
            (member("a", 6, 1), MemberState::Alive),
            (member("b", 9, 2), MemberState::Suspect),
            (member("b", 3, 3), MemberState::Alive),
            (member("c", 1, 4), MemberState::Down),
        ];
        let view = view_of(&members);
        assert_eq!(
            view.into_iter().collect::<Vec<_>>(),
            vec![
                ("a".to_string(), GossipState::Alive),
                ("b".to_string(), GossipState::Suspect),
                ("c".to_string(), GossipState::Down),
            ]
        );
    }

    #[test]
    fn keys_are_hex_of_32_bytes_named_by_their_first_byte() {
        let a = format!("ab{}", "01".repeat(31));
        let b = format!("cd{}", "02".repeat(31));
        let ring = keyring(&[a.clone(), b.clone()]).expect("two keys");
        assert_eq!(ring.primary.id(), 0xab);
        assert_eq!(ring.others.len(), 1);
        assert_eq!(ring.others[0].id(), 0xcd);
        assert_eq!(Some(ring.primary.id()), manager::gossip_keys::key_id(&a));
        assert!(keyring(&[]).is_err());
        assert!(keyring(&["zz".into()]).is_err());
        assert!(keyring(&["abcd".into()]).is_err());
        let made = manager::gossip_keys::new_key(&[a]);
        assert!(keyring(&[made]).is_ok());
    }

    fn config(dir: &std::path::Path, name: &str, membership: Membership) -> NodeConfig {
        NodeConfig {
            data_dir: dir.join(name),
            addrs: NodeAddrs::loopback("127.0.0.1:0".parse().expect("address")),
            hostname: Some(name.into()),
            // No task runs here: the shim is never started, but must exist.
            shim: agent::ShimCommand {
                program: std::env::current_exe().expect("the test binary"),
                args: vec!["shim".into()],
            },
            credentials_file: None,
            admin_password: None,
            membership,
        }
    }

    fn gossip_of(node: &Node) -> &NodeGossip {
        node.shared.gossip.as_ref().expect("the node runs gossip")
    }

    /// Waits until `ok` holds on a node's gossip view.
    async fn wait_view(
        node: &Node,
        what: &str,
        ok: impl FnMut(&BTreeMap<String, GossipState>) -> bool,
    ) {
        let mut view = gossip_of(node).view();
        let waited = tokio::time::timeout(Duration::from_secs(30), view.wait_for(ok))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{what}: gossip stopped"),
            Err(_) => panic!("{what}: not within 30 s; view: {:?}", *view.borrow()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_gossip_on_port_0_and_keep_talking_through_key_rotations() {
        let dir = tempfile::tempdir().expect("temp dir");
        let founder = Node::start(config(
            dir.path(),
            "m1",
            Membership::Init {
                force_new_cluster: false,
            },
        ))
        .await
        .expect("the founder starts");
        let store = founder.store().expect("a manager's store");
        let token = store
            .view(|s| {
                s.cluster()
                    .and_then(|c| c.security.as_ref())
                    .map(|sec| sec.join_tokens.worker.clone())
            })
            .expect("a worker token");
        let worker = Node::start(config(
            dir.path(),
            "w1",
            Membership::Join {
                token,
                manager: founder.rpc_addr().to_string(),
            },
        ))
        .await
        .expect("the worker joins");

        // Port 0: the bound port is what both records and seeds say.
        let (m1, w1) = (founder.node_id.clone(), worker.node_id.clone());
        let recorded = |id: &str| store.view(|s| s.node(id).map(|n| n.status.gossip_addr.clone()));
        let m1_addr = gossip_of(&founder).addr();
        assert_ne!(m1_addr.port(), 0);
        assert_eq!(recorded(&m1), Some(m1_addr.to_string()));
        assert_eq!(recorded(&w1), Some(gossip_of(&worker).addr().to_string()));
        wait_view(&founder, "the founder sees the worker alive", |v| {
            v.get(&w1) == Some(&GossipState::Alive)
        })
        .await;
        wait_view(&worker, "the worker sees the founder alive", |v| {
            v.get(&m1) == Some(&GossipState::Alive)
        })
        .await;
        assert_eq!(
            worker.identity().gossip_seeds,
            vec![m1_addr.to_string()],
            "the join answer's seeds are saved"
        );

        // Rotate every 800 ms (steps 200 ms apart); watch both views for
        // any down meanwhile.
        let first = founder.identity().gossip_keys;
        let mut cluster = store.view(|s| s.cluster().cloned()).expect("cluster");
        cluster.gossip_key_rotation = Duration::from_millis(800);
        store
            .update(vec![api::Op::Update(cluster.into())])
            .await
            .expect("a short rotation period");
        let mut views = [gossip_of(&founder).view(), gossip_of(&worker).view()];
        let keys = || {
            store
                .view(|s| s.cluster().and_then(|c| c.security.clone()))
                .map(|sec| (sec.gossip_keys, sec.gossip_key_stage.step))
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut rotations = 0;
        let mut last = first.clone();
        while rotations < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no two rotations in 30 s"
            );
            for (view, other) in views.iter_mut().zip([&w1, &m1]) {
                let state = view.borrow_and_update().get(other.as_str()).copied();
                assert_ne!(
                    state,
                    Some(GossipState::Down),
                    "a key rotation split gossip"
                );
            }
            if let Some((now, api::GossipKeyStep::Steady)) = keys() {
                if now.len() == 1 && now != last {
                    rotations += 1;
                    last = now;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Both nodes hold the cluster's keys (as saved and handed to gossip),
        // and still see each other alive on the new key.
        let want = last;
        for node in [&founder, &worker] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while node.identity().gossip_keys != want {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the node never got the keys"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_ne!(want, first);
        for (view, other) in views.iter().zip([&w1, &m1]) {
            assert_eq!(view.borrow().get(other.as_str()), Some(&GossipState::Alive));
        }
        // A member holding only the new key gets in both ways: the nodes
        // open it and seal with it (they were handed it, not just saved it).
        let mut probe = GossipConfig::new(
            "probe",
            "127.0.0.1:0".parse().expect("address"),
            keyring(&want).expect("the new key"),
        );
        probe.seeds = vec![m1_addr, gossip_of(&worker).addr()];
        let probe = Gossip::start(probe).await.expect("a probe member");
        wait_view(&founder, "the founder sees a new-key-only member", |v| {
            v.get("probe") == Some(&GossipState::Alive)
        })
        .await;
        let mut members = probe.watch_members();
        let both = tokio::time::timeout(
            Duration::from_secs(30),
            members.wait_for(|m| {
                [&m1, &w1].iter().all(|id| {
                    m.iter()
                        .any(|(mm, st)| mm.node_id == **id && *st == MemberState::Alive)
                })
            }),
        )
        .await
        .map(|r| r.is_ok());
        assert_eq!(
            both,
            Ok(true),
            "the new-key-only member did not hear both nodes"
        );
        drop(members);
        probe.shutdown().await;

        let stats =
            [&founder, &worker].map(|n| gossip_of(n).with(|g| g.stats()).expect("gossip runs"));
        assert!(stats.iter().all(|s| s.received > 0), "{stats:?}");
        worker.shutdown().await.expect("worker stops");
        founder.shutdown().await.expect("founder stops");
    }
}
