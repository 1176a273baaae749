//! Passwords: argon2id hashes (PHC strings), checked off the async runtime
//! and a few at a time, so a burst of logins cannot starve the API.
//!
//! The cost is OWASP's first recommendation for argon2id (19 MiB, two
//! passes, one lane): tens of milliseconds per check on one core, which
//! is what bounds logins per second (`benches/logins.rs`).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// The shortest password a local user may set.
pub const MIN_LENGTH: usize = 8;
/// Longer ones are refused rather than hashed (hashing cost grows with it).
pub const MAX_LENGTH: usize = 1024;

fn argon2() -> Argon2<'static> {
    #[allow(clippy::expect_used)]
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Whether a new password is acceptable; the reason when not (never
/// repeating the password).
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(format!("a password needs at least {MIN_LENGTH} characters"));
    }
    if password.len() > MAX_LENGTH {
        return Err(format!("a password may have at most {MAX_LENGTH} bytes"));
    }
    Ok(())
}

/// The PHC string of `password` under a fresh salt.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing a password: {e}"))
}

/// Whether `password` matches `phc`. A malformed hash matches nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LENGTH {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing anyone knows: checked when the user does not exist or
/// has no password, so that such a login costs what a wrong password costs
/// and its timing does not tell which names exist.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = hex::encode(rand::random::<[u8; 16]>());
        hash(&secret).unwrap_or_default()
    })
}

/// Runs password work on the blocking pool, at most `permits` at once.
#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(permits: usize) -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    /// Checks `password` against `phc`, or against the decoy when there is
    /// no hash to check (the answer is then always false).
    pub async fn verify(&self, password: String, phc: Option<String>) -> bool {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => verify(&password, &phc),
            None => {
                let _ = verify(&password, decoy());
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    pub async fn hash(&self, password: String) -> Result<String, String> {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Err("shutting down".into());
        };
        tokio::task::spawn_blocking(move || hash(&password))
            .await
            .map_err(|e| format!("hashing a password: {e}"))?
    }
}

impl Default for Hasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher::new(cores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse").unwrap_or_default();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("", &h));
        assert!(!verify("correct horse", "not a phc string"));
        // Two hashes of one password differ (fresh salts).
        assert_ne!(h, hash("correct horse").unwrap_or_default());
    }

    #[test]
    fn the_policy_names_the_rule_not_the_password() {
        let e = check_policy("short1").unwrap_err();
        assert!(e.contains("at least 8"), "{e}");
        assert!(!e.contains("short1"));
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(MAX_LENGTH + 1)).is_err());
    }

    #[tokio::test]
    async fn the_decoy_never_matches() {
        let h = Hasher::new(1);
        assert!(!h.verify("anything".into(), None).await);
        let real = h.hash("a password".into()).await.unwrap_or_default();
        assert!(h.verify("a password".into(), Some(real)).await);
    }
}
