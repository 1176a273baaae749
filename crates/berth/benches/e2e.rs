//! End-to-end benchmark of the real binary: `berth up` in a temp dir, then
//! - idle RSS of `berth up` with no services (goal ≤ 40 MB),
//! - `service create --replicas 500` of `sleep` until all 500 run (goal < 5 s), median of 3,
//! - RSS and CPU of `berth up` with 1,000 tasks, and the shims' PSS beside it.
//!
//! Run: `cargo bench -p berth --bench e2e` (builds the release profile).

// A benchmark that cannot measure should stop loudly.
#![allow(clippy::unwrap_used)]

use berth::client::Client;
use berth::credentials::Credentials;
use controller::wire::{Created, ServiceWithStatus};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is [0]; utime and stime are [11] and [12].
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Share of one core `pid` used over `secs` seconds.
async fn cpu_share(pid: u32, secs: u64) -> f64 {
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_ticks(pid) - before) as f64 / ticks_per_s / secs as f64
}

/// Proportional set size of a process: shared pages divided among their users.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Count and total PSS of the shim processes (`berth shim …`) now running.
fn shims_pss_kib() -> (usize, u64) {
    let mut n = 0;
    let mut total = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let mut parts = cmd.split(|b| *b == 0);
            let prog = parts.next().unwrap_or_default();
            if prog.ends_with(b"berth") && parts.next() == Some(b"shim") {
                n += 1;
                total += pss_kib(pid);
            }
        }
    }
    (n, total)
}

async fn wait_running(c: &Client, name: &str, want: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let s: ServiceWithStatus = c.get(&format!("/api/v1/services/{name}")).await.unwrap();
        if s.service_status.running_tasks == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{name}: {} of {want} running after {limit:?}",
            s.service_status.running_tasks
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_no_tasks(c: &Client) {
    for _ in 0..6000 {
        let tasks: Vec<serde_json::Value> = c.get("/api/v1/tasks").await.unwrap();
        if tasks.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tasks were not cleaned up");
}

fn spec(name: &str, replicas: u64) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "mode": {"replicated": {"replicas": replicas}},
        "task_template": {"command": ["sleep", "3600"]}
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["up", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--api-addr", &format!("127.0.0.1:{port}"), "--log", "warn"])
        .env("BERTH_CONFIG_DIR", &config)
        .stdout(Stdio::null())
        .spawn()
        .expect("start berth up");
    let pid = child.id();
    let creds_path = config.join("credentials.json");
    let mut client = None;
    for _ in 0..600 {
        if let Ok(creds) = Credentials::load(&creds_path) {
            let c = Client::new(&creds).unwrap();
            if c.get::<serde_json::Value>("/api/v1/info").await.is_ok() {
                client = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = client.expect("berth up answers");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);
    println!(
        "idle RSS of `berth up`, no services: {:.1} MB   (goal ≤ 40 MB)",
        idle as f64 / 1024.0
    );

    println!(
        "idle CPU of `berth up`, no services: {:.1} % of a core",
        100.0 * cpu_share(pid, 5).await
    );

    let mut times = vec![];
    for run in 0..3 {
        let name = format!("bench{run}");
        let start = Instant::now();
        let _: Created = c.post("/api/v1/services", &spec(&name, 500)).await.unwrap();
        let _ = wait_running(&c, &name, 500, Duration::from_secs(120)).await;
        let took = start.elapsed().as_secs_f64();
        println!("run {run}: 500 replicas running after {took:.2} s");
        times.push(took);
        c.delete(&format!("/api/v1/services/{name}")).await.unwrap();
        wait_no_tasks(&c).await;
    }
    println!(
        "service create --replicas 500 → all running: median {:.2} s of 3   (goal < 5 s)",
        median(times)
    );

    // 1,000 tasks: started three times (median), measured while the last set runs.
    let mut times = vec![];
    for run in 0..3 {
        let name = format!("thousand{run}");
        let start = Instant::now();
        let _: Created = c
            .post("/api/v1/services", &spec(&name, 1000))
            .await
            .unwrap();
        let _ = wait_running(&c, &name, 1000, Duration::from_secs(240)).await;
        let took = start.elapsed().as_secs_f64();
        println!("run {run}: 1,000 replicas running after {took:.2} s");
        times.push(took);
        if run < 2 {
            c.delete(&format!("/api/v1/services/{name}")).await.unwrap();
            wait_no_tasks(&c).await;
        }
    }
    println!(
        "service create --replicas 1000 → all running: median {:.2} s of 3",
        median(times)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_kib(pid);
    println!(
        "CPU of `berth up` with 1,000 tasks running, nothing changing: {:.1} % of a core",
        100.0 * cpu_share(pid, 5).await
    );
    let (shims, shim_pss) = shims_pss_kib();
    println!(
        "RSS of `berth up` with 1,000 tasks: {:.1} MB",
        loaded as f64 / 1024.0
    );
    println!(
        "PSS of the {shims} shims: {:.1} MB in all, {:.0} KB each",
        shim_pss as f64 / 1024.0,
        shim_pss as f64 / shims.max(1) as f64
    );
    c.delete("/api/v1/services/thousand2").await.unwrap();
    wait_no_tasks(&c).await;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let _ = child.wait();
}
