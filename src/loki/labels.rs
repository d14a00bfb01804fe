//! Stream labels: validation, parsing of `k=v,…` lists, and rendering as the
//! LogQL selector string that Loki parses (`{env="dev", service_name="nixtla"}`).
//!
//! Loki parses the selector with Go string syntax, so values are escaped with
//! Go escapes (`\"`, `\\`, `\n`, `\xHH`, `\uHHHH`). Rust's `{:?}` is not
//! usable here: it writes `\0` and `\u{a0}`, which Go rejects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Maximum number of label names in one stream (Loki's `max_label_names_per_series`).
pub const MAX_LABELS: usize = 15;
/// Maximum length of a label name in bytes (Loki's `max_label_name_length`).
pub const MAX_NAME_BYTES: usize = 1024;
/// Maximum length of a label value in bytes (Loki's `max_label_value_length`).
pub const MAX_VALUE_BYTES: usize = 2048;

/// A reason a label set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("invalid label name {0:?}: names must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
    #[error("label name {0:?} is reserved: names starting with \"__\" are internal to Loki")]
    ReservedName(String),
    #[error("label name {name:?} is {len} bytes long, the maximum is {MAX_NAME_BYTES}")]
    NameTooLong { name: String, len: usize },
    #[error("label {name:?} has an empty value, which Loki drops: set a value or remove it")]
    EmptyValue { name: String },
    #[error("label {name:?} has a {len}-byte value, the maximum is {MAX_VALUE_BYTES}")]
    ValueTooLong { name: String, len: usize },
    #[error("{count} labels given, the maximum is {MAX_LABELS}")]
    TooMany { count: usize },
    #[error("invalid label list entry {0:?}: expected name=value")]
    MissingEquals(String),
}

/// A validated set of stream labels, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Creates an empty label set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a label, replacing an earlier value of the same name.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), LabelError> {
        validate_name(name)?;
        validate_value(name, value)?;
        if !self.0.contains_key(name) && self.0.len() == MAX_LABELS {
            return Err(LabelError::TooMany {
                count: MAX_LABELS + 1,
            });
        }
        self.0.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    /// Adds every `name=value` pair of a comma-separated list such as
    /// `team=web,region=eu`. Whitespace around names and values is trimmed,
    /// and an empty list adds nothing. Values cannot contain commas.
    pub fn extend_from_list(&mut self, list: &str) -> Result<(), LabelError> {
        for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| LabelError::MissingEquals(pair.to_owned()))?;
            self.insert(name.trim(), value.trim())?;
        }
        Ok(())
    }

    /// Returns the value of a label.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Iterates over `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Renders the selector string Loki expects in `StreamAdapter.labels`.
    pub fn to_selector(&self) -> String {
        let mut out = String::from("{");
        for (index, (name, value)) in self.iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            out.push_str(name);
            out.push_str("=\"");
            escape_go_string(&mut out, value);
            out.push('"');
        }
        out.push('}');
        out
    }
}

