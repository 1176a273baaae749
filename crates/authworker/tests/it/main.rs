//! The auth worker against a real OpenLDAP slapd (started by the tests, on
//! 127.0.0.1) and a real single-node store: logins, syncs, just-in-time
//! provisioning, the periodic loop and its errors.

// In tests an unwrap is an assertion.
#![allow(clippy::unwrap_used)]

mod login;
mod slapd;
mod store_sync;
