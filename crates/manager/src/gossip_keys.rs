//! The rotation of the gossip keys, on the leader: every
//! `Cluster::gossip_key_rotation` (Swarm: 12 h) a new key replaces the old
//! one, in three steps a `grace` apart so that no node ever seals a datagram
//! with a key another node cannot open yet:
//!
//! 1. `Steady` → `Adding`: the new key is appended; nodes accept it but still
//!    send with the old one (the first of `gossip_keys`);
//! 2. `Adding` → `Retiring`: the new key moves to the front; nodes send with
//!    it, and still accept the old one from nodes that have not heard yet;
//! 3. `Retiring` → `Steady`: the old key is dropped.
//!
//! Nodes learn each step through their `WatchCluster` stream within about a
//! second, so the grace (a minute by default, and never more than a quarter
//! of the period, so that a short period set for a test rotates quickly) is
//! ample. A node cut off for
//! longer than two graces misses a step and cannot gossip until its stream
//! reconnects and brings it the keys; heartbeats cover it meanwhile.
//!
//! The new key is made here, by the proposer, and travels in the entry as a
//! plain cluster update, so `apply` stays deterministic.

use crate::plan::Plan;
use api::{GossipKeyStage, GossipKeyStep, Op, State, Timestamp};
use std::time::Duration;

/// The default time between two steps of a rotation.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// The step the keys should take now, if any, and when to look again.
/// `fresh` makes a new key (hex of 32 random bytes) unlike the given ones.
pub fn plan(
    state: &State,
    now: Timestamp,
    grace: Duration,
    fresh: &mut dyn FnMut(&[String]) -> String,
) -> Plan {
    let mut plan = Plan::default();
    let Some(cluster) = state.cluster() else {
        return plan;
    };
    let Some(sec) = cluster.security.as_ref() else {
        return plan;
    };
    let period = cluster.gossip_key_rotation;
    if sec.gossip_keys.is_empty()
        || (period.is_zero() && sec.gossip_key_stage.step == GossipKeyStep::Steady)
    {
        return plan;
    }
    let Some(since) = sec.gossip_key_stage.since else {
        // A cluster from before rotations: its key's age is unknown, so it
        // counts from now.
        let mut next = cluster.clone();
        if let Some(s) = next.security.as_mut() {
            s.gossip_key_stage.since = Some(now);
        }
        plan.ops.push(Op::Update(next.into()));
        return plan;
    };
    let grace = if period.is_zero() {
        grace
    } else {
        grace.min(period / 4)
    };
    let (wait, step) = match sec.gossip_key_stage.step {
        GossipKeyStep::Steady => (period, GossipKeyStep::Adding),
        GossipKeyStep::Adding => (grace, GossipKeyStep::Retiring),
        GossipKeyStep::Retiring => (grace, GossipKeyStep::Steady),
    };
    let due = since.plus(wait);
    if now < due {
        plan.wake(due);
        return plan;
    }
    let mut keys = sec.gossip_keys.clone();
    match step {
        GossipKeyStep::Adding => {
            let key = fresh(&keys);
            keys.push(key);
        }
        GossipKeyStep::Retiring => {
            if let Some(new) = keys.pop() {
                keys.insert(0, new);
            }
        }
        GossipKeyStep::Steady => keys.truncate(1),
    }
    let mut next = cluster.clone();
    if let Some(s) = next.security.as_mut() {
        s.gossip_keys = keys;
        s.gossip_key_stage = GossipKeyStage {
            step,
            since: Some(now),
        };
    }
    tracing::info!(step = ?step, "gossip key rotation");
    plan.ops.push(Op::Update(next.into()));
    // The next step's time is asked for once this one is applied.
    plan
}

/// The id a node gives a key in its keyring (carried in clear in every
/// datagram): the key's first byte.
pub fn key_id(hex_key: &str) -> Option<u8> {
    u8::from_str_radix(hex_key.get(..2)?, 16).ok()
}

