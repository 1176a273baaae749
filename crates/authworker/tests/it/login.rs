//! `authenticate` against slapd: the right password, a wrong or empty one,
//! unknown and filtered-out users, filter injection, a reader that cannot
//! bind, and servers that cannot be reached.

use crate::slapd::{password, user_dn, Slapd, READER_PW};
use authworker::{authenticate, DirectoryError};
use std::time::{Duration, Instant};

async fn directory_with_alice_bob_carol() -> Option<Slapd> {
    let mut ldap = Slapd::start().await?;
    ldap.add_user("alice", "Alice Liddell").await;
    ldap.add_user("bob", "Bob Builder").await;
    ldap.add_user("carol", "Carol Danvers").await;
    Some(ldap)
}

/// An address where nothing listens: a port bound and released.
pub fn closed_server() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("ldap://127.0.0.1:{port}")
}

#[tokio::test]
async fn the_right_password_signs_in_and_others_do_not() {
    let Some(ldap) = directory_with_alice_bob_carol().await else {
        return;
    };
    let config = ldap.config();

    let alice = authenticate(&config, "alice", &password("alice"))
        .await
        .unwrap();
    let alice = alice.expect("alice's own password");
    assert_eq!(alice.dn, user_dn("alice"));
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.full_name, "Alice Liddell");

    // The directory's spelling of the name is the one returned.
    let upper = authenticate(&config, "ALICE", &password("alice"))
        .await
        .unwrap();
    assert_eq!(upper.map(|u| u.username).as_deref(), Some("alice"));

    for (who, pw, why) in [
        ("alice", password("bob"), "another user's password"),
        (
            "alice",
            "".to_string(),
            "an empty password (an unauthenticated bind)",
        ),
        (
            "nobody",
            password("nobody"),
            "a user the directory does not have",
        ),
        ("*", password("alice"), "a wildcard, escaped"),
        (
            "alice)(uid=*",
            password("alice"),
            "a filter injection, escaped",
        ),
        ("", password("alice"), "an empty user name"),
    ] {
        let got = authenticate(&config, who, &pw).await;
        assert!(matches!(got, Ok(None)), "{why}: {got:?}");
    }
}

#[tokio::test]
async fn the_user_filter_keeps_excluded_users_out() {
    let Some(ldap) = directory_with_alice_bob_carol().await else {
        return;
    };
    let mut config = ldap.config();
    config.user_filter = "(&(objectClass=inetOrgPerson)(!(uid=carol)))".into();
    let carol = authenticate(&config, "carol", &password("carol"))
        .await
        .unwrap();
    assert_eq!(carol, None, "carol is excluded by the filter");
    let bob = authenticate(&config, "bob", &password("bob"))
        .await
        .unwrap();
    assert!(bob.is_some(), "bob is not");

    // One level under a base that holds no users directly finds none.
    config.user_base_dn = crate::slapd::SUFFIX.into();
    config.subtree = false;
    let bob = authenticate(&config, "bob", &password("bob"))
        .await
        .unwrap();
    assert_eq!(bob, None, "bob is two levels down");
}

#[tokio::test]
async fn an_empty_password_is_refused_before_any_connection() {
    // Nothing listens there: a connection attempt would be an error.
    let config = api::auth::LdapConfig {
        servers: vec![closed_server()],
        reader_dn: "cn=reader".into(),
        reader_password: "x".into(),
        ..Default::default()
    };
    assert_eq!(authenticate(&config, "alice", "").await.unwrap(), None);
}

#[tokio::test]
async fn a_reader_that_cannot_bind_says_so_without_its_password() {
    let Some(ldap) = directory_with_alice_bob_carol().await else {
        return;
    };
    let mut config = ldap.config();
    config.reader_password = format!("{READER_PW}-wrong");
    let err = authenticate(&config, "alice", &password("alice"))
        .await
        .expect_err("the reader's password is wrong");
    assert!(matches!(err, DirectoryError::ReaderBind(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("the reader DN could not bind: invalid credentials"),
        "{text}"
    );
    assert!(!text.contains(&config.reader_password), "{text}");
    assert!(!format!("{err:?}").contains(&config.reader_password));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_and_the_next_is_tried() {
    let closed = closed_server();
    let config = api::auth::LdapConfig {
        servers: vec![closed.clone()],
        reader_dn: "cn=reader".into(),
        reader_password: "reader-pw".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let err = authenticate(&config, "alice", "pw")
        .await
        .expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        err.to_string(),
        format!("could not reach any LDAP server ({closed}: connection refused)")
    );
    assert!(err.is_retryable());

    // With a live server after the dead one, the login works.
    let Some(ldap) = directory_with_alice_bob_carol().await else {
        return;
    };
    let mut config = ldap.config();
    config.servers.insert(0, closed);
    let bob = authenticate(&config, "bob", &password("bob"))
        .await
        .unwrap();
    assert!(bob.is_some());
}

#[tokio::test]
async fn tls_connections_verify_the_server_unless_told_not_to() {
    let Some(mut ldap) = Slapd::start_with_tls().await else {
        return;
    };
    ldap.add_user("alice", "Alice Liddell").await;
    let ldaps = ldap.ldaps_url.clone().unwrap();

    // The certificate is self-signed: refused, saying why.
    let mut config = ldap.config();
    config.servers = vec![ldaps.clone()];
    let err = authenticate(&config, "alice", &password("alice"))
        .await
        .expect_err("an untrusted certificate");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("could not reach any LDAP server ({ldaps}: TLS")),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");

    // Told to skip verification, over ldaps:// and over StartTLS.
    config.tls_skip_verify = true;
    let alice = authenticate(&config, "alice", &password("alice"))
        .await
        .unwrap();
    assert!(alice.is_some(), "over ldaps://");
    config.servers = vec![ldap.url.clone()];
    config.start_tls = true;
    let alice = authenticate(&config, "alice", &password("alice"))
        .await
        .unwrap();
    assert!(alice.is_some(), "over StartTLS");
    config.tls_skip_verify = false;
    let err = authenticate(&config, "alice", &password("alice")).await;
    assert!(
        err.is_err(),
        "StartTLS verifies the certificate too: {err:?}"
    );
}
