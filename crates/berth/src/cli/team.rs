//! `berth team create|ls|inspect|rm|add|remove`: teams of an organization
//! (UCP's), named `ORG/TEAM`, whose members get the team's grants; a team
//! tied to an LDAP group takes its members from the LDAP sync.

use super::output::{self, Format};
use crate::client::{encode, Client};
use anyhow::bail;
use clap::Subcommand;
use controller::wire::{CreateTeam, TeamMember, TeamView};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// Create a team in an organization.
    Create {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        /// The LDAP group (its DN) whose members the LDAP sync makes the
        /// team's members.
        #[arg(long, value_name = "DN")]
        ldap_group: Option<String>,
    },
    /// List the teams of an organization.
    #[command(alias = "list")]
    Ls {
        org: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print names (ORG/TEAM).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a team and its members (JSON).
    Inspect {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
    },
    /// Remove teams, with their grants.
    Rm {
        #[arg(required = true, value_name = "ORG/TEAM")]
        teams: Vec<String>,
    },
    /// Add users to a team.
    Add {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Remove users from a team (their accounts stay).
    #[command(name = "remove")]
    RemoveMember {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
}

/// "ORG/TEAM" → (ORG, TEAM).
fn split_team(team: &str) -> anyhow::Result<(&str, &str)> {
    match team.split_once('/') {
        Some((org, t)) if !org.is_empty() && !t.is_empty() && !t.contains('/') => Ok((org, t)),
        _ => bail!("{team:?} is not a team: name it ORG/TEAM"),
    }
}

/// `/api/v1/teams/ORG/TEAM` of "ORG/TEAM".
fn team_path(team: &str) -> anyhow::Result<String> {
    let (org, t) = split_team(team)?;
    Ok(format!("/api/v1/teams/{}/{}", encode(org), encode(t)))
}

pub async fn run(cmd: TeamCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        TeamCommand::Create { team, ldap_group } => {
            let (org, name) = split_team(&team)?;
            let req = CreateTeam {
                name: name.to_string(),
                ldap_group_dn: ldap_group,
            };
            let t: TeamView = c
                .post(&format!("/api/v1/teams/{}", encode(org)), &req)
                .await?;
            println!("{}/{}", t.org, t.name);
        }
        TeamCommand::Ls { org, format, quiet } => {
            let mut teams: Vec<TeamView> =
                c.get(&format!("/api/v1/teams/{}", encode(&org))).await?;
            teams.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                teams.iter().for_each(|t| println!("{}/{}", t.org, t.name));
            } else if format == Format::Json {
                println!("{}", output::json(&teams)?);
            } else {
                let rows = teams
                    .iter()
                    .map(|t| {
                        vec![
                            format!("{}/{}", t.org, t.name),
                            t.members.len().to_string(),
                            t.ldap_group_dn.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["NAME", "MEMBERS", "LDAP GROUP"], rows)
                );
            }
        }
        TeamCommand::Inspect { team } => {
            let t: TeamView = c.get(&team_path(&team)?).await?;
            println!("{}", output::json(&t)?);
        }
        TeamCommand::Rm { teams } => {
            for team in teams {
                c.delete(&team_path(&team)?).await?;
                println!("{team}");
            }
        }
        TeamCommand::Add { team, users } => {
            let path = format!("{}/members", team_path(&team)?);
            for user in users {
                let _: TeamView = c.post(&path, &TeamMember { user: user.clone() }).await?;
                println!("{user}");
            }
        }
        TeamCommand::RemoveMember { team, users } => {
            let path = team_path(&team)?;
            for user in users {
                c.delete(&format!("{path}/members/{}", encode(&user)))
                    .await?;
                println!("{user}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
