//! The client bundle (UCP's): a zip of a user's client certificate, its key,
//! the client root CA and the scripts that point a shell at the cluster, and
//! the hash by which the server recognises the bundle's certificate.
//!
//! [`build`] makes the bundle as UCP laid it out: `ca.pem`, `cert.pem`,
//! `key.pem`, `cert.pub`, `env.sh`, `env.ps1`, `env.cmd` and `meta.json` at the
//! top, and the Docker-context layout `tls/docker/{ca,cert,key}.pem` beside
//! them. Docker CLIs of the UCP era imported such a zip with `docker context
//! import`; current ones (28.x at least) refuse any file but `meta.json` and
//! `tls/…` ("ca.pem: unexpected context file"), so [`build_docker_context`]
//! makes the same context without the rest, for `docker context import`.
//!
//! Nothing here reads the clock or the store: the caller issues the
//! certificate and records the bundle ([`public_key_sha256`]).

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Write};
use x509_parser::pem::Pem;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// What goes into a bundle. Everything is PEM text but `api_host`.
#[derive(Clone)]
pub struct BundleFiles {
    /// The user's name.
    pub user: String,
    /// The bundle's label, unique among the user's bundles.
    pub label: String,
    /// `host:port` of a manager's API, e.g. "127.0.0.1:7443" or "[::1]:7443".
    pub api_host: String,
    /// The client root CA(s) that the API's clients trust.
    pub ca_pem: String,
    /// The user's client certificate.
    pub cert_pem: String,
    /// The certificate's private key: a secret.
    pub key_pem: String,
    /// The certificate's public key (PEM "PUBLIC KEY").
    pub public_key_pem: String,
}

impl std::fmt::Debug for BundleFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is a secret: never in a log.
        f.debug_struct("BundleFiles")
            .field("user", &self.user)
            .field("label", &self.label)
            .field("api_host", &self.api_host)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("api_host {0:?} is not host:port (a DNS name or IP address, and a port)")]
    InvalidHost(String),
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("the certificate does not parse: {0}")]
    Certificate(String),
    #[error("the public key is not the certificate's")]
    PublicKeyMismatch,
    #[error("writing the zip: {0}")]
    Zip(String),
}

/// The files of [`build`]'s zip, in the order it writes them.
pub const BUNDLE_FILES: [&str; 11] = [
    "ca.pem",
    "cert.pem",
    "key.pem",
    "cert.pub",
    "env.sh",
    "env.ps1",
    "env.cmd",
    "meta.json",
    "tls/docker/ca.pem",
    "tls/docker/cert.pem",
    "tls/docker/key.pem",
];

/// The files of [`build_docker_context`]'s zip, in the order it writes them.
pub const DOCKER_CONTEXT_FILES: [&str; 4] = [
    "meta.json",
    "tls/docker/ca.pem",
    "tls/docker/cert.pem",
    "tls/docker/key.pem",
];

/// The client bundle as UCP laid it out (see the module's comment). The
/// private key is mode 0600 in the zip, everything else 0644. Entries carry
/// no time (the zip format's 1980-01-01), so the same files make the same
/// bytes.
pub fn build(files: &BundleFiles) -> Result<Vec<u8>, BundleError> {
    check(files)?;
    let host = &files.api_host;
    let meta = meta_json(files)?;
    write_zip(&[
        ("ca.pem", files.ca_pem.as_bytes(), PUBLIC),
        ("cert.pem", files.cert_pem.as_bytes(), PUBLIC),
        ("key.pem", files.key_pem.as_bytes(), SECRET),
        ("cert.pub", files.public_key_pem.as_bytes(), PUBLIC),
        ("env.sh", env_sh(host).as_bytes(), PUBLIC),
        ("env.ps1", env_ps1(host).as_bytes(), PUBLIC),
        ("env.cmd", env_cmd(host).as_bytes(), PUBLIC),
        ("meta.json", &meta, PUBLIC),
        ("tls/docker/ca.pem", files.ca_pem.as_bytes(), PUBLIC),
        ("tls/docker/cert.pem", files.cert_pem.as_bytes(), PUBLIC),
        ("tls/docker/key.pem", files.key_pem.as_bytes(), SECRET),
    ])
}

