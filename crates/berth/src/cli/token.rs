//! `berth token create|ls|rm`: named API tokens for scripts and CI, made by
//! a logged-in user and acting as that user (`BERTH_TOKEN=… berth …`). The
//! secret is shown once, when it is made; the cluster keeps only its hash.

use super::output::{self, Format};
use crate::client::{encode, query, Client};
use clap::Subcommand;
use controller::wire::{CreateToken, NewToken, TokenView};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make an API token of yours; its secret is printed this once.
    Create {
        /// A name of yours for it (to list and remove it by).
        #[arg(long)]
        name: String,
        /// How long it lives, e.g. 30d or 12h [default: until removed].
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List your API tokens (never their secrets).
    #[command(alias = "list")]
    Ls {
        /// Another user's (admins only).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove API tokens by name: they are refused from then on.
    #[command(alias = "remove", alias = "revoke")]
    Rm {
        /// Another user's (admins only).
        #[arg(long)]
        user: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(cmd: TokenCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            name,
            expires,
            quiet,
        } => {
            let req = CreateToken {
                name,
                expires_in: expires,
            };
            let t: NewToken = c.post("/api/v1/tokens", &req).await?;
            if !quiet {
                let until = match t.expires_at {
                    Some(at) => format!("expires {at}"),
                    None => "never expires".into(),
                };
                eprintln!(
                    "API token {} of {} ({until}); it is shown this once — keep it now:",
                    t.name, t.user.name
                );
            }
            println!("{}", t.token);
        }
        TokenCommand::Ls {
            user,
            format,
            quiet,
        } => {
            let mut tokens: Vec<TokenView> = c
                .get(&format!("/api/v1/tokens{}", query(&[("user", user)])))
                .await?;
            tokens.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                tokens.iter().for_each(|t| println!("{}", t.name));
            } else if format == Format::Json {
                println!("{}", output::json(&tokens)?);
            } else {
                let rows = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.user.clone(),
                            output::ago(t.created_at),
                            output::time_or(t.expires_at, "never"),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["NAME", "USER", "CREATED", "EXPIRES"], rows)
                );
            }
        }
        TokenCommand::Rm { user, names } => {
            for name in names {
                c.delete(&format!(
                    "/api/v1/tokens/{}{}",
                    encode(&name),
                    query(&[("user", user.clone())])
                ))
                .await?;
                println!("{name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
