//! The exec driver: runs a task's command as a supervised process in its own
//! process group, through a shim (see [`shim`]) so that tasks survive an agent
//! restart and their exit codes are not lost.
//!
//! The task directory (see [`layout`]) is the only source of truth: every call
//! reads it. The one thing kept in memory is a wake-up for shims this process
//! started (they are its children, so their exit is awaited instead of polled);
//! a task adopted after a restart is polled, with back-off. A pid is only trusted together with its start time from
//! /proc, so a reused pid is never signalled. A shim that died without
//! recording the task's end (killed by hand) is noticed on the next look: what
//! is left of the task is killed and the task is recorded as failed, so a task
//! is never orphaned.

pub mod layout;
pub mod logfile;
pub mod procfs;
pub mod shim;

pub use shim::shim_main;

use super::{Driver, DriverError, TaskConfig, TaskExit, TaskInfo, TaskRunState};
use api::dispatch::LogLine;
use api::Timestamp;
use layout::ShimConfig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use procfs::ProcessId;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;

/// How to start a shim: for berth, its own executable and `["shim"]`; the
/// driver appends `--task-dir <dir>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// How often the driver looks at a task directory while waiting for a change.
const POLL: Duration = Duration::from_millis(20);
/// How long a shim may take to start its task before the start counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after SIGKILL the driver waits for the shim to record the end.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ExecDriver {
    root: PathBuf,
    shim: ShimCommand,
    log_max_bytes: u64,
    log_max_files: usize,
    /// task id → turns true when the shim this process spawned for it exited.
    shim_exits:
        std::sync::Mutex<std::collections::HashMap<String, tokio::sync::watch::Receiver<bool>>>,
}

/// Polling of a task adopted after a restart (its shim is not our child)
/// starts at this period and backs off to [`ADOPTED_POLL_MAX`].
const ADOPTED_POLL_MIN: Duration = Duration::from_millis(100);
const ADOPTED_POLL_MAX: Duration = Duration::from_secs(2);

impl std::fmt::Debug for ExecDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecDriver")
            .field("root", &self.root)
            .finish()
    }
}

impl ExecDriver {
    /// A driver keeping its tasks under `root/tasks` (created if missing). Logs
    /// rotate at 10 MiB, 3 files. Fails when the root cannot be created or the
    /// shim program does not exist: the node cannot run tasks then.
    pub fn new(root: PathBuf, shim: ShimCommand) -> Result<ExecDriver, DriverError> {
        let tasks = root.join("tasks");
        std::fs::create_dir_all(&tasks)
            .map_err(|e| DriverError::io(format!("creating {}", tasks.display()), e))?;
        if !shim.program.is_file() {
            return Err(DriverError::Runtime(format!(
                "the shim program {} does not exist",
                shim.program.display()
            )));
        }
        Ok(ExecDriver {
            root,
            shim,
            log_max_bytes: logfile::DEFAULT_MAX_BYTES,
            log_max_files: logfile::DEFAULT_MAX_FILES,
            shim_exits: Default::default(),
        })
    }

    /// Sets the log rotation of tasks prepared from now on.
    pub fn with_log_limits(mut self, max_bytes: u64, max_files: usize) -> ExecDriver {
        self.log_max_bytes = max_bytes;
        self.log_max_files = max_files.max(1);
        self
    }

    fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    fn task_dir(&self, task_id: &str) -> Result<PathBuf, DriverError> {
        let valid = !task_id.is_empty()
            && task_id != "."
            && task_id != ".."
            && task_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(DriverError::Task(format!("invalid task id {task_id:?}")));
        }
        Ok(self.tasks_dir().join(task_id))
    }

    fn config(&self, dir: &Path, task_id: &str) -> Result<ShimConfig, DriverError> {
        layout::read_json(&dir.join(layout::CONFIG))
            .ok_or_else(|| DriverError::NotFound(task_id.to_string()))
    }

    /// The task's state as its directory tells it, settling a dead shim's task
    /// (kill its leftovers, record it as failed) on the way.
    fn state(&self, task_id: &str) -> Result<TaskRunState, DriverError> {
        let dir = self.task_dir(task_id)?;
        self.config(&dir, task_id)?;
        if let Some(exit) = layout::read_json::<TaskExit>(&dir.join(layout::EXIT)) {
            return Ok(TaskRunState::Exited(exit));
        }
        let task = procfs::read_pid_file(&dir.join(layout::TASK_PID));
        let Some(shim) = procfs::read_pid_file(&dir.join(layout::SHIM_PID)) else {
            return Ok(match std::fs::metadata(dir.join(layout::STARTED)) {
                Err(_) => TaskRunState::Created,
                // A start is under way (the shim has not written its pid yet)
                // unless it was requested long ago: then the shim never came up.
                Ok(m)
                    if m.modified()
                        .map(|t| t.elapsed().unwrap_or_default())
                        .unwrap_or_default()
                        < START_TIMEOUT =>
                {
                    TaskRunState::Running { pid: None }
                }
                Ok(_) => {
                    TaskRunState::Exited(self.record_lost(&dir, None, "the shim never started")?)
                }
            });
        };
        if shim.is_alive() {
            return Ok(TaskRunState::Running {
                pid: task.map(|t| t.pid),
            });
        }
        // The shim writes exit.json before it exits: look again, it may have
        // finished between the first look and the liveness check.
        if let Some(exit) = layout::read_json::<TaskExit>(&dir.join(layout::EXIT)) {
            return Ok(TaskRunState::Exited(exit));
        }
        let exit = self.record_lost(
            &dir,
            task,
            "the shim ended without recording the task's exit status",
        )?;
        Ok(TaskRunState::Exited(exit))
    }

    /// Kills what is left of a task whose shim is gone and records it as failed.
    fn record_lost(
        &self,
        dir: &Path,
        task: Option<ProcessId>,
        why: &str,
    ) -> Result<TaskExit, DriverError> {
        if let Some(t) = task {
            if t.exists() {
                let _ = killpg(Pid::from_raw(t.pid as i32), Signal::SIGKILL);
            }
        }
        let exit = TaskExit {
            exit_code: 255,
            signal: None,
            error: Some(why.to_string()),
            finished_at: Timestamp::now(),
        };
        layout::write_json_atomic(&dir.join(layout::EXIT), &exit)
            .map_err(|e| DriverError::io(format!("recording the end of {}", dir.display()), e))?;
        Ok(exit)
    }

    /// Signals the task's process group, if its leader is still the process we started.
    fn signal_group(&self, dir: &Path, signal: Signal) {
        if let Some(task) = procfs::read_pid_file(&dir.join(layout::TASK_PID)) {
            if task.exists() {
                let _ = killpg(Pid::from_raw(task.pid as i32), signal);
            }
        }
    }

    async fn wait_exited(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<Option<TaskExit>, DriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let TaskRunState::Exited(exit) = self.state(task_id)? {
                return Ok(Some(exit));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn spawn_shim(&self, task_id: &str, dir: &Path) -> Result<(), DriverError> {
        let shim_log = std::fs::File::create(dir.join(layout::SHIM_LOG))
            .map_err(|e| DriverError::io("creating shim.log", e))?;
        let mut child = tokio::process::Command::new(&self.shim.program)
            .args(&self.shim.args)
            .arg("--task-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(shim_log)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                DriverError::io(
                    format!("starting the shim {}", self.shim.program.display()),
                    e,
                )
            })?;
        if let Some(shim) = child.id().and_then(ProcessId::of) {
            // The shim writes this too; writing it here as well closes the window
            // in which a driver restarted right now would not see the shim.
            layout::write_json_atomic(&dir.join(layout::SHIM_PID), &shim)
                .map_err(|e| DriverError::io("writing shim.pid", e))?;
        }
        // The shim is our child until we die: collect its exit status so it does
        // not linger as a zombie, and wake whoever waits for the task. The
        // task's status is in exit.json, not here.
        let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
        self.shim_exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string(), exited_rx);
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = exited_tx.send(true);
        });
        Ok(())
    }
}

/// Where `program` would be found with `path` as PATH, as execvp looks.
fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