/// Checks a label name against Loki's rules.
///
/// Names match `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__`. Loki
/// parses the selector with the Prometheus PromQL lexer, which rejects `:`
/// inside braces ("unexpected character inside braces") although the
/// Prometheus data model allows it in names.
pub fn validate_name(name: &str) -> Result<(), LabelError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(LabelError::InvalidName(name.to_owned()));
    }
    if name.starts_with("__") {
        return Err(LabelError::ReservedName(name.to_owned()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(LabelError::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    Ok(())
}

fn validate_value(name: &str, value: &str) -> Result<(), LabelError> {
    if value.is_empty() {
        return Err(LabelError::EmptyValue {
            name: name.to_owned(),
        });
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(LabelError::ValueTooLong {
            name: name.to_owned(),
            len: value.len(),
        });
    }
    Ok(())
}

/// Appends `value` escaped for the inside of a Go double-quoted string.
///
/// Control characters and invisible Unicode (non-ASCII spaces, zero-width
/// and direction marks) are escaped so the selector stays readable in logs;
/// Go decodes every escape back to the same character. U+FFFD is escaped too,
/// because the PromQL lexer takes a literal U+FFFD for invalid UTF-8 and
/// rejects the selector. Other characters, combining marks included, are
/// written as they are.
pub fn escape_go_string(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_unicode_escape(c) => {
                let code = c as u32;
                if code <= 0xffff {
                    let _ = write!(out, "\\u{code:04x}");
                } else {
                    let _ = write!(out, "\\U{code:08x}");
                }
            }
            c => out.push(c),
        }
    }
}

/// Returns true for non-ASCII characters that render as nothing or as plain
/// space (C1 controls, Unicode spaces, and the common format characters),
/// and for U+FFFD, which Loki rejects when written as it is.
fn needs_unicode_escape(c: char) -> bool {
    if c.is_ascii() {
        return false;
    }
    c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | char::REPLACEMENT_CHARACTER
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        escape_go_string(&mut out, value);
        out
    }

    #[test]
    fn escape_uses_go_syntax() {
        let cases = [
            ("plain", "plain"),
            ("say \"hi\"", "say \\\"hi\\\""),
            ("back\\slash", "back\\\\slash"),
            ("cr\rlf\n", "cr\\rlf\\n"),
            ("tab\t", "tab\\t"),
            ("nul\0", "nul\\x00"),
            ("del\u{7f}", "del\\x7f"),
            ("nbsp\u{a0}", "nbsp\\u00a0"),
            ("zwsp\u{200b}", "zwsp\\u200b"),
            ("bom\u{feff}", "bom\\ufeff"),
            ("bad\u{fffd}", "bad\\ufffd"),
            ("e\u{301}", "e\u{301}"),
            ("ünïcödé 日本", "ünïcödé 日本"),
            ("tag\u{e0041}", "tag\u{e0041}"),
        ];
        for (input, expected) in cases {
            assert_eq!(escaped(input), expected, "escaping {input:?}");
        }
    }

    #[test]
    fn escape_differs_from_rust_debug() {
        let value = "\0\u{a0}";
        assert_eq!(escaped(value), "\\x00\\u00a0");
        assert_ne!(format!("{value:?}"), format!("\"{}\"", escaped(value)));
    }

    #[test]
    fn selector_is_sorted_and_quoted() {
        let mut labels = Labels::new();
        labels.insert("service_name", "nixtla").unwrap();
        labels.insert("env", "dev").unwrap();
        labels.insert("note", "a\"b").unwrap();
        assert_eq!(
            labels.to_selector(),
            r#"{env="dev", note="a\"b", service_name="nixtla"}"#
        );
    }

    #[test]
    fn empty_selector() {
        assert_eq!(Labels::new().to_selector(), "{}");
    }

    #[test]
    fn list_parsing_trims_and_overrides() {
        let mut labels = Labels::new();
        labels.insert("env", "dev").unwrap();
        labels
            .extend_from_list(" team = web , env=prod,,region=eu-1 ")
            .unwrap();
        assert_eq!(labels.get("team"), Some("web"));
        assert_eq!(labels.get("env"), Some("prod"));
        assert_eq!(labels.get("region"), Some("eu-1"));
    }

    #[test]
    fn list_entry_without_equals_is_rejected() {
        let error = Labels::new().extend_from_list("team").unwrap_err();
        assert_eq!(error, LabelError::MissingEquals("team".into()));
    }

    #[test]
    fn invalid_names_are_rejected() {
        for name in ["", "1abc", "a-b", "a.b", "é", "a b", ":a", "a:b"] {
            let error = validate_name(name).unwrap_err();
            assert_eq!(error, LabelError::InvalidName(name.into()), "{name:?}");
        }
        for name in ["a", "_a", "a_b_c9", "A"] {
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn reserved_names_are_rejected() {
        let error = validate_name("__name__").unwrap_err();
        assert_eq!(error, LabelError::ReservedName("__name__".into()));
    }

    #[test]
    fn length_limits_are_enforced() {
        let long_name = "a".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            validate_name(&long_name),
            Err(LabelError::NameTooLong { .. })
        ));
        let mut labels = Labels::new();
        let long_value = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(matches!(
            labels.insert("a", &long_value),
            Err(LabelError::ValueTooLong { .. })
        ));
        assert!(matches!(
            labels.insert("a", ""),
            Err(LabelError::EmptyValue { .. })
        ));
    }

    #[test]
    fn label_count_is_capped() {
        let mut labels = Labels::new();
        for index in 0..MAX_LABELS {
            labels.insert(&format!("l{index}"), "v").unwrap();
        }
        labels.insert("l0", "replaced").unwrap();
        let error = labels.insert("one_more", "v").unwrap_err();
        assert_eq!(error, LabelError::TooMany { count: 16 });
    }
}
