//! A minority partition with the real binary: three managers formed by
//! `init`/`join` on 127.N.0.x, one of them cut off from the other two by
//! firewall rules (iptables, both directions) — first a follower, then the
//! leader. The cut-off manager refuses writes fast with a 503 naming the lost
//! majority and still answers reads of its local copy; the other two keep (or
//! elect) a leader and accept writes; once healed, the cut-off manager
//! catches up and accepts writes again, and nothing acknowledged is lost.
//!
//! The rules can tell the managers apart because each node's cluster RPC
//! leaves from its advertised address (`ca::MtlsConnector::with_source_ip`)
//! and gossip from its bound one; the CLI (from 127.0.0.1) still reaches
//! every manager's API. The test needs root and iptables: without them it
//! says why and skips, unless `BERTH_REQUIRE_PRIVILEGED_TESTS=1` (CI), where
//! it fails instead.

use crate::multiproc::{Cluster, T};
use crate::support::*;
use api::{Node, NodeState, ServiceMode, ServiceSpec, TaskSpec, UpdateConfig};
use berth::client::Client;
use berth::credentials::Credentials;
use controller::wire::{Created, ServiceWithStatus};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Set (to 1) where the privileged tests must run rather than skip.
const REQUIRE_PRIVILEGED: &str = "BERTH_REQUIRE_PRIVILEGED_TESTS";

/// A write refused by a manager that knows it lost the majority: a check of
/// its reachability table, far under the store's 10 s write timeout and the
/// CLI's 60 s.
const FAST: Duration = Duration::from_secs(2);

/// What a write refused for a lost majority says (the store's cause).
const LOST_MAJORITY: &str = "lost contact with a majority of managers";

/// Whether a refusal leaves the write's outcome open: the store says so in
/// one wording (`StoreError::OutcomeUnknown`); any other 503 was refused
/// before it was proposed.
fn outcome_unknown(message: &str) -> bool {
    message.contains("the write may still be applied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_manager_refuses_writes_and_catches_up_after_healing() {
    let Some(firewall) = Firewall::for_this_test() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path());
    // Another /16 than cluster.rs's two tests in this process.
    c.net = c.net.wrapping_add(2);
    let managers = ["m1", "m2", "m3"];
    let m1 = ip_of(&c, "m1");
    c.spawn("m1", &["init", "--advertise-addr", &m1]);
    c.wait_ready(1).await;
    let (ok, token, err) = c.cli(&["join-token", "--quiet", "manager"]).await;
    assert!(ok, "{err}");
    let join = format!("{m1}:7377");
    for (i, name) in ["m2", "m3"].iter().enumerate() {
        let ip = ip_of(&c, name);
        c.spawn(
            name,
            &[
                "join",
                "--token",
                token.trim(),
                "--advertise-addr",
                &ip,
                &join,
            ],
        );
        c.wait_ready(2 + i).await;
    }
    let ledger = Ledger::default();
    for i in 0..3 {
        ledger.must_write(&c, "m1", &format!("before{i}")).await;
    }
    let leader = settled_leader(&c, &managers).await;

    let follower = managers.iter().find(|m| **m != leader).unwrap();
    cut_off(&c, &firewall, &ledger, follower, &managers).await;
    let leader = settled_leader(&c, &managers).await;
    cut_off(&c, &firewall, &ledger, &leader, &managers).await;

    // Every manager has every acknowledged write, and none that was refused
    // before it was proposed.
    let w = std::mem::take(&mut *ledger.lock());
    for m in managers {
        let names = local_services(&c, m)
            .await
            .expect("a manager answers reads");
        for name in &w.acknowledged {
            assert!(names.contains(name), "{m} lost {name}: {names:?}");
        }
        for name in &w.refused {
            assert!(
                !names.contains(name),
                "{m} applied {name}, which was refused as never proposed: {names:?}"
            );
        }
    }
    eprintln!(
        "{} writes acknowledged, {} refused before being proposed, {} of unknown outcome; \
         the 3 managers agree",
        w.acknowledged.len(),
        w.refused.len(),
        w.unknown.len()
    );
}