/// The bundle's Docker context alone — `meta.json` and `tls/docker/…` — which
/// `docker context import NAME FILE` accepts.
pub fn build_docker_context(files: &BundleFiles) -> Result<Vec<u8>, BundleError> {
    check(files)?;
    let meta = meta_json(files)?;
    write_zip(&[
        ("meta.json", &meta, PUBLIC),
        ("tls/docker/ca.pem", files.ca_pem.as_bytes(), PUBLIC),
        ("tls/docker/cert.pem", files.cert_pem.as_bytes(), PUBLIC),
        ("tls/docker/key.pem", files.key_pem.as_bytes(), SECRET),
    ])
}

/// The Docker context's name in `meta.json`: `berth-<user>-<label>`, with
/// every character a context name may not hold (docker allows
/// `[a-zA-Z0-9_.+-]`) made a `-`. `docker context import` names the context
/// as its caller says; this is the name to suggest.
pub fn context_name(user: &str, label: &str) -> String {
    format!("berth-{user}-{label}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The lowercase hex SHA-256 of the SubjectPublicKeyInfo (DER) of the first
/// certificate in `cert_pem`: the bundle's key in the store
/// (`api::auth::ClientBundle::public_key_sha256`). It is
/// [`public_key_sha256_der`] of the PEM's content, so it agrees with what the
/// server computes from a certificate presented in a TLS handshake.
pub fn public_key_sha256(cert_pem: &str) -> Result<String, BundleError> {
    let der = certificate_pems(cert_pem, "the certificate")?
        .into_iter()
        .next()
        .map(|pem| pem.contents)
        .unwrap_or_default();
    public_key_sha256_der(&der)
}

/// The lowercase hex SHA-256 of the SubjectPublicKeyInfo of a DER
/// certificate, e.g. one a client presented. The server maps a presented
/// certificate to its bundle with this, and the bundle was recorded with
/// [`public_key_sha256`], which calls this: the two must stay one function.
/// It parses the certificate without verifying anything (a few
/// microseconds); the TLS handshake has already checked the chain.
pub fn public_key_sha256_der(cert_der: &[u8]) -> Result<String, BundleError> {
    Ok(hex::encode(Sha256::digest(spki_der(cert_der)?)))
}

fn spki_der(cert_der: &[u8]) -> Result<&[u8], BundleError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| BundleError::Certificate(e.to_string()))?;
    Ok(cert.tbs_certificate.subject_pki.raw)
}

const PUBLIC: u32 = 0o644;
const SECRET: u32 = 0o600;

fn write_zip(entries: &[(&str, &[u8], u32)]) -> Result<Vec<u8>, BundleError> {
    let zip_error = |e: zip::result::ZipError| BundleError::Zip(e.to_string());
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content, mode) in entries {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(*mode);
        zip.start_file(*name, options).map_err(zip_error)?;
        zip.write_all(content)
            .map_err(|e| BundleError::Zip(e.to_string()))?;
    }
    Ok(zip.finish().map_err(zip_error)?.into_inner())
}

/// Refuses a bundle that would not work, or whose scripts could run
/// something else: the host goes into shell, PowerShell and cmd.exe text.
fn check(files: &BundleFiles) -> Result<(), BundleError> {
    check_host(&files.api_host)?;
    certificate_pems(&files.ca_pem, "the CA")?;
    let cert = certificate_pems(&files.cert_pem, "the certificate")?;
    let cert_der = cert.first().map(|p| p.contents.as_slice()).unwrap_or(&[]);
    let public_key = single_pem(&files.public_key_pem, "the public key")?;
    if public_key.label != "PUBLIC KEY" {
        return Err(BundleError::Pem {
            what: "the public key",
            reason: format!("a {:?} PEM block, not \"PUBLIC KEY\"", public_key.label),
        });
    }
    if public_key.contents != spki_der(cert_der)? {
        return Err(BundleError::PublicKeyMismatch);
    }
    let key = single_pem(&files.key_pem, "the private key")?;
    if !key.label.ends_with("PRIVATE KEY") {
        return Err(BundleError::Pem {
            what: "the private key",
            reason: format!("a {:?} PEM block, not a private key", key.label),
        });
    }
    Ok(())
}

