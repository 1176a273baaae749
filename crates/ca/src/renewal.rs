//! When a node renews its certificate. As in Swarm, a node asks for a new
//! certificate once it is past a point between 50% and 80% of the current
//! one's validity; the point is drawn from the certificate itself (a hash of
//! it), so the answer is deterministic for a given certificate and time, yet
//! nodes issued at the same moment do not all come back at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::root::{cert_from_pem, CLOCK_SKEW_ALLOWANCE};
use crate::subject::parse_cert;
use crate::CaError;

const DAY: u64 = 24 * 60 * 60;

/// How long a node certificate is valid unless the cluster says otherwise (Swarm's 90 days).
pub const DEFAULT_NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * DAY);
/// How long a user's client certificate (client bundle) is valid by default.
pub const DEFAULT_CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// How long a root CA is valid (Swarm's 20 years).
pub const DEFAULT_ROOT_CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * DAY);

/// The renewal point, in thousandths of the validity period: 500..=800.
fn renewal_permille(cert_der: &[u8]) -> u64 {
    let hash = Sha256::digest(cert_der);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    500 + u64::from_be_bytes(first) % 301
}

/// The moment after which the certificate (the first in `cert_pem`) should be
/// renewed.
pub fn renewal_time(cert_pem: &str) -> Result<SystemTime, CaError> {
    let der = cert_from_pem(cert_pem)?;
    let cert = parse_cert(der.as_ref())?;
    let not_before = u64::try_from(cert.validity().not_before.timestamp()).unwrap_or(0);
    let not_after = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    // The CA backdates a certificate by the skew allowance; the fraction is
    // of the validity asked for, counted from issuance, or a short-lived
    // certificate would be due the moment it is issued.
    let skew = CLOCK_SKEW_ALLOWANCE.as_secs();
    let issued = if not_after.saturating_sub(not_before) > skew {
        not_before + skew
    } else {
        not_before
    };
    let lifetime = not_after.saturating_sub(issued);
    // Millisecond-free arithmetic in u128 so a 20-year lifetime cannot overflow.
    let offset = (u128::from(lifetime) * u128::from(renewal_permille(der.as_ref())) / 1000) as u64;
    Ok(UNIX_EPOCH + Duration::from_secs(issued + offset))
}

/// When the certificate (the first in `cert_pem`) stops being valid.
pub fn not_after(cert_pem: &str) -> Result<SystemTime, CaError> {
    let der = cert_from_pem(cert_pem)?;
    let cert = parse_cert(der.as_ref())?;
    let after = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Ok(UNIX_EPOCH + Duration::from_secs(after))
}

/// True when the certificate should be renewed at `now`. A certificate that
/// cannot be read also needs renewing: it is no use to the node as it is.
pub fn needs_renewal(cert_pem: &str, now: SystemTime) -> bool {
    match renewal_time(cert_pem) {
        Ok(at) => now >= at,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeKey, RootCa};
    use api::rpc::PeerRole;

    fn issued(at: SystemTime, validity: Duration) -> String {
        let root = RootCa::generate("test root", DEFAULT_ROOT_CA_VALIDITY, at).unwrap();
        let key = NodeKey::generate().unwrap();
        root.issue_node_certificate(
            &key.csr_pem().unwrap(),
            "node1",
            PeerRole::Worker,
            "cluster1",
            validity,
            at,
        )
        .unwrap()
    }

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_validity() {
        let issued_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for _ in 0..8 {
            let pem = issued(issued_at, DEFAULT_NODE_CERT_VALIDITY);
            let at = renewal_time(&pem).unwrap();
            // Counted from issuance (the validity starts a clock-skew
            // allowance earlier), over the validity asked for.
            let start = issued_at;
            let lifetime = DEFAULT_NODE_CERT_VALIDITY;
            let elapsed = at.duration_since(start).unwrap();
            assert!(elapsed >= lifetime / 2, "{elapsed:?}");
            assert!(elapsed <= lifetime * 4 / 5, "{elapsed:?}");
            assert!(!needs_renewal(&pem, issued_at));
            assert!(!needs_renewal(
                &pem,
                start + lifetime / 2 - Duration::from_secs(1)
            ));
            assert!(needs_renewal(&pem, at));
            assert!(needs_renewal(&pem, start + lifetime * 4 / 5));
            // Deterministic: the same certificate always gives the same point.
            assert_eq!(renewal_time(&pem).unwrap(), at);
        }
    }

    #[test]
    fn a_short_lived_certificate_is_not_due_when_issued() {
        // Shorter than the skew allowance it is backdated by: still due
        // between half and four fifths of the 20 s asked for.
        let issued_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for _ in 0..8 {
            let pem = issued(issued_at, Duration::from_secs(20));
            let elapsed = renewal_time(&pem)
                .unwrap()
                .duration_since(issued_at)
                .unwrap();
            assert!(elapsed >= Duration::from_secs(10), "{elapsed:?}");
            assert!(elapsed <= Duration::from_secs(16), "{elapsed:?}");
            assert!(!needs_renewal(&pem, issued_at));
        }
    }

    #[test]
    fn an_unreadable_certificate_needs_renewal() {
        assert!(needs_renewal("garbage", SystemTime::now()));
    }
}
