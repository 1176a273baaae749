//! The credential a CLI presents: the API addresses, the bearer token, and
//! the cluster root CA certificate(s), which sign every manager's API
//! certificate: the CLI trusts them and nothing else.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Credentials {
    /// `host:port` of a manager's API, tried first.
    pub host: String,
    /// The API addresses of the other managers, tried in turn when `host`
    /// cannot be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<String>,
    pub token: String,
    /// PEM of the cluster root CA(s) the API certificates chain to.
    pub ca_pem: String,
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
