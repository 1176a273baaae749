//! The sealing of gossip datagrams: every packet foca produces is encrypted and
//! authenticated with ChaCha20-Poly1305 before it leaves the node, and every
//! packet that arrives is opened before foca sees it.
//!
//! Wire layout of a sealed datagram:
//!
//! ```text
//! key id (1 byte) | nonce (12 bytes, random) | ciphertext | tag (16 bytes)
//! ```
//!
//! The key id lets a [`Keyring`] hold several keys while the cluster rotates:
//! a node seals with its primary key and opens with whichever key the id
//! names. The nonce is random per packet because gossip has no session in
//! which a counter could live; 96 random bits keep a collision unlikely for
//! far more packets than a key is used for (rotate long before 2^32 packets).

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::GossipError;

/// Length of a gossip key's secret, in bytes.
pub const KEY_LEN: usize = 32;

const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Bytes a sealed datagram adds to foca's plaintext.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Bound into every tag so that a key reused by mistake for another protocol
/// cannot have its packets accepted as gossip (or the other way round).
const AAD_DOMAIN: &[u8] = b"berth-gossip/1";

/// One symmetric key of the gossip network, named by a one-byte id.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey {
    id: u8,
    secret: [u8; KEY_LEN],
}

impl GossipKey {
    /// A key from its id and its 32 secret bytes.
    pub fn new(id: u8, secret: [u8; KEY_LEN]) -> Self {
        Self { id, secret }
    }

    /// A fresh random key with the given id (what a manager does when it
    /// creates or rotates the cluster's gossip key).
    pub fn generate(id: u8) -> Result<Self, GossipError> {
        let mut secret = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| GossipError::Random)?;
        Ok(Self { id, secret })
    }

    /// The key's id, carried in clear in every datagram it seals.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The secret bytes, for the manager that stores and distributes the key.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }
}

// Secrets are never logged: only the id is shown.
impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The keys a node accepts: it sends with `primary` and accepts packets sealed
/// with `primary` or any of `others`.
///
/// Rotation without a split: add the new key to `others` everywhere, then make
/// it the primary node by node (every node already accepts it), then drop the
/// old key once every node sends with the new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    pub primary: GossipKey,
    pub others: Vec<GossipKey>,
}

impl Keyring {
    /// A ring with a single key.
    pub fn single(primary: GossipKey) -> Self {
        Self {
            primary,
            others: Vec::new(),
        }
    }
}

/// A keyring prepared for use: ring's key schedules, built once per
/// `set_keys` instead of once per packet.
pub(crate) struct Cipher {
    primary: u8,
    // Few keys (two during a rotation), so a list beats a map.
    keys: Vec<(u8, LessSafeKey)>,
    rng: SystemRandom,
}

impl Cipher {
    /// Checks the ring and prepares its keys. Two different secrets under
    /// one id are refused: a receiver could not know which one to use.
    pub(crate) fn new(ring: &Keyring) -> Result<Self, GossipError> {
        let mut keys: Vec<(u8, LessSafeKey, [u8; KEY_LEN])> = Vec::new();
        for key in std::iter::once(&ring.primary).chain(&ring.others) {
            if let Some((_, _, secret)) = keys.iter().find(|(id, _, _)| *id == key.id) {
                if *secret != key.secret {
                    return Err(GossipError::Keyring(format!(
                        "key id {} names two different keys",
                        key.id
                    )));
                }
                continue;
            }
            let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key.secret)
                .map_err(|_| GossipError::Keyring(format!("key {} is unusable", key.id)))?;
            keys.push((key.id, LessSafeKey::new(unbound), key.secret));
        }
        Ok(Self {
            primary: ring.primary.id,
            keys: keys.into_iter().map(|(id, key, _)| (id, key)).collect(),
            rng: SystemRandom::new(),
        })
    }

    fn key(&self, id: u8) -> Option<&LessSafeKey> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, key)| key)
    }

    /// Seals `plaintext` with the primary key into `out` (which is cleared).
    pub(crate) fn seal(&self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        let key = self.key(self.primary).ok_or(SealError::UnknownKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        out.clear();
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        out.push(self.primary);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                aad(self.primary),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| SealError::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a sealed datagram in place and returns its plaintext, a slice of
    /// `packet`. Any failure means the packet is not from a holder of a key
    /// in the ring (or was damaged): the caller drops it.
    pub(crate) fn open<'a>(&self, packet: &'a mut [u8]) -> Result<&'a [u8], SealError> {
        if packet.len() < SEAL_OVERHEAD {
            return Err(SealError::Short);
        }
        let key_id = packet[0];
        let key = self.key(key_id).ok_or(SealError::UnknownKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&packet[1..HEADER_LEN]);
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                aad(key_id),
                &mut packet[HEADER_LEN..],
            )
            .map_err(|_| SealError::Crypto)?;
        Ok(plain)
    }
}

