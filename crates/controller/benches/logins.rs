//! Logins per second through the API's router (the access-control issue:
//! "logins per second, bounded by argon2 cost, stated").
//!
//! `cargo bench -p controller --bench logins`
//!
//! A real single-node store (redb, fsync) in a temporary directory, one
//! local user, and `POST /api/v1/auth/login` driven through the router
//! in process (no socket, no TLS: this measures the login, not the
//! transport) by 1, 2 and 8 concurrent clients, 200 logins each round.
//! Each login is what a user's costs: the argon2id check (19 MiB, 2
//! passes, 1 lane) on the blocking pool and the new session written to
//! the store. Printed beside it: one argon2id check alone (median of 21),
//! and the bound it sets, cores / check time.

use axum::body::Body;
use axum::http::Request;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const LOGINS: usize = 200;
const PASSWORD: &str = "a long enough password";

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

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[allow(clippy::unwrap_used)]
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(store::StoreConfig::new(dir.path()))
            .await
            .unwrap();
        let state = controller::AppState::new(store.clone(), Arc::new(NoLogs), [0; 32]);
        let user = api::auth::User {
            meta: api::Meta::new(api::new_id()),
            name: "alice".into(),
            full_name: String::new(),
            admin: false,
            disabled: false,
            password_hash: Some(controller::password::hash(PASSWORD).unwrap()),
            source: Default::default(),
            locked_until: None,
        };
        let ops = store.view(|s| controller::new_user_ops(s, user.clone()));
        store.update(ops).await.unwrap();
        let app = controller::app(state);

        let phc = user.password_hash.clone().unwrap();
        let mut checks: Vec<Duration> = (0..21)
            .map(|_| {
                let t = Instant::now();
                assert!(controller::password::verify(PASSWORD, &phc));
                t.elapsed()
            })
            .collect();
        checks.sort();
        let check = checks[checks.len() / 2];
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "argon2id check (m=19 MiB, t=2, p=1): median {:.1} ms; bound with {cores} cores: {:.0} logins/s",
            check.as_secs_f64() * 1e3,
            cores as f64 / check.as_secs_f64()
        );

        let body = serde_json::json!({"username": "alice", "password": PASSWORD}).to_string();
        for clients in [1usize, 2, 8] {
            let start = Instant::now();
            let mut handles = Vec::new();
            for c in 0..clients {
                let app = app.clone();
                let body = body.clone();
                let n = LOGINS / clients + usize::from(c < LOGINS % clients);
                handles.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(n);
                    for _ in 0..n {
                        let req = Request::post("/api/v1/auth/login")
                            .header("content-type", "application/json")
                            .body(Body::from(body.clone()))
                            .unwrap();
                        let t = Instant::now();
                        let resp = app.clone().oneshot(req).await.unwrap();
                        assert_eq!(resp.status().as_u16(), 201);
                        lat.push(t.elapsed());
                    }
                    lat
                }));
            }
            let mut lat = Vec::new();
            for h in handles {
                lat.extend(h.await.unwrap());
            }
            let wall = start.elapsed();
            lat.sort();
            println!(
                "{clients:>2} clients: {:.1} logins/s ({LOGINS} in {:.2} s), latency p50 {:.1} ms p99 {:.1} ms",
                LOGINS as f64 / wall.as_secs_f64(),
                wall.as_secs_f64(),
                pct(&lat, 0.5).as_secs_f64() * 1e3,
                pct(&lat, 0.99).as_secs_f64() * 1e3,
            );
        }
        store.shutdown().await.unwrap();
    });
}
