//! Authorization cost per request with 10,000 users, 1,000 teams and 10,000
//! grants (the access-control issue's goal: p99 under 10 µs).
//!
//! `cargo bench -p auth --bench authz`
//!
//! The state: 1,000 collections under `/Shared` (100 of depth 2, each with 9
//! children), 100 organizations of 10 teams each, every user in two teams;
//! 10,000 grants — 5,000 to users, 4,000 to teams, 1,000 to organizations —
//! of the built-in roles and one custom role, on random collections. Each
//! decision is what a request will do: take the authorizer for the current
//! state from the cache (rebuilt only after an auth change) and ask
//! `allows(user, operation, collection)` for a random user, operation and
//! collection (a leaf, so the walk up the tree is the longest). Times are
//! per decision, read with `Instant` around each call (its own cost, a few
//! tens of ns, included). Also: the time to build the authorizer from the
//! state, which each auth change costs once.

use api::auth::*;
use api::{Batch, Meta, Op, State, Timestamp};
use auth::{AuthorizerCache, Operation, BUILTIN_ROLES};
use std::time::{Duration, Instant};

const USERS: usize = 10_000;
const ORGS: usize = 100;
const TEAMS_PER_ORG: usize = 10;
const GRANTS: usize = 10_000;
const DECISIONS: usize = 1_000_000;
const GOAL_P99: Duration = Duration::from_micros(10);

/// xorshift64*: a fixed sequence, so every run asks the same questions.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ops: Vec<Op> = Vec::new();
    let mut collections = vec!["/".to_string(), "/Shared".to_string()];
    let mut leaves = Vec::new();
    for a in 0..100 {
        let top = format!("/Shared/p{a}");
        collections.push(top.clone());
        for b in 0..9 {
            let leaf = format!("{top}/c{b}");
            collections.push(leaf.clone());
            leaves.push(leaf);
        }
    }
    for (i, path) in collections.iter().enumerate() {
        ops.push(Op::Create(
            Collection {
                meta: Meta::new(format!("col{i}")),
                path: path.clone(),
            }
            .into(),
        ));
    }
    for u in 0..USERS {
        ops.push(Op::Create(
            User {
                meta: Meta::new(format!("u{u}")),
                name: format!("user{u}"),
                full_name: String::new(),
                admin: false,
                disabled: false,
                password_hash: None,
                source: UserSource::Local,
                locked_until: None,
            }
            .into(),
        ));
    }
    let teams = ORGS * TEAMS_PER_ORG;
    let mut members = vec![std::collections::BTreeSet::new(); teams];
    for u in 0..USERS {
        for _ in 0..2 {
            members[rng.below(teams)].insert(format!("u{u}"));
        }
    }
    for o in 0..ORGS {
        ops.push(Op::Create(
            Organization {
                meta: Meta::new(format!("o{o}")),
                name: format!("org{o}"),
            }
            .into(),
        ));
    }
    for (t, members) in members.into_iter().enumerate() {
        ops.push(Op::Create(
            Team {
                meta: Meta::new(format!("t{t}")),
                org_id: format!("o{}", t / TEAMS_PER_ORG),
                name: format!("team{t}"),
                members,
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
    let mut roles: Vec<&str> = BUILTIN_ROLES[1..].to_vec();
    roles.push("deployer");
    let mut made = std::collections::HashSet::new();
    while made.len() < GRANTS {
        let n = made.len();
        let subject = if n < 5_000 {
            Subject::User(format!("u{}", rng.below(USERS)))
        } else if n < 9_000 {
            Subject::Team(format!("t{}", rng.below(teams)))
        } else {
            Subject::Organization(format!("o{}", rng.below(ORGS)))
        };
        let role = roles[rng.below(roles.len())];
        let collection = collections[1 + rng.below(collections.len() - 1)].clone();
        if made.insert(grant_key(&subject, role, &collection)) {
            ops.push(Op::Create(
                Grant {
                    meta: Meta::new(format!("g{n}")),
                    subject,
                    role: role.into(),
                    collection,
                }
                .into(),
            ));
        }
    }
    let mut state = State::default();
    state
        .apply(
            1,
            &Batch {
                time: Timestamp(1),
                ops,
            },
        )
        .expect("the state applies");

    let mut builds = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let a = auth::Authorizer::new(&state);
        builds.push(t.elapsed());
        std::hint::black_box(a);
    }
    builds.sort();

    let operations: Vec<Operation> = Operation::all().collect();
    let questions: Vec<(String, Operation, &str)> = (0..DECISIONS)
        .map(|_| {
            (
                format!("u{}", rng.below(USERS)),
                operations[rng.below(operations.len())],
                leaves[rng.below(leaves.len())].as_str(),
            )
        })
        .collect();
    let cache = AuthorizerCache::default();
    cache.get(&state);
    let mut times = Vec::with_capacity(DECISIONS);
    let mut allowed = 0usize;
    let started = Instant::now();
    for (user, op, collection) in &questions {
        let t = Instant::now();
        let yes = cache.get(&state).allows(user, *op, collection);
        times.push(t.elapsed());
        allowed += yes as usize;
    }
    let total = started.elapsed();
    times.sort();
    let q = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "authorization: {USERS} users, {teams} teams in {ORGS} organizations, {GRANTS} grants, {} collections; {DECISIONS} decisions ({allowed} allowed)",
        collections.len()
    );
    println!(
        "per decision: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}; {:.0} decisions/s on one thread",
        q(0.5),
        q(0.99),
        q(0.999),
        times[times.len() - 1],
        DECISIONS as f64 / total.as_secs_f64()
    );
    println!(
        "rebuilding the authorizer after an auth change: median {:?} of 5 (min {:?}, max {:?})",
        builds[2], builds[0], builds[4]
    );
    let p99 = q(0.99);
    println!(
        "goal: p99 under {GOAL_P99:?}: {}",
        if p99 < GOAL_P99 { "met" } else { "NOT met" }
    );
}