/// Cuts `island` off from the other managers, checks both sides, heals, and
/// checks that the island catches up.
async fn cut_off(
    c: &Cluster,
    firewall: &Firewall,
    ledger: &Ledger,
    island: &str,
    managers: &[&str],
) {
    let majority: Vec<&str> = managers.iter().copied().filter(|m| *m != island).collect();
    let was_leader = leader_seen_by(c, majority[0]).await.as_deref() == Some(island);
    let role = if was_leader { "leader" } else { "follower" };
    let others: Vec<String> = majority.iter().map(|m| ip_of(c, m)).collect();
    let before_cut = ledger.acknowledged();
    firewall.cut(&ip_of(c, island), &others);
    let cut = Instant::now();
    eprintln!("--- {island} ({role}) cut off from {majority:?}");

    // From the cut on, both sides are written to at once, each attempt
    // timed: the island refuses once it knows it lost the majority (a write
    // sent before may wait for its answer), and the majority accepts once
    // it has a leader it can reach.
    let island_api = api_client(c, island);
    let majority_api = api_client(c, majority[0]);
    let (detected, accepted) = tokio::join!(
        first_write(ledger, &island_api, island, cut, |result| {
            matches!(result, Err((503, m)) if m.contains(LOST_MAJORITY))
        }),
        first_write(ledger, &majority_api, majority[0], cut, |result| result
            .is_ok()),
    );
    eprintln!("{island} (island): first write refused for lost quorum {detected:?} after the cut");
    eprintln!(
        "{} (majority): first write accepted {accepted:?} after the cut",
        majority[0]
    );

    // From then on every write is refused at once, through the API and the CLI.
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let name = ledger.fresh(&format!("refused-{island}-{i}"));
        let started = Instant::now();
        let result = write(&island_api, &name).await;
        let took = started.elapsed();
        ledger.record(&name, &result);
        match &result {
            Err((503, m)) if m.contains(LOST_MAJORITY) => {}
            other => panic!("{island} did not refuse {name} for lost quorum: {other:?}"),
        }
        assert!(took < FAST, "{island} took {took:?} to refuse {name}");
        slowest = slowest.max(took);
    }
    let name = ledger.fresh(&format!("refused-cli-{island}"));
    let started = Instant::now();
    let (ok, _, err) = on(c, island, &service_create(&name)).await;
    let cli_took = started.elapsed();
    assert!(
        !ok,
        "{island} accepted {name} through the CLI while cut off"
    );
    assert!(err.contains(LOST_MAJORITY), "{err}");
    assert!(
        cli_took < FAST,
        "the CLI took {cli_took:?} to be refused: {err}"
    );
    ledger.record(&name, &Err((503, err.clone())));
    eprintln!(
        "{island}: writes refused in at most {slowest:?} (API, 5 writes), {cli_took:?} (CLI process): {}",
        err.trim()
    );

    // Reads of the island's local copy still answer.
    let names = local_services(c, island)
        .await
        .unwrap_or_else(|e| panic!("{island} does not answer reads while cut off: {e}"));
    for name in &before_cut {
        assert!(
            names.contains(name),
            "{island}'s copy lacks {name}: {names:?}"
        );
    }

    // The majority has (or elected) a leader of its own and accepts writes
    // through either of its managers.
    for m in &majority {
        for i in 0..2 {
            ledger
                .must_write(c, m, &format!("during-{island}-{m}-{i}"))
                .await;
        }
    }
    let new_leader = leader_seen_by(c, majority[0]).await;
    assert!(
        new_leader.as_deref().is_some_and(|l| majority.contains(&l)),
        "the majority's leader is {new_leader:?}"
    );
    let nodes = nodes_via(c, majority[0]).await;
    let seen = nodes
        .iter()
        .find(|n| n.description.hostname == island)
        .and_then(|n| n.manager_status.clone());
    assert!(
        seen.as_ref()
            .is_some_and(|s| s.reachability == "unreachable"),
        "{} sees {island} as {seen:?}",
        majority[0]
    );
    // The cut is real: the island has seen none of the majority's writes.
    let during: Vec<String> = ledger
        .acknowledged()
        .into_iter()
        .filter(|n| !before_cut.contains(n))
        .collect();
    let names = local_services(c, island).await.unwrap();
    assert!(
        during.iter().all(|n| !names.contains(n)),
        "{island} saw writes made while it was cut off: {names:?}"
    );

    // Healed, the island catches up and accepts writes again.
    firewall.heal();
    let healed = Instant::now();
    let caught_up = wait_for(T, &format!("{island} catching up"), || async {
        let names = local_services(c, island).await.ok()?;
        during
            .iter()
            .all(|n| names.contains(n))
            .then(|| healed.elapsed())
    })
    .await;
    let writable = wait_for(T, &format!("{island} accepting writes again"), || async {
        let name = ledger.fresh(&format!("healed-{island}"));
        let result = write(&island_api, &name).await;
        ledger.record(&name, &result);
        result.is_ok().then(|| healed.elapsed())
    })
    .await;
    eprintln!(
        "{island} healed: caught up after {caught_up:?}, accepted a write after {writable:?}"
    );
    settled_leader(c, managers).await;
}