/// A new random key (hex of 32 bytes) whose id differs from every given key's,
/// so that a keyring never holds two keys under one id.
pub fn new_key(existing: &[String]) -> String {
    use rand::RngCore;
    let taken: Vec<u8> = existing.iter().filter_map(|k| key_id(k)).collect();
    let mut bytes = [0u8; 32];
    // Bounded: at most a few ids are taken, so a free one comes at once.
    for _ in 0..64 {
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        if !taken.contains(&bytes[0]) {
            break;
        }
    }
    if taken.contains(&bytes[0]) {
        bytes[0] = (0..=u8::MAX).find(|b| !taken.contains(b)).unwrap_or(0);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    fn state(keys: &[&str], step: GossipKeyStep, since: Option<Timestamp>) -> State {
        let mut cluster = api::Cluster::new("c");
        cluster.gossip_key_rotation = 12 * H;
        cluster.security = Some(api::ClusterSecurity {
            cluster_id: "c".into(),
            root_ca: api::CaKeys {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            client_ca: api::CaKeys {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            join_tokens: api::JoinTokens {
                worker: String::new(),
                manager: String::new(),
            },
            gossip_keys: keys.iter().map(|k| k.to_string()).collect(),
            admin_token_sha256: String::new(),
            registry_key_pem: String::new(),
            root_rotation: None,
            gossip_key_stage: GossipKeyStage { step, since },
        });
        let mut s = State::default();
        s.apply(1, &api::Batch::new(vec![Op::Create(cluster.into())]))
            .expect("create cluster");
        s
    }

    fn applied(mut s: State, plan: &Plan) -> State {
        let index = s.index() + 1;
        s.apply(index, &api::Batch::new(plan.ops.clone()))
            .expect("plan applies");
        s
    }

    fn keys_and_stage(s: &State) -> (Vec<String>, GossipKeyStage) {
        let sec = s
            .cluster()
            .and_then(|c| c.security.clone())
            .expect("security");
        (sec.gossip_keys, sec.gossip_key_stage)
    }

    #[test]
    fn a_rotation_adds_then_promotes_then_drops_a_key() {
        let t0 = Timestamp(1_000_000);
        let grace = Duration::from_secs(60);
        let made = std::cell::Cell::new(0);
        let mut fresh = |_: &[String]| {
            made.set(made.get() + 1);
            format!("new{}", made.get())
        };
        let s = state(&["old"], GossipKeyStep::Steady, Some(t0));

        // Before the period: nothing, but a wake-up at the due time.
        let p = plan(&s, t0.plus(11 * H), grace, &mut fresh);
        assert!(p.ops.is_empty());
        assert_eq!(p.wake_at, Some(t0.plus(12 * H)));

        // Due: the new key is accepted, not yet sent with.
        let t1 = t0.plus(12 * H);
        let p = plan(&s, t1, grace, &mut fresh);
        let s = applied(s, &p);
        let (keys, stage) = keys_and_stage(&s);
        assert_eq!(keys, ["old", "new1"]);
        assert_eq!(stage.step, GossipKeyStep::Adding);
        assert_eq!(stage.since, Some(t1));

        // Within the grace: nothing; after it, the new key is sent with.
        let p = plan(&s, t1.plus(Duration::from_secs(30)), grace, &mut fresh);
        assert!(p.ops.is_empty());
        assert_eq!(p.wake_at, Some(t1.plus(grace)));
        let t2 = t1.plus(grace);
        let p = plan(&s, t2, grace, &mut fresh);
        let s = applied(s, &p);
        let (keys, stage) = keys_and_stage(&s);
        assert_eq!(keys, ["new1", "old"]);
        assert_eq!(stage.step, GossipKeyStep::Retiring);

        // After another grace, the old key is dropped.
        let t3 = t2.plus(grace);
        let p = plan(&s, t3, grace, &mut fresh);
        let s = applied(s, &p);
        let (keys, stage) = keys_and_stage(&s);
        assert_eq!(keys, ["new1"]);
        assert_eq!(stage.step, GossipKeyStep::Steady);
        assert_eq!(stage.since, Some(t3));
        assert_eq!(made.get(), 1, "one key per rotation");

        // The next rotation is a period later.
        let p = plan(&s, t3.plus(Duration::from_secs(1)), grace, &mut fresh);
        assert_eq!((p.ops.len(), p.wake_at), (0, Some(t3.plus(12 * H))));
    }

    #[test]
    fn an_old_cluster_starts_the_clock_and_a_zero_period_never_rotates() {
        let now = Timestamp(5_000);
        let mut fresh = |_: &[String]| "new".to_string();
        let s = state(&["old"], GossipKeyStep::Steady, None);
        let p = plan(&s, now, DEFAULT_GRACE, &mut fresh);
        let s = applied(s, &p);
        let (keys, stage) = keys_and_stage(&s);
        assert_eq!((keys, stage.since), (vec!["old".to_string()], Some(now)));

        let mut s = state(&["old"], GossipKeyStep::Steady, Some(Timestamp(0)));
        let mut cluster = s.cluster().cloned().expect("cluster");
        cluster.gossip_key_rotation = Duration::ZERO;
        let index = s.index() + 1;
        s.apply(index, &api::Batch::new(vec![Op::Update(cluster.into())]))
            .expect("update");
        let p = plan(&s, Timestamp(u64::MAX / 2), DEFAULT_GRACE, &mut fresh);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn new_keys_are_32_bytes_with_an_id_of_their_own() {
        let existing: Vec<String> = (0..=254u8)
            .map(|b| format!("{b:02x}{}", "00".repeat(31)))
            .collect();
        for _ in 0..20 {
            let k = new_key(&existing);
            assert_eq!(k.len(), 64, "{k}");
            assert_eq!(key_id(&k), Some(0xff), "the only free id");
        }
        let a = new_key(&[]);
        let b = new_key(&[]);
        assert_ne!(a, b);
        assert_eq!(key_id("zz"), None);
    }
}
