//! Integration tests of the `ca` crate: certificates, and gRPC over mutual
//! TLS on loopback with the `health` service. One binary, modules per topic.

// Helpers outside #[test] functions panic on purpose when a fixture fails.
#![allow(clippy::unwrap_used)]

mod bootstrap;
mod certs;
mod golden;
mod grpc;
mod rotation;
mod source_ip;
mod support;