/// `host:port`: a DNS name or IPv4 address, or an IPv6 address in brackets,
/// and a port. Only these characters, so the host can be written into a
/// script unquoted.
fn check_host(api_host: &str) -> Result<(), BundleError> {
    let bad = || BundleError::InvalidHost(api_host.to_owned());
    let (host, port) = api_host.rsplit_once(':').ok_or_else(bad)?;
    if port.parse::<u16>().map_or(true, |p| p == 0) || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && !host.starts_with(['-', '.'])
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

fn single_pem(text: &str, what: &'static str) -> Result<Pem, BundleError> {
    let mut pems = Pem::iter_from_buffer(text.as_bytes());
    match (pems.next(), pems.next()) {
        (Some(Ok(pem)), None) => Ok(pem),
        (Some(Err(e)), _) => Err(BundleError::Pem {
            what,
            reason: e.to_string(),
        }),
        (None, _) => Err(BundleError::Pem {
            what,
            reason: "no PEM block".into(),
        }),
        (Some(Ok(_)), Some(_)) => Err(BundleError::Pem {
            what,
            reason: "more than one PEM block".into(),
        }),
    }
}

/// Every PEM block of `text`, each a certificate that parses; at least one.
fn certificate_pems(text: &str, what: &'static str) -> Result<Vec<Pem>, BundleError> {
    let mut out = Vec::new();
    for pem in Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| BundleError::Pem {
            what,
            reason: e.to_string(),
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(BundleError::Pem {
                what,
                reason: format!("a {:?} PEM block, not a certificate", pem.label),
            });
        }
        x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| BundleError::Certificate(format!("{what}: {e}")))?;
        out.push(pem);
    }
    if out.is_empty() {
        return Err(BundleError::Pem {
            what,
            reason: "no PEM block".into(),
        });
    }
    Ok(out)
}

/// Docker's context metadata (docker/cli `cli/context/store`: `Metadata`,
/// and the docker endpoint's `EndpointMeta`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContextMeta {
    name: String,
    metadata: ContextDescription,
    endpoints: ContextEndpoints,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContextDescription {
    description: String,
}

