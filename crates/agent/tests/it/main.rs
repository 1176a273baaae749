//! The agent crate's integration tests: the driver conformance suite against
//! the exec driver (with real shims), and the agent against an in-memory
//! dispatcher, in process and over gRPC.

mod agent_tests;
mod exec_conformance;
mod fake;
mod remote;

use agent::{ExecDriver, ShimCommand};
use std::path::Path;
use std::sync::Arc;

/// An exec driver over `root` whose shims are this crate's test shim binary.
pub fn exec_driver(root: &Path) -> Arc<dyn agent::Driver> {
    Arc::new(
        ExecDriver::new(
            root.to_path_buf(),
            ShimCommand {
                program: env!("CARGO_BIN_EXE_berth-agent-shim").into(),
                args: vec![],
            },
        )
        .expect("exec driver"),
    )
}