#[async_trait::async_trait]
impl Driver for ExecDriver {
    fn name(&self) -> &'static str {
        "exec"
    }

    async fn prepare(&self, config: &TaskConfig) -> Result<(), DriverError> {
        let dir = self.task_dir(&config.task_id)?;
        match self.state(&config.task_id) {
            Ok(TaskRunState::Created) => return Ok(()),
            Ok(other) => {
                return Err(DriverError::InvalidState {
                    task_id: config.task_id.clone(),
                    state: state_name(&other),
                    op: "prepare",
                })
            }
            Err(DriverError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let program = config
            .argv
            .first()
            .ok_or_else(|| DriverError::Task("the task has no command".into()))?;
        let mut path = shim::DEFAULT_PATH.to_string();
        for entry in &config.env {
            match entry.split_once('=') {
                Some(("PATH", v)) => path = v.to_string(),
                Some(_) => {}
                None => {
                    return Err(DriverError::Task(format!(
                        "env entry {entry:?} is not KEY=VALUE"
                    )))
                }
            }
        }
        if find_program(program, &path).is_none() {
            return Err(DriverError::Task(format!(
                "executable file not found: {program:?} (PATH={path})"
            )));
        }
        if let Some(d) = &config.dir {
            if !Path::new(d).is_dir() {
                return Err(DriverError::Task(format!(
                    "working directory {d:?} does not exist"
                )));
            }
        }
        std::fs::create_dir_all(dir.join(layout::WORK))
            .map_err(|e| DriverError::io(format!("creating {}", dir.display()), e))?;
        let shim_config = ShimConfig {
            task: config.clone(),
            log_max_bytes: self.log_max_bytes,
            log_max_files: self.log_max_files,
        };
        // config.json last: its presence is what makes the task exist.
        layout::write_json_atomic(&dir.join(layout::CONFIG), &shim_config)
            .map_err(|e| DriverError::io("writing config.json", e))
    }

    async fn start(&self, task_id: &str) -> Result<u32, DriverError> {
        let dir = self.task_dir(task_id)?;
        let state = self.state(task_id)?;
        if state != TaskRunState::Created {
            return Err(DriverError::InvalidState {
                task_id: task_id.into(),
                state: state_name(&state),
                op: "start",
            });
        }
        std::fs::write(dir.join(layout::STARTED), Timestamp::now().to_string())
            .map_err(|e| DriverError::io("writing started", e))?;
        self.spawn_shim(task_id, &dir)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(task) = procfs::read_pid_file(&dir.join(layout::TASK_PID)) {
                return Ok(task.pid);
            }
            if let TaskRunState::Exited(exit) = self.state(task_id)? {
                return Err(match exit.error {
                    Some(e) if exit.exit_code == 126 || exit.exit_code == 127 => {
                        DriverError::Task(e)
                    }
                    Some(e) => DriverError::Runtime(format!(
                        "{e}; see {}",
                        dir.join(layout::SHIM_LOG).display()
                    )),
                    None => {
                        DriverError::Runtime("the task ended before its pid was recorded".into())
                    }
                });
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Runtime(format!(
                    "the shim did not start the task within {START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait(&self, task_id: &str) -> Result<TaskExit, DriverError> {
        let shim_exit = self
            .shim_exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_id)
            .cloned();
        let mut poll = ADOPTED_POLL_MIN;
        loop {
            if let TaskRunState::Exited(exit) = self.state(task_id)? {
                return Ok(exit);
            }
            match &shim_exit {
                // Our child, still running: its exit is the news (state() then
                // finds exit.json, or records the task as lost if the shim died
                // without writing it).
                Some(rx) if !*rx.borrow() => {
                    let _ = rx.clone().wait_for(|exited| *exited).await;
                }
                // Adopted after a restart (or, defensively, a shim that exited
                // while the directory still says running): look again later.
                _ => {
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(ADOPTED_POLL_MAX);
                }
            }
        }
    }

    async fn stop(&self, task_id: &str, grace: Duration) -> Result<TaskRunState, DriverError> {
        let dir = self.task_dir(task_id)?;
        match self.state(task_id)? {
            TaskRunState::Running { .. } => {}
            other => return Ok(other),
        }
        // A start in progress has no task.pid yet; give the shim its time.
        let deadline = Instant::now() + START_TIMEOUT;
        while procfs::read_pid_file(&dir.join(layout::TASK_PID)).is_none() {
            if let TaskRunState::Exited(exit) = self.state(task_id)? {
                return Ok(TaskRunState::Exited(exit));
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        self.signal_group(&dir, Signal::SIGTERM);
        if let Some(exit) = self.wait_exited(task_id, grace).await? {
            return Ok(TaskRunState::Exited(exit));
        }
        self.signal_group(&dir, Signal::SIGKILL);
        match self.wait_exited(task_id, KILL_TIMEOUT).await? {
            Some(exit) => Ok(TaskRunState::Exited(exit)),
            None => Err(DriverError::Runtime(format!(
                "task {task_id} did not end {KILL_TIMEOUT:?} after SIGKILL"
            ))),
        }
    }

    async fn remove(&self, task_id: &str) -> Result<(), DriverError> {
        let dir = self.task_dir(task_id)?;
        if let TaskRunState::Running { .. } = self.state(task_id)? {
            self.stop(task_id, Duration::ZERO).await?;
        }
        self.shim_exits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| DriverError::io(format!("removing {}", dir.display()), e))
    }

    async fn inspect(&self, task_id: &str) -> Result<TaskInfo, DriverError> {
        Ok(TaskInfo {
            task_id: task_id.to_string(),
            state: self.state(task_id)?,
        })
    }

    async fn list(&self) -> Result<Vec<TaskInfo>, DriverError> {
        let entries = match std::fs::read_dir(self.tasks_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(DriverError::io("listing tasks", e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DriverError::io("listing tasks", e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            match self.state(&id) {
                Ok(state) => out.push(TaskInfo { task_id: id, state }),
                // A directory without config.json is a prepare cut short (or a
                // removal under way): not a task.
                Err(DriverError::NotFound(_)) | Err(DriverError::Task(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        Ok(out)
    }

    async fn logs(
        &self,
        task_id: &str,
        tail: Option<usize>,
        since: Option<Timestamp>,
    ) -> Result<Vec<LogLine>, DriverError> {
        let dir = self.task_dir(task_id)?;
        let config = self.config(&dir, task_id)?;
        let records = logfile::read(&dir, config.log_max_files, tail, since)
            .map_err(|e| DriverError::io(format!("reading logs of {task_id}"), e))?;
        Ok(records
            .into_iter()
            .map(|r| LogLine {
                task_id: task_id.to_string(),
                time: r.time,
                stream: r.stream,
                line: r.line,
            })
            .collect())
    }
}

fn state_name(state: &TaskRunState) -> &'static str {
    match state {
        TaskRunState::Created => "created",
        TaskRunState::Running { .. } => "running",
        TaskRunState::Exited(_) => "exited",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_like_execvp() {
        assert_eq!(
            find_program("sh", "/nonexistent:/bin:/usr/bin").map(|p| p.is_file()),
            Some(true)
        );
        assert_eq!(
            find_program("definitely-not-a-program-xyz", shim::DEFAULT_PATH),
            None
        );
        assert!(find_program("/bin/sh", "").is_some());
        // A directory is not a program.
        assert!(find_program("/bin", "").is_none());
    }

    #[test]
    fn task_ids_cannot_escape_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = ExecDriver::new(
            root.path().to_path_buf(),
            ShimCommand {
                program: "/bin/sh".into(),
                args: vec![],
            },
        )
        .expect("driver");
        assert!(d.task_dir("abc-1.x_y").is_ok());
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(d.task_dir(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_missing_shim_is_refused_at_once() {
        let root = tempfile::tempdir().expect("tempdir");
        let shim = ShimCommand {
            program: root.path().join("no-such-shim"),
            args: vec![],
        };
        assert!(matches!(
            ExecDriver::new(root.path().to_path_buf(), shim),
            Err(DriverError::Runtime(_))
        ));
    }
}
