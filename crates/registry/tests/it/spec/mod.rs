//! The distribution spec's requirements (spec.md of
//! opencontainers/distribution-spec), one test per MUST, each named after
//! the requirement and quoting it; grouped as the spec groups them.

mod api;
mod discovery;
mod management;
mod pull;
mod push;
