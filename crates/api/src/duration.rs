//! Durations in specs are written as human text ("10s", "1m 30s", "500ms") in
//! JSON, so that `inspect` output reads like the flags that set them.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format(*d))
}

/// Human text in days, hours, minutes, seconds and smaller ("90d",
/// "1h 30m", "250ms"): never months or years, whose length humantime takes
/// as 30.44 and 365.25 days, so that 90 days would read "2months 29days 2h…".
pub fn format(d: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    let secs = d.as_secs();
    let (days, rest) = (secs / DAY, secs % DAY);
    let mut text = if days > 0 {
        format!("{days}d")
    } else {
        String::new()
    };
    let below = humantime::format_duration(Duration::new(rest, d.subsec_nanos())).to_string();
    if below != "0s" || text.is_empty() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&below);
    }
    text
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

    #[test]
    fn formats_in_days_at_most_and_parses_back() {
        use std::time::Duration;
        let day = 24 * 3600;
        for (d, text) in [
            (Duration::from_secs(90 * day), "90d"),
            (Duration::from_secs(2 * day + 3600), "2d 1h"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(20 * 365 * day), "7300d"),
        ] {
            assert_eq!(super::format(d), text);
            assert_eq!(super::parse(text).unwrap(), d, "{text}");
        }
    }
}
