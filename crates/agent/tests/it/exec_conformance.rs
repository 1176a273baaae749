//! The driver conformance suite, run against the exec driver.

use agent::driver::conformance;

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let root = tempfile::tempdir().expect("tempdir");
            conformance::$name(&crate::exec_driver, root.path()).await;
        }
    )*};
}

conformance_tests!(
    reports_running_and_exit_codes,
    prepare_does_not_start,
    applies_env_and_dir,
    captures_output,
    stop_sends_sigterm_first,
    stop_escalates_to_sigkill,
    stop_leaves_nothing_running,
    missing_program_fails_clearly,
    restart_adopts_tasks,
    remove_cleans_up,
);

/// Exec-specific: a shim killed by hand does not orphan its task; the driver
/// notices, kills what is left of the task and records it as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shim_does_not_orphan_its_task() {
    use agent::driver::exec::{layout, procfs};
    use agent::driver::TaskConfig;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::time::Duration;

    let root = tempfile::tempdir().expect("tempdir");
    let driver = crate::exec_driver(root.path());
    let cfg = TaskConfig {
        task_id: "t-orphan".into(),
        argv: vec!["sleep".into(), "1000".into()],
        env: vec![],
        dir: None,
        stop_grace_period: Duration::from_secs(10),
    };
    driver.prepare(&cfg).await.expect("prepare");
    let pid = driver.start("t-orphan").await.expect("start");
    let shim = procfs::read_pid_file(&root.path().join("tasks/t-orphan").join(layout::SHIM_PID))
        .expect("shim.pid");
    kill(Pid::from_raw(shim.pid as i32), Signal::SIGKILL).expect("kill the shim");
    let exit = tokio::time::timeout(Duration::from_secs(20), driver.wait("t-orphan"))
        .await
        .expect("the task's end is noticed")
        .expect("wait");
    assert!(
        exit.error.is_some_and(|e| e.contains("shim")),
        "no reason given"
    );
    conformance::wait_until("the orphaned sleep is killed", || async {
        procfs::group_members(pid as i32).is_empty()
    })
    .await;
}
