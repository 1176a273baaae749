//! `berth login|logout|whoami`: a session with a cluster, as `docker login`
//! makes one with UCP. The first contact with a cluster pins its root CA by
//! fingerprint (given, or confirmed at the terminal); every call after it
//! verifies the managers against that CA. The password is read from stdin
//! or asked without echo, and neither it nor the session token is printed.

use super::output::{self, Format};
use super::prompt;
use crate::client::{fetch_ca_unverified, status_of, Client};
use crate::credentials::{fingerprint, same_fingerprint, Credentials};
use anyhow::{bail, Context};
use clap::Args;
use controller::wire::{Login, NewToken, WhoAmI};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The user to log in as [default: asked at the terminal].
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from stdin (its first line) instead of asking for it.
    #[arg(long)]
    pub password_stdin: bool,
    /// Trust the cluster only if its root CA has this fingerprint
    /// (sha256:…, from the admin's `berth ca fingerprint`); needed on the
    /// first contact with a cluster when stdin is not a terminal to ask.
    #[arg(long, env = "BERTH_CA_FINGERPRINT", value_name = "sha256:HEX")]
    pub ca_fingerprint: Option<String>,
}

#[derive(Args, Debug)]
pub struct WhoamiArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `host:port` as the user may have written it (with a scheme, a slash).
fn bare_host(host: &str) -> String {
    let h = host.trim();
    let h = h.strip_prefix("https://").unwrap_or(h);
    h.trim_end_matches('/').to_string()
}

pub async fn login(args: LoginArgs, host: Option<String>) -> anyhow::Result<ExitCode> {
    let path = crate::paths::credentials_file();
    let existing = Credentials::load(&path).ok();
    let host = match host.or_else(|| existing.as_ref().map(|c| c.host.clone())) {
        Some(h) => bare_host(&h),
        None => bail!("which cluster? give --host HOST:PORT of a manager's API"),
    };
    let pinned = args.ca_fingerprint.as_deref();
    // The CA already trusted for this host, unless the fingerprint given
    // names another (the cluster was rebuilt, or the file is stale).
    let known = existing
        .as_ref()
        .filter(|c| c.knows_host(&host))
        .filter(|c| pinned.is_none_or(|fp| c.trusts_fingerprint(fp)))
        .map(|c| c.ca_pem.clone());
    let ca_pem = match known {
        Some(pem) => pem,
        None => first_contact(&host, pinned, !args.password_stdin).await?,
    };
    let username = match args.username {
        Some(u) => u,
        None if args.password_stdin => bail!("give --username with --password-stdin"),
        None => prompt::ask("Username: ")?,
    };
    let username = username.trim().to_string();
    if username.is_empty() {
        bail!("give a user name");
    }
    let password = if args.password_stdin {
        prompt::stdin_secret("the password")?
    } else {
        prompt::password("Password: ")?
    };
    let unauthenticated = Credentials {
        host: host.clone(),
        managers: Vec::new(),
        token: String::new(),
        ca_pem: ca_pem.clone(),
    };
    let client = Client::new(&unauthenticated)?;
    let session: NewToken = client
        .post("/api/v1/auth/login", &Login { username, password })
        .await?;
    let until = session
        .expires_at
        .map(|t| format!(" until {t} (renewed while in use)"))
        .unwrap_or_default();
    let name = session.user.name.clone();
    let creds = Credentials::logged_in(existing, &host, &ca_pem, session.token);
    creds.save(&path)?;
    println!("Login Succeeded");
    eprintln!(
        "logged in to {host} as {name}{until}; credentials saved in {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Learns the root CA of a cluster not known here: fetched without
/// verifying the server, then trusted only if its fingerprint is the one
/// given, or the user at the terminal says so after seeing it.
pub async fn first_contact(
    host: &str,
    pinned: Option<&str>,
    may_ask: bool,
) -> anyhow::Result<String> {
    let pem = fetch_ca_unverified(host).await?;
    let fp = fingerprint(&pem).with_context(|| format!("the CA {host} serves"))?;
    match pinned {
        Some(want) if same_fingerprint(want, &fp) => Ok(pem),
        Some(want) => bail!(
            "refusing to trust {host}: its root CA's fingerprint is {fp}, not {} as given with \
             --ca-fingerprint (check the address, and the fingerprint with the cluster's admin)",
            want.trim()
        ),
        None if may_ask && prompt::interactive() => {
            eprintln!("The cluster at {host} is not known here. Its root CA's fingerprint is:");
            eprintln!("    {fp}");
            eprintln!(
                "Compare it with the one the cluster's admin sees with `berth ca fingerprint`."
            );
            if prompt::confirm("Trust this cluster?")? {
                Ok(pem)
            } else {
                bail!("not trusted: nothing was sent to {host}")
            }
        }
        None => bail!(
            "the cluster at {host} is not known here, and stdin is not a terminal to ask whether \
             to trust it: pass --ca-fingerprint sha256:… (or set BERTH_CA_FINGERPRINT) with the \
             fingerprint the cluster's admin gets from `berth ca fingerprint`"
        ),
    }
}

/// Ends the session of the credentials file on the server and forgets its
/// token here (the file goes on saying which cluster to trust).
pub async fn logout() -> anyhow::Result<ExitCode> {
    let path = crate::paths::credentials_file();
    let Ok(mut creds) = Credentials::load(&path) else {
        println!("Not logged in.");
        return Ok(ExitCode::SUCCESS);
    };
    if creds.token.is_empty() {
        println!("Not logged in to {}.", creds.host);
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(&creds)?;
    match client
        .post::<_, ()>("/api/v1/auth/logout", &serde_json::json!({}))
        .await
    {
        Ok(()) => {}
        // Ended already (expired, revoked): nothing left but the file.
        Err(e) if status_of(&e) == Some(401) => {}
        // Not a session (the admin token, an API token): kept, as the
        // server says.
        Err(e) if status_of(&e) == Some(400) => return Err(e),
        Err(e) => eprintln!(
            "warning: the session could not be ended on the server ({e:#}); it is forgotten \
             here and expires by itself"
        ),
    }
    creds.token.clear();
    creds.save(&path)?;
    println!("Removed the login credentials for {}.", creds.host);
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(args: WhoamiArgs, c: &Client) -> anyhow::Result<ExitCode> {
    let me: WhoAmI = c.get("/api/v1/auth/whoami").await?;
    if args.format == Format::Json {
        println!("{}", output::json(&me)?);
        return Ok(ExitCode::SUCCESS);
    }
    let u = &me.user;
    let mut lines = vec![("User", u.name.clone())];
    if !u.full_name.is_empty() {
        lines.push(("Full name", u.full_name.clone()));
    }
    lines.push(("Admin", output::yes_no(u.admin).into()));
    lines.push(("Source", u.source.clone()));
    if !u.teams.is_empty() {
        lines.push(("Teams", u.teams.join(", ")));
    }
    lines.push(("Credential", me.credential.replace('_', " ")));
    lines.push(("Manager", c.base().trim_start_matches("https://").into()));
    print!("{}", output::fields(&lines));
    Ok(ExitCode::SUCCESS)
}
