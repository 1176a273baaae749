//! Parsers for flag values: `KEY=VALUE`, sizes ("512MiB", "1g"), CPU counts
//! ("0.5"); and the flags shared by commands that found a cluster.

/// Where the first admin's password comes from when a node founds a
/// cluster (`up`, `init`): a file or the environment, never a flag's value
/// (which `ps` would show); without either, a random one is printed once.
#[derive(clap::Args, Debug, Default)]
pub struct AdminPassword {
    /// Read the password of the first admin user (`admin`) from this file
    /// (its first line) [default: $BERTH_ADMIN_PASSWORD, else a random one, printed once].
    #[arg(long, value_name = "FILE")]
    pub admin_password_file: Option<std::path::PathBuf>,
}

impl AdminPassword {
    pub fn read(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context;
        if let Some(f) = &self.admin_password_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the admin password from {}", f.display()))?;
            let line = text.lines().next().unwrap_or_default().to_string();
            return Ok(Some(line));
        }
        Ok(std::env::var("BERTH_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()))
    }

    /// The lines that show a password made at random, once.
    pub fn announce(password: &str) -> String {
        format!(
            "  admin user:   admin, password {password}\n                \
             (shown this once: log in with `berth login --username admin`, then change it with `berth user passwd`)"
        )
    }
}

/// `KEY=VALUE` (a value may be empty; the key may not).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Bytes from "1024", "64k", "512MiB", "1.5G" (binary multiples, as docker).
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512MiB, 1G)"))?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use b, k, m, g, t)")),
    };
    if n < 0.0 || !n.is_finite() {
        return Err(format!("{s:?} is not a size"));
    }
    Ok((n * mult as f64) as u64)
}

/// Billionths of a CPU from "0.5", "2".
pub fn nano_cpus(s: &str) -> Result<u64, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of CPUs (e.g. 0.5)"))?;
    if n < 0.0 || !n.is_finite() {
        return Err(format!("{s:?} is not a number of CPUs"));
    }
    Ok((n * 1e9).round() as u64)
}

pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    api::duration::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        assert_eq!(key_value("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(key_value("A=").unwrap(), ("A".into(), "".into()));
        assert!(key_value("=x").is_err());
        assert!(key_value("x").is_err());
        assert_eq!(bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(bytes("1g").unwrap(), 1 << 30);
        assert_eq!(bytes("100").unwrap(), 100);
        assert!(bytes("12 parsecs").is_err());
        assert_eq!(nano_cpus("0.5").unwrap(), 500_000_000);
        assert!(nano_cpus("lots").is_err());
    }
}
