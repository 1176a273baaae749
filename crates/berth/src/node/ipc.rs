//! The node-local control socket, `<data dir>/berth.sock` (DESIGN §4: IPC
//! between the CLI and the node on the same machine), readable and writable
//! by the node's owner only. One request per connection, one JSON line each
//! way: `{"command":"leave","force":false}` → `{"ok":true}` or
//! `{"error":"…"}`. `berth leave` uses it to ask the running node to leave.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// The socket's file name in the data dir.
pub const SOCKET: &str = "berth.sock";

/// The longest request line read; anything longer is refused.
const MAX_REQUEST: u64 = 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
enum Request {
    Leave {
        #[serde(default)]
        force: bool,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Reply {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A request to leave the cluster, for the node's owner to carry out; the
/// answer goes back to the CLI that asked.
#[derive(Debug)]
pub struct LeaveRequest {
    pub force: bool,
    reply: oneshot::Sender<Result<(), String>>,
    /// Told once the answer is written back to the CLI.
    written: oneshot::Receiver<()>,
}

impl LeaveRequest {
    /// Answers the CLI, and waits (briefly) until the answer is on its way:
    /// a node that left exits right after, which would cut it off.
    pub async fn answer(self, result: Result<(), String>) {
        if self.reply.send(result).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.written).await;
        }
    }
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Serves the socket until the task is aborted. The caller holds the data
/// dir's lock, so a socket file already there is a dead node's: replaced.
pub(super) fn serve(
    data_dir: &Path,
    requests: mpsc::Sender<LeaveRequest>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting on the control socket");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Answered in a task of its own: a leave stops the node, and
            // with it this loop, before its answer is sent.
            let requests = requests.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &requests).await {
                    tracing::debug!(error = %e, "a control socket request failed");
                }
            });
        }
    }))
}

async fn answer(stream: UnixStream, requests: &mpsc::Sender<LeaveRequest>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut done = None;
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Ok(Request::Leave { force }) => {
            let (tx, rx) = oneshot::channel();
            let (written_tx, written) = oneshot::channel();
            done = Some(written_tx);
            let sent = requests
                .send(LeaveRequest {
                    force,
                    reply: tx,
                    written,
                })
                .await;
            match (sent, rx.await) {
                (Ok(()), Ok(Ok(()))) => Reply {
                    ok: true,
                    error: None,
                },
                (Ok(()), Ok(Err(e))) => Reply {
                    ok: false,
                    error: Some(e),
                },
                _ => Reply {
                    ok: false,
                    error: Some("the node is stopping".into()),
                },
            }
        }
        Err(e) => Reply {
            ok: false,
            error: Some(format!("not a request this node understands: {e}")),
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await?;
    if let Some(done) = done {
        let _ = done.send(());
    }
    Ok(())
}

/// Asks the node running in `data_dir` to leave. `Ok(None)`: no node is
/// listening there (none runs, or it died without removing its socket).
pub async fn request_leave(data_dir: &Path, force: bool) -> anyhow::Result<Option<()>> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("connecting to {}", path.display())))
        }
    };
    let (read, mut write) = stream.into_split();
    let mut req = serde_json::to_vec(&Request::Leave { force })?;
    req.push(b'\n');
    write.write_all(&req).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let reply: Reply = serde_json::from_str(line.trim())
        .map_err(|e| anyhow::anyhow!("the node's answer is not understood ({e}): {line:?}"))?;
    match (reply.ok, reply.error) {
        (true, _) => Ok(Some(())),
        (false, Some(e)) => anyhow::bail!("{e}"),
        (false, None) => anyhow::bail!("the node refused without a reason"),
    }
}
