//! The checks every [`Driver`] must pass, one async function per behaviour.
//! A driver's test suite calls each with a factory (a new driver instance over
//! a root directory) and a fresh, empty root; the checks panic on failure.
//!
//! They run real programs (`sh`, `sleep`) and look at the host's /proc, so they
//! suit drivers whose task processes are visible on the host.

use super::exec::procfs;
use super::{Driver, DriverError, TaskConfig, TaskExit, TaskRunState};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes a driver over a root directory; called again over the same root to
/// play an agent restart.
pub type Factory<'a> = &'a (dyn Fn(&Path) -> Arc<dyn Driver> + Send + Sync);

/// How long a check waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(15);

fn config(id: &str, argv: &[&str]) -> TaskConfig {
    TaskConfig {
        task_id: id.to_string(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        dir: None,
        stop_grace_period: Duration::from_secs(10),
    }
}

fn sh(id: &str, script: &str) -> TaskConfig {
    config(id, &["sh", "-c", script])
}

/// Polls `cond` until it holds, or panics after [`PATIENCE`] naming `what`.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(driver: &dyn Driver, cfg: &TaskConfig) -> u32 {
    driver.prepare(cfg).await.expect("prepare");
    driver.start(&cfg.task_id).await.expect("start")
}

async fn wait_exit(driver: &dyn Driver, id: &str) -> TaskExit {
    tokio::time::timeout(PATIENCE, driver.wait(id))
        .await
        .unwrap_or_else(|_| panic!("task {id} did not end"))
        .expect("wait")
}

async fn stdout_lines(driver: &dyn Driver, id: &str) -> Vec<String> {
    driver
        .logs(id, None, None)
        .await
        .expect("logs")
        .into_iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| l.line)
        .collect()
}

async fn wait_for_line(driver: &dyn Driver, id: &str, line: &str) {
    wait_until(&format!("task {id} prints {line:?}"), || async {
        stdout_lines(driver, id).await.iter().any(|l| l == line)
    })
    .await;
}

fn assert_group_gone(pgid: u32) {
    let left = procfs::group_members(pgid as i32);
    assert!(
        left.is_empty(),
        "processes {left:?} of group {pgid} still run"
    );
}

/// A started task is running with a pid; its exit code is reported, 0 and not.
pub async fn reports_running_and_exit_codes(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let gate = root.join("gate");
    let mut cfg = sh(
        "t-gated",
        "while [ ! -e gate ]; do sleep 0.02; done; exit 3",
    );
    cfg.dir = Some(root.to_string_lossy().into_owned());
    let pid = run(&*driver, &cfg).await;
    assert!(pid > 0);
    let info = driver.inspect("t-gated").await.expect("inspect");
    assert_eq!(info.state, TaskRunState::Running { pid: Some(pid) });
    std::fs::write(&gate, b"").expect("open the gate");
    let exit = wait_exit(&*driver, "t-gated").await;
    assert_eq!((exit.exit_code, exit.signal, exit.error), (3, None, None));

    run(&*driver, &sh("t-ok", "exit 0")).await;
    let exit = wait_exit(&*driver, "t-ok").await;
    assert!(exit.is_success(), "{exit:?}");
    assert_eq!(
        driver.inspect("t-ok").await.expect("inspect").state,
        TaskRunState::Exited(exit)
    );
}

/// A prepared task is listed as created and runs nothing until started.
pub async fn prepare_does_not_start(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let cfg = sh("t-prep", "echo started");
    driver.prepare(&cfg).await.expect("prepare");
    driver
        .prepare(&cfg)
        .await
        .expect("prepare again is a no-op");
    let listed = driver.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, TaskRunState::Created);
    assert!(stdout_lines(&*driver, "t-prep").await.is_empty());
    driver.start("t-prep").await.expect("start");
    assert!(matches!(
        driver.start("t-prep").await,
        Err(DriverError::InvalidState { .. })
    ));
    wait_exit(&*driver, "t-prep").await;
    assert_eq!(stdout_lines(&*driver, "t-prep").await, vec!["started"]);
}

