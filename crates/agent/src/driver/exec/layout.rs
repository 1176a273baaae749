//! The task directory: the only place the exec driver and its shims keep
//! state, so that any driver instance over the same root knows every task.
//!
//! ```text
//! <root>/tasks/<task id>/
//!   config.json   what to run (written by prepare)
//!   started       start was requested (written before the shim is spawned)
//!   shim.pid      the shim's pid and start time
//!   task.pid      the task's main process (its process group leader)
//!   exit.json     how the task ended (written last, atomically)
//!   log.json[.N]  the task's output (see logfile)
//!   shim.log      the shim's own complaints
//!   work/         the task's working directory unless its spec sets one
//! ```

use crate::driver::TaskConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const CONFIG: &str = "config.json";
pub const STARTED: &str = "started";
pub const SHIM_PID: &str = "shim.pid";
pub const TASK_PID: &str = "task.pid";
pub const EXIT: &str = "exit.json";
pub const SHIM_LOG: &str = "shim.log";
pub const WORK: &str = "work";

/// What the shim reads from `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub task: TaskConfig,
    pub log_max_bytes: u64,
    pub log_max_files: usize,
}

/// Writes `value` so that a reader sees the old file or the whole new one, never
/// a part: a temporary file, flushed to disk, renamed over the target.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    // The temporary name is per process: the driver and the shim both write
    // shim.pid, and must not rename each other's half-written file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        // Makes the rename itself durable; a failure here only weakens that.
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads a JSON file; `None` when it does not exist (or is not complete JSON,
/// which atomic writes rule out for files written through [`write_json_atomic`]).
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}
