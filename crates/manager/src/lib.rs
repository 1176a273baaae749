//! The manager's leader-only components, as Swarm has them: the orchestrator
//! (with the restart supervisor), the scheduler, the rolling updater and the
//! task reaper. Each is a pure function from a state snapshot and the time to a
//! [`plan::Plan`] of store ops; a runtime loop runs them over the store.

pub mod orchestrator;
pub mod plan;
pub mod reaper;
pub mod restart;
pub mod scheduler;
pub mod updater;

pub mod dispatcher;
pub mod gossip_keys;
pub mod liveness;
pub mod roles;
pub mod rpc;
pub mod runtime;

pub use dispatcher::{DispatcherConfig, LocalDispatcher};
pub use liveness::{GossipState, GossipView};
pub use runtime::{Manager, ManagerConfig, ManagerStats};
