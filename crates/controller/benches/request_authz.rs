//! What access control adds to a request, end to end through the router,
//! with 10,000 users, 1,000 teams and 10,000 grants in a real store (the
//! access-control issue: "authorization cost per request … under 10 µs
//! p99").
//!
//! `cargo bench -p controller --bench request_authz`
//!
//! A single-node store (redb, fsync) filled through `Store::update` with the
//! auth bench's shape: 100 organizations of 10 teams, every user in two
//! teams; 1,000 collections under `/Shared`; 10,000 grants (5,000 to users,
//! 4,000 to teams, 1,000 to organizations) of the built-in roles; 1,000
//! services, one per collection. Then, in process through the router
//! (`oneshot`, no socket or TLS), 50,000 requests of `GET
//! /api/v1/services/{name}` for random services by random users (each with
//! an API token: the SHA-256 of the secret, one look-up, the user read,
//! the cached decisions, then `service.view` decided on the service's
//! collection — 200 or 403), against 50,000 of `GET /healthz` through the
//! same router as the baseline, interleaved. Printed: p50 and p99 of both
//! and of their difference (what authentication and authorization cost a
//! request, with the handler's own read of the service).

use axum::body::Body;
use axum::http::Request;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const USERS: usize = 10_000;
const ORGS: usize = 100;
const TEAMS_PER_ORG: usize = 10;
const COLLECTIONS: usize = 1_000;
const GRANTS: usize = 10_000;
const REQUESTS: usize = 50_000;
const ROLES: &[&str] = &[
    "View Only",
    "Restricted Control",
    "Full Control",
    "Scheduler",
];

struct NoLogs;

#[async_trait::async_trait]
impl controller::LogSource for NoLogs {
    async fn task_logs(
        &self,
        _task: &api::Task,
        _tail: Option<usize>,
        _since: Option<api::Timestamp>,
    ) -> Result<Vec<api::dispatch::LogLine>, String> {
        Ok(vec![])
    }
}

