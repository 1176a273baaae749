//! Tests of the audit log: redaction, the files it writes (rotation, modes, a
//! torn line after a crash), queries, and dropping instead of blocking.

use super::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

const T0: u64 = 1_700_000_000_000;

fn entry(i: u64, user: Option<&str>, method: &str, decision: AuditDecision) -> AuditEntry {
    AuditEntry {
        time: Timestamp(T0 + i * 1000),
        user: user.map(str::to_owned),
        method: method.to_owned(),
        path: format!("/api/v1/services/{i:04}"),
        object: Some(format!("service s{i:04}")),
        status: 200,
        remote: "127.0.0.1:50000".to_owned(),
        decision,
        body: None,
        manager: String::new(),
    }
}

fn plain(i: u64) -> AuditEntry {
    entry(i, Some("alice"), "GET", AuditDecision::Allowed)
}

/// The length of an entry's line as the writer of manager `m1` writes it.
fn line_len(e: &AuditEntry) -> u64 {
    let mut e = e.clone();
    e.manager = "m1".into();
    serde_json::to_vec(&e).unwrap().len() as u64 + 1
}

fn all() -> AuditFilter {
    AuditFilter {
        limit: MAX_QUERY_LIMIT,
        ..AuditFilter::default()
    }
}

fn times(entries: &[AuditEntry]) -> Vec<u64> {
    entries.iter().map(|e| (e.time.0 - T0) / 1000).collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn redacts_secrets_at_any_depth() {
    let body = json!({
        "name": "web",
        "password": "hunter2",
        "spec": {
            "labels": {"team": "a"},
            "secret": {"data": "c2VjcmV0"},
            "ldap": {"reader_dn": "cn=r", "reader_password": "pw", "servers": ["ldap://x"]},
            "tls": [
                {"cert_pem": "CERT", "key_pem": "KEY"},
                {"nested": [{"newPassword": "x", "apiKey": "k", "x-auth-token": "t"}]}
            ]
        },
        "key": 42,
        "private_key": null,
        "keys": ["not", "a", "secret"],
    });
    let expected = json!({
        "name": "web",
        "password": REDACTED,
        "spec": {
            "labels": {"team": "a"},
            "secret": REDACTED,
            "ldap": {"reader_dn": "cn=r", "reader_password": REDACTED, "servers": ["ldap://x"]},
            "tls": [
                {"cert_pem": "CERT", "key_pem": REDACTED},
                {"nested": [{"newPassword": REDACTED, "apiKey": REDACTED, "x-auth-token": REDACTED}]}
            ]
        },
        "key": REDACTED,
        "private_key": REDACTED,
        "keys": ["not", "a", "secret"],
    });
    assert_eq!(redact(&body), expected);
    // A body that is an array at its top, and scalars, are walked as well.
    assert_eq!(
        redact(&json!([{"token": "t"}, 1, "password"])),
        json!([{"token": REDACTED}, 1, "password"])
    );
}

#[test]
fn secret_keys() {
    let secret = [
        "password",
        "old_password",
        "new_password",
        "reader_password",
        "secret",
        "token",
        "key",
        "key_pem",
        "private_key",
        "Password",
        "adminPassword",
        "client_secret",
        "SecretData",
        "join_token",
        "BERTH_TOKEN",
        "api_key",
        "APIKey",
        "x-api-key",
        "root_ca_key_pem",
        "CAKeyPEM",
    ];
    let not_secret = [
        "name", "keys", "monkey", "cert_pem", "public", "keyboard", "labels", "user",
    ];
    for k in secret {
        assert!(is_secret_key(k), "{k} should be redacted");
    }
    for k in not_secret {
        assert!(!is_secret_key(k), "{k} should be kept");
    }
}

#[test]
fn bodies_that_are_not_json_are_only_measured() {
    assert_eq!(redact_bytes(b""), None);
    assert_eq!(
        redact_bytes(b"password=hunter2"),
        Some(json!({"<not json>": 16}))
    );
    assert_eq!(
        redact_bytes(br#"{"password": "hunter2", "name": "a"}"#),
        Some(json!({"password": REDACTED, "name": "a"}))
    );
    let big = format!(r#"{{"name": "{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    assert_eq!(
        redact_bytes(big.as_bytes()),
        Some(json!({"<too large>": big.len()}))
    );
    // Truncated JSON is not JSON either: none of it is kept.
    let torn = redact_bytes(br#"{"token": "abc"#).unwrap();
    assert!(!torn.to_string().contains("abc"), "{torn}");
}

#[test]
fn an_entry_is_one_json_object_with_a_string_decision() {
    let mut e = entry(1, None, "POST", AuditDecision::Unauthenticated);
    e.manager = "m1".into();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["decision"], "unauthenticated");
    assert_eq!(v["time"], "2023-11-14T22:13:21.000Z");
    assert_eq!(v["user"], Value::Null);
    assert!(v.get("body").is_none(), "no body at level metadata: {v}");
    let back: AuditEntry = serde_json::from_value(v).unwrap();
    assert_eq!(back, e);
    for (d, s) in [
        (AuditDecision::Allowed, "\"allowed\""),
        (AuditDecision::Denied, "\"denied\""),
    ] {
        assert_eq!(serde_json::to_string(&d).unwrap(), s);
    }
}

#[test]
fn records_and_stamps_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "m1".into(), 1 << 20, 3).unwrap();
    let mut e = plain(1);
    e.body = redact_bytes(br#"{"password": "p"}"#);
    log.record(e);
    log.flush().unwrap();
    let text = fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains("\"p\""), "{text}");
    let got = log.query(&all()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].manager, "m1");
    assert_eq!(got[0].body, Some(json!({"password": REDACTED})));
}

