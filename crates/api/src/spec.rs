//! What users ask for: service and task specs, with Swarm's defaults.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The desired state of a service, as `berth service create` writes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub mode: ServiceMode,
    pub task_template: TaskSpec,
    #[serde(default)]
    pub update_config: UpdateConfig,
    #[serde(default)]
    pub rollback_config: UpdateConfig,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

impl Default for ServiceMode {
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

/// Which runtime driver runs a task. Only `exec` (supervised processes) exists
/// so far; the Docker Engine and OCI drivers implement the same `Driver` trait.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    #[default]
    Exec,
}

/// What one task runs. Copied into every task, so a task carries everything an
/// agent needs, and the updater compares it with the service's to find stale tasks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default)]
    pub runtime: Runtime,
    /// The program and its leading arguments (argv[0..]).
    pub command: Vec<String>,
    /// Further arguments appended to `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to the task's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory; the agent's task directory when unset.
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub resources: ResourceRequirements,
    #[serde(default)]
    pub placement: Placement,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default = "default_stop_grace", with = "crate::duration")]
    pub stop_grace_period: Duration,
    /// Raised by `service update --force`: a changed template makes every task
    /// stale, so the tasks are replaced even when nothing else changed.
    #[serde(default)]
    pub force_update: u64,
}

fn default_stop_grace() -> Duration {
    Duration::from_secs(10)
}

impl TaskSpec {
    /// A spec that runs `argv` with every other field at its default.
    pub fn exec<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> TaskSpec {
        TaskSpec {
            runtime: Runtime::Exec,
            command: argv.into_iter().map(Into::into).collect(),
            args: vec![],
            env: vec![],
            dir: None,
            restart_policy: RestartPolicy::default(),
            resources: ResourceRequirements::default(),
            placement: Placement::default(),
            stop_grace_period: default_stop_grace(),
            force_update: 0,
        }
    }

    /// The full argv: command followed by args.
    pub fn argv(&self) -> Vec<String> {
        self.command
            .iter()
            .chain(self.args.iter())
            .cloned()
            .collect()
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    #[default]
    Any,
    OnFailure,
    None,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default)]
    pub condition: RestartCondition,
    /// Wait between a task's end and its replacement's start.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default = "default_restart_delay", with = "crate::duration")]
    pub delay: Duration,
    /// Restarts allowed within `window` (0: unlimited).
    #[serde(default)]
    pub max_attempts: u64,
    /// The window `max_attempts` counts in (0: since the slot began).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default, with = "crate::duration")]
    pub window: Duration,
}

fn default_restart_delay() -> Duration {
    Duration::from_secs(5)
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay: default_restart_delay(),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU in billionths of a core (1 CPU = 1_000_000_000).
    #[serde(default)]
    pub nano_cpus: u64,
    #[serde(default)]
    pub memory_bytes: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequirements {
    #[serde(default)]
    pub reservations: Resources,
    #[serde(default)]
    pub limits: Resources,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Swarm's constraint expressions: `node.id==…`, `node.hostname!=…`,
    /// `node.role==manager`, `node.labels.KEY==VALUE`.
    #[serde(default)]
    pub constraints: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// How a rolling update (or rollback) replaces tasks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Tasks replaced at once (0: all at once).
    #[serde(default = "one")]
    pub parallelism: u64,
    /// Wait between batches.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default, with = "crate::duration")]
    pub delay: Duration,
    #[serde(default)]
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure after it starts.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default = "default_monitor", with = "crate::duration")]
    pub monitor: Duration,
    /// Fraction of updated tasks allowed to fail before `failure_action`.
    #[serde(default)]
    pub max_failure_ratio: f64,
    #[serde(default)]
    pub order: UpdateOrder,
}

fn one() -> u64 {
    1
}

fn default_monitor() -> Duration {
    Duration::from_secs(5)
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: default_monitor(),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}
