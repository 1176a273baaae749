//! Golden data that must keep loading: a root CA as the store keeps it (made
//! by this crate on 2026-01-01, a test fixture, not a real cluster's key) and
//! a join token. Never edit these files; add a new version beside them.

use std::time::SystemTime;

use api::rpc::PeerRole;
use ca::{JoinToken, RootCa, StoredRootCa, TrustBundle};

const ROOT_V1: &str = include_str!("golden/root_ca_v1.json");
const ROOT_V1_DIGEST: &str = "8fc32ecd47194878695c34792fefeb247ff61fbf1568c3d07ebc91b3bb2ae194";
const TOKEN_V1: &str =
    "BERTH-1-3kzq7vw8thngwi5y3586bziamwj27zucasjbdbtv6f6crshvh0-7427eamkknrkebciz01afw7u7";

#[test]
fn a_stored_v1_root_still_loads_and_signs_chains_that_verify() {
    let stored: StoredRootCa = serde_json::from_str(ROOT_V1).unwrap();
    let root = RootCa::from_stored(&stored).unwrap();
    assert_eq!(root.digest().to_string(), ROOT_V1_DIGEST);
    // Signing with the reloaded root depends on rebuilding its subject byte
    // for byte; a change in how rcgen writes names would break it here.
    let node = crate::support::issue(&root, "w1", PeerRole::Worker, "c1", "");
    assert_eq!(node.peer().node_id, "w1");
    let trust = TrustBundle::from_pem(&stored.cert_pem).unwrap();
    assert_eq!(trust.digests(), vec![root.digest()]);
    assert!(!node.needs_renewal(SystemTime::now()));
}

#[test]
fn a_v1_join_token_still_parses_and_pins_its_root() {
    let token: JoinToken = TOKEN_V1.parse().unwrap();
    assert_eq!(token.to_string(), TOKEN_V1);
    assert_eq!(token.ca_digest().to_string(), ROOT_V1_DIGEST);
    let stored: StoredRootCa = serde_json::from_str(ROOT_V1).unwrap();
    assert!(token.verifies_ca(&stored.cert_pem));
}
