//! A task's output on disk: JSON lines (time, stream, line) in `log.json`,
//! rotated at a size cap into `log.json.1`, `log.json.2`, … so a chatty task
//! cannot fill the disk. The shim writes; the driver reads for `service logs`.

use api::Timestamp;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

pub const LOG_FILE: &str = "log.json";
/// Default size of one log file before it rotates.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of files kept (the current one included).
pub const DEFAULT_MAX_FILES: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time: Timestamp,
    pub stream: String,
    pub line: String,
}

/// Path of the `n`th file: 0 is the current one, higher is older.
fn file_path(dir: &Path, n: usize) -> PathBuf {
    if n == 0 {
        dir.join(LOG_FILE)
    } else {
        dir.join(format!("{LOG_FILE}.{n}"))
    }
}

pub struct RotatingLog {
    dir: PathBuf,
    max_bytes: u64,
    max_files: usize,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Opens the current file for appending (a restarted writer continues it).
    pub fn open(dir: &Path, max_bytes: u64, max_files: usize) -> io::Result<RotatingLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file_path(dir, 0))?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            dir: dir.to_path_buf(),
            max_bytes,
            max_files: max_files.max(1),
            file,
            size,
        })
    }

    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        bytes.push(b'\n');
        // A file always takes at least one record, so an oversized line cannot
        // make the writer rotate forever.
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files == 1 {
            self.file.set_len(0)?;
        } else {
            // The oldest file falls off the end; the others move up by one.
            for n in (0..self.max_files - 1).rev() {
                match std::fs::rename(file_path(&self.dir, n), file_path(&self.dir, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(file_path(&self.dir, 0))?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Reads the records kept in `dir`, oldest first, of those at or after `since`,
/// the last `tail` of them. Lines that do not parse (a write cut short by a
/// crash) are skipped.
pub fn read(
    dir: &Path,
    max_files: usize,
    tail: Option<usize>,
    since: Option<Timestamp>,
) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for n in (0..max_files.max(1)).rev() {
        let file = match File::open(file_path(dir, n)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            let Ok(record) = serde_json::from_str::<Record>(&line?) else {
                continue;
            };
            if since.is_none_or(|s| record.time >= s) {
                out.push(record);
            }
        }
    }
    if let Some(n) = tail {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Record {
        Record {
            time: Timestamp(1_000 + i),
            stream: ["stdout", "stderr"][(i % 2) as usize].into(),
            line: format!("line {i:04}"),
        }
    }

    fn record_len() -> u64 {
        serde_json::to_vec(&record(0)).expect("encode").len() as u64 + 1
    }

    #[test]
    fn rotates_at_the_cap_and_keeps_only_the_newest_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Room for exactly 4 records per file, 3 files: the current file holds
        // the last 2 of 30, the two older ones 4 each.
        let mut log = RotatingLog::open(dir.path(), record_len() * 4, 3).expect("open");
        for i in 0..30 {
            log.write(&record(i)).expect("write");
        }
        for n in 0..3 {
            let len = std::fs::metadata(file_path(dir.path(), n))
                .expect("file")
                .len();
            assert!(len <= record_len() * 4, "file {n} is {len} bytes");
        }
        assert!(!file_path(dir.path(), 3).exists());
        let all = read(dir.path(), 3, None, None).expect("read");
        let want: Vec<Record> = (20..30).map(record).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn tail_and_since_select_the_newest_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = RotatingLog::open(dir.path(), record_len() * 4, 3).expect("open");
        for i in 0..10 {
            log.write(&record(i)).expect("write");
        }
        let tail = read(dir.path(), 3, Some(3), None).expect("read");
        assert_eq!(tail, (7..10).map(record).collect::<Vec<_>>());
        let since = read(dir.path(), 3, None, Some(Timestamp(1_005))).expect("read");
        assert_eq!(since, (5..10).map(record).collect::<Vec<_>>());
        let both = read(dir.path(), 3, Some(2), Some(Timestamp(1_005))).expect("read");
        assert_eq!(both, (8..10).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn a_reopened_log_appends_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        RotatingLog::open(dir.path(), 1 << 20, 3)
            .expect("open")
            .write(&record(1))
            .expect("write");
        // A writer killed mid-line leaves a fragment without a newline.
        let mut f = OpenOptions::new()
            .append(true)
            .open(file_path(dir.path(), 0))
            .expect("open raw");
        f.write_all(b"{\"time\":\"1970-01-01T00:00:01\n")
            .expect("torn write");
        RotatingLog::open(dir.path(), 1 << 20, 3)
            .expect("reopen")
            .write(&record(2))
            .expect("write");
        let all = read(dir.path(), 3, None, None).expect("read");
        assert_eq!(all, vec![record(1), record(2)]);
    }

    #[test]
    fn a_single_file_log_truncates_instead_of_rotating() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = RotatingLog::open(dir.path(), record_len() * 2, 1).expect("open");
        for i in 0..5 {
            log.write(&record(i)).expect("write");
        }
        let all = read(dir.path(), 1, None, None).expect("read");
        assert_eq!(all, vec![record(4)]);
    }
}
