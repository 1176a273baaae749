//! berth's auth worker (UCP's ucp-auth-worker): it keeps the auth store in
//! step with an LDAP directory and cleans up after sessions.
//!
//! - [`directory`] talks to the directory (ldap3 over rustls): connect and
//!   bind as the reader, search the users, read a group's members, and
//!   check a user's password by binding as the user ([`authenticate`]).
//! - [`sync`] is the pure part: from the state and what the directory holds
//!   it plans the store's changes ([`sync::plan`]) and a report of them.
//! - [`worker`] runs it on the leader every `sync_interval`, deletes
//!   expired tokens every minute, and answers on-demand syncs
//!   ([`WorkerHandle::sync_now`]).
//! - [`provision`] creates an LDAP user at its first login (just in time).
//!
//! The controller's login is `authenticate` then `provision`; passwords are
//! never kept, logged or put in an error.

pub mod directory;
pub mod provision;
pub mod sync;
pub mod worker;

pub use directory::{authenticate, Directory, DirectoryError, DirectoryUser};
pub use provision::{provision, ProvisionError};
pub use sync::{plan, Found, Skipped, SyncPlan, SyncReport, SyncSummary, TeamChange};
pub use worker::{
    expired_tokens, SyncError, SyncOutcome, SyncRun, SyncStatus, SyncTrigger, Worker, WorkerConfig,
    WorkerHandle,
};