#[test]
fn rotation_keeps_n_files_and_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    // Two entries fit in a file, a third would pass the limit.
    let max = 2 * line_len(&plain(0)) + 1;
    let log = AuditLog::open(dir.path(), "m1".into(), max, 2).unwrap();
    for i in 0..10 {
        log.record(plain(i));
    }
    log.flush().unwrap();
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
    for (name, expected) in [
        ("audit.log", [8, 9]),
        ("audit.log.1", [6, 7]),
        ("audit.log.2", [4, 5]),
    ] {
        let text = fs::read_to_string(dir.path().join(name)).unwrap();
        let got: Vec<u64> = text
            .lines()
            .map(|l| (serde_json::from_str::<AuditEntry>(l).unwrap().time.0 - T0) / 1000)
            .collect();
        assert_eq!(got, expected, "{name}");
        assert!(text.len() as u64 <= max, "{name} is {} bytes", text.len());
    }
    assert_eq!(times(&log.query(&all()).unwrap()), [9, 8, 7, 6, 5, 4]);
}

#[test]
fn a_smaller_keep_removes_the_files_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let max = line_len(&plain(0));
    let log = AuditLog::open(dir.path(), "m1".into(), max, 4).unwrap();
    for i in 0..6 {
        log.record(plain(i));
    }
    log.flush().unwrap();
    assert!(dir.path().join("audit.log.4").exists());
    drop(log);
    let log = AuditLog::open(dir.path(), "m1".into(), max, 1).unwrap();
    assert!(!dir.path().join("audit.log.2").exists());
    assert!(!dir.path().join("audit.log.4").exists());
    assert_eq!(times(&log.query(&all()).unwrap()), [5, 4]);
}

