//! `berth audit ls`: the API calls the managers' audit logs recorded (UCP's
//! audit logging), newest first: who, what, the decision.

use super::output::{self, Format};
use crate::client::{query, Client};
use anyhow::bail;
use clap::Subcommand;
use controller::audit::{AuditDecision, AuditEntry};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List recorded API calls, newest first.
    #[command(alias = "list")]
    Ls {
        /// Only this user's calls.
        #[arg(long)]
        user: Option<String>,
        /// Only calls since then: a duration back from now (1h, 30m) or an
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many calls [default: the manager's, 100].
        #[arg(long, short = 'n')]
        limit: Option<usize>,
        /// Only calls with this HTTP method (GET, POST, DELETE).
        #[arg(long)]
        method: Option<String>,
        /// Only calls access control decided so.
        #[arg(long, value_enum)]
        decision: Option<DecisionArg>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DecisionArg {
    Allowed,
    Denied,
    Unauthenticated,
}

/// `since` as an RFC 3339 time: a duration is counted back from now here,
/// so the manager gets a time whatever form it was given in.
fn since_time(text: &str) -> anyhow::Result<String> {
    let t = text.trim();
    if humantime::parse_rfc3339_weak(t).is_ok() {
        return Ok(t.to_string());
    }
    match api::duration::parse(t) {
        Ok(d) => {
            let back = std::time::SystemTime::now()
                .checked_sub(d)
                .unwrap_or(std::time::UNIX_EPOCH);
            Ok(api::Timestamp::from(back).to_string())
        }
        Err(_) => bail!("--since {t:?} is neither a duration (1h, 30m) nor an RFC 3339 time"),
    }
}

fn decision(d: AuditDecision) -> &'static str {
    match d {
        AuditDecision::Allowed => "allowed",
        AuditDecision::Denied => "denied",
        AuditDecision::Unauthenticated => "unauthenticated",
    }
}

pub async fn run(cmd: AuditCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Ls {
            user,
            since,
            limit,
            method,
            decision: wanted,
            format,
        } => {
            let since = since.as_deref().map(since_time).transpose()?;
            let q = query(&[
                ("user", user),
                ("since", since),
                ("limit", limit.map(|n| n.to_string())),
                ("method", method),
                (
                    "decision",
                    wanted.map(|d| {
                        match d {
                            DecisionArg::Allowed => "allowed",
                            DecisionArg::Denied => "denied",
                            DecisionArg::Unauthenticated => "unauthenticated",
                        }
                        .to_string()
                    }),
                ),
            ]);
            let entries: Vec<AuditEntry> = c.get(&format!("/api/v1/audit{q}")).await?;
            if format == Format::Json {
                println!("{}", output::json(&entries)?);
            } else {
                let rows = entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.time.to_string(),
                            e.user.clone().unwrap_or_else(|| "-".into()),
                            e.method.clone(),
                            e.path.clone(),
                            e.status.to_string(),
                            decision(e.decision).into(),
                            e.object.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(
                        &["TIME", "USER", "METHOD", "PATH", "STATUS", "DECISION", "OBJECT"],
                        rows
                    )
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
