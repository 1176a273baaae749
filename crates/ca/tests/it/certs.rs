//! Issuing certificates: subjects written by the CA, identities read back,
//! stored roots, client certificates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::rpc::{PeerIdentity, PeerRole};
use ca::{
    client_identity_of, identity_of, CaError, NodeKey, RootCa, StoredRootCa,
    DEFAULT_CLIENT_CERT_VALIDITY, DEFAULT_NODE_CERT_VALIDITY, DEFAULT_ROOT_CA_VALIDITY,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ParsedCertificate;
use sha2::Digest;

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Whether the chain (leaf first) leads to one of `roots`, as rustls judges it.
fn chains_to(chain_pem: &str, roots: &[&str]) -> bool {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(der(r)).unwrap();
    }
    let leaf = ParsedCertificate::try_from(&chain[0]).unwrap();
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &leaf,
        &store,
        &chain[1..],
        UnixTime::now(),
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
    )
    .is_ok()
}

/// Whether a client certificate verifies against `root`, as a rustls server judges it.
fn chains_as_client(cert_pem: &str, root: &str) -> bool {
    let mut store = rustls::RootCertStore::empty();
    store.add(der(root)).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(store),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(&der(cert_pem), &[], UnixTime::now())
        .is_ok()
}

fn root() -> RootCa {
    RootCa::generate(
        "berth cluster root CA",
        DEFAULT_ROOT_CA_VALIDITY,
        SystemTime::now(),
    )
    .unwrap()
}

fn issue(root: &RootCa, csr: &str, node_id: &str, role: PeerRole) -> Result<String, CaError> {
    root.issue_node_certificate(
        csr,
        node_id,
        role,
        "cluster-1",
        DEFAULT_NODE_CERT_VALIDITY,
        SystemTime::now(),
    )
}

#[test]
fn a_node_certificate_carries_the_identity_the_ca_gave_it() {
    let root = root();
    for (node_id, role) in [("m1", PeerRole::Manager), ("w1", PeerRole::Worker)] {
        let key = NodeKey::generate().unwrap();
        let cert = issue(&root, &key.csr_pem().unwrap(), node_id, role).unwrap();
        assert_eq!(
            identity_of(der(&cert).as_ref()).unwrap(),
            PeerIdentity {
                node_id: node_id.into(),
                role,
                cluster_id: "cluster-1".into()
            }
        );
        assert!(chains_to(&cert, &[root.cert_pem()]));
        assert!(client_identity_of(der(&cert).as_ref()).is_err());
    }
}

#[test]
fn the_csr_subject_is_ignored() {
    // A worker asks to be a manager of another cluster; the CA writes what it decided.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "m-evil");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "manager");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "other-cluster");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();

    let root = root();
    let cert = issue(&root, &csr, "w1", PeerRole::Worker).unwrap();
    let id = identity_of(der(&cert).as_ref()).unwrap();
    assert_eq!(
        (id.node_id.as_str(), id.role, id.cluster_id.as_str()),
        ("w1", PeerRole::Worker, "cluster-1")
    );
    // ... and the key is the requester's.
    let cert_der = der(&cert);
    let parsed = x509_parser::parse_x509_certificate(cert_der.as_ref())
        .unwrap()
        .1;
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert!(!parsed.is_ca());
}

#[test]
fn bad_requests_are_request_errors() {
    let root = root();
    let csr = NodeKey::generate().unwrap().csr_pem().unwrap();
    let cases = [
        issue(&root, "garbage", "w1", PeerRole::Worker),
        issue(&root, &csr, "", PeerRole::Worker),
        issue(&root, &csr, &"x".repeat(65), PeerRole::Worker),
        root.issue_node_certificate(
            &csr,
            "w1",
            PeerRole::Worker,
            "",
            DEFAULT_NODE_CERT_VALIDITY,
            SystemTime::now(),
        ),
        root.issue_client_certificate(&csr, "", DEFAULT_CLIENT_CERT_VALIDITY, SystemTime::now()),
    ];
    for case in cases {
        let err = case.unwrap_err();
        assert!(err.is_request_error(), "{err}");
    }
}

#[test]
fn a_stored_root_reloads_and_keeps_signing_for_the_same_chain() {
    let original = root();
    let json = serde_json::to_string(&original.to_stored()).unwrap();
    let stored: StoredRootCa = serde_json::from_str(&json).unwrap();
    let reloaded = RootCa::from_stored(&stored).unwrap();
    assert_eq!(reloaded.digest(), original.digest());
    assert_eq!(reloaded.cert_pem(), original.cert_pem());

    let key = NodeKey::generate().unwrap();
    let cert = issue(&reloaded, &key.csr_pem().unwrap(), "w1", PeerRole::Worker).unwrap();
    assert!(chains_to(&cert, &[original.cert_pem()]));
}

