//! The sync's rules as a table of cases (state, directory, JIT → report),
//! each also checked for what must hold of every plan: its ops apply to the
//! state as they are (current versions, users before the teams naming
//! them), a second sync over the result changes nothing, and no local user
//! is ever written.

use super::*;
use api::auth::{Organization, Team, User, UserSource};
use api::{Batch, Meta};

const NOW: Timestamp = Timestamp(1_000_000);

fn dn(uid: &str) -> String {
    format!("uid={uid},ou=people,dc=berth,dc=test")
}

fn group(cn: &str) -> String {
    format!("cn={cn},ou=groups,dc=berth,dc=test")
}

fn entry(uid: &str, full_name: &str) -> DirectoryUser {
    DirectoryUser {
        dn: dn(uid),
        username: uid.into(),
        full_name: full_name.into(),
    }
}

fn user(id: &str, name: &str, source: UserSource, disabled: bool) -> Object {
    User {
        meta: Meta::new(id),
        name: name.into(),
        full_name: String::new(),
        admin: false,
        disabled,
        password_hash: None,
        source,
        locked_until: None,
    }
    .into()
}

fn ldap(id: &str, name: &str) -> Object {
    user(id, name, UserSource::Ldap { dn: dn(name) }, false)
}

fn local(id: &str, name: &str) -> Object {
    user(id, name, UserSource::Local, false)
}

fn org(id: &str, name: &str) -> Object {
    Organization {
        meta: Meta::new(id),
        name: name.into(),
    }
    .into()
}

fn team(id: &str, name: &str, group_dn: Option<&str>, members: &[&str]) -> Object {
    Team {
        meta: Meta::new(id),
        org_id: "o1".into(),
        name: name.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        ldap_group_dn: group_dn.map(Into::into),
    }
    .into()
}

fn state_of(objects: Vec<Object>) -> State {
    let mut s = State::default();
    // Each object in its own entry, so versions differ from one another.
    for (i, o) in objects.into_iter().enumerate() {
        s.apply(
            i as u64 + 1,
            &Batch {
                time: Timestamp(1),
                ops: vec![Op::Create(o)],
            },
        )
        .unwrap_or_else(|e| panic!("setting up the state: {e}"));
    }
    s
}

fn found(users: Vec<DirectoryUser>, groups: &[(&str, &[&str])]) -> Found {
    Found {
        users,
        groups: groups
            .iter()
            .map(|(g, members)| (group(g), members.iter().map(|m| dn(m)).collect()))
            .collect(),
        unreadable_groups: BTreeMap::new(),
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn change(team: &str, added: &[&str], removed: &[&str]) -> TeamChange {
    TeamChange {
        organization: "eng".into(),
        team: team.into(),
        added: names(added),
        removed: names(removed),
    }
}

/// What a case expects of the report (skipped entries by their entry and
/// a piece of their reason).
#[derive(Default)]
struct Expect {
    created: &'static [&'static str],
    disabled: &'static [&'static str],
    enabled: &'static [&'static str],
    updated: &'static [&'static str],
    teams: Vec<TeamChange>,
    skipped: Vec<(String, &'static str)>,
}

