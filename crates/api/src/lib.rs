//! berth's object model, shared by every other crate.
//!
//! The types here are Swarm's: a [`Node`] runs [`Task`]s, a [`Service`] says how
//! many tasks of which [`TaskSpec`] should run. They are plain data: no I/O, no
//! clock reads. [`State`] is the whole cluster state as the store holds it, and
//! [`State::apply`] is the deterministic state machine every manager runs over
//! the Raft log. [`dispatch`] holds the messages between the dispatcher and agents.

pub mod auth;
pub mod dispatch;
pub mod duration;
pub mod id;
pub mod object;
pub mod registry;
pub mod rpc;
pub mod spec;
pub mod state;
pub mod time;
pub mod validate;

pub use id::new_id;
pub use object::*;
pub use spec::*;
pub use state::{ApplyError, Batch, Change, Event, Op, State};
pub use time::Timestamp;
