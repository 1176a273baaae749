//! `berth ca`: the cluster root CA, as `docker swarm ca` shows it, and its
//! rotation (`--rotate`): a new root signs every certificate from then on,
//! each node renews its own, and the rotation ends once all have. `berth ca
//! fingerprint` shows what a user pins at the first `berth login`.

use crate::client::{fetch_ca_unverified, Client};
use crate::credentials::{fingerprint, fingerprints, BundleDir, Credentials};
use clap::{Args, Subcommand};
use controller::wire::CaStatus;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: Option<CaCommand>,
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

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Print the SHA-256 fingerprint of the cluster root CA's certificate
    /// (sha256:…): give it to users for `berth login --ca-fingerprint`.
    /// From the CA these credentials trust, or with --host from the
    /// manager's GET /ca.
    Fingerprint,
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

/// `berth ca fingerprint`: of the CA trusted here (a client bundle's, or
/// the credentials file's), or with `host` of what that manager serves at
/// `/ca` — verified against the CA trusted here when there is one for it.
pub async fn print_fingerprint(host: Option<&str>) -> anyhow::Result<ExitCode> {
    let bundle = match crate::paths::bundle_dir() {
        Some(dir) => Some(BundleDir::load(&dir)?),
        None => None,
    };
    let creds = Credentials::load(&crate::paths::credentials_file()).ok();
    let verified = |host: &str, ca_pem: &str| {
        Client::new(&Credentials {
            host: host.to_string(),
            managers: Vec::new(),
            token: String::new(),
            ca_pem: ca_pem.to_string(),
        })
    };
    let pem = match host.map(|h| {
        h.trim()
            .trim_start_matches("https://")
            .trim_end_matches('/')
    }) {
        Some(h) => {
            let known = match (&bundle, &creds) {
                (Some(b), _) => Some(b.ca_pem.clone()),
                (None, Some(c)) if c.knows_host(h) => Some(c.ca_pem.clone()),
                _ => None,
            };
            match known {
                Some(ca) => verified(h, &ca)?.get_text("/ca").await?,
                None => {
                    let pem = fetch_ca_unverified(h).await?;
                    eprintln!(
                        "note: read from {h} without verifying it (no CA is trusted for it \
                         here): compare it with the fingerprint the cluster's admin sees"
                    );
                    pem
                }
            }
        }
        None => {
            let (ca, at) = match (bundle, creds) {
                (Some(b), _) => (b.ca_pem, None),
                (None, Some(c)) => (c.ca_pem.clone(), Some(c.host)),
                (None, None) => anyhow::bail!(
                    "no cluster is known here (no credentials in {}): give --host HOST:PORT \
                     to ask a manager",
                    crate::paths::credentials_file().display()
                ),
            };
            match at {
                // After a rotation the file trusts the old root too: the
                // manager says which one it serves now (login pins the first).
                Some(h) if fingerprints(&ca).len() > 1 => {
                    match verified(&h, &ca)?.get_text("/ca").await {
                        Ok(now) => now,
                        Err(e) => {
                            tracing::debug!("asking {h} for its CA: {e:#}");
                            ca
                        }
                    }
                }
                _ => ca,
            }
        }
    };
    println!("{}", fingerprint(&pem)?);
    Ok(ExitCode::SUCCESS)
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_string()
    } else {
        format!("{pem}\n")
    }
}
