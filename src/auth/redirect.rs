//! Validation of the `next` parameter, so sign-in cannot redirect to another site.

/// Where to go after sign-in when `next` is absent or unsafe.
pub const DEFAULT_NEXT: &str = "/nixtla";

const NEXT_MAX_BYTES: usize = 2048;

/// Returns `next` if it is a path on this site, else [`DEFAULT_NEXT`].
///
/// Accepted: an absolute path such as `/nixtla?tab=1`. Rejected: anything with a
/// scheme or host, protocol-relative `//host`, backslashes (browsers treat `/\host`
/// as `//host`), `//` or dot segments anywhere (normalizing proxies can turn
/// `/.//host` into `//host`), non-ASCII, control characters or whitespace, and values
/// over 2048 bytes.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if is_local_path(next) => next.to_owned(),
        _ => DEFAULT_NEXT.to_owned(),
    }
}

fn is_local_path(next: &str) -> bool {
    next.starts_with('/')
        && next.len() <= NEXT_MAX_BYTES
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && !next.contains("//")
        && !has_dot_segment(next)
        && !contains_encoded_separator(next)
}

fn has_dot_segment(next: &str) -> bool {
    let path = next.split(['?', '#']).next().unwrap_or_default();
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Rejects percent-encoded slashes, backslashes, dots and control bytes, which some
/// proxies and frameworks decode before redirecting.
fn contains_encoded_separator(next: &str) -> bool {
    let lower = next.to_ascii_lowercase();
    ["%2f", "%5c", "%2e", "%00", "%09", "%0a", "%0d"]
        .iter()
        .any(|encoded| lower.contains(encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_kept() {
        assert_eq!(safe_next(Some("/nixtla")), "/nixtla");
        assert_eq!(safe_next(Some("/api/me?x=1")), "/api/me?x=1");
    }

    #[test]
    fn offsite_targets_fall_back() {
        let cases = [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2f/evil.example",
            "/%5cevil.example",
            "javascript:alert(1)",
            " /nixtla",
            "/ni\nxtla",
            "",
            "nixtla",
            "/.//evil.example",
            "/a/../b",
            "/.%2E/evil.example",
            "/caf\u{e9}",
        ];
        for case in cases {
            assert_eq!(safe_next(Some(case)), DEFAULT_NEXT, "case {case:?}");
        }
        assert_eq!(safe_next(None), DEFAULT_NEXT);
        assert_eq!(
            safe_next(Some(&format!("/{}", "a".repeat(3000)))),
            DEFAULT_NEXT
        );
    }
}
