//! The command line, docker-like: `berth up`, `berth node …`, `berth service …`,
//! and access control as UCP's (`berth login`, `berth user …`, `berth grant …`).

mod audit;
mod auth;
mod bundle;
mod ca;
mod cluster;
mod collection;
mod flags;
mod grant;
mod local_cluster;
mod login;
mod node;
mod org;
mod output;
mod progress;
mod prompt;
mod role;
mod service;
mod settings;
mod team;
mod token;
mod up;
mod user;

use crate::client::Client;
use crate::credentials::{BundleDir, Credentials};
use anyhow::bail;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

const ENVIRONMENT: &str = "\
Environment:
  BERTH_HOST            a manager's API (host:port), as --host
  BERTH_TOKEN           a bearer token (an API token from `berth token create`), as --token
  BERTH_CERT_PATH       the directory of an unzipped client bundle (its env.sh sets it):
                        its certificate is presented, and no credentials file is read
  BERTH_CA_FINGERPRINT  the cluster root CA to trust (sha256:…, from `berth ca fingerprint`)
                        where no credentials file says which: with BERTH_HOST and BERTH_TOKEN
                        the CLI needs nothing else
  BERTH_CONFIG_DIR      where the credentials file is
                        [default: $XDG_CONFIG_HOME/berth, else ~/.config/berth]";

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "A container platform in one binary: Swarm's cluster, UCP's control plane, DTR's registry.",
    after_help = ENVIRONMENT
)]
pub struct Cli {
    /// API address of a manager (host:port); the one in the saved credentials by default.
    #[arg(long, global = true, env = "BERTH_HOST")]
    pub host: Option<String>,
    /// API token; the one in the saved credentials by default.
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log filter of a node (e.g. info, debug, store=debug). openraft's own
    /// log is off by default: it repeats every failed RPC to a lost manager, and
    /// the store reports what matters (lost quorum, leader changes) itself.
    #[arg(
        long,
        global = true,
        env = "BERTH_LOG",
        default_value = "info,openraft=off"
    )]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum Command {
    /// Start a single-node cluster (manager and worker) and serve the API until
    /// Ctrl-C; with --managers/--workers, a whole cluster of processes on 127.0.0.x.
    Up(up::UpArgs),
    /// Create a cluster with this node as its first manager, and run it until Ctrl-C.
    Init(cluster::InitArgs),
    /// Join a cluster as a worker or a manager (the token says which), and run until Ctrl-C.
    Join(cluster::JoinArgs),
    /// Make the node on this machine leave the cluster (a manager only with --force).
    Leave(cluster::LeaveArgs),
    /// Show (or rotate) the command that adds a worker or a manager.
    JoinToken(cluster::JoinTokenArgs),
    /// Show or change the cluster's settings (certificate expiry, heartbeat).
    #[command(subcommand)]
    Cluster(settings::ClusterCommand),
    /// Show the cluster root CA's certificate or its fingerprint, or rotate it (--rotate).
    Ca(ca::CaArgs),
    /// Log in to a cluster: a session for this CLI (the first contact pins
    /// the cluster's root CA by its fingerprint).
    Login(login::LoginArgs),
    /// End the session of this CLI's credentials.
    Logout,
    /// Show who the CLI acts as, and with which credential.
    Whoami(login::WhoamiArgs),
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage organizations.
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// Manage teams of organizations.
    #[command(subcommand)]
    Team(team::TeamCommand),
    /// Manage collections, the tree resources live in.
    #[command(subcommand)]
    Collection(collection::CollectionCommand),
    /// Manage roles, the sets of operations grants give.
    #[command(subcommand)]
    Role(role::RoleCommand),
    /// Manage grants: who may do what where.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// Manage your API tokens, for scripts and CI.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Manage your client bundles (a certificate for the CLI and docker).
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Read the audit log of API calls.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Access control's settings and LDAP (admins).
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Manage nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Manage services.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Show the CLI's version and, when reachable, the manager's.
    Version,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (host, token) = (&cli.host, &cli.token);
    match cli.command {
        Command::Up(args) => up::run(args, &cli.log).await,
        Command::Init(args) => cluster::init(args, &cli.log).await,
        Command::Join(args) => cluster::join(args, &cli.log).await,
        Command::Leave(args) => cluster::leave(args).await,
        Command::JoinToken(args) => cluster::join_token(args, &client(host, token).await?).await,
        Command::Cluster(cmd) => settings::run(cmd, &client(host, token).await?).await,
        Command::Ca(ca::CaArgs {
            command: Some(ca::CaCommand::Fingerprint),
            ..
        }) => ca::print_fingerprint(host.as_deref()).await,
        Command::Ca(args) => ca::run(args, &client(host, token).await?).await,
        Command::Node(cmd) => node::run(cmd, &client(host, token).await?).await,
        Command::Service(cmd) => service::run(cmd, &client(host, token).await?).await,
        Command::Login(args) => login::login(args, host.clone()).await,
        Command::Logout => login::logout().await,
        Command::Whoami(args) => login::whoami(args, &client(host, token).await?).await,
        Command::User(cmd) => user::run(cmd, &client(host, token).await?).await,
        Command::Org(cmd) => org::run(cmd, &client(host, token).await?).await,
        Command::Team(cmd) => team::run(cmd, &client(host, token).await?).await,
        Command::Collection(cmd) => collection::run(cmd, &client(host, token).await?).await,
        Command::Role(cmd) => role::run(cmd, &client(host, token).await?).await,
        Command::Grant(cmd) => grant::run(cmd, &client(host, token).await?).await,
        Command::Token(cmd) => token::run(cmd, &client(host, token).await?).await,
        Command::Bundle(cmd) => bundle::run(cmd, &client(host, token).await?).await,
        Command::Audit(cmd) => audit::run(cmd, &client(host, token).await?).await,
        Command::Auth(cmd) => auth::run(cmd, &client(host, token).await?).await,
        Command::Version => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            if let Ok(c) = client(host, token).await {
                match c.get::<controller::wire::Info>("/api/v1/info").await {
                    Ok(info) => println!(
                        "manager {} at {} (cluster {})",
                        info.version,
                        c.base(),
                        info.cluster_name
                    ),
                    Err(e) => println!("manager: not reachable ({e:#})"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The client of the credential in use, in this order: a client bundle
/// (`BERTH_CERT_PATH`, with `--host`/`BERTH_HOST`); the saved credentials,
/// with `--host`/`--token` taking precedence; or, with no credentials file,
/// `--host` and `--token` alone, trusting the CA that `BERTH_CA_FINGERPRINT`
/// pins. A fingerprint that the saved CA does not match pins another one.
async fn client(host: &Option<String>, token: &Option<String>) -> anyhow::Result<Client> {
    if let Some(dir) = crate::paths::bundle_dir() {
        let Some(h) = host else {
            bail!(
                "BERTH_CERT_PATH is set ({}) but BERTH_HOST is not: source the bundle's env.sh, \
                 or give --host",
                dir.display()
            );
        };
        return Client::with_bundle(h, &BundleDir::load(&dir)?);
    }
    let path = crate::paths::credentials_file();
    let pinned = crate::paths::ca_fingerprint();
    let mut creds = match Credentials::load(&path) {
        Ok(c) => c,
        Err(e) if path.exists() => return Err(e),
        Err(_) => match (host, &pinned) {
            (Some(h), Some(_)) => Credentials {
                host: h.clone(),
                managers: Vec::new(),
                token: String::new(),
                ca_pem: String::new(),
            },
            _ => bail!(
                "not logged in: there are no credentials in {} — run `berth login --host \
                 HOST:PORT` (or `berth up` to found a cluster here); with an API token and no \
                 login, set BERTH_HOST, BERTH_TOKEN and BERTH_CA_FINGERPRINT; with a client \
                 bundle, source its env.sh",
                path.display()
            ),
        },
    };
    if let Some(h) = host {
        if &creds.host != h {
            creds.managers.retain(|m| m != h);
            creds.host = h.clone();
        }
    }
    if let Some(fp) = &pinned {
        if !creds.trusts_fingerprint(fp) {
            creds.ca_pem = login::first_contact(&creds.host, Some(fp), false).await?;
            creds.managers.clear();
        }
    }
    if let Some(t) = token {
        creds.token = t.clone();
    }
    Client::new(&creds)
}

/// Prints a line, ignoring a closed output: Ctrl-C in a terminal also ends a
/// `| tee` reading our output, and the node must still stop its tasks then
/// (println! would panic on the broken pipe and skip the clean stop).
pub(crate) fn say_out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

pub(crate) fn say_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
