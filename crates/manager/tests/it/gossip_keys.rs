//! The leader's gossip key rotation run by the control loop over a real
//! store, with a short period and grace: a new key is accepted first, then
//! sent with, then the old one is dropped, and every node's view of the
//! keys (the store's) goes through those steps in that order.

use crate::support::Harness;
use api::{GossipKeyStep, Op};
use manager::{Manager, ManagerConfig};
use std::time::Duration;

fn keys_and_step(s: &api::State) -> Option<(Vec<String>, GossipKeyStep)> {
    let sec = s.cluster()?.security.as_ref()?;
    Some((sec.gossip_keys.clone(), sec.gossip_key_stage.step))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_rotates_the_gossip_key_in_three_steps() {
    let h = Harness::start(Duration::from_secs(5), false).await;
    let first = manager::gossip_keys::new_key(&[]);
    let mut cluster = h.store.view(|s| s.cluster().cloned()).expect("cluster");
    cluster.gossip_key_rotation = Duration::from_millis(300);
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
        gossip_keys: vec![first.clone()],
        admin_token_sha256: String::new(),
        registry_key_pem: String::new(),
        root_rotation: None,
        gossip_key_stage: Default::default(),
    });
    h.store
        .update(vec![Op::Update(cluster.into())])
        .await
        .expect("security");

    // Every key list the store goes through, in order.
    let mut changes = h.store.watch();
    let config = ManagerConfig {
        gossip_key_grace: Duration::from_millis(200),
        ..ManagerConfig::default()
    };
    let m = Manager::start(h.store.clone(), config).await;
    let mut seen: Vec<(Vec<String>, GossipKeyStep)> = Vec::new();
    let deadline = tokio::time::Instant::now() + crate::support::TIMEOUT;
    // Two whole rotations.
    while seen
        .iter()
        .filter(|(k, step)| *step == GossipKeyStep::Steady && k.len() == 1 && k[0] != first)
        .count()
        < 2
    {
        if let Some(now) = h.store.view(keys_and_step) {
            if seen.last() != Some(&now) {
                seen.push(now);
            }
        }
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(_) => {}
            Err(_) => panic!("no two rotations in time; seen: {seen:#?}"),
        }
    }
    m.shutdown().await;

    // The clock starts, then: add (old first), promote (new first), drop.
    assert_eq!(seen[0], (vec![first.clone()], GossipKeyStep::Steady));
    let steps: Vec<_> = seen.iter().skip(1).collect();
    let (added, _) = &steps[0];
    assert_eq!(steps[0].1, GossipKeyStep::Adding, "{seen:#?}");
    assert_eq!(added.len(), 2);
    assert_eq!(added[0], first);
    let new = added[1].clone();
    assert_ne!(new, first);
    assert_eq!(
        steps[1],
        &(vec![new.clone(), first.clone()], GossipKeyStep::Retiring)
    );
    assert_eq!(steps[2], &(vec![new.clone()], GossipKeyStep::Steady));
    assert_eq!(steps[3].1, GossipKeyStep::Adding);
    assert_eq!(steps[3].0[0], new);
    assert_ne!(
        manager::gossip_keys::key_id(&steps[3].0[0]),
        manager::gossip_keys::key_id(&steps[3].0[1]),
        "two keys of one ring never share an id"
    );
    h.stop().await;
}