fn aad(key_id: u8) -> Aad<[u8; AAD_DOMAIN.len() + 1]> {
    let mut aad = [0u8; AAD_DOMAIN.len() + 1];
    aad[..AAD_DOMAIN.len()].copy_from_slice(AAD_DOMAIN);
    aad[AAD_DOMAIN.len()] = key_id;
    Aad::from(aad)
}

/// Why a datagram could not be sealed or opened. Deliberately coarse: a
/// receiver must not learn (or log) more than "this did not authenticate".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SealError {
    #[error("datagram shorter than the seal")]
    Short,
    #[error("key id not in the keyring")]
    UnknownKey,
    #[error("authentication failed")]
    Crypto,
    #[error("no randomness for a nonce")]
    Random,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8, fill: u8) -> GossipKey {
        GossipKey::new(id, [fill; KEY_LEN])
    }

    fn cipher(primary: GossipKey, others: Vec<GossipKey>) -> Cipher {
        Cipher::new(&Keyring { primary, others }).expect("valid ring")
    }

    #[test]
    fn round_trip() {
        let c = cipher(key(1, 7), vec![]);
        let mut sealed = Vec::new();
        c.seal(b"ping from a", &mut sealed).expect("seal");
        assert_eq!(sealed.len(), b"ping from a".len() + SEAL_OVERHEAD);
        assert_eq!(sealed[0], 1, "the key id leads the datagram");
        assert_eq!(c.open(&mut sealed).expect("open"), b"ping from a");
    }

    #[test]
    fn nonces_differ_per_packet() {
        let c = cipher(key(1, 7), vec![]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.seal(b"same", &mut a).expect("seal");
        c.seal(b"same", &mut b).expect("seal");
        assert_ne!(a, b, "a fresh random nonce per packet");
    }

    #[test]
    fn every_tampered_byte_is_rejected() {
        let c = cipher(key(1, 7), vec![key(2, 9)]);
        let mut sealed = Vec::new();
        c.seal(b"membership update", &mut sealed).expect("seal");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(c.open(&mut bad).is_err(), "flipped byte {i} accepted");
        }
    }

    #[test]
    fn wrong_or_unknown_key_is_rejected() {
        let a = cipher(key(1, 7), vec![]);
        let mut sealed = Vec::new();
        a.seal(b"hello", &mut sealed).expect("seal");

        // Same id, different secret: fails authentication.
        let impostor = cipher(key(1, 8), vec![]);
        assert_eq!(impostor.open(&mut sealed.clone()), Err(SealError::Crypto));
        // An id the ring does not hold.
        let other = cipher(key(3, 7), vec![]);
        assert_eq!(other.open(&mut sealed.clone()), Err(SealError::UnknownKey));
        // The right secret under a rewritten id: the id is authenticated too.
        let mut relabelled = sealed.clone();
        relabelled[0] = 3;
        assert_eq!(other.open(&mut relabelled), Err(SealError::Crypto));
        // Too short to carry a seal at all.
        assert_eq!(a.open(&mut [1u8; 10]), Err(SealError::Short));
    }

    #[test]
    fn any_key_in_the_ring_opens() {
        let old = cipher(key(1, 7), vec![]);
        let rotating = cipher(key(2, 9), vec![key(1, 7)]);
        let mut sealed = Vec::new();
        old.seal(b"from a node still on the old key", &mut sealed)
            .expect("seal");
        assert!(rotating.open(&mut sealed).is_ok());
        rotating.seal(b"new primary", &mut sealed).expect("seal");
        assert_eq!(sealed[0], 2);
        assert_eq!(old.open(&mut sealed), Err(SealError::UnknownKey));
    }

    #[test]
    fn a_ring_cannot_name_two_secrets_with_one_id() {
        let ring = Keyring {
            primary: key(1, 7),
            others: vec![key(1, 8)],
        };
        assert!(matches!(Cipher::new(&ring), Err(GossipError::Keyring(_))));
        // Repeating the same key is harmless.
        let ring = Keyring {
            primary: key(1, 7),
            others: vec![key(1, 7)],
        };
        assert!(Cipher::new(&ring).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", Keyring::single(key(4, 0xab)));
        assert!(shown.contains("id: 4"));
        assert!(!shown.contains("171"), "{shown}");
    }
}
