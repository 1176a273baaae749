//! Integration tests of the manager over a real store: the control loop and the
//! in-process dispatcher, driven by a fake agent that reports what a real one
//! would, without running processes; and the dispatcher's gRPC service, driven
//! by the agent's client and a real agent.

mod dispatcher;
mod gossip_keys;
mod lifecycle;
mod liveness;
mod rpc;
mod support;
