//! Tables and JSON for command output, docker-style: a header row, columns
//! separated by spaces, no borders.

use comfy_table::{presets::NOTHING, ContentArrangement, Table};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    // comfy-table pads each cell by one space on both sides; drop the leading one.
    t.to_string()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// "3 seconds ago", "2 minutes ago", as the docker CLI says it.
pub fn ago(t: api::Timestamp) -> String {
    let d = t.until(api::Timestamp::now()).as_secs();
    let (n, unit) = match d {
        0 => return "Less than a second ago".into(),
        1..=59 => (d, "second"),
        60..=3599 => (d / 60, "minute"),
        3600..=86399 => (d / 3600, "hour"),
        _ => (d / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// "yes" or "no", for a flag in a table.
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A time, or `none` when there is none (a token that never expires).
pub fn time_or(t: Option<api::Timestamp>, none: &str) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| none.to_string())
}

/// `Key:  value` lines, the values aligned, for one object shown to a human.
pub fn fields(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_columns_without_borders() {
        let out = super::table(
            &["ID", "NAME"],
            vec![
                vec!["abc".into(), "web".into()],
                vec!["d".into(), "api-long".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ID"), "{out}");
        let col = lines[0].find("NAME").unwrap();
        assert_eq!(lines[1].find("web").unwrap(), col, "{out}");
        assert_eq!(lines[2].find("api-long").unwrap(), col, "{out}");
    }
}
