//! The credential a CLI presents: the API addresses, the bearer token, and
//! the cluster root CA certificate(s), which sign every manager's API
//! certificate: the CLI trusts them and nothing else. A client bundle
//! (`BERTH_CERT_PATH`) is the other credential: a client certificate and key,
//! with the cluster root CA beside them.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// `host:port` of a manager's API, tried first.
    pub host: String,
    /// The API addresses of the other managers, tried in turn when `host`
    /// cannot be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<String>,
    /// The bearer token (the admin token, a session or an API token); empty
    /// after `berth logout`, when the file only says which cluster to trust.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// PEM of the cluster root CA(s) the API certificates chain to.
    pub ca_pem: String,
}

/// The token is a secret: never in a log or an error.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("host", &self.host)
            .field("managers", &self.managers)
            .field("has_token", &!self.token.is_empty())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Trusts every certificate of `roots` too (a root CA rotation made a
    /// new one), keeping the ones trusted already.
    pub fn trust_roots(&mut self, roots: &str) {
        self.ca_pem = with_roots(&self.ca_pem, roots);
    }

    pub fn load(path: &Path) -> anyhow::Result<Credentials> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the file readable by its owner only (it holds the admin token).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let data = serde_json::to_vec_pretty(self)?;
        controller::tls::write_private(path, &data)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Whether `host` is one of the managers these credentials know.
    pub fn knows_host(&self, host: &str) -> bool {
        self.host == host || self.managers.iter().any(|m| m == host)
    }

    /// Whether these credentials trust the root whose fingerprint is `fp`.
    pub fn trusts_fingerprint(&self, fp: &str) -> bool {
        fingerprints(&self.ca_pem)
            .iter()
            .any(|mine| same_fingerprint(mine, fp))
    }

    /// The credentials after a login to `host` of the cluster whose roots
    /// are `ca_pem`: a file of the same cluster (it trusts the same first
    /// root) keeps its other managers, with `host` tried first; any other
    /// file is replaced.
    pub fn logged_in(
        existing: Option<Credentials>,
        host: &str,
        ca_pem: &str,
        token: String,
    ) -> Credentials {
        let root = fingerprint(ca_pem).ok();
        let same_cluster =
            |c: &Credentials| root.as_deref().is_some_and(|r| c.trusts_fingerprint(r));
        match existing.filter(same_cluster) {
            Some(mut c) => {
                if c.host != host {
                    let old = std::mem::replace(&mut c.host, host.to_string());
                    if !c.managers.contains(&old) {
                        c.managers.push(old);
                    }
                }
                c.managers.retain(|m| m != host);
                c.trust_roots(ca_pem);
                c.token = token;
                c
            }
            None => Credentials {
                host: host.to_string(),
                managers: Vec::new(),
                token,
                ca_pem: with_roots("", ca_pem),
            },
        }
    }
}

/// `sha256:<hex>` of the first certificate (DER) of `pem`: what `berth ca
/// fingerprint` shows and `berth login --ca-fingerprint` pins.
pub fn fingerprint(pem: &str) -> anyhow::Result<String> {
    let digest = ca::digest_of_pem(pem).context("reading the CA certificate")?;
    Ok(format!("sha256:{digest}"))
}

/// [`fingerprint`] of every certificate of `pem`, in order.
pub fn fingerprints(pem: &str) -> Vec<String> {
    pem.split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.trim().starts_with("-----BEGIN"))
        .filter_map(|b| fingerprint(b).ok())
        .collect()
}

/// Whether two fingerprints name the same certificate, however written:
/// with or without `sha256:`, in either case, with or without the colons
/// `openssl x509 -fingerprint` puts between bytes.
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim();
        let s = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256:"))
            .map_or(s, |_| &s[7..]);
        s.chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    let (a, b) = (norm(a), norm(b));
    a.len() == 64 && a == b
}

/// A client bundle unpacked in a directory (`BERTH_CERT_PATH`, which its
/// `env.sh` sets): the cluster root CA to trust, the user's certificate and
/// its key, presented in the TLS handshake instead of a bearer token.
#[derive(Clone)]
pub struct BundleDir {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for BundleDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BundleDir { .. }")
    }
}

impl BundleDir {
    pub fn load(dir: &Path) -> anyhow::Result<BundleDir> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "reading {} (BERTH_CERT_PATH names the directory of an unzipped client bundle)",
                    p.display()
                )
            })
        };
        Ok(BundleDir {
            ca_pem: read("ca.pem")?,
            cert_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
        })
    }
}

/// `ca_pem` with every certificate of `roots` it lacks appended: the CLI
/// keeps trusting a root it knew (until the file is rewritten) and learns a
/// new one when a manager starts after a rotation.
pub fn with_roots(ca_pem: &str, roots: &str) -> String {
    let mut out = ca_pem.trim_end().to_string();
    for block in roots.split_inclusive("-----END CERTIFICATE-----") {
        let block = block.trim();
        if block.starts_with("-----BEGIN") && !out.contains(block) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(block);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_roots_appends_only_what_is_missing() {
        let a = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----";
        let b = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----";
        let both = format!("{a}\n{b}\n");
        assert_eq!(super::with_roots(a, &both), both);
        assert_eq!(super::with_roots(&both, b), both);
        assert_eq!(super::with_roots("", a), format!("{a}\n"));
    }
}
