//! `berth auth settings show` and `berth auth ldap set|disable|sync|status`:
//! access control's cluster-wide settings (sessions, lockout, audit level)
//! and the LDAP directory users sign in with (UCP's "Authentication &
//! Authorization" admin page). Admins only.

use super::output::{self, Format};
use super::prompt;
use crate::client::Client;
use anyhow::bail;
use api::auth::{AuthSettings, LdapConfig};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum AuthCommand {
    /// Access control's settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The LDAP directory: users signing in with their LDAP password, and
    /// the sync of users and teams from it.
    #[command(subcommand)]
    Ldap(LdapCommand),
}

#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Show the settings (the LDAP reader's password is never shown).
    Show {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum LdapCommand {
    /// Turn LDAP on, or change its settings: only the options given change
    /// (all start from the defaults when LDAP was off).
    Set(LdapSetArgs),
    /// Turn LDAP off: only local users sign in (LDAP users stay, unable to
    /// log in with a password).
    Disable,
    /// Sync users and teams from the directory now.
    Sync {
        /// Show what the sync would change, changing nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show the last syncs of the manager that answers.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Args, Debug)]
pub struct LdapSetArgs {
    /// An LDAP server, ldap://host:389 or ldaps://host:636 (repeat for
    /// fallbacks, tried in order); replaces the servers set before.
    #[arg(long = "server", value_name = "URL")]
    pub servers: Vec<String>,
    /// The DN the auth worker binds as to search the directory.
    #[arg(long, value_name = "DN")]
    pub reader_dn: Option<String>,
    /// Read the reader's password from stdin (its first line) [default: keep the one set].
    #[arg(long)]
    pub reader_password_stdin: bool,
    /// Where users are searched.
    #[arg(long, value_name = "DN")]
    pub user_base_dn: Option<String>,
    /// The filter that selects users [default: (objectClass=person)].
    #[arg(long, value_name = "FILTER")]
    pub user_filter: Option<String>,
    /// The attribute that becomes the berth user name [default: uid].
    #[arg(long, value_name = "ATTR")]
    pub username_attr: Option<String>,
    /// The attribute that becomes the full name [default: cn].
    #[arg(long, value_name = "ATTR")]
    pub fullname_attr: Option<String>,
    /// The group attribute that names a team's members [default: member].
    #[arg(long, value_name = "ATTR")]
    pub group_member_attr: Option<String>,
    /// How often the sync runs, e.g. 1h; 0 syncs only on demand [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub sync_interval: Option<String>,
    /// Search only one level below the base DN.
    #[arg(long, overrides_with = "subtree")]
    pub one_level: bool,
    /// Search the whole subtree below the base DN (the default).
    #[arg(long, overrides_with = "one_level")]
    pub subtree: bool,
    /// Do not create users at their first login: only the sync does.
    #[arg(long, overrides_with = "jit")]
    pub no_jit: bool,
    /// Create users found in LDAP at their first login (the default).
    #[arg(long, overrides_with = "no_jit")]
    pub jit: bool,
    /// Upgrade ldap:// connections with StartTLS.
    #[arg(long, overrides_with = "no_start_tls")]
    pub start_tls: bool,
    /// Do not use StartTLS (the default).
    #[arg(long, overrides_with = "start_tls")]
    pub no_start_tls: bool,
    /// Do not verify the LDAP server's certificate (testing only).
    #[arg(long, overrides_with = "tls_verify")]
    pub tls_skip_verify: bool,
    /// Verify the LDAP server's certificate (the default).
    #[arg(long, overrides_with = "tls_skip_verify")]
    pub tls_verify: bool,
}

const SETTINGS: &str = "/api/v1/auth/settings";

pub async fn run(cmd: AuthCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        AuthCommand::Settings(SettingsCommand::Show { format }) => {
            let s: AuthSettings = c.get(SETTINGS).await?;
            if format == Format::Json {
                println!("{}", output::json(&s)?);
            } else {
                print!("{}", summary(&s));
            }
        }
        AuthCommand::Ldap(LdapCommand::Set(args)) => {
            let mut s: AuthSettings = c.get(SETTINGS).await?;
            let mut ldap = s.ldap.take().unwrap_or_default();
            apply(&mut ldap, args)?;
            s.ldap = Some(ldap);
            let _: AuthSettings = c.post(SETTINGS, &s).await?;
            println!("LDAP settings saved.");
        }
        AuthCommand::Ldap(LdapCommand::Disable) => {
            let mut s: AuthSettings = c.get(SETTINGS).await?;
            if s.ldap.take().is_none() {
                println!("LDAP is off already.");
                return Ok(ExitCode::SUCCESS);
            }
            let _: AuthSettings = c.post(SETTINGS, &s).await?;
            println!("LDAP disabled.");
        }
        AuthCommand::Ldap(LdapCommand::Sync { dry_run, format }) => {
            let path = if dry_run {
                "/api/v1/auth/ldap/sync?dry_run=true"
            } else {
                "/api/v1/auth/ldap/sync"
            };
            let report: Value = c.post(path, &serde_json::json!({})).await?;
            if format == Format::Json {
                println!("{}", output::json(&report)?);
            } else {
                if dry_run {
                    println!("Dry run: nothing was changed.");
                }
                print!("{}", sync_summary(&report));
            }
        }
        AuthCommand::Ldap(LdapCommand::Status { format }) => {
            let status: Value = c.get("/api/v1/auth/ldap/status").await?;
            if format == Format::Json {
                println!("{}", output::json(&status)?);
            } else {
                print!("{}", status_summary(&status));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The options given, applied to `ldap`.
fn apply(ldap: &mut LdapConfig, a: LdapSetArgs) -> anyhow::Result<()> {
    if !a.servers.is_empty() {
        ldap.servers = a.servers;
    }
    if let Some(v) = a.reader_dn {
        ldap.reader_dn = v;
    }
    // Otherwise the password stays what GET showed: `<redacted>`, which
    // keeps the stored one, or empty (an anonymous bind).
    if a.reader_password_stdin {
        ldap.reader_password = prompt::stdin_secret("the LDAP reader's password")?;
    }
    if let Some(v) = a.user_base_dn {
        ldap.user_base_dn = v;
    }
    if let Some(v) = a.user_filter {
        ldap.user_filter = v;
    }
    if let Some(v) = a.username_attr {
        ldap.username_attr = v;
    }
    if let Some(v) = a.fullname_attr {
        ldap.fullname_attr = v;
    }
    if let Some(v) = a.group_member_attr {
        ldap.group_member_attr = v;
    }
    if let Some(v) = a.sync_interval {
        ldap.sync_interval = match api::duration::parse(&v) {
            Ok(d) => d,
            Err(e) => bail!("--sync-interval: {e}"),
        };
    }
    if a.one_level {
        ldap.subtree = false;
    }
    if a.subtree {
        ldap.subtree = true;
    }
    if a.no_jit {
        ldap.jit_provisioning = false;
    }
    if a.jit {
        ldap.jit_provisioning = true;
    }
    if a.start_tls {
        ldap.start_tls = true;
    }
    if a.no_start_tls {
        ldap.start_tls = false;
    }
    if a.tls_skip_verify {
        ldap.tls_skip_verify = true;
    }
    if a.tls_verify {
        ldap.tls_skip_verify = false;
    }
    Ok(())
}

fn summary(s: &AuthSettings) -> String {
    let d = api::duration::format;
    let mut lines = vec![
        ("Session lifetime", d(s.session_lifetime)),
        ("Session max lifetime", d(s.session_max_lifetime)),
        (
            "Lockout",
            format!(
                "after {} failed logins, for {}",
                s.lockout_failures,
                d(s.lockout_duration)
            ),
        ),
        (
            "Audit level",
            serde_json::to_value(s.audit_level)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
    ];
    match &s.ldap {
        None => lines.push(("LDAP", "off".into())),
        Some(l) => {
            lines.push(("LDAP", "on".into()));
            lines.push(("  Servers", l.servers.join(", ")));
            lines.push(("  StartTLS", output::yes_no(l.start_tls).into()));
            if l.tls_skip_verify {
                lines.push(("  Verify TLS", "no (testing only)".into()));
            }
            lines.push(("  Reader DN", l.reader_dn.clone()));
            let pw = if l.reader_password.is_empty() {
                "none"
            } else {
                "set"
            };
            lines.push(("  Reader password", pw.into()));
            lines.push(("  User base DN", l.user_base_dn.clone()));
            lines.push((
                "  Search",
                if l.subtree { "subtree" } else { "one level" }.into(),
            ));
            lines.push(("  User filter", l.user_filter.clone()));
            lines.push(("  Username attr", l.username_attr.clone()));
            lines.push(("  Full name attr", l.fullname_attr.clone()));
            lines.push(("  Group member attr", l.group_member_attr.clone()));
            lines.push((
                "  Just-in-time users",
                output::yes_no(l.jit_provisioning).into(),
            ));
            let every = if l.sync_interval.is_zero() {
                "on demand only".to_string()
            } else {
                format!("every {}", d(l.sync_interval))
            };
            lines.push(("  Sync", every));
        }
    }
    output::fields(&lines)
}

/// Names in a JSON array of strings, comma-separated.
fn names(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A sync report (the auth worker's), for a human: one line per kind of
/// change that happened.
fn sync_summary(r: &Value) -> String {
    let mut lines = Vec::new();
    for (key, label) in [
        ("users_created", "Users created"),
        ("users_updated", "Users updated"),
        ("users_disabled", "Users disabled"),
        ("users_enabled", "Users enabled"),
    ] {
        let n = names(&r[key]);
        if !n.is_empty() {
            lines.push((label, n));
        }
    }
    for t in r["teams"].as_array().into_iter().flatten() {
        let team = format!(
            "{}/{}",
            t["organization"].as_str().unwrap_or("?"),
            t["team"].as_str().unwrap_or("?")
        );
        let mut change = Vec::new();
        if !names(&t["added"]).is_empty() {
            change.push(format!("+ {}", names(&t["added"])));
        }
        if !names(&t["removed"]).is_empty() {
            change.push(format!("- {}", names(&t["removed"])));
        }
        lines.push(("Team", format!("{team}: {}", change.join("; "))));
    }
    for s in r["skipped"].as_array().into_iter().flatten() {
        lines.push((
            "Skipped",
            format!(
                "{}: {}",
                s["entry"].as_str().unwrap_or("?"),
                s["reason"].as_str().unwrap_or("?")
            ),
        ));
    }
    if lines.is_empty() {
        return "Nothing to change: berth agrees with the directory.\n".into();
    }
    output::fields(&lines)
}

/// The worker's status, for a human; anything not understood as JSON.
fn status_summary(s: &Value) -> String {
    let run = |v: &Value| -> Option<String> {
        if v.is_null() {
            return None;
        }
        Some(
            v.as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, x)| !x.is_object() && !x.is_array())
                        .map(|(k, x)| match x.as_str() {
                            Some(s) => format!("{k}={s}"),
                            None => format!("{k}={x}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| v.to_string()),
        )
    };
    let (Some(last), success) = (s.get("last_sync"), s.get("last_success")) else {
        return format!("{}\n", output::json(s).unwrap_or_default());
    };
    let mut lines = vec![(
        "Last sync",
        run(last).unwrap_or_else(|| "none on this manager yet".into()),
    )];
    if let Some(ok) = success.and_then(run) {
        lines.push(("Last success", ok));
    }
    output::fields(&lines)
}
