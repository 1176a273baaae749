//! Access control over the auth store's objects (`api::auth`), as UCP's:
//! a grant gives a subject (user, team, organization) a role (a set of
//! [`Operation`]s) on a collection and everything below it.
//!
//! Pure: [`Authorizer::new`] indexes a state once, and answers
//! [`Authorizer::allows`] without I/O; [`AuthorizerCache`] keeps one per
//! `State::auth_index`, so it is rebuilt only when an auth object changed.

mod authorizer;
pub mod collection;
pub mod ops;
pub mod scope;

pub use authorizer::{Authorizer, AuthorizerCache};
pub use ops::{builtin_role, OpSet, Operation, BUILTIN_ROLES};
