//! `berth user create|ls|inspect|rm|disable|enable|unlock|passwd`: the
//! accounts of people (UCP's users). Creating and changing them takes an
//! admin (or a grant of `user.*` on `/`); everyone may list them.

use super::output::{self, Format};
use super::prompt;
use crate::client::{encode, Client};
use anyhow::bail;
use clap::Subcommand;
use controller::wire::{CreateUser, SetPassword, UpdateUser, UserView, WhoAmI};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. Without --password-stdin it has no password: it signs
    /// in through LDAP, or with a client bundle.
    Create {
        name: String,
        /// Make the user an admin (may do anything, everywhere).
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value = "")]
        full_name: String,
        /// Read the user's password from stdin (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a user in full (JSON).
    Inspect { name: String },
    /// Remove users, with their tokens, bundles, grants and team memberships.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Disable users: every credential of theirs is refused at once.
    Disable {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Enable disabled users again.
    Enable {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Lift the lockout that repeated failed logins put on users.
    Unlock {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Change your own password (asks for the current one), or as an admin
    /// set another user's.
    Passwd {
        /// The user [default: you].
        name: Option<String>,
        /// Read the passwords from stdin instead of asking: for your own,
        /// the current one on the first line and the new on the second;
        /// for another user's, the new one on the first.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn user_path(name: &str) -> String {
    format!("/api/v1/users/{}", encode(name))
}

pub async fn run(cmd: UserCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Create {
            name,
            admin,
            full_name,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(prompt::stdin_secret("the password")?)
            } else {
                None
            };
            let req = CreateUser {
                name,
                full_name,
                password,
                admin,
            };
            let u: UserView = c.post("/api/v1/users", &req).await?;
            println!("{}", u.name);
        }
        UserCommand::Ls { format, quiet } => {
            let mut users: Vec<UserView> = c.get("/api/v1/users").await?;
            users.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                users.iter().for_each(|u| println!("{}", u.name));
            } else if format == Format::Json {
                println!("{}", output::json(&users)?);
            } else {
                let rows = users.iter().map(row).collect();
                println!(
                    "{}",
                    output::table(
                        &["NAME", "FULL NAME", "ADMIN", "SOURCE", "STATUS", "TEAMS"],
                        rows
                    )
                );
            }
        }
        UserCommand::Inspect { name } => {
            let u: UserView = c.get(&user_path(&name)).await?;
            println!("{}", output::json(&u)?);
        }
        UserCommand::Rm { names } => {
            for name in names {
                c.delete(&user_path(&name)).await?;
                println!("{name}");
            }
        }
        UserCommand::Disable { names } => {
            update_each(c, &names, || UpdateUser {
                disabled: Some(true),
                ..Default::default()
            })
            .await?
        }
        UserCommand::Enable { names } => {
            update_each(c, &names, || UpdateUser {
                disabled: Some(false),
                ..Default::default()
            })
            .await?
        }
        UserCommand::Unlock { names } => {
            update_each(c, &names, || UpdateUser {
                unlock: true,
                ..Default::default()
            })
            .await?
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => passwd(c, name, password_stdin).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn update_each(
    c: &Client,
    names: &[String],
    change: impl Fn() -> UpdateUser,
) -> anyhow::Result<()> {
    for name in names {
        let _: UserView = c
            .post(&format!("{}/update", user_path(name)), &change())
            .await?;
        println!("{name}");
    }
    Ok(())
}

async fn passwd(c: &Client, name: Option<String>, from_stdin: bool) -> anyhow::Result<()> {
    let me: WhoAmI = c.get("/api/v1/auth/whoami").await?;
    if name.is_none() && me.user.name.is_empty() {
        bail!("this credential belongs to no user: name the user whose password to set");
    }
    let name = name.unwrap_or_else(|| me.user.name.clone());
    let own = name == me.user.name;
    let req = match (own, from_stdin) {
        (true, true) => {
            let mut lines = prompt::stdin_lines(2, "the current and the new password")?;
            let password = lines.pop().unwrap_or_default();
            let old = lines.pop().unwrap_or_default();
            SetPassword {
                password,
                old_password: Some(old),
            }
        }
        (true, false) => {
            let old = prompt::password("Current password: ")?;
            let password = prompt::new_password("New password: ")?;
            SetPassword {
                password,
                old_password: Some(old),
            }
        }
        (false, true) => SetPassword {
            password: prompt::stdin_secret("the new password")?,
            old_password: None,
        },
        (false, false) => SetPassword {
            password: prompt::new_password(&format!("New password for {name}: "))?,
            old_password: None,
        },
    };
    c.post::<_, ()>(&format!("{}/password", user_path(&name)), &req)
        .await?;
    println!("Password changed for {name}.");
    Ok(())
}

fn row(u: &UserView) -> Vec<String> {
    let status = if u.disabled {
        "disabled".to_string()
    } else if u.locked_until.is_some_and(|t| t > api::Timestamp::now()) {
        "locked".to_string()
    } else {
        "active".to_string()
    };
    vec![
        u.name.clone(),
        u.full_name.clone(),
        output::yes_no(u.admin).into(),
        u.source.clone(),
        status,
        u.teams.join(", "),
    ]
}
