//! Label escaping: any value escaped by nixtla and any label set it renders
//! must parse back, with Loki's Go and PromQL string rules, to exactly what
//! went in. Label names and values are also checked against Loki's limits.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nixtla::loki::{Labels, escape_go_string};
use nixtla_fuzz::selector::{parse_selector, unquote};

/// Loki's `max_label_names_per_series`, `max_label_name_length` and
/// `max_label_value_length` defaults.
const MAX_LABELS: usize = 15;
const MAX_NAME_BYTES: usize = 1024;
const MAX_VALUE_BYTES: usize = 2048;

#[derive(Debug, Arbitrary)]
struct Input {
    value: String,
    labels: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    check_escape(&input.value);
    check_selector(&input.labels);
});

fn check_escape(value: &str) {
    let mut escaped = String::new();
    escape_go_string(&mut escaped, value);
    let control = escaped.chars().find(|c| c.is_control());
    assert_eq!(control, None, "raw control character in {escaped:?}");
    let literal = format!("\"{escaped}\"");
    match unquote(&literal) {
        Ok(bytes) => assert_eq!(bytes, value.as_bytes(), "{literal} decodes to other bytes"),
        Err(error) => panic!("Loki's PromQL lexer would reject {literal}: {error}"),
    }
}

fn check_selector(pairs: &[(String, String)]) {
    let mut labels = Labels::new();
    let mut expected = BTreeMap::new();
    for (name, value) in pairs {
        let valid = is_valid_name(name)
            && !value.is_empty()
            && value.len() <= MAX_VALUE_BYTES
            && (expected.contains_key(name) || expected.len() < MAX_LABELS);
        let result = labels.insert(name, value);
        assert_eq!(
            result.is_ok(),
            valid,
            "insert({name:?}, {value:?}) = {result:?}"
        );
        if valid {
            expected.insert(name.clone(), value.as_bytes().to_vec());
        }
    }
    let selector = labels.to_selector();
    let parsed = parse_selector(&selector)
        .unwrap_or_else(|error| panic!("Loki would reject {selector:?}: {error}"));
    let expected: Vec<_> = expected.into_iter().collect();
    assert_eq!(
        parsed, expected,
        "selector {selector:?} parses to other labels"
    );
}

/// Loki's label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`
/// (reserved), at most the maximum name length.
fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some((first, rest)) = bytes.split_first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || *first == b'_')
        && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !name.starts_with("__")
        && name.len() <= MAX_NAME_BYTES
}
