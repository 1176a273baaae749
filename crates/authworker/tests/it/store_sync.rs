//! Syncs from slapd into a real single-node store through the worker: the
//! directory's users and groups followed over several rounds (created,
//! disabled, moved between teams, re-enabled), dry runs, the periodic loop
//! with token cleanup, just-in-time provisioning, and a directory that
//! cannot be reached.

use crate::login::closed_server;
use crate::slapd::{group_dn, password, user_dn, Slapd};
use api::auth::{LdapConfig, Organization, Team, Token, TokenPurpose, User, UserSource};
use api::{Kind, Meta, Object, Op, Timestamp};
use authworker::{
    authenticate, provision, ProvisionError, SyncError, SyncOutcome, SyncTrigger, TeamChange,
    Worker, WorkerConfig, WorkerHandle,
};
use std::time::{Duration, Instant};
use store::Store;

struct Env {
    store: Store,
    _dir: tempfile::TempDir,
}

/// A single-node store holding the cluster object with these LDAP settings.
async fn store_with(ldap: Option<LdapConfig>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(store::StoreConfig::new(dir.path()))
        .await
        .unwrap();
    let mut cluster = api::Cluster::new("test");
    cluster.auth.ldap = ldap;
    store
        .update(vec![Op::Create(cluster.into())])
        .await
        .unwrap();
    Env { store, _dir: dir }
}

/// A worker whose loop never syncs on its own (the settings' interval is
/// zero) and writes in small batches, so that batching is exercised.
fn worker(store: &Store) -> WorkerHandle {
    Worker::start_with(
        store.clone(),
        WorkerConfig {
            tick: Duration::from_millis(50),
            batch_size: 2,
            ..WorkerConfig::default()
        },
    )
}

fn user(store: &Store, name: &str) -> Option<User> {
    store.view(|s| match s.auth_by_key(&api::auth::account_key(name)) {
        Some(Object::User(u)) => Some(u.clone()),
        _ => None,
    })
}

fn local_user(name: &str) -> User {
    User {
        meta: Meta::new(api::new_id()),
        name: name.into(),
        full_name: String::new(),
        admin: false,
        disabled: false,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        source: UserSource::Local,
        locked_until: None,
    }
}

