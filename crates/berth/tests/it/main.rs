//! berth's end-to-end tests: one node started in process on port 0, and the
//! real binary run as a user runs it. One test binary for the crate.

mod api_errors;
mod binary;
mod conventions;
mod lifecycle;
mod support;