/// xorshift64*: the same questions every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[allow(clippy::unwrap_used)]
async fn fill(store: &store::Store) -> Vec<String> {
    use api::auth::*;
    use api::{Meta, Op};
    let mut ops: Vec<Op> = store.view(controller::builtin_collection_ops);
    let mut tokens = Vec::with_capacity(USERS);
    let push = |ops: &mut Vec<Op>, op: Op| ops.push(op);
    let mut granted = std::collections::HashSet::new();
    for c in 0..COLLECTIONS {
        push(
            &mut ops,
            Op::Create(
                Collection {
                    meta: Meta::new(format!("c{c}")),
                    path: format!("/Shared/c{c}"),
                }
                .into(),
            ),
        );
    }
    for u in 0..USERS {
        push(
            &mut ops,
            Op::Create(
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
            ),
        );
        let secret = format!("berth-token-bench{u}");
        push(
            &mut ops,
            Op::Create(
                Token {
                    meta: Meta::new(format!("t{u}")),
                    user_id: format!("u{u}"),
                    name: "bench".into(),
                    purpose: TokenPurpose::Api,
                    secret_sha256: hex::encode(controller::authn::token_hash(&secret)),
                    expires_at: None,
                }
                .into(),
            ),
        );
        tokens.push(secret);
    }
    for o in 0..ORGS {
        push(
            &mut ops,
            Op::Create(
                Organization {
                    meta: Meta::new(format!("o{o}")),
                    name: format!("org{o}"),
                }
                .into(),
            ),
        );
        for t in 0..TEAMS_PER_ORG {
            let team = o * TEAMS_PER_ORG + t;
            // Users team and team + 500 (mod 1,000): every user in two teams.
            let members = (0..USERS)
                .filter(|u| u % 1000 == team || (u + 500) % 1000 == team)
                .map(|u| format!("u{u}"))
                .collect();
            push(
                &mut ops,
                Op::Create(
                    Team {
                        meta: Meta::new(format!("team{team}")),
                        org_id: format!("o{o}"),
                        name: format!("t{t}"),
                        members,
                        ldap_group_dn: None,
                    }
                    .into(),
                ),
            );
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for g in 0..GRANTS {
        let subject = match g % 10 {
            0..=4 => Subject::User(format!("u{}", rng.below(USERS))),
            5..=8 => Subject::Team(format!("team{}", rng.below(ORGS * TEAMS_PER_ORG))),
            _ => Subject::Organization(format!("o{}", rng.below(ORGS))),
        };
        let grant = Grant {
            meta: Meta::new(format!("g{g}")),
            subject,
            role: ROLES[rng.below(ROLES.len())].into(),
            collection: format!("/Shared/c{}", rng.below(COLLECTIONS)),
        };
        // A random triple may repeat an earlier one: skip it.
        if !granted.insert(grant_key(&grant.subject, &grant.role, &grant.collection)) {
            continue;
        }
        push(&mut ops, Op::Create(grant.into()));
    }
    for c in 0..COLLECTIONS {
        let mut spec = api::ServiceSpec {
            name: format!("svc{c}"),
            labels: Default::default(),
            mode: api::ServiceMode::Replicated { replicas: 0 },
            task_template: api::TaskSpec::exec(["true"]),
            update_config: Default::default(),
            rollback_config: Default::default(),
        };
        spec.labels
            .insert(COLLECTION_LABEL.into(), format!("/Shared/c{c}"));
        push(
            &mut ops,
            Op::Create(api::Service::new(format!("s{c}"), spec).into()),
        );
    }
    let mut rest = ops.as_slice();
    while !rest.is_empty() {
        let n = rest.len().min(2_000);
        store.update(rest[..n].to_vec()).await.unwrap();
        rest = &rest[n..];
    }
    tokens
}

#[allow(clippy::unwrap_used)]
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(store::StoreConfig::new(dir.path()))
            .await
            .unwrap();
        let t = Instant::now();
        let tokens = fill(&store).await;
        let grants = store.view(|s| s.auth_objects(api::Kind::Grant).count());
        println!(
            "state: {USERS} users, {} teams, {grants} grants, {COLLECTIONS} collections and services (filled in {:.1} s)",
            ORGS * TEAMS_PER_ORG,
            t.elapsed().as_secs_f64()
        );
        let state = controller::AppState::new(store.clone(), Arc::new(NoLogs), [0; 32]);
        let app = controller::app(state.clone());
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let once = |path: String, token: Option<&str>| {
            let app = app.clone();
            let mut req = Request::get(path);
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let req = req.body(Body::empty()).unwrap();
            async move {
                let t = Instant::now();
                let resp = app.oneshot(req).await.unwrap();
                let took = t.elapsed();
                (resp.status().as_u16(), took)
            }
        };
        // Warm-up: the first request builds the decisions (49 ms at this size).
        let (s, first) = once("/api/v1/services/svc0".into(), Some(&tokens[0])).await;
        println!("first request (builds the decisions): {:.1} ms, status {s}", first.as_secs_f64() * 1e3);
        let (mut with_auth, mut baseline) = (Vec::with_capacity(REQUESTS), Vec::with_capacity(REQUESTS));
        let (mut allowed, mut denied) = (0, 0);
        for _ in 0..REQUESTS {
            let user = rng.below(USERS);
            let svc = rng.below(COLLECTIONS);
            let (s, d) = once(format!("/api/v1/services/svc{svc}"), Some(&tokens[user])).await;
            match s {
                200 => allowed += 1,
                403 => denied += 1,
                other => panic!("unexpected status {other}"),
            }
            with_auth.push(d);
            let (s, d) = once("/healthz".into(), None).await;
            assert_eq!(s, 200);
            baseline.push(d);
        }
        with_auth.sort();
        baseline.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("{REQUESTS} requests each ({allowed} allowed, {denied} denied):");
        println!(
            "  GET /api/v1/services/NAME (token, decision, handler): p50 {:.1} µs, p99 {:.1} µs",
            us(pct(&with_auth, 0.5)),
            us(pct(&with_auth, 0.99))
        );
        println!(
            "  GET /healthz (the router alone):                      p50 {:.1} µs, p99 {:.1} µs",
            us(pct(&baseline, 0.5)),
            us(pct(&baseline, 0.99))
        );
        println!(
            "  difference: p50 {:.1} µs, p99 {:.1} µs (the handler's own work included)",
            us(pct(&with_auth, 0.5)) - us(pct(&baseline, 0.5)),
            us(pct(&with_auth, 0.99)) - us(pct(&baseline, 0.99))
        );

        // The authentication and the decision alone, as the middleware and
        // a handler make them: `authn::caller_of` (state copy, SHA-256 of
        // the secret, token and user looked up, cached decisions) and
        // `Caller::require(service.view, collection)`.
        let view = auth::Operation::named("service.view");
        let now = api::Timestamp::now();
        let mut alone = Vec::with_capacity(REQUESTS * 4);
        let mut allowed = 0;
        for _ in 0..REQUESTS * 4 {
            let user = rng.below(USERS);
            let collection = format!("/Shared/c{}", rng.below(COLLECTIONS));
            let t = Instant::now();
            let (caller, _) = controller::authn::caller_of(&state, Some(&tokens[user]), None, now).unwrap();
            let ok = caller.may(view, &collection);
            alone.push(t.elapsed());
            allowed += usize::from(ok);
        }
        alone.sort();
        println!(
            "authentication + decision alone ({} requests, {allowed} allowed): p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs (goal: under 10 µs p99)",
            alone.len(),
            us(pct(&alone, 0.5)),
            us(pct(&alone, 0.99)),
            us(pct(&alone, 0.999))
        );
        store.shutdown().await.unwrap();
    });
}