#[derive(Serialize)]
struct ContextEndpoints {
    docker: DockerEndpoint,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEndpoint {
    host: String,
    #[serde(rename = "SkipTLSVerify")]
    skip_tls_verify: bool,
}

fn meta_json(files: &BundleFiles) -> Result<Vec<u8>, BundleError> {
    let meta = ContextMeta {
        name: context_name(&files.user, &files.label),
        metadata: ContextDescription {
            description: format!("berth client bundle for {}", files.user),
        },
        endpoints: ContextEndpoints {
            docker: DockerEndpoint {
                host: format!("tcp://{}", files.api_host),
                skip_tls_verify: false,
            },
        },
    };
    serde_json::to_vec_pretty(&meta).map_err(|e| BundleError::Zip(e.to_string()))
}

/// For bash and zsh: `source path/to/env.sh` from any directory. The
/// directory is the script's own, found when it is sourced (`BASH_SOURCE`
/// in bash, `%x` in zsh), so the bundle works wherever it was unzipped;
/// other shells fall back to the working directory, as UCP's script did.
/// `BERTH_TOKEN` is unset so that the bundle's certificate is the identity
/// the CLI uses.
fn env_sh(host: &str) -> String {
    format!(
        r#"# berth client bundle. Use it from bash or zsh, from any directory:
#     source /path/to/bundle/env.sh
if [ -n "${{BASH_VERSION:-}}" ]; then
    _berth_env_sh="${{BASH_SOURCE[0]}}"
elif [ -n "${{ZSH_VERSION:-}}" ]; then
    _berth_env_sh="${{(%):-%x}}"
else
    _berth_env_sh="./env.sh"
fi
case "$_berth_env_sh" in
    */*) _berth_env_dir="${{_berth_env_sh%/*}}" ;;
    *) _berth_env_dir=. ;;
esac
BERTH_CERT_PATH="$(CDPATH= cd -- "$_berth_env_dir" && pwd)"
export BERTH_CERT_PATH
export BERTH_HOST={host}
export DOCKER_HOST=tcp://{host}
export DOCKER_TLS_VERIFY=1
export DOCKER_CERT_PATH="$BERTH_CERT_PATH"
unset BERTH_TOKEN _berth_env_sh _berth_env_dir
"#
    )
}

/// For PowerShell (3 or later): `. path\to\env.ps1`. `$PSScriptRoot` is the
/// script's directory; `$env:` variables belong to the process, so running
/// the script without dot-sourcing sets them as well.
fn env_ps1(host: &str) -> String {
    crlf(&format!(
        r#"# berth client bundle. Use it from PowerShell, from any directory:
#     . C:\path\to\bundle\env.ps1
$env:BERTH_CERT_PATH = $PSScriptRoot
$env:BERTH_HOST = "{host}"
$env:DOCKER_HOST = "tcp://{host}"
$env:DOCKER_TLS_VERIFY = "1"
$env:DOCKER_CERT_PATH = $PSScriptRoot
Remove-Item Env:BERTH_TOKEN -ErrorAction SilentlyContinue
"#
    ))
}

/// For cmd.exe: `call path\to\env.cmd`. `%~dp0` is the script's directory
/// (with a trailing backslash, which is cut). No `setlocal`: the variables
/// must outlive the script.
fn env_cmd(host: &str) -> String {
    crlf(&format!(
        r#"@echo off
rem berth client bundle. Use it from cmd.exe, from any directory:
rem     call C:\path\to\bundle\env.cmd
set "BERTH_CERT_PATH=%~dp0"
set "BERTH_CERT_PATH=%BERTH_CERT_PATH:~0,-1%"
set "BERTH_HOST={host}"
set "DOCKER_HOST=tcp://{host}"
set "DOCKER_TLS_VERIFY=1"
set "DOCKER_CERT_PATH=%BERTH_CERT_PATH%"
set BERTH_TOKEN=
"#
    ))
}

/// Windows scripts with Windows line ends (cmd.exe misreads some lines
/// without them).
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    //! The bundle's files and modes, its scripts run by a real bash (and zsh
    //! when present), and its import by a real docker CLI when present.

    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, SystemTime};

    const HOST: &str = "127.0.0.1:7443";

    /// A client root CA, and a certificate it issued to `alice` for a fresh key.
    fn files() -> (BundleFiles, rcgen::KeyPair) {
        let now = SystemTime::now();
        let ca =
            ca::RootCa::generate("berth client root CA", Duration::from_secs(86_400), now).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let cert_pem = ca
            .issue_client_certificate(&csr, "alice", Duration::from_secs(3600), now)
            .unwrap();
        let files = BundleFiles {
            user: "alice".into(),
            label: "laptop".into(),
            api_host: HOST.into(),
            ca_pem: ca.cert_pem().to_owned(),
            cert_pem,
            key_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
        };
        (files, key)
    }

    /// The zip's entries in order: name, unix permissions, content.
    fn entries(zip: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut f = archive.by_index(i).unwrap();
                let mut content = Vec::new();
                f.read_to_end(&mut content).unwrap();
                (f.name().to_owned(), f.unix_mode().unwrap() & 0o777, content)
            })
            .collect()
    }

    fn extract(zip: &[u8], dir: &Path) {
        for (name, mode, content) in entries(zip) {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    fn program(name: &str) -> Option<PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    #[test]
    fn the_bundle_holds_exactly_ucps_files_with_the_key_owner_only() {
        let (files, _) = files();
        let zip = build(&files).unwrap();
        let got = entries(&zip);
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, BUNDLE_FILES);
        for (name, mode, content) in &got {
            let expected_mode = if name.ends_with("key.pem") {
                0o600
            } else {
                0o644
            };
            assert_eq!(*mode, expected_mode, "{name}");
            let expected: Option<&str> = match name.rsplit('/').next().unwrap() {
                "ca.pem" => Some(&files.ca_pem),
                "cert.pem" => Some(&files.cert_pem),
                "key.pem" => Some(&files.key_pem),
                "cert.pub" => Some(&files.public_key_pem),
                _ => None,
            };
            if let Some(expected) = expected {
                assert_eq!(content, expected.as_bytes(), "{name}");
            }
        }
        // No clock in it: the same files make the same bytes.
        assert_eq!(build(&files).unwrap(), zip);
    }

    #[test]
    fn the_docker_context_holds_meta_json_and_tls_only() {
        let (files, _) = files();
        let bundle = entries(&build(&files).unwrap());
        let got = entries(&build_docker_context(&files).unwrap());
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, DOCKER_CONTEXT_FILES);
        for entry in &got {
            assert!(
                bundle.contains(entry),
                "{} differs from the bundle's",
                entry.0
            );
        }
    }

    #[test]
    fn meta_json_is_a_docker_context() {
        let (mut files, _) = files();
        files.user = "alice@corp".into();
        let zip = build(&files).unwrap();
        let (_, _, meta) = entries(&zip)
            .into_iter()
            .find(|(n, _, _)| n == "meta.json")
            .unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
        assert_eq!(
            meta,
            serde_json::json!({
                "Name": "berth-alice-corp-laptop",
                "Metadata": {"Description": "berth client bundle for alice@corp"},
                "Endpoints": {"docker": {"Host": "tcp://127.0.0.1:7443", "SkipTLSVerify": false}}
            })
        );
    }

    #[test]
    fn env_sh_finds_its_directory_in_an_empty_environment() {
        let Some(bash) = program("bash") else {
            panic!("bash is not on PATH: env.sh cannot be tested");
        };
        let (files, _) = files();
        let tmp = tempfile::tempdir().unwrap();
        // A space in the path: the script must quote what it computes.
        let dir = tmp.path().join("my bundle");
        std::fs::create_dir(&dir).unwrap();
        extract(&build(&files).unwrap(), &dir);
        let dir = dir.canonicalize().unwrap();
        let show = r#"echo "$BERTH_HOST|$BERTH_CERT_PATH|$DOCKER_HOST|$DOCKER_TLS_VERIFY|$DOCKER_CERT_PATH|${BERTH_TOKEN-unset}""#;
        let expected = format!("{HOST}|{d}|tcp://{HOST}|1|{d}|unset", d = dir.display());
        let mut shells = vec![bash];
        match program("zsh") {
            Some(zsh) => shells.push(zsh),
            None => eprintln!("zsh is not on PATH: env.sh is tested with bash only"),
        }
        for shell in shells {
            // Sourced by an absolute path, a relative one, and by its bare
            // name from its own directory; each time from another directory.
            for (cwd, source) in [
                (
                    PathBuf::from("/"),
                    format!("source '{}/env.sh'", dir.display()),
                ),
                (
                    tmp.path().to_owned(),
                    "source './my bundle/env.sh'".to_owned(),
                ),
                (dir.clone(), ". ./env.sh".to_owned()),
            ] {
                let out = Command::new("env")
                    .arg("-i")
                    .arg("BERTH_TOKEN=someone-else")
                    .arg(&shell)
                    .arg("-c")
                    .arg(format!("{source}; {show}"))
                    .current_dir(&cwd)
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{shell:?} {source}: {stderr}");
                assert_eq!(
                    stdout.trim(),
                    expected,
                    "{shell:?} in {cwd:?}: {source}; {stderr}"
                );
                assert_eq!(stderr, "", "{shell:?} {source}");
            }
        }
    }

    #[test]
    fn the_windows_scripts_set_the_same_variables() {
        let (files, _) = files();
        let ps1 = env_ps1(&files.api_host);
        let cmd = env_cmd(&files.api_host);
        for (script, lines) in [
            (
                &ps1,
                vec![
                    "$env:BERTH_CERT_PATH = $PSScriptRoot",
                    "$env:BERTH_HOST = \"127.0.0.1:7443\"",
                    "$env:DOCKER_HOST = \"tcp://127.0.0.1:7443\"",
                    "$env:DOCKER_TLS_VERIFY = \"1\"",
                    "$env:DOCKER_CERT_PATH = $PSScriptRoot",
                    "Remove-Item Env:BERTH_TOKEN -ErrorAction SilentlyContinue",
                ],
            ),
            (
                &cmd,
                vec![
                    "set \"BERTH_CERT_PATH=%~dp0\"",
                    "set \"BERTH_HOST=127.0.0.1:7443\"",
                    "set \"DOCKER_HOST=tcp://127.0.0.1:7443\"",
                    "set \"DOCKER_TLS_VERIFY=1\"",
                    "set \"DOCKER_CERT_PATH=%BERTH_CERT_PATH%\"",
                    "set BERTH_TOKEN=",
                ],
            ),
        ] {
            let got: Vec<&str> = script.split("\r\n").collect();
            for line in lines {
                assert!(got.contains(&line), "{line:?} missing from {script}");
            }
            assert!(!script.replace("\r\n", "").contains('\n'), "{script:?}");
        }
        assert!(!cmd.to_lowercase().contains("setlocal"));
    }

    #[test]
    fn the_public_key_hash_is_of_the_certificates_spki() {
        let (files, key) = files();
        // rcgen's SubjectPublicKeyInfo of the key, computed apart from the
        // certificate.
        let expected = hex::encode(Sha256::digest(key.public_key_der()));
        assert_eq!(public_key_sha256(&files.cert_pem).unwrap(), expected);
        let der = certificate_pems(&files.cert_pem, "cert")
            .unwrap()
            .remove(0)
            .contents;
        assert_eq!(public_key_sha256_der(&der).unwrap(), expected);
        assert_eq!(expected.len(), 64);
        assert_eq!(expected, expected.to_lowercase());
        assert!(matches!(
            public_key_sha256_der(b"not a certificate"),
            Err(BundleError::Certificate(_))
        ));
        assert!(matches!(
            public_key_sha256(&files.key_pem),
            Err(BundleError::Pem { .. })
        ));
    }

    #[test]
    fn refuses_what_would_not_work_or_could_inject_into_the_scripts() {
        let (good, _) = files();
        let (other, _) = files();
        type Expected = fn(&BundleError) -> bool;
        let cases: Vec<(&str, BundleFiles, Expected)> = vec![
            (
                "shell in the host",
                BundleFiles {
                    api_host: "x$(reboot):7443".into(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::InvalidHost(_)),
            ),
            (
                "a quote in the host",
                BundleFiles {
                    api_host: "a\"b:7443".into(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::InvalidHost(_)),
            ),
            (
                "no port",
                BundleFiles {
                    api_host: "manager.example".into(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::InvalidHost(_)),
            ),
            (
                "port 0",
                BundleFiles {
                    api_host: "manager.example:0".into(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::InvalidHost(_)),
            ),
            (
                "IPv6 without brackets",
                BundleFiles {
                    api_host: "::1:7443".into(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::InvalidHost(_)),
            ),
            (
                "another key's public key",
                BundleFiles {
                    public_key_pem: other.public_key_pem.clone(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::PublicKeyMismatch),
            ),
            (
                "a certificate as the public key",
                BundleFiles {
                    public_key_pem: good.cert_pem.clone(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::Pem { .. }),
            ),
            (
                "no certificate",
                BundleFiles {
                    cert_pem: "garbage".into(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::Pem { .. }),
            ),
            (
                "a key as the CA",
                BundleFiles {
                    ca_pem: good.key_pem.clone(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::Pem { .. }),
            ),
            (
                "a certificate as the key",
                BundleFiles {
                    key_pem: good.cert_pem.clone(),
                    ..good.clone()
                },
                |e| matches!(e, BundleError::Pem { .. }),
            ),
        ];
        for (name, files, expected) in cases {
            let e = build(&files).unwrap_err();
            assert!(expected(&e), "{name}: {e}");
            let e = build_docker_context(&files).unwrap_err();
            assert!(expected(&e), "{name}: {e}");
        }
        for host in ["[::1]:7443", "manager-1.example.com:443", "10.0.0.1:7443"] {
            let files = BundleFiles {
                api_host: host.into(),
                ..good.clone()
            };
            build(&files).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let (files, _) = files();
        let shown = format!("{files:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn context_names_are_ones_docker_accepts() {
        assert_eq!(context_name("alice", "laptop"), "berth-alice-laptop");
        assert_eq!(
            context_name("bob@corp.example", "ci runner/1"),
            "berth-bob-corp.example-ci-runner-1"
        );
    }

    /// `docker context import` of the Docker context, and `docker context
    /// inspect` of what it made, with a docker configuration of the test's
    /// own (`DOCKER_CONFIG`), never the machine's. Needs no engine.
    #[test]
    fn docker_imports_the_context() {
        let Some(docker) = program("docker") else {
            eprintln!("skipping docker_imports_the_context: no docker binary on PATH");
            return;
        };
        let (files, _) = files();
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("docker-config");
        let docker = |args: &[&str]| {
            let out = Command::new(&docker)
                .args(args)
                .env("DOCKER_CONFIG", &config)
                .env_remove("DOCKER_HOST")
                .env_remove("DOCKER_CONTEXT")
                .env_remove("DOCKER_TLS_VERIFY")
                .env_remove("DOCKER_CERT_PATH")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let context_zip = tmp.path().join("context.zip");
        std::fs::write(&context_zip, build_docker_context(&files).unwrap()).unwrap();
        let name = context_name(&files.user, &files.label);
        let (ok, _, stderr) = docker(&["context", "import", &name, context_zip.to_str().unwrap()]);
        assert!(ok, "docker context import: {stderr}");

        let (ok, stdout, stderr) = docker(&["context", "inspect", &name]);
        assert!(ok, "docker context inspect: {stderr}");
        let inspected: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let context = &inspected[0];
        assert_eq!(context["Name"], name.as_str());
        assert_eq!(
            context["Endpoints"]["docker"]["Host"],
            "tcp://127.0.0.1:7443"
        );
        assert_eq!(context["Endpoints"]["docker"]["SkipTLSVerify"], false);
        let mut tls: Vec<&str> = context["TLSMaterial"]["docker"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        tls.sort();
        assert_eq!(tls, ["ca.pem", "cert.pem", "key.pem"]);
        let stored = Path::new(context["Storage"]["TLSPath"].as_str().unwrap()).join("docker");
        assert!(
            stored.starts_with(&config),
            "{stored:?} outside DOCKER_CONFIG"
        );
        for (file, expected) in [
            ("ca.pem", &files.ca_pem),
            ("cert.pem", &files.cert_pem),
            ("key.pem", &files.key_pem),
        ] {
            assert_eq!(
                &std::fs::read_to_string(stored.join(file)).unwrap(),
                expected,
                "{file}"
            );
        }

        // The whole bundle: older CLIs import it, current ones refuse its
        // top-level files — and for no other reason.
        let bundle_zip = tmp.path().join("bundle.zip");
        std::fs::write(&bundle_zip, build(&files).unwrap()).unwrap();
        let (ok, _, stderr) = docker(&["context", "import", "whole", bundle_zip.to_str().unwrap()]);
        if ok {
            eprintln!("this docker CLI imports the whole bundle too");
        } else {
            assert!(stderr.contains("unexpected context file"), "{stderr}");
            eprintln!(
                "this docker CLI refuses the whole bundle: {}",
                stderr.trim()
            );
        }
    }
}
