//! `berth ca`: the cluster root CA, as `docker swarm ca` shows it, and its
//! rotation (`--rotate`): a new root signs every certificate from then on,
//! each node renews its own, and the rotation ends once all have.

use crate::client::Client;
use clap::Args;
use controller::wire::CaStatus;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct CaArgs {
    /// Rotate the cluster root CA: every node gets a certificate of a new
    /// root, without interruption (the new root is cross-signed by the old).
    #[arg(long)]
    pub rotate: bool,
    /// With --rotate, return once the rotation started instead of waiting
    /// for every node to renew.
    #[arg(short, long)]
    pub detach: bool,
    /// Print no progress.
    #[arg(short, long)]
    pub quiet: bool,
}

/// How often the rotation's progress is read.
const POLL: Duration = Duration::from_millis(500);
/// How often the nodes still waited for are named.
const NAME_EVERY: Duration = Duration::from_secs(10);

pub async fn run(args: CaArgs, c: &Client) -> anyhow::Result<ExitCode> {
    if !args.rotate {
        let status: CaStatus = c.get("/api/v1/cluster/ca").await?;
        print!("{}", ensure_newline(&status.trust_pem));
        return Ok(ExitCode::SUCCESS);
    }
    let started: CaStatus = c
        .post("/api/v1/cluster/ca/rotate", &serde_json::json!({}))
        .await?;
    let Some(rotation) = started.rotation else {
        anyhow::bail!("the manager started no rotation");
    };
    let new_root = rotation.new_root_digest.clone();
    if !args.quiet {
        eprintln!("rotating the cluster root CA to {new_root}");
    }
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let mut last = None;
    let mut named = tokio::time::Instant::now();
    loop {
        // A manager may be unreachable for a moment (it renews too); keep
        // asking the others.
        let status = match c.get::<CaStatus>("/api/v1/cluster/ca").await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("reading the rotation's progress: {e:#}");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        match &status.rotation {
            None if status.root_digest == new_root => {
                if !args.quiet {
                    eprintln!("rotation complete: every node holds a certificate of the new root");
                }
                // This CLI trusts the new root from now on; others learn it
                // when they next save credentials from a manager.
                let path = crate::paths::credentials_file();
                if let Ok(mut creds) = crate::credentials::Credentials::load(&path) {
                    creds.trust_roots(&status.trust_pem);
                    creds.save(&path)?;
                }
                print!("{}", ensure_newline(&status.trust_pem));
                return Ok(ExitCode::SUCCESS);
            }
            None => anyhow::bail!(
                "the rotation to {new_root} ended without making it the root (now {})",
                status.root_digest
            ),
            Some(r) if r.new_root_digest != new_root => anyhow::bail!(
                "another rotation (to {}) replaced this one",
                r.new_root_digest
            ),
            Some(r) => {
                if !args.quiet {
                    if last != Some(r.renewed) {
                        eprintln!(
                            "  {}/{} nodes renewed their certificate",
                            r.renewed, r.nodes
                        );
                        last = Some(r.renewed);
                    }
                    if named.elapsed() >= NAME_EVERY && !r.waiting_for.is_empty() {
                        eprintln!(
                            "  waiting for: {} (a node that is down renews when it is back, or \
                             once removed no longer counts)",
                            r.waiting_for.join(", ")
                        );
                        named = tokio::time::Instant::now();
                    }
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_string()
    } else {
        format!("{pem}\n")
    }
}
