//! Docker's registry token authentication, self-contained: the scope
//! grammar ([`Scope`], [`ResourceScope`]), ES256 JWTs with libtrust key
//! ids ([`SigningKey`], [`Signer`], [`Verifier`]), the registry's side
//! ([`TokenAccess`], an [`crate::Access`]) and the token endpoint
//! ([`endpoint()`] over an [`Authority`] the controller implements).
//!
//! The flow: a request without a token is answered 401 with
//! `WWW-Authenticate: Bearer realm="<endpoint>",service="<service>",
//! scope="repository:eng/app:pull"`; the client asks the endpoint (Basic
//! credentials or none), which signs a token for exactly what the
//! authority grants of what was asked; the client retries with
//! `Authorization: Bearer <token>`, which the registry verifies alone —
//! the endpoint and the registry share only the issuer's public keys.

pub mod access;
pub mod endpoint;
pub mod jwt;
pub mod key;
pub mod scope;

pub use access::TokenAccess;
pub use endpoint::{
    endpoint, Authority, Credentials, Login, Principal, Refused, TokenService, DEFAULT_LIFETIME,
};
pub use jwt::{Claims, Issued, Signer, Verifier, VerifyError};
pub use key::{KeyError, PublicKey, SigningKey};
pub use scope::{ResourceScope, Scope, ScopeError};
