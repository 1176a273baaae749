//! The registry's integration tests: the spec's requirements, one test per
//! MUST (`spec`), the store across restarts and concurrent writers over a
//! real socket (`socket`), and real clients, skopeo and umoci (`clients`).

// In tests an unwrap is an assertion.
#![allow(clippy::unwrap_used)]

mod clients;
mod socket;
mod spec;
mod support;
mod token;