/// The names of a team's members.
fn members(store: &Store, team_id: &str) -> Vec<String> {
    store.view(|s| {
        let Some(Object::Team(t)) = s.auth_object(Kind::Team, team_id) else {
            panic!("no team {team_id}")
        };
        let mut names: Vec<String> = t
            .members
            .iter()
            .filter_map(|id| match s.auth_object(Kind::User, id) {
                Some(Object::User(u)) => Some(u.name.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names
    })
}

fn team(id: &str, name: &str, group: Option<String>, members: &[&str]) -> Op {
    Op::Create(
        Team {
            meta: Meta::new(id),
            org_id: "eng".into(),
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            ldap_group_dn: group,
        }
        .into(),
    )
}

fn change(team: &str, added: &[&str], removed: &[&str]) -> TeamChange {
    TeamChange {
        organization: "eng".into(),
        team: team.into(),
        added: added.iter().map(|s| s.to_string()).collect(),
        removed: removed.iter().map(|s| s.to_string()).collect(),
    }
}

fn sorted(mut teams: Vec<TeamChange>) -> Vec<TeamChange> {
    teams.sort_by(|a, b| a.team.cmp(&b.team));
    teams
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_follows_the_directory_round_after_round() {
    let Some(mut ldap) = Slapd::start().await else {
        return;
    };
    for (uid, name) in [
        ("alice", "Alice A"),
        ("bob", "Bob B"),
        ("carol", "Carol C"),
        ("dave", "Dave D"),
    ] {
        ldap.add_user(uid, name).await;
    }
    ldap.set_group("web", &["alice", "bob", "dave"]).await;
    ldap.set_group("db", &["carol"]).await;

    let env = store_with(Some(ldap.config())).await;
    let store = &env.store;
    // dave is a local user here: the sync must never take his account.
    let dave = local_user("dave");
    let root = local_user("root");
    store
        .update(vec![
            Op::Create(dave.clone().into()),
            Op::Create(root.clone().into()),
            Op::Create(
                Organization {
                    meta: Meta::new("eng"),
                    name: "eng".into(),
                }
                .into(),
            ),
            // root is in web by an admin's choice, and stays.
            team("web", "web", Some(group_dn("web")), &[&root.meta.id]),
            team("db", "db", Some(group_dn("db")), &[]),
            team("gone", "gone", Some(group_dn("nosuchgroup")), &[]),
        ])
        .await
        .unwrap();
    let dave = user(store, "dave").unwrap();
    let handle = worker(store);

    // A dry run says what would happen and writes nothing.
    let index = store.view(|s| s.index());
    let preview = handle.sync_now(true).await.unwrap();
    assert_eq!(preview.users_created, ["alice", "bob", "carol"]);
    assert_eq!(
        store.view(|s| s.index()),
        index,
        "a dry run wrote to the store"
    );
    assert!(user(store, "alice").is_none());
    assert_eq!(handle.status().last_sync, None, "dry runs are not recorded");

    // The first sync.
    let report = handle.sync_now(false).await.unwrap();
    assert_eq!(report.users_created, ["alice", "bob", "carol"]);
    assert_eq!(
        sorted(report.teams.clone()),
        [
            change("db", &["carol"], &[]),
            change("web", &["alice", "bob"], &[])
        ]
    );
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.entry.as_str()).collect();
    assert!(
        skipped.contains(&user_dn("dave").as_str()),
        "{:?}",
        report.skipped
    );
    assert!(skipped.contains(&"eng/gone"), "{:?}", report.skipped);
    let alice = user(store, "alice").unwrap();
    assert_eq!(
        alice.source,
        UserSource::Ldap {
            dn: user_dn("alice")
        }
    );
    assert_eq!(alice.full_name, "Alice A");
    assert_eq!((alice.password_hash.as_deref(), alice.admin), (None, false));
    assert_eq!(members(store, "web"), ["alice", "bob", "root"]);
    assert_eq!(members(store, "db"), ["carol"]);
    assert_eq!(
        user(store, "dave"),
        Some(dave.clone()),
        "the local dave was written"
    );

    // bob leaves the directory; alice moves from web to db.
    ldap.delete(&user_dn("bob")).await;
    ldap.set_group("web", &["bob", "dave"]).await;
    ldap.set_group("db", &["carol", "alice"]).await;
    let report = handle.sync_now(false).await.unwrap();
    assert_eq!(report.users_created, Vec::<String>::new());
    assert_eq!(report.users_disabled, ["bob"]);
    assert_eq!(
        sorted(report.teams.clone()),
        [
            change("db", &["alice"], &[]),
            change("web", &[], &["alice", "bob"])
        ]
    );
    assert!(user(store, "bob").unwrap().disabled);
    assert_eq!(members(store, "web"), ["root"]);
    assert_eq!(members(store, "db"), ["alice", "carol"]);

    // bob comes back, and into web.
    ldap.add_user("bob", "Bob B").await;
    ldap.set_group("web", &["bob"]).await;
    let report = handle.sync_now(false).await.unwrap();
    assert_eq!(report.users_enabled, ["bob"]);
    assert_eq!(sorted(report.teams.clone()), [change("web", &["bob"], &[])]);
    let bob = user(store, "bob").unwrap();
    assert!(!bob.disabled);
    assert_eq!(bob.source, UserSource::Ldap { dn: user_dn("bob") });

    // Nothing left to do; dave untouched throughout.
    let report = handle.sync_now(false).await.unwrap();
    assert!(report.no_changes(), "{report:?}");
    assert_eq!(user(store, "dave"), Some(dave));

    let status = handle.status();
    let last = status.last_sync.expect("a sync ran");
    assert_eq!(last.trigger, SyncTrigger::OnDemand);
    assert!(
        matches!(last.outcome, SyncOutcome::Succeeded { .. }),
        "{last:?}"
    );
    assert!(last.started_at <= last.finished_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_syncs_on_its_own_and_deletes_expired_tokens() {
    let Some(mut ldap) = Slapd::start().await else {
        return;
    };
    ldap.add_user("alice", "Alice A").await;
    let mut config = ldap.config();
    config.sync_interval = Duration::from_secs(1);
    let env = store_with(Some(config)).await;
    let store = &env.store;

    let root = local_user("root");
    let token = |id: &str, expires_at: Timestamp| {
        Op::Create(
            Token {
                meta: Meta::new(id),
                user_id: root.meta.id.clone(),
                name: id.into(),
                purpose: TokenPurpose::Session,
                secret_sha256: format!("{id:0>64}"),
                expires_at: Some(expires_at),
            }
            .into(),
        )
    };
    let now = Timestamp::now();
    store
        .update(vec![
            Op::Create(root.clone().into()),
            token("expired", Timestamp(now.as_millis() - 1000)),
            token("live", now.plus(Duration::from_secs(3600))),
        ])
        .await
        .unwrap();

    let handle = Worker::start_with(
        store.clone(),
        WorkerConfig {
            tick: Duration::from_millis(50),
            token_cleanup_every: Duration::from_millis(100),
            first_sync_after: Duration::ZERO,
            ..WorkerConfig::default()
        },
    );
    let has_token = |id: &str| store.view(|s| s.auth_object(Kind::Token, id).is_some());
    wait_for(
        "the expired token's removal",
        Duration::from_secs(10),
        || !has_token("expired"),
    )
    .await;
    assert!(has_token("live"), "a live token was deleted");
    wait_for("the first periodic sync", Duration::from_secs(15), || {
        user(store, "alice").is_some()
    })
    .await;

    // The next round, an interval later, finds the new user.
    ldap.add_user("erin", "Erin E").await;
    wait_for("the next periodic sync", Duration::from_secs(15), || {
        user(store, "erin").is_some()
    })
    .await;
    let last = handle.status().last_sync.expect("a sync ran");
    assert_eq!(last.trigger, SyncTrigger::Periodic);

    // An interval of zero stops periodic syncs.
    store
        .update(vec![{
            let mut c = store.view(|s| s.cluster().cloned()).unwrap();
            if let Some(l) = c.auth.ldap.as_mut() {
                l.sync_interval = Duration::ZERO;
            }
            Op::Update(c.into())
        }])
        .await
        .unwrap();
    // Let a round that was already under way finish, then look for none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ldap.add_user("frank", "Frank F").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        user(store, "frank").is_none(),
        "synced with a zero interval"
    );
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn just_in_time_provisioning_makes_a_user_once() {
    let Some(mut ldap) = Slapd::start().await else {
        return;
    };
    ldap.add_user("alice", "Alice A").await;
    ldap.add_user("dave", "Dave D").await;
    let mut config = ldap.config();
    config.jit_provisioning = true;
    let env = store_with(Some(config.clone())).await;
    let store = &env.store;
    let dave = local_user("dave");
    store
        .update(vec![Op::Create(dave.clone().into())])
        .await
        .unwrap();
    let handle = worker(store);

    // With JIT, a sync creates nobody.
    let report = handle.sync_now(false).await.unwrap();
    assert!(report.users_created.is_empty(), "{report:?}");
    assert!(user(store, "alice").is_none());

    let found = authenticate(&config, "alice", &password("alice"))
        .await
        .unwrap()
        .unwrap();
    let first = provision(store, &config, &found).await.unwrap();
    let second = provision(store, &config, &found).await.unwrap();
    assert_eq!(first, second, "a second login made another user");
    assert_eq!(user(store, "alice"), Some(first.clone()));
    assert_eq!(
        first.source,
        UserSource::Ldap {
            dn: user_dn("alice")
        }
    );
    assert_eq!(
        (first.full_name.as_str(), first.admin, first.disabled),
        ("Alice A", false, false)
    );

    // A local account of the same name is never taken over.
    let found = authenticate(&config, "dave", &password("dave"))
        .await
        .unwrap()
        .unwrap();
    let err = provision(store, &config, &found).await.unwrap_err();
    assert!(matches!(err, ProvisionError::NameTaken { .. }), "{err}");
    assert_eq!(user(store, "dave"), Some(user(store, "dave").unwrap()));
    assert!(matches!(
        user(store, "dave").unwrap().source,
        UserSource::Local
    ));

    // Gone from the directory: disabled by the sync; back and signing in:
    // enabled by the login.
    ldap.delete(&user_dn("alice")).await;
    assert_eq!(
        handle.sync_now(false).await.unwrap().users_disabled,
        ["alice"]
    );
    assert!(user(store, "alice").unwrap().disabled);
    ldap.add_user("alice", "Alice A").await;
    let found = authenticate(&config, "alice", &password("alice"))
        .await
        .unwrap()
        .unwrap();
    let back = provision(store, &config, &found).await.unwrap();
    assert_eq!(back.meta.id, first.meta.id);
    assert!(!back.disabled);

    // Without JIT, a directory user the sync has not made is refused.
    let mut no_jit = config.clone();
    no_jit.jit_provisioning = false;
    let erin = authworker::DirectoryUser {
        dn: user_dn("erin"),
        username: "erin".into(),
        full_name: String::new(),
    };
    let err = provision(store, &no_jit, &erin).await.unwrap_err();
    assert!(matches!(err, ProvisionError::JitDisabled { .. }), "{err}");
    assert!(err.to_string().contains("run an LDAP sync"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_directory_fails_the_sync_quickly_and_clearly() {
    let closed = closed_server();
    let config = LdapConfig {
        servers: vec![closed.clone()],
        reader_dn: "cn=reader,dc=berth,dc=test".into(),
        reader_password: "s3cret-reader-pw".into(),
        user_base_dn: "ou=people,dc=berth,dc=test".into(),
        sync_interval: Duration::ZERO,
        ..LdapConfig::default()
    };
    let env = store_with(Some(config)).await;
    let handle = worker(&env.store);
    let started = Instant::now();
    let err = handle.sync_now(false).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, SyncError::Directory(_)), "{err:?}");
    assert!(err.is_retryable());
    let expected = format!("could not reach any LDAP server ({closed}: connection refused)");
    assert_eq!(err.to_string(), expected);
    let last = handle.status().last_sync.expect("the failure is recorded");
    assert_eq!(last.outcome, SyncOutcome::Failed { error: expected });
    let shown = serde_json::to_string(&handle.status()).unwrap();
    assert!(!shown.contains("s3cret-reader-pw"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ldap_settings_a_sync_says_what_to_do() {
    let env = store_with(None).await;
    let handle = worker(&env.store);
    let err = handle.sync_now(false).await.unwrap_err();
    assert!(matches!(err, SyncError::NotConfigured), "{err:?}");
    assert!(err.to_string().contains("auth.ldap"), "{err}");
}
