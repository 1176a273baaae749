//! berth's binary as a library: the CLI and the wiring of a node, so that the
//! integration tests can start a node in process as `berth up` does.

pub mod cli;
pub mod client;
pub mod credentials;
pub mod node;
pub mod paths;

/// This machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
