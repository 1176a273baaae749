//! The shim: one small process per task, between the agent and the task, so
//! that a task outlives an agent restart and its exit status is never lost
//! (containerd's design). It is the berth binary itself, run as `berth shim`.
//!
//! The shim leaves the agent's session (setsid), so a signal aimed at the
//! agent's terminal or process group does not reach it; it starts the task in
//! a process group of its own, copies the task's stdout and stderr into the
//! rotating log, waits for the task, kills what the task left behind in its
//! group, and records the exit status atomically before it exits. Everything
//! it knows is in the task directory; it needs no runtime and no network.

use super::layout::{self, ShimConfig};
use super::logfile::{Record, RotatingLog};
use super::procfs::ProcessId;
use crate::driver::TaskExit;
use api::Timestamp;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Longest line kept whole; longer output is cut into lines of this size so a
/// task that never prints a newline cannot grow the shim's memory.
const MAX_LINE: usize = 16 * 1024;

/// How long the shim waits for the output pipes to drain after the task ends
/// (a process that left the task's group may hold them open forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The PATH a task gets unless its env sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the shim. `args` are the arguments after `shim` (a leading `shim` is
/// tolerated), of which `--task-dir <dir>` names the task. Returns the shim's
/// exit code: 0 once the task's exit status is recorded, non-zero when the shim
/// itself could not do its job (the reason is on its stderr).
pub fn shim_main(args: Vec<OsString>) -> i32 {
    let Some(dir) = task_dir_arg(&args) else {
        eprintln!("berth shim: usage: berth shim --task-dir <dir>");
        return 2;
    };
    match run(&dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth shim: {}: {e}", dir.display());
            1
        }
    }
}

fn task_dir_arg(args: &[OsString]) -> Option<PathBuf> {
    let at = args.iter().position(|a| a == "--task-dir")?;
    args.get(at + 1).map(PathBuf::from)
}

fn run(dir: &Path) -> std::io::Result<()> {
    // Fails only if the shim already leads a process group, which a plainly
    // spawned child never does; then it still works, merely less isolated.
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("berth shim: setsid: {e}");
    }
    let me = ProcessId::of(std::process::id())
        .ok_or_else(|| std::io::Error::other("cannot read own /proc entry"))?;
    layout::write_json_atomic(&dir.join(layout::SHIM_PID), &me)?;

    let config: ShimConfig = serde_json::from_slice(&std::fs::read(dir.join(layout::CONFIG))?)
        .map_err(std::io::Error::other)?;
    let log = Arc::new(Mutex::new(RotatingLog::open(
        dir,
        config.log_max_bytes,
        config.log_max_files,
    )?));

    let mut cmd = match build_command(dir, &config) {
        Ok(cmd) => cmd,
        Err(message) => return record_failed_start(dir, 126, message),
    };
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let program = config.task.argv.first().map(String::as_str).unwrap_or("");
            return record_failed_start(dir, code, format!("cannot start {program:?}: {e}"));
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    if let Some(task) = ProcessId::of(child.id()) {
        layout::write_json_atomic(&dir.join(layout::TASK_PID), &task)?;
    }

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut readers = 0;
    if let Some(out) = child.stdout.take() {
        spawn_copier(out, "stdout", log.clone(), done_tx.clone());
        readers += 1;
    }
    if let Some(err) = child.stderr.take() {
        spawn_copier(err, "stderr", log.clone(), done_tx.clone());
        readers += 1;
    }
    drop(done_tx);

    let status = child.wait()?;
    // The task is its whole process group: when its main process ends, what it
    // left running would otherwise be orphaned with nobody to stop it.
    let _ = killpg(pgid, Signal::SIGKILL);
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    for _ in 0..readers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }

    let exit = TaskExit {
        exit_code: status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255),
        signal: status.signal(),
        error: None,
        finished_at: Timestamp::now(),
    };
    layout::write_json_atomic(&dir.join(layout::EXIT), &exit)
}

fn build_command(dir: &Path, config: &ShimConfig) -> Result<Command, String> {
    let task = &config.task;
    let (program, args) = task
        .argv
        .split_first()
        .ok_or_else(|| "the task has no command".to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for entry in &task.env {
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| format!("env entry {entry:?} is not KEY=VALUE"))?;
        cmd.env(k, v);
    }
    match &task.dir {
        Some(d) => cmd.current_dir(d),
        None => cmd.current_dir(dir.join(layout::WORK)),
    };
    Ok(cmd)
}

fn record_failed_start(dir: &Path, code: i32, message: String) -> std::io::Result<()> {
    let exit = TaskExit {
        exit_code: code,
        signal: None,
        error: Some(message),
        finished_at: Timestamp::now(),
    };
    layout::write_json_atomic(&dir.join(layout::EXIT), &exit)
}

fn spawn_copier(
    pipe: impl Read + Send + 'static,
    stream: &'static str,
    log: Arc<Mutex<RotatingLog>>,
    done: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            let record = Record {
                time: Timestamp::now(),
                stream: stream.into(),
                line: String::from_utf8_lossy(&buf).into_owned(),
            };
            // A poisoned lock means the other copier panicked mid-write; the
            // log is still a sequence of whole lines, so keep writing.
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = log.write(&record) {
                eprintln!("berth shim: writing log: {e}");
            }
        }
        let _ = done.send(());
    });
}

/// Reads up to and including the next newline, or `MAX_LINE` bytes, whichever
/// comes first; returns the number of bytes read (0 at end of stream).
fn read_line_capped(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(total);
        }
        let room = MAX_LINE - buf.len();
        let window = &available[..available.len().min(room)];
        let (used, found) = match window.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (window.len(), false),
        };
        buf.extend_from_slice(&window[..used]);
        reader.consume(used);
        total += used;
        if found || buf.len() >= MAX_LINE {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_at_the_cap() {
        let mut input = vec![b'a'; MAX_LINE + 10];
        input.extend_from_slice(b"\nshort\n");
        let mut reader = BufReader::with_capacity(1000, &input[..]);
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            if read_line_capped(&mut reader, &mut buf).expect("read") == 0 {
                break;
            }
            lines.push(buf);
        }
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1], b"aaaaaaaaaa\n");
        assert_eq!(lines[2], b"short\n");
    }

    #[test]
    fn finds_the_task_dir_with_or_without_the_subcommand() {
        let with = vec!["shim".into(), "--task-dir".into(), "/x/y".into()];
        assert_eq!(task_dir_arg(&with), Some(PathBuf::from("/x/y")));
        let without = vec!["--task-dir".into(), "/x".into()];
        assert_eq!(task_dir_arg(&without), Some(PathBuf::from("/x")));
        assert_eq!(task_dir_arg(&["--task-dir".into()]), None);
    }
}