/// Env entries are added to the environment (which has a PATH); the working
/// directory is the one asked for.
pub async fn applies_env_and_dir(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let work = root.join("work dir");
    std::fs::create_dir_all(&work).expect("mkdir");
    let mut cfg = sh("t-env", "echo \"$FOO|$BAR\"; pwd; echo \"$PATH\" >&2");
    cfg.env = vec!["FOO=bar".into(), "BAR=x=y".into()];
    cfg.dir = Some(work.to_string_lossy().into_owned());
    run(&*driver, &cfg).await;
    wait_exit(&*driver, "t-env").await;
    let lines = driver.logs("t-env", None, None).await.expect("logs");
    let out: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| l.line.as_str())
        .collect();
    let canonical = work.canonicalize().expect("canonical");
    assert_eq!(
        out,
        vec!["bar|x=y", canonical.to_str().expect("utf-8 path")]
    );
    let err: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == "stderr")
        .map(|l| l.line.as_str())
        .collect();
    assert_eq!(err.len(), 1);
    assert!(err[0].contains("/bin"), "PATH is {:?}", err[0]);
}

/// stdout and stderr are captured line by line with their stream and time;
/// tail and since select the newest lines.
pub async fn captures_output(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let before = api::Timestamp::now();
    run(
        &*driver,
        &sh(
            "t-out",
            "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done",
        ),
    )
    .await;
    wait_exit(&*driver, "t-out").await;
    let all = driver.logs("t-out", None, None).await.expect("logs");
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|l| l.task_id == "t-out" && l.time >= before));
    let per = |stream: &str| -> Vec<String> {
        all.iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.line.clone())
            .collect()
    };
    assert_eq!(per("stdout"), ["out1", "out2", "out3", "out4", "out5"]);
    assert_eq!(per("stderr"), ["err1", "err2", "err3", "err4", "err5"]);
    let tail = driver.logs("t-out", Some(3), None).await.expect("tail");
    assert_eq!(tail, all[7..].to_vec());
    let future = driver
        .logs(
            "t-out",
            None,
            Some(all[9].time.plus(Duration::from_millis(1))),
        )
        .await
        .expect("since");
    assert!(future.is_empty());
}

/// Stop sends SIGTERM first: a task that exits on TERM ends with its own code,
/// well before the grace period.
pub async fn stop_sends_sigterm_first(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let pid = run(
        &*driver,
        &sh(
            "t-term",
            "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
        ),
    )
    .await;
    wait_for_line(&*driver, "t-term", "ready").await;
    let started = Instant::now();
    let state = driver
        .stop("t-term", Duration::from_secs(30))
        .await
        .expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop waited for the grace period"
    );
    match state {
        TaskRunState::Exited(exit) => assert_eq!(exit.exit_code, 0, "{exit:?}"),
        other => panic!("stopped task is {other:?}"),
    }
    assert!(stdout_lines(&*driver, "t-term")
        .await
        .contains(&"got-term".to_string()));
    assert_group_gone(pid);
}

/// A task that ignores SIGTERM is killed with SIGKILL once the grace period is over.
pub async fn stop_escalates_to_sigkill(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let pid = run(
        &*driver,
        &sh(
            "t-stubborn",
            "trap '' TERM; echo ready; sleep 1000; sleep 1000",
        ),
    )
    .await;
    wait_for_line(&*driver, "t-stubborn", "ready").await;
    let grace = Duration::from_millis(700);
    let started = Instant::now();
    let state = driver.stop("t-stubborn", grace).await.expect("stop");
    assert!(
        started.elapsed() >= grace,
        "killed before the grace period ended"
    );
    match state {
        TaskRunState::Exited(exit) => {
            assert_eq!((exit.exit_code, exit.signal), (137, Some(9)), "{exit:?}")
        }
        other => panic!("stopped task is {other:?}"),
    }
    assert_group_gone(pid);
    // Stopping an ended task is harmless and says how it ended.
    assert!(matches!(
        driver.stop("t-stubborn", grace).await.expect("stop again"),
        TaskRunState::Exited(_)
    ));
}

/// Stop ends the whole task, background processes included; and a task whose
/// main process ends leaves nothing behind either.
pub async fn stop_leaves_nothing_running(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let pid = run(&*driver, &sh("t-bg", "sleep 1000 & sleep 1000")).await;
    wait_until("both sleeps run", || async {
        procfs::group_members(pid as i32).len() >= 2
    })
    .await;
    driver
        .stop("t-bg", Duration::from_secs(5))
        .await
        .expect("stop");
    assert_group_gone(pid);

    let pid = run(&*driver, &sh("t-leaver", "sleep 1000 & echo $!; exit 0")).await;
    let exit = wait_exit(&*driver, "t-leaver").await;
    assert_eq!(exit.exit_code, 0);
    wait_until("the left-behind sleep is gone", || async {
        procfs::group_members(pid as i32).is_empty()
    })
    .await;
}