/// Writes through `api` until an answer satisfies `wanted`, printing each
/// attempt's duration and answer; returns the time from `cut` to that answer.
async fn first_write(
    ledger: &Ledger,
    api: &Client,
    manager: &str,
    cut: Instant,
    wanted: impl Fn(&Result<(), (u16, String)>) -> bool,
) -> Duration {
    let what = format!("the wanted answer from {manager} after the cut");
    wait_for(T, &what, || async {
        let name = ledger.fresh(&format!("cut-{manager}"));
        let started = Instant::now();
        let result = write(api, &name).await;
        let outcome = ledger.record(&name, &result);
        eprintln!(
            "    {manager}: write sent {:?} after the cut answered in {:?}: {outcome}",
            started - cut,
            started.elapsed()
        );
        wanted(&result).then(|| cut.elapsed())
    })
    .await
}

/// The writes of the test and what became of them. Shared by the checks
/// that `wait_for` polls, hence the lock (never held across an await).
#[derive(Default)]
struct Ledger(Mutex<Writes>);

#[derive(Default)]
struct Writes {
    /// Acknowledged: must be on every manager in the end.
    acknowledged: Vec<String>,
    /// Refused before being proposed (a 503 that does not say it may still
    /// be applied): must be on none.
    refused: Vec<String>,
    /// Unknown outcome (no answer, or "may still be applied"): not checked.
    unknown: Vec<String>,
    next: u32,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.0.lock().unwrap()
    }

    fn fresh(&self, prefix: &str) -> String {
        let mut w = self.lock();
        w.next += 1;
        format!("{prefix}-{}", w.next)
    }

    fn acknowledged(&self) -> Vec<String> {
        self.lock().acknowledged.clone()
    }

    /// Files `name` by the answer to its write; says what the answer was.
    fn record(&self, name: &str, result: &Result<(), (u16, String)>) -> String {
        let mut w = self.lock();
        match result {
            Ok(()) => {
                w.acknowledged.push(name.to_string());
                "acknowledged".into()
            }
            Err((503, m)) if !outcome_unknown(m) => {
                w.refused.push(name.to_string());
                format!("503 {m}")
            }
            Err((status, m)) => {
                w.unknown.push(name.to_string());
                format!("{status} {m}")
            }
        }
    }

    /// A write through `manager`'s CLI that must be acknowledged.
    async fn must_write(&self, c: &Cluster, manager: &str, name: &str) {
        let (ok, _, err) = on(c, manager, &service_create(name)).await;
        assert!(ok, "{manager} refused {name}: {err}");
        self.lock().acknowledged.push(name.to_string());
    }
}

fn ip_of(c: &Cluster, manager: &str) -> String {
    let n: u8 = manager.trim_start_matches('m').parse().unwrap();
    c.ip(10 + n)
}

