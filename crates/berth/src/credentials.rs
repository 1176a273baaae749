//! The credential a CLI presents: the API address, the bearer token, and the
//! API's certificate, which the CLI trusts and nothing else.

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
    /// PEM of the certificate (or CA) the API presents.
    pub ca_pem: String,
}

impl Credentials {
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