#[test]
fn a_stored_root_with_a_foreign_key_is_refused() {
    let a = root().to_stored();
    let b = root().to_stored();
    let mixed = StoredRootCa {
        cert_pem: a.cert_pem,
        key_pem: b.key_pem,
    };
    let err = RootCa::from_stored(&mixed).unwrap_err();
    assert!(matches!(err, CaError::UnusableRoot(_)), "{err}");
}

#[test]
fn debug_output_never_shows_a_private_key() {
    let root = root();
    let stored = root.to_stored();
    for text in [format!("{root:?}"), format!("{stored:?}")] {
        assert!(!text.contains("PRIVATE"), "{text}");
        assert!(text.contains(&root.digest().to_string()), "{text}");
    }
}

#[test]
fn the_digest_is_the_sha256_of_the_root_der() {
    let root = root();
    let want: [u8; 32] = sha2::Sha256::digest(der(root.cert_pem()).as_ref()).into();
    assert_eq!(root.digest().0, want);
    assert_eq!(ca::digest_of_pem(root.cert_pem()).unwrap(), root.digest());
    assert_eq!(root.digest().to_string().len(), 64);
}

#[test]
fn a_client_certificate_names_a_user_and_authenticates_clients_only() {
    let client_root = RootCa::generate(
        "berth client root CA",
        DEFAULT_ROOT_CA_VALIDITY,
        SystemTime::now(),
    )
    .unwrap();
    let key = NodeKey::generate().unwrap();
    let cert = client_root
        .issue_client_certificate(
            &key.csr_pem().unwrap(),
            "alice",
            DEFAULT_CLIENT_CERT_VALIDITY,
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        client_identity_of(der(&cert).as_ref()).unwrap().user,
        "alice"
    );
    assert!(
        identity_of(der(&cert).as_ref()).is_err(),
        "a user is not a node"
    );
    // It authenticates a client, and cannot serve as a server (no serverAuth usage).
    assert!(chains_as_client(&cert, client_root.cert_pem()));
    assert!(!chains_to(&cert, &[client_root.cert_pem()]));
}

#[test]
fn a_certificate_never_outlives_its_root() {
    let now = SystemTime::now();
    let short_root = RootCa::generate("short", Duration::from_secs(3600), now).unwrap();
    let key = NodeKey::generate().unwrap();
    let cert = short_root
        .issue_node_certificate(
            &key.csr_pem().unwrap(),
            "w1",
            PeerRole::Worker,
            "c",
            DEFAULT_NODE_CERT_VALIDITY,
            now,
        )
        .unwrap();
    let cert_der = der(&cert);
    let parsed = x509_parser::parse_x509_certificate(cert_der.as_ref())
        .unwrap()
        .1;
    let root_parsed = x509_parser::parse_x509_certificate(short_root.cert_der().as_ref())
        .unwrap()
        .1;
    assert_eq!(
        parsed.validity().not_after,
        root_parsed.validity().not_after
    );
    let expected_end = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + 3600;
    assert!((parsed.validity().not_after.timestamp() - expected_end).abs() <= 1);
}

#[test]
fn an_api_certificate_serves_its_names_and_is_never_a_nodes() {
    let root = RootCa::generate(
        "berth cluster root CA",
        DEFAULT_ROOT_CA_VALIDITY,
        SystemTime::now(),
    )
    .unwrap();
    let key = NodeKey::generate().unwrap();
    let names = ["localhost".to_string(), "127.0.0.7".into(), "::1".into()];
    let pem = root
        .issue_api_certificate(
            &key.csr_pem().unwrap(),
            "n1",
            "c1",
            &names,
            DEFAULT_NODE_CERT_VALIDITY,
            SystemTime::now(),
        )
        .unwrap();
    assert!(chains_to(&pem, &[root.cert_pem()]));
    // A client checking the host name accepts every name given, nothing else.
    let mut store = rustls::RootCertStore::empty();
    store.add(der(root.cert_pem())).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(store),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    use rustls::client::danger::ServerCertVerifier;
    let verify = |name: &str| {
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(&der(&pem), &[], &name, &[], UnixTime::now())
            .is_ok()
    };
    for n in ["localhost", "127.0.0.7", "::1"] {
        assert!(verify(n), "{n}");
    }
    assert!(!verify("127.0.0.8"));
    assert!(!verify("example.com"));
    // Not a node's, nor a user's.
    assert!(identity_of(der(&pem).as_ref()).is_err());
    assert!(client_identity_of(der(&pem).as_ref()).is_err());
    // A name that is neither a DNS name nor an IP is refused.
    let bad = root.issue_api_certificate(
        &key.csr_pem().unwrap(),
        "n1",
        "c1",
        &["not a name!".to_string()],
        DEFAULT_NODE_CERT_VALIDITY,
        SystemTime::now(),
    );
    assert!(matches!(bad, Err(CaError::InvalidName { .. })), "{bad:?}");
}