fn api_of(c: &Cluster, manager: &str) -> String {
    format!("{}:{}", ip_of(c, manager), berth::node::API_PORT)
}

/// A client of `manager`'s API only (no other manager is tried).
fn api_client(c: &Cluster, manager: &str) -> Client {
    let mut creds = Credentials::load(&c.config.join("credentials.json")).unwrap();
    creds.host = api_of(c, manager);
    creds.managers.clear();
    Client::new(&creds).unwrap()
}

/// Creates a service with no tasks; the error is (HTTP status, message), 0
/// when the request got no answer.
async fn write(api: &Client, name: &str) -> Result<(), (u16, String)> {
    let spec = ServiceSpec {
        name: name.to_string(),
        labels: Default::default(),
        mode: ServiceMode::Replicated { replicas: 0 },
        task_template: TaskSpec::exec(["true"]),
        update_config: UpdateConfig::default(),
        rollback_config: UpdateConfig::default(),
    };
    match api.post::<_, Created>("/api/v1/services", &spec).await {
        Ok(_) => Ok(()),
        Err(e) => Err((berth::client::status_of(&e).unwrap_or(0), format!("{e:#}"))),
    }
}

fn service_create(name: &str) -> Vec<String> {
    [
        "service",
        "create",
        "--name",
        name,
        "--replicas",
        "0",
        "-d",
        "--",
        "true",
    ]
    .map(String::from)
    .to_vec()
}

/// The CLI with `--host` set to `manager`'s API.
async fn on(c: &Cluster, manager: &str, args: &[String]) -> (bool, String, String) {
    let host = api_of(c, manager);
    let mut all = vec!["--host", host.as_str()];
    all.extend(args.iter().map(String::as_str));
    c.cli(&all).await
}

/// The service names in `manager`'s local copy (`service ls` on it).
async fn local_services(c: &Cluster, manager: &str) -> Result<BTreeSet<String>, String> {
    let args = ["service", "ls", "--format", "json"].map(String::from);
    let (ok, out, err) = on(c, manager, &args).await;
    if !ok {
        return Err(err);
    }
    let services: Vec<ServiceWithStatus> =
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    Ok(services.into_iter().map(|s| s.service.spec.name).collect())
}

async fn nodes_via(c: &Cluster, manager: &str) -> Vec<Node> {
    let args = ["node", "ls", "--format", "json"].map(String::from);
    let (ok, out, _) = on(c, manager, &args).await;
    if !ok {
        return Vec::new();
    }
    serde_json::from_str(&out).unwrap_or_default()
}

/// The hostname of the leader `manager` knows of.
async fn leader_seen_by(c: &Cluster, manager: &str) -> Option<String> {
    nodes_via(c, manager)
        .await
        .into_iter()
        .find(|n| n.manager_status.as_ref().is_some_and(|s| s.leader))
        .map(|n| n.description.hostname)
}

/// Waits until every manager names the same leader, sees every manager
/// reachable and every node ready; returns the leader.
async fn settled_leader(c: &Cluster, managers: &[&str]) -> String {
    wait_for(
        T,
        "the managers agreeing on a leader, all reachable and ready",
        || async {
            let mut leaders = BTreeSet::new();
            for m in managers {
                let nodes = nodes_via(c, m).await;
                let healthy = nodes.len() == managers.len()
                    && nodes.iter().all(|n| {
                        n.status.state == NodeState::Ready
                            && n.manager_status
                                .as_ref()
                                .is_some_and(|s| s.reachability == "reachable")
                    });
                if !healthy {
                    return None;
                }
                let leader = nodes
                    .iter()
                    .find(|n| n.manager_status.as_ref().is_some_and(|s| s.leader))?;
                leaders.insert(leader.description.hostname.clone());
            }
            (leaders.len() == 1).then(|| leaders.pop_first().unwrap())
        },
    )
    .await
}