struct Case {
    name: &'static str,
    state: Vec<Object>,
    found: Found,
    jit: bool,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    let eng = || org("o1", "eng");
    vec![
        Case {
            name: "without JIT every directory user is created",
            state: vec![],
            found: found(vec![entry("alice", "Alice A"), entry("bob", "")], &[]),
            jit: false,
            expect: Expect {
                created: &["alice", "bob"],
                ..Expect::default()
            },
        },
        Case {
            name: "with JIT none is created",
            state: vec![],
            found: found(vec![entry("alice", "Alice A"), entry("bob", "")], &[]),
            jit: true,
            expect: Expect::default(),
        },
        Case {
            name: "a local user of the same name is never taken over",
            state: vec![local("u1", "alice")],
            found: found(vec![entry("alice", "Alice A")], &[]),
            jit: false,
            expect: Expect {
                skipped: vec![(dn("alice"), "a local user is named \"alice\"")],
                ..Expect::default()
            },
        },
        Case {
            name: "an organization's name is not a user's",
            state: vec![org("o1", "alice")],
            found: found(vec![entry("alice", "")], &[]),
            jit: false,
            expect: Expect {
                skipped: vec![(dn("alice"), "organization's name")],
                ..Expect::default()
            },
        },
        Case {
            name: "an LDAP user no longer found is disabled, with or without JIT",
            state: vec![ldap("u1", "alice"), ldap("u2", "bob")],
            found: found(vec![entry("alice", "")], &[]),
            jit: true,
            expect: Expect {
                disabled: &["bob"],
                ..Expect::default()
            },
        },
        Case {
            name: "a user the sync disabled is enabled when found again",
            state: vec![user(
                "u1",
                "alice",
                UserSource::Ldap { dn: String::new() },
                true,
            )],
            found: found(vec![entry("alice", "")], &[]),
            jit: true,
            expect: Expect {
                enabled: &["alice"],
                ..Expect::default()
            },
        },
        Case {
            name: "a user an admin disabled stays disabled",
            state: vec![user(
                "u1",
                "alice",
                UserSource::Ldap { dn: dn("alice") },
                true,
            )],
            found: found(vec![entry("alice", "")], &[]),
            jit: false,
            expect: Expect::default(),
        },
        Case {
            name: "an already disabled user not found is left alone",
            state: vec![user(
                "u1",
                "alice",
                UserSource::Ldap { dn: dn("alice") },
                true,
            )],
            found: found(vec![], &[]),
            jit: false,
            expect: Expect::default(),
        },
        Case {
            name: "local users are not disabled when absent from the directory",
            state: vec![local("u1", "root")],
            found: found(vec![], &[]),
            jit: false,
            expect: Expect::default(),
        },
        Case {
            name: "DN and full name follow the directory; an empty full name changes nothing",
            state: vec![
                user(
                    "u1",
                    "alice",
                    UserSource::Ldap {
                        dn: "uid=alice,ou=old,dc=berth,dc=test".into(),
                    },
                    false,
                ),
                ldap("u2", "bob"),
                ldap("u3", "carol"),
            ],
            found: found(
                vec![
                    entry("alice", ""),
                    entry("bob", "Bob B"),
                    entry("carol", ""),
                ],
                &[],
            ),
            jit: false,
            expect: Expect {
                updated: &["alice", "bob"],
                ..Expect::default()
            },
        },
        Case {
            name: "a group's LDAP users become the team's, created ones by their new ids",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                team("t1", "web", Some(&group("web")), &[]),
            ],
            found: found(
                vec![entry("alice", ""), entry("bob", "")],
                &[("web", &["alice", "bob"])],
            ),
            jit: false,
            expect: Expect {
                created: &["bob"],
                teams: vec![change("web", &["alice", "bob"], &[])],
                ..Expect::default()
            },
        },
        Case {
            name: "LDAP members the group no longer lists leave; local members stay",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                ldap("u2", "bob"),
                local("u3", "root"),
                team("t1", "web", Some(&group("web")), &["u1", "u2", "u3"]),
            ],
            found: found(
                vec![entry("alice", ""), entry("bob", "")],
                &[("web", &["alice"])],
            ),
            jit: false,
            expect: Expect {
                teams: vec![change("web", &[], &["bob"])],
                ..Expect::default()
            },
        },
        Case {
            name: "a member moved between groups moves between teams",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                team("t1", "web", Some(&group("web")), &["u1"]),
                team("t2", "db", Some(&group("db")), &[]),
            ],
            found: found(
                vec![entry("alice", "")],
                &[("web", &[]), ("db", &["alice"])],
            ),
            jit: true,
            expect: Expect {
                teams: vec![
                    change("db", &["alice"], &[]),
                    change("web", &[], &["alice"]),
                ],
                ..Expect::default()
            },
        },
        Case {
            name: "a disabled user's membership goes with its DN",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                team("t1", "web", Some(&group("web")), &["u1"]),
            ],
            // The group still names alice, but she is not a user any more.
            found: found(vec![], &[("web", &["alice"])]),
            jit: false,
            expect: Expect {
                disabled: &["alice"],
                teams: vec![change("web", &[], &["alice"])],
                ..Expect::default()
            },
        },
        Case {
            name: "teams without a group, and members no user maps to, are left alone",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                team("t1", "ops", None, &[]),
                team("t2", "web", Some(&group("web")), &["u1"]),
            ],
            found: found(vec![entry("alice", "")], &[("web", &["alice", "nobody"])]),
            jit: false,
            expect: Expect::default(),
        },
        Case {
            name: "with JIT, members not yet provisioned are not added",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                team("t1", "web", Some(&group("web")), &[]),
            ],
            found: found(
                vec![entry("alice", ""), entry("bob", "")],
                &[("web", &["alice", "bob"])],
            ),
            jit: true,
            expect: Expect {
                teams: vec![change("web", &["alice"], &[])],
                ..Expect::default()
            },
        },
        Case {
            name: "a group that could not be read leaves its team as it is",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                team("t1", "web", Some(&group("gone")), &["u1"]),
            ],
            found: Found {
                unreadable_groups: [(group("gone"), "no such object".to_string())].into(),
                ..found(vec![entry("alice", "")], &[])
            },
            jit: false,
            expect: Expect {
                skipped: vec![(
                    "eng/web".into(),
                    "no such object; its members are left as they are",
                )],
                ..Expect::default()
            },
        },
        Case {
            name: "DNs match without case or spaces",
            state: vec![
                eng(),
                ldap("u1", "alice"),
                team(
                    "t1",
                    "web",
                    Some("CN=Web, OU=Groups, DC=berth, DC=test"),
                    &[],
                ),
            ],
            found: Found {
                groups: [(
                    group("web"),
                    ["UID=Alice , ou=People,dc=BERTH,dc=test".to_string()].into(),
                )]
                .into(),
                ..found(vec![entry("alice", "")], &[])
            },
            jit: false,
            expect: Expect {
                teams: vec![change("web", &["alice"], &[])],
                ..Expect::default()
            },
        },
        Case {
            name: "a user name two entries share: the first by DN is used",
            state: vec![],
            found: found(
                vec![
                    DirectoryUser {
                        dn: "uid=alice,ou=z,dc=berth,dc=test".into(),
                        username: "alice".into(),
                        full_name: String::new(),
                    },
                    DirectoryUser {
                        dn: "uid=alice,ou=a,dc=berth,dc=test".into(),
                        username: "alice".into(),
                        full_name: String::new(),
                    },
                ],
                &[],
            ),
            jit: false,
            expect: Expect {
                created: &["alice"],
                skipped: vec![(
                    "uid=alice,ou=z,dc=berth,dc=test".into(),
                    "is also uid=alice,ou=a",
                )],
                ..Expect::default()
            },
        },
        Case {
            name: "names that cannot be account names are skipped",
            state: vec![],
            found: found(
                vec![
                    DirectoryUser {
                        dn: "cn=a".into(),
                        username: "a b".into(),
                        full_name: String::new(),
                    },
                    DirectoryUser {
                        dn: "cn=b".into(),
                        username: "x/y".into(),
                        full_name: String::new(),
                    },
                    DirectoryUser {
                        dn: "cn=c".into(),
                        username: "..".into(),
                        full_name: String::new(),
                    },
                ],
                &[],
            ),
            jit: false,
            expect: Expect {
                skipped: vec![
                    ("cn=a".into(), "contains ' '"),
                    ("cn=b".into(), "contains '/'"),
                    ("cn=c".into(), "cannot be a user name"),
                ],
                ..Expect::default()
            },
        },
    ]
}

