//! The authorizer against a table of subjects, roles, operations and collections.

use super::*;
use crate::BUILTIN_ROLES;
use api::auth::*;
use api::{Batch, Meta, Op, Timestamp};

fn apply(state: &mut State, ops: Vec<Op>) {
    let index = state.index() + 1;
    state
        .apply(
            index,
            &Batch {
                time: Timestamp(1),
                ops,
            },
        )
        .expect("applies");
}

fn user(id: &str, admin: bool, disabled: bool) -> Op {
    Op::Create(
        User {
            meta: Meta::new(id),
            name: id.into(),
            full_name: String::new(),
            admin,
            disabled,
            password_hash: None,
            source: UserSource::Local,
            locked_until: None,
        }
        .into(),
    )
}

fn grant(id: &str, subject: Subject, role: &str, collection: &str) -> Op {
    Op::Create(
        Grant {
            meta: Meta::new(id),
            subject,
            role: role.into(),
            collection: collection.into(),
        }
        .into(),
    )
}

/// Collections, users (an admin, alice, bob in team eng/web, carol in team
/// eng/ops, dave without grants), and a custom role.
fn base() -> State {
    let mut s = State::default();
    let mut ops: Vec<Op> = [
        "/",
        "/System",
        "/Shared",
        "/Shared/web",
        "/Shared/web/api",
        "/Shared/db",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| {
        Op::Create(
            Collection {
                meta: Meta::new(format!("c{i}")),
                path: p.to_string(),
            }
            .into(),
        )
    })
    .collect();
    ops.push(user("admin", true, false));
    for u in ["alice", "bob", "carol", "dave"] {
        ops.push(user(u, false, false));
    }
    ops.push(Op::Create(
        Organization {
            meta: Meta::new("eng"),
            name: "eng".into(),
        }
        .into(),
    ));
    for (id, member) in [("web", "bob"), ("ops", "carol")] {
        ops.push(Op::Create(
            Team {
                meta: Meta::new(id),
                org_id: "eng".into(),
                name: id.into(),
                members: [member.to_string()].into(),
                ldap_group_dn: None,
            }
            .into(),
        ));
    }
    ops.push(Op::Create(
        Role {
            meta: Meta::new("r1"),
            name: "deployer".into(),
            operations: ["service.create", "service.update", "service.view"]
                .map(String::from)
                .into(),
        }
        .into(),
    ));
    apply(&mut s, ops);
    s
}