/// The test's own iptables chain, jumped to from INPUT and OUTPUT, holding
/// the rules of the current cut. Dropped (even by a panic), it takes its
/// jumps and itself away. A chain left by a test process that was killed is
/// removed by the next one.
struct Firewall {
    chain: String,
}

impl Firewall {
    /// The firewall of one test, or None (after saying why) where this
    /// machine cannot run it; where it must, a panic instead.
    fn for_this_test() -> Option<Firewall> {
        if let Err(why) = privileged() {
            if std::env::var(REQUIRE_PRIVILEGED).as_deref() == Ok("1") {
                panic!("{REQUIRE_PRIVILEGED}=1 but the partition test cannot run: it needs {why}");
            }
            eprintln!(
                "SKIPPED: the partition test needs {why}; set {REQUIRE_PRIVILEGED}=1 to make this a failure"
            );
            return None;
        }
        remove_stale_chains();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let chain = format!(
            "{CHAIN_PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        // A chain of that name can only be left by an earlier process that
        // had this pid and was killed: start it empty.
        if iptables(&["-N", &chain]).is_err() {
            iptables_ok(&["-F", &chain]);
        }
        let firewall = Firewall { chain };
        iptables_ok(&["-I", "INPUT", "1", "-j", &firewall.chain]);
        iptables_ok(&["-I", "OUTPUT", "1", "-j", &firewall.chain]);
        Some(firewall)
    }

    /// Drops every packet between `island` and each of `others`, both ways.
    fn cut(&self, island: &str, others: &[String]) {
        for other in others {
            for (from, to) in [(island, other.as_str()), (other.as_str(), island)] {
                iptables_ok(&["-A", &self.chain, "-s", from, "-d", to, "-j", "DROP"]);
            }
        }
    }

    fn heal(&self) {
        iptables_ok(&["-F", &self.chain]);
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if let Err(e) = remove_chain(&self.chain) {
            eprintln!("could not remove the iptables chain {}: {e}", self.chain);
        }
    }
}

/// Chains are named `BERTH-T<pid>-<n>`: the test process that made them.
const CHAIN_PREFIX: &str = "BERTH-T";

/// Removes the jumps to `chain`, its rules and the chain.
fn remove_chain(chain: &str) -> Result<(), String> {
    for hook in ["INPUT", "OUTPUT"] {
        // At most a few jumps were ever added; the bound keeps a surprise
        // from looping.
        for _ in 0..8 {
            if iptables(&["-D", hook, "-j", chain]).is_err() {
                break;
            }
        }
    }
    iptables(&["-F", chain])?;
    iptables(&["-X", chain]).map(|_| ())
}

/// Removes the chains of test processes that no longer run (killed before
/// their guard could clean up), so their rules cannot cut a later run that
/// happens to use the same addresses.
fn remove_stale_chains() {
    let Ok(listing) = iptables(&["-S"]) else {
        return;
    };
    for line in listing.lines() {
        let Some(chain) = line.strip_prefix("-N ") else {
            continue;
        };
        let Some(pid) = chain
            .strip_prefix(CHAIN_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            match remove_chain(chain) {
                Ok(()) => eprintln!("removed {chain}, left by a test process that was killed"),
                Err(e) => eprintln!("could not remove the stale chain {chain}: {e}"),
            }
        }
    }
}

/// Why this process cannot change the firewall, if it cannot.
fn privileged() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("root (to change the firewall), and this process is not root".into());
    }
    match Command::new("iptables").arg("--version").output() {
        Err(e) => return Err(format!("iptables, which cannot be run here: {e}")),
        Ok(out) if !out.status.success() => {
            return Err(format!(
                "iptables, which fails here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Ok(_) => {}
    }
    iptables(&["-S", "OUTPUT"])
        .map(|_| ())
        .map_err(|e| format!("a working iptables, and listing a chain fails: {e}"))
}

/// Runs iptables (waiting for its lock: tests run in parallel); stdout, or
/// stderr as the error.
fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("running iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn iptables_ok(args: &[&str]) {
    if let Err(e) = iptables(args) {
        panic!("{e}");
    }
}
