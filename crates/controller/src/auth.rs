//! Authentication of API calls. Until users and grants exist (the access-control
//! issue), one admin token, created by `berth up`, is the only credential; the
//! controller keeps only its SHA-256.

use crate::{error::ApiError, AppState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Middleware: refuses a request without the admin bearer token.
pub async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(&token_hash(token), &state.admin_token_sha256) => {
            Ok(next.run(req).await)
        }
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares_hashes() {
        let a = super::token_hash("secret");
        assert!(super::constant_time_eq(&a, &super::token_hash("secret")));
        assert!(!super::constant_time_eq(&a, &super::token_hash("secreT")));
    }
}