/// Every subject kind × every role × operations on each role's edges ×
/// where the resource sits relative to the granted collection.
#[test]
fn matrix_of_subjects_roles_operations_and_collections() {
    let ops = [
        "service.view",
        "service.create",
        "service.privileged",
        "service.host_mount",
        "node.schedule",
        "node.update",
        "secret.use",
        "repository.push",
        "user.create",
        "grant.create",
    ];
    // (collection of the resource, whether a grant on /Shared/web reaches it)
    let places = [
        ("/Shared/web", true),
        ("/Shared/web/api", true),
        ("/Shared", false),
        ("/Shared/db", false),
        ("/", false),
        ("/System", false),
    ];
    let mut roles: Vec<&str> = BUILTIN_ROLES.to_vec();
    roles.push("deployer");
    // (the grant's subject, the user it should reach, one it must not)
    let subjects = [
        (Subject::User("alice".into()), "alice", "bob"),
        (Subject::Team("web".into()), "bob", "carol"),
        (Subject::Organization("eng".into()), "carol", "dave"),
    ];
    let mut checked = 0;
    for (subject, reached, other) in &subjects {
        for role in &roles {
            let mut s = base();
            apply(
                &mut s,
                vec![grant("g", subject.clone(), role, "/Shared/web")],
            );
            let authz = Authorizer::new(&s);
            let role_ops = builtin_role(role).unwrap_or_else(|| {
                OpSet::parse(["service.create", "service.update", "service.view"]).unwrap()
            });
            for op in ops {
                let op = Operation::named(op);
                for (place, reaches) in places {
                    let want = reaches && role_ops.contains(op);
                    assert_eq!(
                        authz.allows(reached, op, place),
                        want,
                        "{subject:?} granted {role} on /Shared/web: {reached} {op} on {place}"
                    );
                    assert!(
                        !authz.allows(other, op, place),
                        "{subject:?} granted {role}: {other} must get nothing ({op} on {place})"
                    );
                    assert!(authz.allows("admin", op, place), "admin {op} on {place}");
                    assert!(!authz.allows("nobody", op, place));
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 6 * 10 * 6);
}

#[test]
fn grants_add_up_and_the_system_collection_is_the_admins_alone() {
    let mut s = base();
    apply(
        &mut s,
        vec![
            grant("g1", Subject::User("alice".into()), "View Only", "/"),
            grant("g2", Subject::User("alice".into()), "Scheduler", "/Shared"),
            grant(
                "g3",
                Subject::User("alice".into()),
                "Full Control",
                "/System",
            ),
        ],
    );
    let a = Authorizer::new(&s);
    let op = Operation::named;
    assert!(a.allows("alice", op("service.view"), "/Shared/db"));
    assert!(a.allows("alice", op("node.schedule"), "/Shared/db"));
    assert!(!a.allows("alice", op("service.create"), "/Shared/db"));
    // Neither a grant on / nor one on /System itself reaches it.
    assert!(!a.allows("alice", op("service.view"), "/System"));
    assert!(!a.allows("alice", op("node.schedule"), "/System"));
    assert!(a.allows("admin", op("node.update"), "/System"));
}

#[test]
fn a_disabled_user_and_a_removed_member_lose_access_at_once() {
    let mut s = base();
    apply(
        &mut s,
        vec![
            grant(
                "g1",
                Subject::User("alice".into()),
                "Full Control",
                "/Shared",
            ),
            grant("g2", Subject::Team("web".into()), "Full Control", "/Shared"),
        ],
    );
    let cache = AuthorizerCache::default();
    let op = Operation::named("service.create");
    let before = cache.get(&s);
    assert!(before.allows("alice", op, "/Shared/web"));
    assert!(before.allows("bob", op, "/Shared/web"));
    // Unchanged auth objects: the same authorizer.
    apply(&mut s, vec![Op::Create(api::Cluster::new("c").into())]);
    assert!(Arc::ptr_eq(&before, &cache.get(&s)));

    let Some(Object::User(mut alice)) = s.auth_object(Kind::User, "alice").cloned() else {
        panic!("alice");
    };
    alice.disabled = true;
    let Some(Object::Team(mut web)) = s.auth_object(Kind::Team, "web").cloned() else {
        panic!("web");
    };
    web.members.clear();
    apply(
        &mut s,
        vec![Op::Update(alice.into()), Op::Update(web.into())],
    );
    let after = cache.get(&s);
    assert!(!Arc::ptr_eq(&before, &after));
    assert!(!after.allows("alice", op, "/Shared/web"));
    assert!(!after.allows("bob", op, "/Shared/web"));
    // A disabled admin is no admin.
    let Some(Object::User(mut admin)) = s.auth_object(Kind::User, "admin").cloned() else {
        panic!("admin");
    };
    admin.disabled = true;
    apply(&mut s, vec![Op::Update(admin.into())]);
    let a = cache.get(&s);
    assert!(!a.is_admin("admin"));
    assert!(!a.allows("admin", op, "/Shared"));
}

#[test]
fn a_grant_of_an_unknown_role_allows_nothing() {
    let mut s = base();
    apply(
        &mut s,
        vec![grant(
            "g1",
            Subject::User("alice".into()),
            "Superuser",
            "/Shared",
        )],
    );
    let a = Authorizer::new(&s);
    for op in Operation::all() {
        assert!(!a.allows("alice", op, "/Shared"), "{op}");
    }
}

#[test]
fn one_users_authorizer_decides_as_the_whole_one_for_that_user() {
    let mut s = base();
    apply(
        &mut s,
        vec![
            grant("g1", Subject::User("alice".into()), "View Only", "/Shared"),
            grant(
                "g2",
                Subject::Team("web".into()),
                "Scheduler",
                "/Shared/web",
            ),
            grant("g3", Subject::User("bob".into()), "Full Control", "/Shared"),
        ],
    );
    let whole = Authorizer::new(&s);
    for user in ["alice", "bob", "admin", "nobody"] {
        let one = Authorizer::for_user(&s, user);
        for op in Operation::all() {
            for c in ["/", "/Shared", "/Shared/web", "/Shared/web/x", "/System"] {
                assert_eq!(
                    one.allows(user, op, c),
                    whole.allows(user, op, c),
                    "{user} {op} {c}"
                );
            }
        }
        // It knows nobody else.
        if user != "bob" {
            assert!(!one.allows("bob", Operation::named("service.view"), "/Shared"));
        }
    }
}

#[test]
fn the_cache_keeps_the_newest_authorizer_offered() {
    let mut s = base();
    let cache = AuthorizerCache::default();
    assert_eq!(cache.index(), None);
    let old = Arc::new(Authorizer::new(&s));
    apply(
        &mut s,
        vec![grant("g9", Subject::User("alice".into()), "View Only", "/")],
    );
    let new = Arc::new(Authorizer::new(&s));
    assert!(new.auth_index() > old.auth_index());
    cache.offer(new.clone());
    cache.offer(old); // a slower, older rebuild finishing last
    assert_eq!(cache.index(), Some(new.auth_index()));
    assert!(Arc::ptr_eq(&cache.get(&s), &new));
}