/// Applies a plan's ops the way the worker does (in batches, here of 2).
fn apply_plan(state: &mut State, ops: &[Op]) {
    for (i, batch) in ops.chunks(2).enumerate() {
        state
            .apply(
                state.index() + 1 + i as u64,
                &Batch {
                    time: NOW,
                    ops: batch.to_vec(),
                },
            )
            .unwrap_or_else(|e| panic!("the plan's ops must apply: {e}"));
    }
}

fn local_users(state: &State) -> Vec<Object> {
    state
        .auth_objects(Kind::User)
        .filter(|o| matches!(o, Object::User(u) if u.source == UserSource::Local))
        .cloned()
        .collect()
}

#[test]
fn the_sync_follows_its_rules() {
    for case in cases() {
        let mut state = state_of(case.state);
        let plan = plan(&state, &case.found, NOW, case.jit);
        let r = &plan.report;
        let what = case.name;
        assert_eq!(r.at, NOW, "{what}");
        assert_eq!(
            r.users_created,
            names(case.expect.created),
            "{what}: created"
        );
        assert_eq!(
            r.users_disabled,
            names(case.expect.disabled),
            "{what}: disabled"
        );
        assert_eq!(
            r.users_enabled,
            names(case.expect.enabled),
            "{what}: enabled"
        );
        assert_eq!(
            r.users_updated,
            names(case.expect.updated),
            "{what}: updated"
        );
        let mut teams = r.teams.clone();
        teams.sort_by(|a, b| a.team.cmp(&b.team));
        assert_eq!(teams, case.expect.teams, "{what}: teams");
        assert_eq!(
            r.skipped.len(),
            case.expect.skipped.len(),
            "{what}: skipped {:?}",
            r.skipped
        );
        for (entry, reason) in &case.expect.skipped {
            assert!(
                r.skipped
                    .iter()
                    .any(|s| &s.entry == entry && s.reason.contains(reason)),
                "{what}: no skip of {entry} for {reason:?} in {:?}",
                r.skipped
            );
        }
        assert_eq!(r.no_changes(), plan.ops.is_empty(), "{what}");

        let locals = local_users(&state);
        apply_plan(&mut state, &plan.ops);
        assert_eq!(
            local_users(&state),
            locals,
            "{what}: a local user was written"
        );
        let again = super::plan(&state, &case.found, NOW, case.jit);
        assert!(
            again.ops.is_empty(),
            "{what}: a second sync still changes {:?}",
            again.report
        );
    }
}

