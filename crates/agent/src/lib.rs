//! berth's worker side (UCP's ucp-agent and ucp-reconcile): the session with the
//! dispatcher, the reconciliation of assigned tasks with what the runtime runs,
//! and the runtime drivers. It depends on `api` only, never on manager code, so
//! a worker runs without it.

pub mod driver;

pub use driver::exec::{shim_main, ExecDriver, ShimCommand};
pub use driver::{Driver, DriverError, TaskConfig, TaskExit, TaskInfo, TaskRunState};
pub mod agent;
pub mod gossip;
pub mod reconcile;
pub mod remote;
pub mod supervisor;

pub use agent::{Agent, AgentConfig, AgentError};
