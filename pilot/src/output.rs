//! Output formats. Every command builds its answer as data, then renders it with a pure
//! function `(data, format) -> String` that tests call without a network: `human` for people
//! (SPIKE's wording where SPIKE has one), `json` and `yaml` for scripts.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Text for people.
    #[default]
    #[value(alias = "h", alias = "plain", alias = "p")]
    Human,
    /// JSON, one document.
    #[value(alias = "j")]
    Json,
    /// YAML, one document.
    #[value(alias = "y")]
    Yaml,
}

/// What a command prints on stdout and the exit code it ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// What goes to stdout: newline-terminated text, or raw bytes (`cipher` stream mode).
    pub stdout: Vec<u8>,
    /// Process exit code.
    pub code: u8,
}

impl Output {
    /// A successful answer.
    pub fn ok(stdout: String) -> Self {
        Output {
            stdout: stdout.into_bytes(),
            code: 0,
        }
    }
}

/// `value` as JSON or YAML; `None` for [`Format::Human`], which each command renders itself.
pub fn structured<T: Serialize + ?Sized>(value: &T, format: Format) -> Option<String> {
    match format {
        Format::Human => None,
        Format::Json => Some(match serde_json::to_string_pretty(value) {
            Ok(text) => text + "\n",
            // Our types always serialise; say so rather than panic if one ever does not.
            Err(e) => format!("{{\"error\": \"cannot render JSON: {e}\"}}\n"),
        }),
        Format::Yaml => Some(match serde_norway::to_string(value) {
            Ok(text) if text.ends_with('\n') => text,
            Ok(text) => text + "\n",
            Err(e) => format!("error: cannot render YAML: {e}\n"),
        }),
    }
}

/// A time for people: RFC 3339, UTC, to the second (json and yaml keep full precision).
pub fn time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_formats() {
        let value = serde_json::json!({"a": [1, 2]});
        assert_eq!(structured(&value, Format::Human), None);
        let json = structured(&value, Format::Json).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).ok(),
            Some(value.clone())
        );
        assert!(json.ends_with('\n'));
        let yaml = structured(&value, Format::Yaml).unwrap_or_default();
        assert_eq!(
            serde_norway::from_str::<serde_json::Value>(&yaml).ok(),
            Some(value)
        );
        assert!(yaml.ends_with('\n'));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time(OffsetDateTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let later = OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_500_000_000);
        assert_eq!(time(later), "1970-01-01T00:00:01Z");
        let east =
            later.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap_or(time::UtcOffset::UTC));
        assert_eq!(time(east), "1970-01-01T00:00:01Z");
    }
}
