//! berth's end-to-end tests: one node started in process on port 0, and the
//! real binary run as a user runs it. One test binary for the crate.

// In tests an unwrap is an assertion.
#![allow(clippy::unwrap_used)]

mod access;
mod api_errors;
mod binary;
mod certs;
mod cluster;
mod conventions;
mod identity;
mod leave;
mod lifecycle;
mod multiproc;
mod nodes;
mod partition;
mod registry;
mod roles;
mod support;
