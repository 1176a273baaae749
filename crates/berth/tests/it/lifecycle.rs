//! A service's whole life on an in-process node: create 5 replicas → 5
//! processes; kill one → replaced; scale to 2 → 3 stopped; update → rolled one
//! at a time; logs; remove → nothing left running.

use crate::support::*;
use api::{ServiceMode, Task, TaskState};
use controller::wire::{Created, ServiceWithStatus, UpdateService};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

async fn running_tasks(c: &berth::client::Client, service: &str) -> Vec<Task> {
    let tasks: Vec<Task> = c
        .get(&format!("/api/v1/tasks?service={service}"))
        .await
        .unwrap();
    tasks
        .into_iter()
        .filter(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_run_as_processes_and_follow_scale_update_and_remove() {
    let n = TestNode::start().await;
    let secs = unique_sleep(1);
    let argv = ["sleep", secs.as_str()];

    // Created through the CLI, which waits until the service converged.
    let (ok, out, err) = cli_async(
        &n.config_dir(),
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "5",
            "--restart-delay",
            "100ms",
            "--",
            "sleep",
            &secs,
        ],
    )
    .await;
    assert!(ok, "service create failed: {out}\n{err}");
    assert!(err.contains("converged"), "no convergence report: {err}");
    let running = running_tasks(&n.client, "web").await;
    assert_eq!(running.len(), 5);
    let pids = pids_running(&argv);
    assert_eq!(pids.len(), 5, "5 replicas, 5 processes: {pids:?}");
    let mut task_pids: Vec<u32> = running
        .iter()
        .map(|t| t.status.pid.expect("running task has a pid"))
        .collect();
    task_pids.sort();
    assert_eq!(task_pids, pids, "the tasks' pids are the processes found");

    // Kill one process: its slot gets a new task and a new process.
    let victim = pids[0];
    let victim_task = running
        .iter()
        .find(|t| t.status.pid == Some(victim))
        .unwrap()
        .meta
        .id
        .clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(T, "the killed replica to be replaced", || async {
        let p = pids_running(&argv);
        (p.len() == 5 && !p.contains(&victim) && running_tasks(&n.client, "web").await.len() == 5)
            .then_some(())
    })
    .await;
    let failed: Task = n
        .client
        .get(&format!("/api/v1/tasks/{victim_task}"))
        .await
        .unwrap_or_else(|e| panic!("the killed task is kept in history: {e:#}"));
    assert_eq!(failed.status.state, TaskState::Failed, "{failed:?}");
    assert_eq!(
        failed.status.exit_code,
        Some(128 + 9),
        "killed by SIGKILL: {failed:?}"
    );

    // Scale to 2 through the CLI: three processes stop.
    let (ok, out, err) = cli_async(&n.config_dir(), &["service", "scale", "web=2"]).await;
    assert!(ok, "scale failed: {out}\n{err}");
    wait_for(T, "3 replicas to stop", || async {
        (pids_running(&argv).len() == 2).then_some(())
    })
    .await;

    // Rolling update, parallelism 1, stop-first: never fewer than 1 running,
    // every new process sees the new environment.
    let svc: ServiceWithStatus = n.client.get("/api/v1/services/web").await.unwrap();
    let mut spec = svc.service.spec.clone();
    spec.task_template.env.push("COLOR=blue".into());
    spec.update_config.monitor = Duration::from_millis(200);
    let _: Created = n
        .client
        .post(
            "/api/v1/services/web/update",
            &UpdateService {
                version: svc.service.meta.version,
                spec,
            },
        )
        .await
        .unwrap();
    let mut min_running = usize::MAX;
    let new_version = svc.service.spec_version + 1;
    let start = std::time::Instant::now();
    loop {
        let running = running_tasks(&n.client, "web").await;
        min_running = min_running.min(running.len());
        if running.len() == 2 && running.iter().all(|t| t.spec_version == new_version) {
            break;
        }
        assert!(
            start.elapsed() < T,
            "the update did not roll out in {T:?}: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        min_running >= 1,
        "a stop-first update with parallelism 1 kept {min_running} of 2 running"
    );
    let pids = wait_for(T, "exactly 2 processes after the update", || async {
        let p = pids_running(&argv);
        (p.len() == 2).then_some(p)
    })
    .await;
    for pid in &pids {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            env.split(|b| *b == 0).any(|e| e == b"COLOR=blue"),
            "pid {pid} lacks COLOR=blue"
        );
    }

    // Remove: every process stops, the tasks go.
    let (ok, _, err) = cli_async(&n.config_dir(), &["service", "rm", "web"]).await;
    assert!(ok, "rm failed: {err}");
    wait_for(T, "all processes to stop", || async {
        pids_running(&argv).is_empty().then_some(())
    })
    .await;
    wait_for(T, "the tasks to be deleted", || async {
        n.store().view(|s| (s.task_count() == 0).then_some(()))
    })
    .await;
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_rollback_and_clean_shutdown() {
    let n = TestNode::start().await;
    let secs = unique_sleep(2);
    let script = format!("echo hello from $NAME; exec sleep {secs}");
    let (ok, out, err) = cli_async(
        &n.config_dir(),
        &[
            "service",
            "create",
            "--name",
            "greeter",
            "--replicas",
            "2",
            "-e",
            "NAME=one",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .await;
    assert!(ok, "{out}\n{err}");

    let logs = wait_for(T, "the greeting in the logs", || async {
        let (ok, out, _) = cli_async(&n.config_dir(), &["service", "logs", "greeter"]).await;
        (ok && out.matches("hello from one").count() == 2).then_some(out)
    })
    .await;
    assert!(logs.lines().all(|l| l.starts_with("greeter.")), "{logs}");

    let (ok, out, err) = cli_async(
        &n.config_dir(),
        &["service", "update", "greeter", "--env-add", "NAME=two"],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = cli_async(&n.config_dir(), &["service", "rollback", "greeter"]).await;
    assert!(ok, "{out}\n{err}");
    let svc: ServiceWithStatus = n.client.get("/api/v1/services/greeter").await.unwrap();
    assert!(
        svc.service
            .spec
            .task_template
            .env
            .contains(&"NAME=one".to_string()),
        "{:?}",
        svc.service.spec
    );
    assert!(matches!(
        svc.service.spec.mode,
        ServiceMode::Replicated { replicas: 2 }
    ));
    let running = running_tasks(&n.client, "greeter").await;
    assert_eq!(running.len(), 2);
    assert!(running
        .iter()
        .all(|t| t.spec.env.contains(&"NAME=one".to_string())));

    // `ps` shows the history of each slot.
    let (ok, out, _) = cli_async(&n.config_dir(), &["service", "ps", "greeter"]).await;
    assert!(ok);
    assert!(out.contains("\\_ greeter.1"), "no history in ps:\n{out}");

    // `--force` redeploys: every task is replaced though nothing else changed.
    let before: Vec<String> = running_tasks(&n.client, "greeter")
        .await
        .into_iter()
        .map(|t| t.meta.id)
        .collect();
    let (ok, out, err) = cli_async(
        &n.config_dir(),
        &[
            "service",
            "update",
            "greeter",
            "--force",
            "--update-monitor",
            "500ms",
        ],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    let after = running_tasks(&n.client, "greeter").await;
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|t| !before.contains(&t.meta.id)),
        "not every task was replaced: {before:?}"
    );
    assert!(after
        .iter()
        .all(|t| t.spec.env.contains(&"NAME=one".to_string())));

    // A clean stop leaves no process behind.
    n.node.shutdown().await.unwrap();
    let argv = ["sh", "-c", script.as_str()];
    wait_for(T, "no task process after shutdown", || async {
        (pids_running(&argv).is_empty() && pids_running(&["sleep", &secs]).is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_global_mode_and_restart_conditions() {
    let n = TestNode::start().await;
    let cfg = n.config_dir();
    let tasks_of = |name: &'static str| {
        let c = n.client.clone();
        async move {
            c.get::<Vec<Task>>(&format!("/api/v1/tasks?service={name}"))
                .await
                .unwrap()
        }
    };

    // A constraint no node meets: the task stays pending, and says why.
    let (ok, _, err) = cli_async(
        &cfg,
        &[
            "service",
            "create",
            "--name",
            "picky",
            "-d",
            "--constraint",
            "node.labels.zone==mars",
            "--",
            "sleep",
            "300",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let reason = wait_for(T, "a pending reason", || async {
        let t = tasks_of("picky").await;
        t.first().and_then(|t| {
            (t.status.state == TaskState::Pending)
                .then(|| t.status.err.clone())
                .flatten()
        })
    })
    .await;
    assert!(reason.contains("no suitable node"), "{reason}");
    let (_, ps, _) = cli_async(&cfg, &["service", "ps", "picky", "--no-trunc"]).await;
    assert!(
        ps.contains("Pending") && ps.contains("no suitable node"),
        "{ps}"
    );
    // Lifting the constraint lets it run.
    let (ok, _, err) = cli_async(
        &cfg,
        &[
            "service",
            "update",
            "picky",
            "-d",
            "--constraint-rm",
            "node.labels.zone==mars",
        ],
    )
    .await;
    assert!(ok, "{err}");
    wait_for(T, "the unconstrained task to run", || async {
        running_tasks(&n.client, "picky")
            .await
            .len()
            .eq(&1)
            .then_some(())
    })
    .await;

    // A reservation larger than the machine never fits.
    let (ok, _, err) = cli_async(
        &cfg,
        &[
            "service",
            "create",
            "--name",
            "huge",
            "-d",
            "--reserve-memory",
            "64TiB",
            "--",
            "sleep",
            "300",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let reason = wait_for(T, "an insufficient-resources reason", || async {
        tasks_of("huge")
            .await
            .first()
            .and_then(|t| t.status.err.clone())
    })
    .await;
    assert!(reason.contains("insufficient resources"), "{reason}");

    // Global mode: one task per node, on this single node one.
    let (ok, _, err) = cli_async(
        &cfg,
        &[
            "service",
            "create",
            "--name",
            "everywhere",
            "--mode",
            "global",
            "-d",
            "--",
            "sleep",
            "300",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let running = wait_for(T, "the global task to run", || async {
        let r = running_tasks(&n.client, "everywhere").await;
        (r.len() == 1).then_some(r)
    })
    .await;
    assert_eq!(running[0].slot, 0);
    assert_eq!(running[0].node_id.as_deref(), Some(n.node.node_id.as_str()));

    // Restart conditions: `none` never restarts; `on-failure` leaves a clean exit alone
    // and restarts a failing one.
    for (name, condition, code, restarts) in [
        ("once", "none", "1", false),
        ("clean", "on-failure", "0", false),
        ("flaky", "on-failure", "1", true),
    ] {
        let script = format!("exit {code}");
        let (ok, _, err) = cli_async(
            &cfg,
            &[
                "service",
                "create",
                "--name",
                name,
                "-d",
                "--restart-condition",
                condition,
                "--restart-delay",
                "100ms",
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .await;
        assert!(ok, "{name}: {err}");
        let want = if restarts { 2 } else { 1 };
        let tasks = wait_for(
            T,
            "the first task to end (and a restart where due)",
            || async {
                let t = tasks_of(name).await;
                (t.len() >= want && t.iter().any(|t| t.status.state.is_terminal())).then_some(t)
            },
        )
        .await;
        let first = tasks.iter().min_by_key(|t| t.meta.created_at).unwrap();
        let expected = if code == "0" {
            TaskState::Complete
        } else {
            TaskState::Failed
        };
        assert_eq!(first.status.state, expected, "{name}: {first:?}");
        if !restarts {
            // Give a wrongful restart the time it would need, then check it did not happen.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(tasks_of(name).await.len(), 1, "{name} was restarted");
        }
    }
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_new_lines_once() {
    let n = TestNode::start().await;
    let cfg = n.config_dir();
    let script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    let (ok, _, err) = cli_async(
        &cfg,
        &[
            "service", "create", "--name", "ticker", "-d", "--", "sh", "-c", script,
        ],
    )
    .await;
    assert!(ok, "{err}");
    wait_for(T, "the ticker to run", || async {
        (running_tasks(&n.client, "ticker").await.len() == 1).then_some(())
    })
    .await;

    let mut follow = std::process::Command::new(berth_bin())
        .args(["service", "logs", "--follow", "ticker"])
        .env("BERTH_CONFIG_DIR", &cfg)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    // Read lines until one printed well after `logs -f` started (several polls later).
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut seen = vec![];
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            seen.push(n);
            if seen.len() >= 40 {
                break;
            }
        }
        seen
    });
    let seen = tokio::time::timeout(T, lines)
        .await
        .expect("logs -f keeps printing")
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    // Each tick once, in order, with no gap: follow neither repeats nor drops lines.
    for w in seen.windows(2) {
        assert_eq!(w[1], w[0] + 1, "ticks out of order or repeated: {seen:?}");
    }
    n.node.shutdown().await.unwrap();
}
