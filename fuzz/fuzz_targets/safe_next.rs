//! The `next` validator: whatever `safe_next` returns, resolved as a URL
//! reference the way a browser resolves a `Location` header, must stay on
//! the site. So must the value after one round of percent-decoding, which
//! some proxies and frameworks apply before redirecting.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nixtla::auth::redirect::{DEFAULT_NEXT, safe_next};
use url::Url;

/// Pages a redirect can be resolved against: the site root, the sign-in
/// callback, and a nested path, since relative references depend on it.
const BASES: [&str; 3] = [
    "https://app.example/",
    "https://app.example/auth?code=c&state=s",
    "https://app.example/a/b/",
];

fuzz_target!(|data: &[u8]| {
    let next = String::from_utf8_lossy(data);
    let result = safe_next(Some(&next));
    assert!(
        result == next || result == DEFAULT_NEXT,
        "safe_next returned {result:?}, neither the input nor the default"
    );
    assert!(
        result.starts_with('/'),
        "accepted {result:?}, not an absolute path"
    );
    check_on_site(&result, &result);

    let decoded: Vec<u8> = percent_decode(result.as_bytes());
    let decoded = String::from_utf8_lossy(&decoded);
    check_on_site(&decoded, &result);
});

fn check_on_site(reference: &str, accepted: &str) {
    for base in BASES {
        let base = Url::parse(base).unwrap();
        let resolved = base.join(reference).unwrap_or_else(|error| {
            panic!("{reference:?} (from {accepted:?}) does not resolve: {error}")
        });
        assert_eq!(
            resolved.scheme(),
            "https",
            "{accepted:?} resolves to {resolved}"
        );
        assert_eq!(
            resolved.host_str(),
            Some("app.example"),
            "{accepted:?} resolves to {resolved}"
        );
        assert_eq!(resolved.port(), None, "{accepted:?} resolves to {resolved}");
        assert_eq!(
            resolved.username(),
            "",
            "{accepted:?} resolves to {resolved}"
        );
        assert_eq!(
            resolved.password(),
            None,
            "{accepted:?} resolves to {resolved}"
        );
        assert!(
            !resolved.path().starts_with("//"),
            "{accepted:?} resolves to the path {}, which reads as a host when reused",
            resolved.path()
        );
    }
}

/// Decodes every valid `%XX` once and leaves other bytes alone.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut output = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        let hex = match input.get(index + 1..index + 3) {
            Some(&[high, low]) => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match (input[index], hex) {
            (b'%', Some((high, low))) => {
                output.push(high * 16 + low);
                index += 3;
            }
            (byte, _) => {
                output.push(byte);
                index += 1;
            }
        }
    }
    output
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}