#[test]
fn queries_filter_newest_first_across_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let users = [Some("alice"), Some("bob"), None];
    let methods = ["GET", "POST", "DELETE"];
    let decisions = [
        AuditDecision::Allowed,
        AuditDecision::Denied,
        AuditDecision::Unauthenticated,
    ];
    let entries: Vec<AuditEntry> = (0..60)
        .map(|i| {
            let i = i as usize;
            entry(
                i as u64,
                users[i % 3],
                methods[i / 3 % 3],
                decisions[i / 9 % 3],
            )
        })
        .collect();
    // About five entries a file, all kept: the query must read all 13 files.
    let max = 5 * line_len(&entries[0]);
    let log = AuditLog::open(dir.path(), "m1".into(), max, 20).unwrap();
    for e in &entries {
        log.record(e.clone());
    }
    log.flush().unwrap();
    assert!(dir.path().join("audit.log.10").exists());

    let at = |i: u64| Some(Timestamp(T0 + i * 1000));
    let cases: Vec<(&str, AuditFilter)> = vec![
        ("everything", all()),
        (
            "default limit",
            AuditFilter {
                limit: 0,
                ..AuditFilter::default()
            },
        ),
        (
            "limit",
            AuditFilter {
                limit: 7,
                ..AuditFilter::default()
            },
        ),
        (
            "user",
            AuditFilter {
                user: Some("bob".into()),
                ..all()
            },
        ),
        (
            "method in another case",
            AuditFilter {
                method: Some("post".into()),
                ..all()
            },
        ),
        (
            "decision",
            AuditFilter {
                decision: Some(AuditDecision::Unauthenticated),
                ..all()
            },
        ),
        (
            "since and until",
            AuditFilter {
                since: at(12),
                until: at(40),
                ..all()
            },
        ),
        (
            "everything at once",
            AuditFilter {
                user: Some("alice".into()),
                method: Some("GET".into()),
                decision: Some(AuditDecision::Allowed),
                since: at(1),
                limit: 3,
                ..AuditFilter::default()
            },
        ),
    ];
    for (name, filter) in cases {
        let expected: Vec<u64> = entries
            .iter()
            .rev()
            .filter(|e| {
                filter
                    .user
                    .as_deref()
                    .is_none_or(|u| e.user.as_deref() == Some(u))
                    && filter
                        .method
                        .as_deref()
                        .is_none_or(|m| e.method.eq_ignore_ascii_case(m))
                    && filter.decision.is_none_or(|d| e.decision == d)
                    && filter.since.is_none_or(|s| e.time >= s)
                    && filter.until.is_none_or(|u| e.time <= u)
            })
            .take(filter.effective_limit())
            .map(|e| (e.time.0 - T0) / 1000)
            .collect();
        assert!(!expected.is_empty(), "{name}: the case selects nothing");
        assert_eq!(times(&log.query(&filter).unwrap()), expected, "{name}");
    }
}

#[test]
fn limits_are_capped() {
    assert_eq!(AuditFilter::default().effective_limit(), 100);
    let huge = AuditFilter {
        limit: 1_000_000,
        ..AuditFilter::default()
    };
    assert_eq!(huge.effective_limit(), MAX_QUERY_LIMIT);
}

#[test]
fn a_torn_line_is_skipped_and_the_next_entry_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "m1".into(), 1 << 20, 3).unwrap();
    for i in 0..3 {
        log.record(plain(i));
    }
    log.flush().unwrap();
    drop(log);
    // A crash in the middle of a write; and garbage in a rotated file.
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join("audit.log"))
        .unwrap();
    f.write_all(br#"{"time":"2023-11-14T22:1"#).unwrap();
    fs::write(
        dir.path().join("audit.log.1"),
        format!(
            "{}\nnot json at all\n\n{{\"time\": 3}}\n",
            serde_json::to_string(&{
                let mut e = plain(100);
                e.time = Timestamp(T0 - 1000);
                e
            })
            .unwrap()
        ),
    )
    .unwrap();

    let log = AuditLog::open(dir.path(), "m1".into(), 1 << 20, 3).unwrap();
    let got = log.query(&all()).unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3].path, "/api/v1/services/0100");
    log.record(plain(3));
    log.flush().unwrap();
    let got = log.query(&all()).unwrap();
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(times(&got[..4]), [3, 2, 1, 0]);
}

#[test]
fn lines_longer_than_a_read_block_are_read_whole_and_overlong_ones_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "m1".into(), 1 << 30, 1).unwrap();
    let mut big = plain(0);
    big.body = Some(json!({"note": "x".repeat(3 * READ_BLOCK)}));
    log.record(big.clone());
    log.flush().unwrap();
    drop(log);
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join("audit.log"))
        .unwrap();
    f.write_all(&vec![b'y'; MAX_LINE_BYTES + 3 * READ_BLOCK])
        .unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    let log = AuditLog::open(dir.path(), "m1".into(), 1 << 30, 1).unwrap();
    log.record(plain(1));
    log.flush().unwrap();
    let got = log.query(&all()).unwrap();
    assert_eq!(times(&got), [1, 0]);
    assert_eq!(got[1].body, big.body);
}

