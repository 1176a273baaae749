//! Where berth keeps things on a machine: the node's data dir and the CLI's
//! credentials (DESIGN.md §4), and the environment that points the CLI at
//! other credentials (a client bundle, a CA fingerprint).

use std::path::PathBuf;

/// `/var/lib/berth` as root, otherwise `~/.local/share/berth`.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/lib/berth")
    } else {
        home().join(".local/share/berth")
    }
}

/// `$BERTH_CONFIG_DIR`, else `$XDG_CONFIG_HOME/berth`, else `~/.config/berth`.
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("berth");
    }
    home().join(".config/berth")
}

/// The file `berth up` writes the admin credential to, and the CLI reads.
pub fn credentials_file() -> PathBuf {
    config_dir().join("credentials.json")
}

/// `$BERTH_CERT_PATH`: the directory of an unzipped client bundle, whose
/// `env.sh` sets it. When set, the CLI presents that bundle's certificate
/// and reads no credentials file.
pub fn bundle_dir() -> Option<PathBuf> {
    std::env::var_os("BERTH_CERT_PATH")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// `$BERTH_CA_FINGERPRINT`: the cluster root CA to trust (`sha256:…`)
/// when no credentials file says which.
pub fn ca_fingerprint() -> Option<String> {
    std::env::var("BERTH_CA_FINGERPRINT")
        .ok()
        .filter(|f| !f.trim().is_empty())
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}