#[test]
fn created_users_are_ldap_users_without_password_or_admin() {
    let state = state_of(vec![]);
    let p = plan(
        &state,
        &found(vec![entry("alice", "Alice A")], &[]),
        NOW,
        false,
    );
    let [Op::Create(Object::User(u))] = p.ops.as_slice() else {
        panic!("one user created: {:?}", p.ops)
    };
    assert_eq!(u.name, "alice");
    assert_eq!(u.full_name, "Alice A");
    assert_eq!(u.source, UserSource::Ldap { dn: dn("alice") });
    assert_eq!(u.password_hash, None);
    assert!(!u.admin && !u.disabled);
    assert_eq!(u.meta.id.len(), api::id::ID_LEN);
}

#[test]
fn a_team_names_the_ids_of_users_created_in_the_same_plan() {
    let state = state_of(vec![
        org("o1", "eng"),
        team("t1", "web", Some(&group("web")), &[]),
    ]);
    let p = plan(
        &state,
        &found(vec![entry("bob", "")], &[("web", &["bob"])]),
        NOW,
        false,
    );
    let [Op::Create(Object::User(bob)), Op::Update(Object::Team(t))] = p.ops.as_slice() else {
        panic!("a user then its team: {:?}", p.ops)
    };
    assert_eq!(t.members, [bob.meta.id.clone()].into());
}

#[test]
fn updates_carry_the_current_version() {
    let state = state_of(vec![
        org("o1", "eng"),
        ldap("u1", "alice"),
        ldap("u2", "bob"),
        team("t1", "web", Some(&group("web")), &[]),
    ]);
    let version = |kind, id| state.auth_object(kind, id).map(|o| o.meta().version);
    let p = plan(
        &state,
        &found(vec![entry("alice", "")], &[("web", &["alice"])]),
        NOW,
        true,
    );
    assert_eq!(p.ops.len(), 2, "{:?}", p.ops);
    for op in &p.ops {
        let Op::Update(o) = op else { panic!("{op:?}") };
        assert_eq!(Some(o.meta().version), version(o.kind(), o.id()), "{op:?}");
    }
}

#[test]
fn a_disabled_user_loses_its_dn_so_a_later_sync_knows_it_disabled_it() {
    let mut state = state_of(vec![ldap("u1", "alice")]);
    let gone = plan(&state, &found(vec![], &[]), NOW, true);
    apply_plan(&mut state, &gone.ops);
    let Some(Object::User(u)) = state.auth_object(Kind::User, "u1") else {
        panic!()
    };
    assert!(u.disabled);
    assert_eq!(u.source, UserSource::Ldap { dn: String::new() });
    let back = plan(&state, &found(vec![entry("alice", "")], &[]), NOW, true);
    assert_eq!(back.report.users_enabled, ["alice"]);
    apply_plan(&mut state, &back.ops);
    let Some(Object::User(u)) = state.auth_object(Kind::User, "u1") else {
        panic!()
    };
    assert!(!u.disabled);
    assert_eq!(u.source, UserSource::Ldap { dn: dn("alice") });
}

#[test]
fn dns_normalise_case_and_spaces_but_not_escapes() {
    for (a, b) in [
        ("uid=Alice, ou=People,dc=x", "uid=alice,ou=people,dc=x"),
        ("UID = alice ,OU=people", "uid=alice,ou=people"),
        (r"cn=Smith\, John,dc=x", r"cn=smith\, john,dc=x"),
    ] {
        assert_eq!(normalize_dn(a), normalize_dn(b), "{a} / {b}");
    }
    assert_ne!(normalize_dn(r"cn=a\,b"), normalize_dn("cn=a,b"));
}

#[test]
fn the_report_round_trips_through_json() {
    let state = state_of(vec![local("u1", "alice")]);
    let p = plan(
        &state,
        &found(vec![entry("alice", ""), entry("bob", "")], &[]),
        NOW,
        false,
    );
    let json = serde_json::to_string(&p.report).unwrap_or_default();
    let back: SyncReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(back, p.report);
    assert_eq!(
        p.report.summary(),
        SyncSummary {
            users_created: 1,
            skipped: 1,
            ..SyncSummary::default()
        }
    );
}
