//! `berth grant add|ls|rm`: who (a user, a team, an organization) may do
//! what (a role) where (a collection and everything below it), UCP's grants.

use super::output::{self, Format};
use crate::client::{encode, Client};
use clap::{Args, Subcommand};
use controller::wire::{CreateGrant, GrantView, SubjectKind};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// Grant a role on a collection: `berth grant add --team eng/web --role
    /// "Full Control" --collection /Shared/web`.
    Add {
        #[command(flatten)]
        subject: SubjectArgs,
        /// A built-in role (None, View Only, Restricted Control, Scheduler,
        /// Full Control) or a custom one.
        #[arg(long)]
        role: String,
        /// The collection's path; the grant holds below it too.
        #[arg(long, value_name = "PATH")]
        collection: String,
    },
    /// List the grants you may see (an admin sees all).
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove grants by id.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Exactly one subject.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct SubjectArgs {
    /// Grant to a user.
    #[arg(long)]
    user: Option<String>,
    /// Grant to a team's members.
    #[arg(long, value_name = "ORG/TEAM")]
    team: Option<String>,
    /// Grant to the members of every team of an organization.
    #[arg(long)]
    org: Option<String>,
}

fn kind_name(k: &SubjectKind) -> &'static str {
    match k {
        SubjectKind::User => "user",
        SubjectKind::Team => "team",
        SubjectKind::Org => "org",
    }
}

pub async fn run(cmd: GrantCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        GrantCommand::Add {
            subject,
            role,
            collection,
        } => {
            let (subject_kind, subject) = match subject {
                SubjectArgs { user: Some(u), .. } => (SubjectKind::User, u),
                SubjectArgs { team: Some(t), .. } => (SubjectKind::Team, t),
                SubjectArgs { org: Some(o), .. } => (SubjectKind::Org, o),
                _ => anyhow::bail!("give --user, --team or --org"),
            };
            let collection = if collection.starts_with('/') {
                collection
            } else {
                format!("/{collection}")
            };
            let req = CreateGrant {
                subject_kind,
                subject,
                role,
                collection,
            };
            let g: GrantView = c.post("/api/v1/grants", &req).await?;
            println!("{}", g.id);
        }
        GrantCommand::Ls { format, quiet } => {
            let mut grants: Vec<GrantView> = c.get("/api/v1/grants").await?;
            grants.sort_by(|a, b| {
                (&a.collection, &a.subject, &a.role).cmp(&(&b.collection, &b.subject, &b.role))
            });
            if quiet {
                grants.iter().for_each(|g| println!("{}", g.id));
            } else if format == Format::Json {
                println!("{}", output::json(&grants)?);
            } else {
                let rows = grants
                    .iter()
                    .map(|g| {
                        vec![
                            g.id.clone(),
                            kind_name(&g.subject_kind).into(),
                            g.subject.clone(),
                            g.role.clone(),
                            g.collection.clone(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["ID", "TYPE", "SUBJECT", "ROLE", "COLLECTION"], rows)
                );
            }
        }
        GrantCommand::Rm { ids } => {
            for id in ids {
                c.delete(&format!("/api/v1/grants/{}", encode(&id))).await?;
                println!("{id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