/// A program that does not exist fails with a message naming it, as the task's fault.
pub async fn missing_program_fails_clearly(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    let cfg = config("t-missing", &["berth-no-such-program", "x"]);
    let err = match driver.prepare(&cfg).await {
        Err(e) => e,
        Ok(()) => driver
            .start("t-missing")
            .await
            .expect_err("start of a missing program"),
    };
    assert!(err.is_task_fault(), "not the task's fault: {err:?}");
    assert!(
        err.to_string().contains("berth-no-such-program"),
        "unclear: {err}"
    );

    let mut cfg = config("t-nodir", &["true"]);
    cfg.dir = Some(root.join("missing").to_string_lossy().into_owned());
    let err = match driver.prepare(&cfg).await {
        Err(e) => e,
        Ok(()) => driver
            .start("t-nodir")
            .await
            .expect_err("start in a missing dir"),
    };
    assert!(err.is_task_fault(), "not the task's fault: {err:?}");
}

/// A new driver over the same root finds a running task (same pid) and the
/// exit code of a task that ended while no driver watched.
pub async fn restart_adopts_tasks(factory: Factory<'_>, root: &Path) {
    let gate = root.join("gate");
    let (long_pid, short_pid) = {
        let old = factory(root);
        let long = run(&*old, &sh("t-long", "echo up; sleep 1000")).await;
        let mut cfg = sh(
            "t-short",
            "while [ ! -e gate ]; do sleep 0.02; done; exit 7",
        );
        cfg.dir = Some(root.to_string_lossy().into_owned());
        let short = run(&*old, &cfg).await;
        (long, short)
        // The old driver is dropped here, as when the agent dies.
    };
    std::fs::write(&gate, b"").expect("open the gate");
    wait_until("the short task's process ends", || async {
        procfs::group_members(short_pid as i32).is_empty()
    })
    .await;

    let new = factory(root);
    let listed = new.list().await.expect("list");
    let long = listed
        .iter()
        .find(|t| t.task_id == "t-long")
        .expect("long task listed");
    assert_eq!(
        long.state,
        TaskRunState::Running {
            pid: Some(long_pid)
        }
    );
    let short = wait_exit(&*new, "t-short").await;
    assert_eq!(short.exit_code, 7);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(stdout_lines(&*new, "t-long").await, vec!["up"]);

    new.stop("t-long", Duration::from_secs(5))
        .await
        .expect("stop adopted task");
    assert_group_gone(long_pid);
}

/// Remove deletes an ended task and kills and deletes a running one.
pub async fn remove_cleans_up(factory: Factory<'_>, root: &Path) {
    let driver = factory(root);
    run(&*driver, &sh("t-done", "echo bye")).await;
    wait_exit(&*driver, "t-done").await;
    driver.remove("t-done").await.expect("remove");
    assert!(matches!(
        driver.inspect("t-done").await,
        Err(DriverError::NotFound(_))
    ));
    assert!(matches!(
        driver.logs("t-done", None, None).await,
        Err(DriverError::NotFound(_))
    ));

    let pid = run(&*driver, &sh("t-live", "sleep 1000")).await;
    driver.remove("t-live").await.expect("remove running");
    assert_group_gone(pid);
    assert!(driver.list().await.expect("list").is_empty());
}

/// Every check, each in its own subdirectory of `root`.
pub async fn run_all(factory: Factory<'_>, root: &Path) {
    macro_rules! check {
        ($($name:ident),*) => {$(
            let dir = root.join(stringify!($name));
            std::fs::create_dir_all(&dir).expect("mkdir");
            $name(factory, &dir).await;
        )*};
    }
    check!(
        reports_running_and_exit_codes,
        prepare_does_not_start,
        applies_env_and_dir,
        captures_output,
        stop_sends_sigterm_first,
        stop_escalates_to_sigkill,
        stop_leaves_nothing_running,
        missing_program_fails_clearly,
        restart_adopts_tasks,
        remove_cleans_up
    );
}
