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