#[test]
fn a_full_channel_drops_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open_with_capacity(dir.path(), "m1".into(), 1 << 20, 1, 8).unwrap();
    let total = 1_000;
    let started = Instant::now();
    {
        // The writer cannot write while the files are held.
        let _held = log.shared.files.read().unwrap();
        for i in 0..total {
            log.record(plain(i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "record blocked: {:?} for {total} entries",
            started.elapsed()
        );
        // At most the channel's 8 and the one the writer holds got through.
        assert!(log.dropped() >= total - 9, "dropped {}", log.dropped());
    }
    log.flush().unwrap();
    let written = log.query(&all()).unwrap().len() as u64;
    assert_eq!(written + log.dropped(), total);
    assert!(written > 0);
}

#[test]
fn files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("audit.log");
    fs::write(&current, "").unwrap();
    fs::set_permissions(&current, fs::Permissions::from_mode(0o644)).unwrap();
    let max = line_len(&plain(0));
    let log = AuditLog::open(dir.path(), "m1".into(), max, 2).unwrap();
    assert_eq!(mode(&current), 0o600);
    for i in 0..3 {
        log.record(plain(i));
    }
    log.flush().unwrap();
    for name in ["audit.log", "audit.log.1", "audit.log.2"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    // A directory the log makes is the owner's only too.
    let nested = dir.path().join("a/audit");
    AuditLog::open(&nested, "m1".into(), max, 2).unwrap();
    assert_eq!(mode(&nested), 0o700);
}

#[tokio::test]
async fn flushes_from_async_code() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "m1".into(), 1 << 20, 1).unwrap();
    log.record(plain(0));
    log.flush_async().await.unwrap();
    assert_eq!(log.query(&all()).unwrap().len(), 1);
}

#[test]
fn a_query_by_since_stops_at_older_entries_but_not_at_slightly_disordered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let at = |secs: u64| Timestamp(T0 + secs * 1000);
    let mut written = vec![];
    // One entry a file; `y` was recorded after `x` though it is older (a
    // slower call), within the slack of `since`.
    for (i, secs) in [(0, 100), (1, 310), (2, 290), (3, 400)] {
        let mut e = plain(i);
        e.time = at(secs);
        written.push(e);
    }
    let max = line_len(&written[0]);
    let log = AuditLog::open(dir.path(), "m1".into(), max, 10).unwrap();
    for e in &written {
        log.record(e.clone());
    }
    log.flush().unwrap();
    // A file that cannot be read: reaching it would fail the query.
    fs::create_dir(dir.path().join("audit.log.4")).unwrap();
    assert!(log.query(&all()).is_err());
    let got = log
        .query(&AuditFilter {
            since: Some(at(300)),
            ..all()
        })
        .unwrap();
    assert_eq!(
        got.iter().map(|e| e.time).collect::<Vec<_>>(),
        [at(400), at(310)]
    );
}

#[test]
fn the_entry_and_the_filter_have_openapi_schemas() {
    use utoipa::{IntoParams, PartialSchema};
    let schema = serde_json::to_value(AuditEntry::schema()).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "time", "user", "method", "path", "object", "status", "remote", "decision", "body",
        "manager",
    ] {
        assert!(properties.contains_key(field), "{field}: {schema:#}");
    }
    let decision = serde_json::to_value(AuditDecision::schema()).unwrap();
    assert_eq!(
        decision["enum"],
        json!(["allowed", "denied", "unauthenticated"])
    );
    let params: Vec<String> = AuditFilter::into_params(|| None)
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        params,
        ["user", "since", "until", "method", "decision", "limit"]
    );
}

#[test]
fn a_filter_reads_from_a_query_string() {
    let uri: axum::http::Uri =
        "/api/v1/audit?user=bob&since=2023-11-14T22:13:20Z&method=post&decision=denied&limit=5"
            .parse()
            .unwrap();
    let axum::extract::Query(filter) =
        axum::extract::Query::<AuditFilter>::try_from_uri(&uri).unwrap();
    assert_eq!(
        filter,
        AuditFilter {
            user: Some("bob".into()),
            since: Some(Timestamp(T0)),
            until: None,
            method: Some("post".into()),
            decision: Some(AuditDecision::Denied),
            limit: 5,
        }
    );
    let uri: axum::http::Uri = "/api/v1/audit".parse().unwrap();
    let axum::extract::Query(filter) =
        axum::extract::Query::<AuditFilter>::try_from_uri(&uri).unwrap();
    assert_eq!(filter, AuditFilter::default());
}
