//! Open-redirect payloads for `next`: every one must land on a path of this site.

mod common;

use common::{TestApp, browser_like_client, location};

/// Builds more than 500 `next` values from known open-redirect shapes: scheme and
/// protocol-relative prefixes, backslash and encoded variants, whitespace and
/// control characters that browsers strip, and user-info tricks.
fn payloads() -> Vec<String> {
    let prefixes = [
        "//",
        "///",
        "////",
        "/\\",
        "\\/",
        "\\\\",
        "/\\/",
        "/%2f",
        "/%2F",
        "/%5c",
        "/%5C",
        "%2f%2f",
        "%5c%5c",
        "/%09/",
        "/%0a/",
        "/%0d/",
        "/%00/",
        "https://",
        "http://",
        "HTTPS://",
        "https:",
        "https:/",
        "//:",
        "javascript:",
        "JaVaScRiPt:",
        "data:",
        " //",
        "\t//",
        "\n//",
        "/ /",
        "/\t/",
        "%20//",
        "/.//",
        "/..//",
        "\u{3000}//",
    ];
    let hosts = [
        "evil.example",
        "evil.example/",
        "evil.example/nixtla",
        "127.0.0.1@evil.example",
        "user:pass@evil.example",
        "evil.example%2f%2e%2e",
        "evil.example:443",
        "evil。example",
        "[::1]",
        "0x7f.1",
        "evil.example?x=/nixtla",
        "evil.example#/nixtla",
        "alert(1)",
        "text/html,<script>alert(1)</script>",
        "%65vil.example",
    ];
    let mut values: Vec<String> = prefixes
        .iter()
        .flat_map(|prefix| hosts.iter().map(move |host| format!("{prefix}{host}")))
        .collect();
    values.extend(
        [
            "",
            "nixtla",
            "./nixtla",
            "../nixtla",
            "?next=//evil.example",
        ]
        .map(String::from),
    );
    values
}

fn is_local_path(location: &str) -> bool {
    let mut chars = location.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/') | Some('\\'))
        && !location.contains('\\')
        && !location.to_ascii_lowercase().contains("%2f")
        && !location.to_ascii_lowercase().contains("%5c")
}

#[tokio::test]
async fn open_redirect_payloads_stay_on_site() {
    let payloads = payloads();
    assert!(payloads.len() >= 500, "only {} payloads", payloads.len());
    let app = TestApp::spawn_dev().await;
    let mut escaped = Vec::new();
    for next in &payloads {
        let client = browser_like_client();
        let response = client
            .post(app.url("/login"))
            .form(&[("name", "Ada"), ("email", "a@example.org"), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "next {next:?}");
        let target = location(&response);
        if !is_local_path(&target) {
            escaped.push(format!("{next:?} -> {target:?}"));
        }
    }
    assert!(
        escaped.is_empty(),
        "redirects left the site:\n{}",
        escaped.join("\n")
    );
}

#[tokio::test]
async fn login_query_next_is_checked_for_signed_in_users() {
    let app = TestApp::spawn_dev().await;
    let client = browser_like_client();
    client
        .post(app.url("/login"))
        .form(&[("name", "Ada"), ("email", "a@example.org")])
        .send()
        .await
        .unwrap();
    for next in [
        "//evil.example",
        "/%2F%2Fevil.example",
        "https://evil.example",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let response = client
            .get(app.url(&format!("/login?next={encoded}")))
            .send()
            .await
            .unwrap();
        assert_eq!(location(&response), "/nixtla", "next {next:?}");
    }
}
