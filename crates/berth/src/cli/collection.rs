//! `berth collection create|ls|rm`: the tree resources live in (UCP's
//! collections, `/Shared/web`); grants on a collection hold below it too.

use super::output::{self, Format};
use crate::client::{encode, Client};
use clap::Subcommand;
use controller::wire::{CollectionView, CreateCollection};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum CollectionCommand {
    /// Create a collection; its parent must exist (`/Shared/web` needs `/Shared`).
    Create {
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// List the collections you may see.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print paths.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove empty collections (no collection, service or node in them),
    /// with their grants.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
}

/// A path as the API stores it starts with `/`; `Shared/web` means `/Shared/web`.
fn absolute(path: &str) -> String {
    let p = path.trim();
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// `/api/v1/collections/Shared/web`, each segment encoded.
fn collection_path(path: &str) -> String {
    let segments: Vec<String> = absolute(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .map(encode)
        .collect();
    format!("/api/v1/collections/{}", segments.join("/"))
}

pub async fn run(cmd: CollectionCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        CollectionCommand::Create { path } => {
            let req = CreateCollection {
                path: absolute(&path),
            };
            let made: CollectionView = c.post("/api/v1/collections", &req).await?;
            println!("{}", made.path);
        }
        CollectionCommand::Ls { format, quiet } => {
            let mut all: Vec<CollectionView> = c.get("/api/v1/collections").await?;
            all.sort_by(|a, b| a.path.cmp(&b.path));
            if quiet {
                all.iter().for_each(|x| println!("{}", x.path));
            } else if format == Format::Json {
                println!("{}", output::json(&all)?);
            } else {
                let rows = all
                    .iter()
                    .map(|x| {
                        vec![
                            x.path.clone(),
                            output::yes_no(x.builtin).into(),
                            x.id.clone(),
                        ]
                    })
                    .collect();
                println!("{}", output::table(&["PATH", "BUILT-IN", "ID"], rows));
            }
        }
        CollectionCommand::Rm { paths } => {
            for path in paths {
                c.delete(&collection_path(&path)).await?;
                println!("{}", absolute(&path));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
