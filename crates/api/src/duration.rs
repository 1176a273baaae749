//! Durations in specs are written as human text ("10s", "1m 30s", "500ms") in
//! JSON, so that `inspect` output reads like the flags that set them.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Parses "10s", "1m30s", "250ms" or a bare number of seconds ("0", "5").
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_common_forms() {
        use std::time::Duration;
        assert_eq!(super::parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(super::parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(super::parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(super::parse("0").unwrap(), Duration::ZERO);
        assert!(super::parse("soon").is_err());
    }
}
