//! `berth bundle create|ls|rm`: client bundles (UCP's), a zip of a client
//! certificate and key, the cluster root CA and an `env.sh` that points a
//! shell at the cluster (`BERTH_HOST`, `BERTH_CERT_PATH`). The certificate
//! acts as its user until the bundle is removed or expires.

use super::output::{self, Format};
use crate::client::{encode, query, Client};
use anyhow::{bail, Context};
use clap::Subcommand;
use controller::wire::{BundleView, CreateBundle};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Make a client bundle of yours and write its zip (it holds a private
    /// key: the file is readable by you only).
    Create {
        /// A name of yours for it, unique among your bundles (to list and remove it by).
        #[arg(long)]
        label: Option<String>,
        /// Where to write the zip; an existing file is not overwritten.
        #[arg(short, long, value_name = "FILE.zip")]
        output: PathBuf,
        /// Only what `docker context import NAME FILE.zip` accepts (no env.sh).
        #[arg(long)]
        docker_context: bool,
    },
    /// List your client bundles (an admin sees everyone's).
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print labels.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove client bundles by label: their certificates are refused from then on.
    #[command(alias = "remove", alias = "revoke")]
    Rm {
        /// Another user's (admins only).
        #[arg(long)]
        user: Option<String>,
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

pub async fn run(cmd: BundleCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        BundleCommand::Create {
            label,
            output,
            docker_context,
        } => {
            // Refused before the bundle is made, not after.
            if output.exists() {
                bail!("{} exists already: name another file", output.display());
            }
            let zip = c
                .post_for_bytes(
                    "/api/v1/bundles",
                    &CreateBundle {
                        label,
                        format: docker_context.then(|| "docker-context".to_string()),
                    },
                )
                .await?;
            if !zip.starts_with(b"PK") {
                bail!("the API's answer is not a zip (version mismatch?)");
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&output)
                .with_context(|| format!("creating {}", output.display()))?;
            f.write_all(&zip)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", output.display()))?;
            println!("{}", output.display());
            if docker_context {
                eprintln!(
                    "Import it with `docker context import NAME {}`.",
                    output.display()
                );
            } else {
                eprintln!(
                    "Unzip it into a directory of its own and `source env.sh` there: the berth \
                     CLI then uses its certificate."
                );
            }
        }
        BundleCommand::Ls { format, quiet } => {
            let raw: Vec<serde_json::Value> = c.get("/api/v1/bundles").await?;
            if format == Format::Json && !quiet {
                println!("{}", output::json(&raw)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut bundles: Vec<BundleView> = raw
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .context("the API's answer is not what this CLI expects (version mismatch?)")?;
            bundles.sort_by(|a, b| (&a.user, &a.label).cmp(&(&b.user, &b.label)));
            if quiet {
                bundles.iter().for_each(|b| println!("{}", b.label));
            } else {
                let rows = bundles
                    .iter()
                    .map(|b| {
                        vec![
                            b.label.clone(),
                            b.user.clone(),
                            output::ago(b.created_at),
                            output::time_or(Some(b.expires_at), ""),
                            b.id.clone(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["LABEL", "USER", "CREATED", "EXPIRES", "ID"], rows)
                );
            }
        }
        BundleCommand::Rm { user, labels } => {
            for label in labels {
                c.delete(&format!(
                    "/api/v1/bundles/{}{}",
                    encode(&label),
                    query(&[("user", user.clone())])
                ))
                .await?;
                println!("{label}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
