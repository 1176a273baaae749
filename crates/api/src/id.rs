//! Object identifiers: 25 lower-case base-36 characters (about 128 bits), as Swarm's.
//!
//! IDs are chosen by the proposer of a change, never inside `apply`, so that the
//! state machine stays deterministic.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
pub const ID_LEN: usize = 25;

/// A new random identifier.
pub fn new_id() -> String {
    let mut rng = rand::thread_rng();
    (0..ID_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The short form shown in tables (12 characters, as the docker CLI).
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct_and_well_formed() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), super::ID_LEN);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_eq!(super::short(&a).len(), 12);
    }
}
