//! `berth service create|ls|ps|inspect|scale|update|rollback|logs|rm`.

use super::flags;
use super::output::{self, Format};
use super::progress;
use crate::client::{status_of, Client};
use anyhow::{bail, Context};
use api::{
    FailureAction, RestartCondition, Service, ServiceMode, ServiceSpec, Task, TaskSpec, TaskState,
    UpdateConfig, UpdateOrder,
};
use clap::{Args, Subcommand, ValueEnum};
use controller::wire::{Created, ServiceWithStatus, UpdateService};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a service: `berth service create --name web --replicas 3 -- sleep 1000`.
    Create(CreateArgs),
    /// List services.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the tasks of a service, with their history.
    Ps {
        service: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Do not shorten ids and errors.
        #[arg(long)]
        no_trunc: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a service in full: JSON by default, a human summary with `--pretty`.
    Inspect {
        service: String,
        /// A human summary instead of JSON.
        #[arg(long, conflicts_with = "format")]
        pretty: bool,
        /// json, or table for the same summary as --pretty.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Set the replica count of one or more services: `berth service scale web=5 api=2`.
    Scale {
        #[arg(required = true, value_parser = parse_scale)]
        scales: Vec<(String, u64)>,
        /// Do not wait for the services to converge.
        #[arg(short, long)]
        detach: bool,
    },
    /// Change a service; changes to what tasks run roll out one batch at a time.
    Update(UpdateArgs),
    /// Go back to the spec before the last update.
    Rollback {
        service: String,
        #[arg(short, long)]
        detach: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the output of a service's tasks.
    Logs {
        service: String,
        /// Only the last N lines of each task.
        #[arg(long, short = 'n')]
        tail: Option<usize>,
        /// Only lines newer than this: a duration ("10m") or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        /// Show each line's time.
        #[arg(short, long)]
        timestamps: bool,
    },
    /// Remove services; their tasks are stopped.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Replicated,
    Global,
}

/// Flags that set parts of a spec, shared by `create` and `update`; unset flags
/// leave the part as it is (the default, for `create`).
#[derive(Args, Debug, Default)]
pub struct SpecFlags {
    /// Working directory of the task's process (absolute).
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Restart when a task ends: any, on-failure or none.
    #[arg(long, value_parser = parse_condition)]
    restart_condition: Option<RestartCondition>,
    #[arg(long, value_parser = flags::duration)]
    restart_delay: Option<Duration>,
    /// Restarts allowed within the window (0: unlimited).
    #[arg(long)]
    restart_max_attempts: Option<u64>,
    #[arg(long, value_parser = flags::duration)]
    restart_window: Option<Duration>,
    /// CPUs reserved for each task (e.g. 0.5).
    #[arg(long, value_parser = flags::nano_cpus)]
    reserve_cpu: Option<u64>,
    /// Memory reserved for each task (e.g. 64MiB).
    #[arg(long, value_parser = flags::bytes)]
    reserve_memory: Option<u64>,
    #[arg(long, value_parser = flags::nano_cpus)]
    limit_cpu: Option<u64>,
    #[arg(long, value_parser = flags::bytes)]
    limit_memory: Option<u64>,
    /// Time a task gets between SIGTERM and SIGKILL.
    #[arg(long, value_parser = flags::duration)]
    stop_grace_period: Option<Duration>,
    /// Tasks updated at once (0: all).
    #[arg(long)]
    update_parallelism: Option<u64>,
    #[arg(long, value_parser = flags::duration)]
    update_delay: Option<Duration>,
    /// pause, continue or rollback.
    #[arg(long, value_parser = parse_failure_action)]
    update_failure_action: Option<FailureAction>,
    #[arg(long, value_parser = flags::duration)]
    update_monitor: Option<Duration>,
    #[arg(long)]
    update_max_failure_ratio: Option<f64>,
    /// stop-first or start-first.
    #[arg(long, value_parser = parse_order)]
    update_order: Option<UpdateOrder>,
    #[arg(long)]
    rollback_parallelism: Option<u64>,
    #[arg(long, value_parser = flags::duration)]
    rollback_delay: Option<Duration>,
    #[arg(long, value_parser = parse_failure_action)]
    rollback_failure_action: Option<FailureAction>,
    #[arg(long, value_parser = flags::duration)]
    rollback_monitor: Option<Duration>,
    #[arg(long)]
    rollback_max_failure_ratio: Option<f64>,
    #[arg(long, value_parser = parse_order)]
    rollback_order: Option<UpdateOrder>,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Service name [default: made from the command].
    #[arg(long)]
    name: Option<String>,
    #[arg(long, value_enum, default_value = "replicated")]
    mode: Mode,
    /// Number of tasks (replicated mode).
    #[arg(long)]
    replicas: Option<u64>,
    /// Environment variable KEY=VALUE for the tasks (repeatable).
    #[arg(short, long = "env", value_parser = flags::key_value)]
    env: Vec<(String, String)>,
    /// Service label KEY=VALUE (repeatable).
    #[arg(short, long = "label", value_parser = flags::key_value)]
    label: Vec<(String, String)>,
    /// Placement constraint, e.g. node.role==manager (repeatable).
    #[arg(long)]
    constraint: Vec<String>,
    #[command(flatten)]
    spec: SpecFlags,
    /// Return at once instead of waiting for the tasks to run.
    #[arg(short, long)]
    detach: bool,
    /// Print only the service id.
    #[arg(short, long)]
    quiet: bool,
    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    service: String,
    #[arg(long)]
    replicas: Option<u64>,
    /// Add or replace an environment variable KEY=VALUE (repeatable).
    #[arg(long, value_parser = flags::key_value)]
    env_add: Vec<(String, String)>,
    /// Remove an environment variable by key (repeatable).
    #[arg(long)]
    env_rm: Vec<String>,
    #[arg(long, value_parser = flags::key_value)]
    label_add: Vec<(String, String)>,
    #[arg(long)]
    label_rm: Vec<String>,
    #[arg(long)]
    constraint_add: Vec<String>,
    #[arg(long)]
    constraint_rm: Vec<String>,
    /// Replace every task even if nothing else changed (a rolling redeploy).
    #[arg(long)]
    force: bool,
    /// Replace the command's arguments (split on whitespace, as docker's --args).
    #[arg(long, allow_hyphen_values = true)]
    args: Option<String>,
    #[command(flatten)]
    spec: SpecFlags,
    #[arg(short, long)]
    detach: bool,
    #[arg(short, long)]
    quiet: bool,
}

pub async fn run(cmd: ServiceCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceCommand::Create(a) => create(c, a).await,
        ServiceCommand::Ls { format, quiet } => {
            let services: Vec<ServiceWithStatus> = c.get("/api/v1/services").await?;
            if quiet {
                services
                    .iter()
                    .for_each(|s| println!("{}", s.service.meta.id));
            } else if format == Format::Json {
                println!("{}", output::json(&services)?);
            } else {
                let rows = services
                    .iter()
                    .map(|s| {
                        let (mode, _) = mode_of(&s.service.spec);
                        vec![
                            api::id::short(&s.service.meta.id).to_string(),
                            s.service.spec.name.clone(),
                            mode.to_string(),
                            format!(
                                "{}/{}",
                                s.service_status.running_tasks, s.service_status.desired_tasks
                            ),
                            truncate(&s.service.spec.task_template.argv().join(" "), 40),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    output::table(&["ID", "NAME", "MODE", "REPLICAS", "COMMAND"], rows)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Ps {
            service,
            format,
            no_trunc,
            quiet,
        } => ps(c, &service, format, no_trunc, quiet).await,
        ServiceCommand::Inspect {
            service,
            pretty,
            format,
        } => {
            let s: ServiceWithStatus = c
                .get(&format!("/api/v1/services/{}", enc(&service)))
                .await?;
            if pretty || format == Some(Format::Table) {
                print_pretty(&s);
            } else {
                println!("{}", output::json(&s)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Scale { scales, detach } => {
            for (name, replicas) in &scales {
                let (id, before) = modify(c, name, |spec| {
                    if let ServiceMode::Global = spec.mode {
                        bail!("{name}: scale can only be used with replicated mode");
                    }
                    spec.mode = ServiceMode::Replicated {
                        replicas: *replicas,
                    };
                    Ok(())
                })
                .await?;
                println!("{name} scaled to {replicas}");
                if !detach {
                    progress::wait_converged(
                        c,
                        &id,
                        progress::Expect {
                            before,
                            rollback: false,
                        },
                        false,
                    )
                    .await?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Update(a) => update(c, a).await,
        ServiceCommand::Rollback {
            service,
            detach,
            quiet,
        } => {
            let s: ServiceWithStatus = c
                .get(&format!("/api/v1/services/{}", enc(&service)))
                .await?;
            let done: Created = c
                .post(
                    &format!("/api/v1/services/{}/rollback", s.service.meta.id),
                    &controller::wire::Rollback {
                        version: s.service.meta.version,
                    },
                )
                .await?;
            println!("{}", s.service.spec.name);
            if !quiet {
                eprintln!("rollback: manually requested rollback");
            }
            if !detach {
                let expect = progress::Expect {
                    before: s.service.update_status.clone(),
                    rollback: true,
                };
                progress::wait_converged(c, &done.id, expect, quiet).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Logs {
            service,
            tail,
            since,
            follow,
            timestamps,
        } => logs(c, &service, tail, since, follow, timestamps).await,
        ServiceCommand::Rm { services } => {
            let mut failed = false;
            for s in services {
                match c.delete(&format!("/api/v1/services/{}", enc(&s))).await {
                    Ok(()) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {s}: {e:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn create(c: &Client, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let mut task = TaskSpec::exec(a.command.clone());
    task.env = a.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    task.placement.constraints = a.constraint.clone();
    let mode = match (a.mode, a.replicas) {
        (Mode::Global, Some(_)) => bail!("--replicas can only be used with replicated mode"),
        (Mode::Global, None) => ServiceMode::Global,
        (Mode::Replicated, r) => ServiceMode::Replicated {
            replicas: r.unwrap_or(1),
        },
    };
    let name = a.name.clone().unwrap_or_else(|| default_name(&a.command));
    let mut spec = ServiceSpec {
        name,
        labels: a.label.into_iter().collect(),
        mode,
        task_template: task,
        update_config: UpdateConfig::default(),
        rollback_config: UpdateConfig::default(),
    };
    apply_flags(&mut spec, &a.spec);
    let created: Created = c.post("/api/v1/services", &spec).await?;
    println!("{}", created.id);
    if !a.detach {
        progress::wait_converged(
            c,
            &created.id,
            progress::Expect {
                before: None,
                rollback: false,
            },
            a.quiet,
        )
        .await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn update(c: &Client, a: UpdateArgs) -> anyhow::Result<ExitCode> {
    let (id, before) = modify(c, &a.service, |spec| {
        if let Some(r) = a.replicas {
            match spec.mode {
                ServiceMode::Global => bail!("--replicas can only be used with replicated mode"),
                ServiceMode::Replicated { .. } => {
                    spec.mode = ServiceMode::Replicated { replicas: r }
                }
            }
        }
        let t = &mut spec.task_template;
        for (k, v) in &a.env_add {
            t.env
                .retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
            t.env.push(format!("{k}={v}"));
        }
        for k in &a.env_rm {
            t.env
                .retain(|e| e.split_once('=').map(|(ek, _)| ek).unwrap_or(e) != k);
        }
        for c in &a.constraint_rm {
            t.placement.constraints.retain(|x| x != c);
        }
        for c in &a.constraint_add {
            if !t.placement.constraints.contains(c) {
                t.placement.constraints.push(c.clone());
            }
        }
        if a.force {
            t.force_update += 1;
        }
        if let Some(args) = &a.args {
            t.args = args.split_whitespace().map(String::from).collect();
        }
        for (k, v) in &a.label_add {
            spec.labels.insert(k.clone(), v.clone());
        }
        for k in &a.label_rm {
            spec.labels.remove(k);
        }
        apply_flags(spec, &a.spec);
        Ok(())
    })
    .await?;
    println!("{}", a.service);
    if !a.detach {
        progress::wait_converged(
            c,
            &id,
            progress::Expect {
                before,
                rollback: false,
            },
            a.quiet,
        )
        .await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a service, changes its spec, and writes it back against the version
/// read; retried when someone else changed it in between (409). Returns the
/// service id and its update status before the change.
async fn modify(
    c: &Client,
    key: &str,
    mut change: impl FnMut(&mut ServiceSpec) -> anyhow::Result<()>,
) -> anyhow::Result<(String, Option<api::UpdateStatus>)> {
    for attempt in 0..5 {
        let s: ServiceWithStatus = c.get(&format!("/api/v1/services/{}", enc(key))).await?;
        let mut spec = s.service.spec.clone();
        change(&mut spec)?;
        let req = UpdateService {
            version: s.service.meta.version,
            spec,
        };
        match c
            .post::<_, Created>(
                &format!("/api/v1/services/{}/update", s.service.meta.id),
                &req,
            )
            .await
        {
            Ok(done) => return Ok((done.id, s.service.update_status)),
            Err(e) if status_of(&e) == Some(409) && attempt < 4 => continue,
            Err(e) => return Err(e),
        }
    }
    bail!("service {key} keeps changing under this update; try again")
}

fn apply_flags(spec: &mut ServiceSpec, f: &SpecFlags) {
    let t = &mut spec.task_template;
    if let Some(w) = &f.workdir {
        t.dir = Some(w.clone());
    }
    set(&mut t.restart_policy.condition, f.restart_condition);
    set(&mut t.restart_policy.delay, f.restart_delay);
    set(&mut t.restart_policy.max_attempts, f.restart_max_attempts);
    set(&mut t.restart_policy.window, f.restart_window);
    set(&mut t.resources.reservations.nano_cpus, f.reserve_cpu);
    set(&mut t.resources.reservations.memory_bytes, f.reserve_memory);
    set(&mut t.resources.limits.nano_cpus, f.limit_cpu);
    set(&mut t.resources.limits.memory_bytes, f.limit_memory);
    set(&mut t.stop_grace_period, f.stop_grace_period);
    let u = &mut spec.update_config;
    set(&mut u.parallelism, f.update_parallelism);
    set(&mut u.delay, f.update_delay);
    set(&mut u.failure_action, f.update_failure_action);
    set(&mut u.monitor, f.update_monitor);
    set(&mut u.max_failure_ratio, f.update_max_failure_ratio);
    set(&mut u.order, f.update_order);
    let r = &mut spec.rollback_config;
    set(&mut r.parallelism, f.rollback_parallelism);
    set(&mut r.delay, f.rollback_delay);
    set(&mut r.failure_action, f.rollback_failure_action);
    set(&mut r.monitor, f.rollback_monitor);
    set(&mut r.max_failure_ratio, f.rollback_max_failure_ratio);
    set(&mut r.order, f.rollback_order);
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

async fn ps(
    c: &Client,
    service: &str,
    format: Format,
    no_trunc: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let s: ServiceWithStatus = c.get(&format!("/api/v1/services/{}", enc(service))).await?;
    let mut tasks: Vec<Task> = c
        .get(&format!("/api/v1/tasks?service={}", s.service.meta.id))
        .await?;
    let nodes: Vec<api::Node> = c.get("/api/v1/nodes").await?;
    let hostnames: BTreeMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.meta.id.as_str(), n.description.hostname.as_str()))
        .collect();
    // Newest task of each slot first, its history below it, as `docker service ps`.
    tasks.sort_by(|a, b| {
        (a.slot, a.node_id.as_deref())
            .cmp(&(b.slot, b.node_id.as_deref()))
            .then(b.meta.created_at.cmp(&a.meta.created_at))
    });
    if quiet {
        tasks.iter().for_each(|t| println!("{}", t.meta.id));
        return Ok(ExitCode::SUCCESS);
    }
    if format == Format::Json {
        println!("{}", output::json(&tasks)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    let mut prev_slot = None;
    for t in &tasks {
        let key = (t.slot, if t.slot == 0 { t.node_id.clone() } else { None });
        let name = t.display_name(&s.service.spec.name);
        let name = if prev_slot.as_ref() == Some(&key) {
            format!(" \\_ {name}")
        } else {
            name
        };
        prev_slot = Some(key);
        let node = t
            .node_id
            .as_deref()
            .map(|n| hostnames.get(n).copied().unwrap_or(n))
            .unwrap_or("");
        let err = t.status.err.clone().unwrap_or_default();
        rows.push(vec![
            if no_trunc {
                t.meta.id.clone()
            } else {
                api::id::short(&t.meta.id).to_string()
            },
            name,
            node.to_string(),
            title(t.desired_state.as_str()),
            format!(
                "{} {}",
                title(t.status.state.as_str()),
                output::ago(t.status.timestamp)
            ),
            if no_trunc { err } else { truncate(&err, 60) },
        ]);
    }
    println!(
        "{}",
        output::table(
            &[
                "ID",
                "NAME",
                "NODE",
                "DESIRED STATE",
                "CURRENT STATE",
                "ERROR"
            ],
            rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn print_line(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

async fn logs(
    c: &Client,
    service: &str,
    tail: Option<usize>,
    since: Option<String>,
    follow: bool,
    timestamps: bool,
) -> anyhow::Result<ExitCode> {
    let s: ServiceWithStatus = c.get(&format!("/api/v1/services/{}", enc(service))).await?;
    let id = s.service.meta.id.clone();
    let mut since = match since {
        None => None,
        Some(v) => Some(match api::duration::parse(&v) {
            Ok(d) => api::Timestamp(
                api::Timestamp::now()
                    .as_millis()
                    .saturating_sub(d.as_millis() as u64),
            ),
            Err(_) => {
                serde_json::from_value(serde_json::Value::String(v.clone())).with_context(|| {
                    format!("--since {v:?}: neither a duration (10m) nor an RFC 3339 time")
                })?
            }
        }),
    };
    let mut tail = tail;
    // Lines at exactly the last time seen, so a follow-up poll does not print them twice.
    let mut seen_at_last: Vec<(String, String)> = Vec::new();
    loop {
        let mut q = vec![];
        if let Some(n) = tail {
            q.push(format!("tail={n}"));
        }
        if let Some(t) = since {
            // One millisecond earlier, so lines in the same millisecond are not lost.
            q.push(format!(
                "since={}",
                api::Timestamp(t.as_millis().saturating_sub(1))
            ));
        }
        let lines: Vec<api::dispatch::LogLine> = c
            .get(&format!(
                "/api/v1/services/{id}/logs?{}",
                q.join("&").replace(':', "%3A")
            ))
            .await?;
        let tasks: Vec<Task> = c.get(&format!("/api/v1/tasks?service={id}")).await?;
        let names: BTreeMap<&str, String> = tasks
            .iter()
            .map(|t| (t.meta.id.as_str(), t.display_name(&s.service.spec.name)))
            .collect();
        let mut newest = since;
        let mut at_newest: Vec<(String, String)> = Vec::new();
        for l in &lines {
            if since.is_some_and(|t| l.time < t)
                || (since == Some(l.time)
                    && seen_at_last.contains(&(l.task_id.clone(), l.line.clone())))
            {
                continue;
            }
            let name = names
                .get(l.task_id.as_str())
                .cloned()
                .unwrap_or_else(|| api::id::short(&l.task_id).to_string());
            let text = if timestamps {
                format!(
                    "{} {name}.{} | {}",
                    l.time,
                    api::id::short(&l.task_id),
                    l.line
                )
            } else {
                format!("{name}.{} | {}", api::id::short(&l.task_id), l.line)
            };
            // A reader that went away (`| head`) ends the command quietly.
            if let Err(e) = print_line(&text) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(e).context("writing the logs to stdout");
            }
            if Some(l.time) != newest {
                newest = Some(l.time);
                at_newest.clear();
            }
            at_newest.push((l.task_id.clone(), l.line.clone()));
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if newest != since {
            seen_at_last = at_newest;
        } else {
            seen_at_last.extend(at_newest);
        }
        since = newest.or(Some(api::Timestamp::now()));
        tail = None;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_pretty(s: &ServiceWithStatus) {
    let svc: &Service = &s.service;
    let spec = &svc.spec;
    let t = &spec.task_template;
    let (mode, replicas) = mode_of(spec);
    println!("ID:             {}", svc.meta.id);
    println!("Name:           {}", spec.name);
    println!(
        "Mode:           {mode}{}",
        replicas
            .map(|r| format!(" ({r} replicas)"))
            .unwrap_or_default()
    );
    println!(
        "Running:        {}/{}",
        s.service_status.running_tasks, s.service_status.desired_tasks
    );
    if let Some(u) = &svc.update_status {
        println!("Update status:  {:?} {}", u.state, u.message);
    }
    println!("Command:        {}", t.argv().join(" "));
    if !t.env.is_empty() {
        println!("Env:            {}", t.env.join(" "));
    }
    if !spec.labels.is_empty() {
        let l: Vec<String> = spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("Labels:         {}", l.join(" "));
    }
    let rp = &t.restart_policy;
    println!(
        "Restart policy: {:?}, delay {}, max attempts {}, window {}",
        rp.condition,
        humantime::format_duration(rp.delay),
        rp.max_attempts,
        humantime::format_duration(rp.window)
    );
    let u = &spec.update_config;
    println!(
        "Update config:  parallelism {}, delay {}, on failure {:?}, monitor {}, order {:?}",
        u.parallelism,
        humantime::format_duration(u.delay),
        u.failure_action,
        humantime::format_duration(u.monitor),
        u.order
    );
    println!("Created:        {}", svc.meta.created_at);
    println!("Updated:        {}", svc.meta.updated_at);
}

fn mode_of(spec: &ServiceSpec) -> (&'static str, Option<u64>) {
    match spec.mode {
        ServiceMode::Replicated { replicas } => ("replicated", Some(replicas)),
        ServiceMode::Global => ("global", None),
    }
}

fn default_name(command: &[String]) -> String {
    let base = command
        .first()
        .map(|c| c.rsplit('/').next().unwrap_or(c))
        .unwrap_or("service")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>();
    let base = base.trim_start_matches(['-', '_']);
    let base = if base.is_empty() { "service" } else { base };
    format!("{}-{}", &base[..base.len().min(40)], &api::new_id()[..6])
}

fn parse_scale(s: &str) -> Result<(String, u64), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not SERVICE=REPLICAS"))?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a number of replicas"))?;
    Ok((name.to_string(), n))
}

fn parse_condition(s: &str) -> Result<RestartCondition, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("{s:?}: use any, on-failure or none"))
}

fn parse_failure_action(s: &str) -> Result<FailureAction, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("{s:?}: use pause, continue or rollback"))
}

fn parse_order(s: &str) -> Result<UpdateOrder, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("{s:?}: use stop-first or start-first"))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Escapes a user-given name for a URL path segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Tasks that should be running and are, for the service's current spec.
pub(crate) fn is_current(t: &Task, spec_version: u64) -> bool {
    t.desired_state == TaskState::Running && t.spec_version == spec_version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid() {
        for cmd in [
            vec!["sleep".to_string(), "10".into()],
            vec!["/usr/bin/python3".into()],
            vec!["./a b".into()],
        ] {
            let n = default_name(&cmd);
            api::validate::service_name(&n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn scale_arguments_parse() {
        assert_eq!(parse_scale("web=3").unwrap(), ("web".into(), 3));
        assert!(parse_scale("web").is_err());
        assert!(parse_scale("web=x").is_err());
    }
}
