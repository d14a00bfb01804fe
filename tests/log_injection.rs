//! Log injection and secrets: hostile names and request paths must each give one
//! valid JSON line on stdout and one Loki entry with the same bytes, and no
//! secret of a full sign-in may appear in either.
//!
//! The app runs as a real process, shipping to the Loki test receiver, and the
//! OpenID sign-ins go through the real test provider.

mod common;
mod loki_common;

use std::time::{Duration, Instant};

use common::{
    TEST_SESSION_KEY, TestApp, browser_like_client, free_port,
    oidc::{CLIENT_ID, CLIENT_SECRET, TestProvider, start_login},
};
use loki_common::{Receiver, StoredEntry};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Bytes that break naive log formats: line breaks, quotes, backslashes, an
/// ANSI color escape, JavaScript's line separator U+2028, NUL, C1 NEL, and
/// text shaped like a second JSON object.
const HOSTILE_TEXT: &str = "Ada\r\nforged \"quoted\" C:\\dir \u{1b}[31mred\u{1b}[0m \u{2028}sep\0nul\u{85}nel\"}\n{\"event\":\"login\"";

/// `HOSTILE_TEXT` as a display name: control characters (CR, LF, ESC, NUL,
/// NEL) removed, everything else kept.
const HOSTILE_NAME_CLEANED: &str =
    "Adaforged \"quoted\" C:\\dir [31mred[0m \u{2028}sepnulnel\"}{\"event\":\"login\"";

/// Maximum wait for entries to reach the receiver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts the app with Loki shipping to `receiver`, flushing batches every 20 ms.
async fn spawn_shipping(receiver: &Receiver, port: u16, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("LOKI_URL", receiver.url.as_str()),
        ("LOKI_BATCH_MAX_WAIT_MS", "20"),
    ];
    env.extend_from_slice(extra);
    TestApp::spawn_on(port, &env).await
}

/// Parses every stdout line as a JSON object and panics on the first that is not.
fn stdout_objects(app: &TestApp) -> Vec<(String, Value)> {
    app.stdout_lines()
        .into_iter()
        .map(|line| match serde_json::from_str(&line) {
            Ok(object @ Value::Object(_)) => (line, object),
            other => panic!("stdout line is not a JSON object: {line:?}: {other:?}"),
        })
        .collect()
}

/// Returns the stdout lines whose object satisfies `filter`.
fn stdout_matching(app: &TestApp, filter: impl Fn(&Value) -> bool) -> Vec<String> {
    let objects = stdout_objects(app);
    objects
        .into_iter()
        .filter(|(_, object)| filter(object))
        .map(|(line, _)| line)
        .collect()
}

/// Waits until the receiver contains `count` entries whose parsed line satisfies
/// `filter`, then waits a little more so a duplicate would show up as well.
async fn loki_matching(
    receiver: &Receiver,
    count: usize,
    filter: impl Fn(&Value) -> bool,
) -> Vec<StoredEntry> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let select = |entries: Vec<StoredEntry>| -> Vec<StoredEntry> {
        entries
            .into_iter()
            .filter(|entry| filter(&parse_object(&entry.line)))
            .collect()
    };
    loop {
        let found = select(receiver.entries().await);
        if found.len() >= count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver has {} of {count} expected entries after {DELIVERY_TIMEOUT:?}; \
             push statuses: {:?}",
            found.len(),
            receiver.statuses().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    select(receiver.entries().await)
}

/// Parses a line as a JSON object. Indexing the result with a missing field
/// gives `Value::Null` instead of panicking.
fn parse_object(line: &str) -> Value {
    match serde_json::from_str(line) {
        Ok(object @ Value::Object(_)) => object,
        other => panic!("Loki line is not a JSON object: {line:?}: {other:?}"),
    }
}

/// Asserts that exactly one stdout line and exactly one Loki entry match, that
/// both hold the same bytes, and returns the parsed object.
async fn assert_one_line_and_entry(
    app: &TestApp,
    receiver: &Receiver,
    case: &str,
    filter: impl Fn(&Value) -> bool + Copy,
) -> Value {
    let entries = loki_matching(receiver, 1, filter).await;
    let lines = stdout_matching(app, filter);
    assert_eq!(lines.len(), 1, "{case}: stdout lines {lines:#?}");
    assert_eq!(entries.len(), 1, "{case}: Loki entries {entries:#?}");
    assert_eq!(
        entries[0].line, lines[0],
        "{case}: Loki line differs from stdout"
    );
    for line in &lines {
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "{case}: {line:?}"
        );
    }
    parse_object(&lines[0])
}

/// Form-encodes `value` byte by byte, so invalid UTF-8 can be sent.
fn form_encode(value: &[u8]) -> String {
    value.iter().map(|byte| format!("%{byte:02X}")).collect()
}

#[tokio::test]
async fn dev_login_names_give_one_line_each() {
    let receiver = Receiver::start(&[]);
    let app = spawn_shipping(&receiver, free_port(), &[]).await;
    let invalid_utf8: &[u8] = b"Ada \xff\xfe Lovelace \xc3";
    let cases: [(&[u8], &str); 7] = [
        (b"Ada\r\nLovelace", "AdaLovelace"),
        (b"Ada \"The\" Lovelace", "Ada \"The\" Lovelace"),
        (b"C:\\Users\\ada\\", "C:\\Users\\ada\\"),
        (b"\x1b[31mAda\x1b[0m\x07", "[31mAda[0m"),
        ("Ada\u{2028}Lovelace".as_bytes(), "Ada\u{2028}Lovelace"),
        (b"Ada\0Lovelace", "AdaLovelace"),
        (invalid_utf8, "Ada \u{fffd}\u{fffd} Lovelace \u{fffd}"),
    ];
    for (index, (name, expected)) in cases.into_iter().enumerate() {
        let email = format!("case{index}@example.org");
        let user_id = format!("dev:{email}");
        let client = browser_like_client();
        let body = format!("name={}&email={email}&next=/nixtla", form_encode(name));
        let response = client
            .post(app.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "sign-in of {name:?}");
        let page = client.get(app.url("/nixtla")).send().await.unwrap();
        assert_eq!(page.status(), 200, "page after sign-in of {name:?}");

        let case = format!("login of {name:?}");
        let login = assert_one_line_and_entry(&app, &receiver, &case, |object| {
            object["event"] == "login" && object["user_id"] == user_id.as_str()
        })
        .await;
        assert_eq!(login["user_name"], expected, "{case}");
        let case = format!("page view of {name:?}");
        let view = assert_one_line_and_entry(&app, &receiver, &case, |object| {
            object["event"] == "page_view" && object["user_id"] == user_id.as_str()
        })
        .await;
        assert_eq!(view["user_name"], expected, "{case}");
    }
    assert_metadata_matches_lines(&receiver).await;
}

#[tokio::test]
async fn dev_login_rejects_hostile_email_in_one_line() {
    let receiver = Receiver::start(&[]);
    let app = spawn_shipping(&receiver, free_port(), &[]).await;
    let body = format!(
        "name=Ada&email={}",
        form_encode(b"ada@example.org\r\n{\"event\":\"login\"}")
    );
    let response = browser_like_client()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let failed = assert_one_line_and_entry(&app, &receiver, "rejected email", |object| {
        object["event"] == "login_failed"
    })
    .await;
    assert_eq!(failed["reason"], "invalid_input");
    let logins = stdout_matching(&app, |object| object["event"] == "login");
    assert_eq!(logins, Vec::<String>::new(), "a rejected email signed in");
}

#[tokio::test]
async fn provider_claims_give_one_line_each() {
    let receiver = Receiver::start(&[]);
    let port = free_port();
    let provider = TestProvider::spawn(&format!("http://127.0.0.1:{port}/auth"));
    let env = [
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OAUTH_CLIENT_ID", CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("SESSION_KEY", TEST_SESSION_KEY),
    ];
    let app = spawn_shipping(&receiver, port, &env).await;
    let cases = [
        (
            "sub-crlf\r\n{\"event\":\"login\"}",
            "Ada\r\nLovelace",
            "AdaLovelace",
        ),
        (
            "sub-quote\"\\",
            "Ada \"The\" \\ Lovelace",
            "Ada \"The\" \\ Lovelace",
        ),
        ("sub-ansi\u{1b}[2J", "\u{1b}[31mAda\u{1b}[0m", "[31mAda[0m"),
        (
            "sub-sep\u{2028}",
            "Ada\u{2028}Lovelace",
            "Ada\u{2028}Lovelace",
        ),
        ("sub-nul\0", "Ada\0Lovelace", "AdaLovelace"),
        ("sub-all", HOSTILE_TEXT, HOSTILE_NAME_CLEANED),
    ];
    for (sub, name, expected_name) in cases {
        provider
            .set_user(json!({
                "sub": sub,
                "name": name,
                "email": "ada@example.com",
                "email_verified": true,
            }))
            .await;
        let client = browser_like_client();
        let pending = start_login(&client, &app, "/nixtla").await;
        let callback = client.get(pending.callback_url).send().await.unwrap();
        assert_eq!(callback.status(), 303, "sign-in of {sub:?}");

        let case = format!("login of {sub:?}");
        let login = assert_one_line_and_entry(&app, &receiver, &case, |object| {
            object["event"] == "login" && object["user_id"] == sub
        })
        .await;
        assert_eq!(login["user_name"], expected_name, "{case}");
    }
    assert_metadata_matches_lines(&receiver).await;
}

#[tokio::test]
async fn lone_surrogate_claim_fails_in_one_line() {
    let receiver = Receiver::start(&[]);
    let port = free_port();
    let provider = TestProvider::spawn(&format!("http://127.0.0.1:{port}/auth"));
    let env = [
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OAUTH_CLIENT_ID", CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("SESSION_KEY", TEST_SESSION_KEY),
    ];
    let app = spawn_shipping(&receiver, port, &env).await;
    // JSON has no invalid UTF-8, but a lone surrogate escape is its closest
    // form: JavaScript accepts it, and it has no UTF-8 encoding.
    let user = r#"{"sub":"sub-surrogate","name":"Ada \udc00 Lovelace",
        "email":"ada@example.com","email_verified":true}"#;
    let response = reqwest::Client::new()
        .post(format!("{}/control/user", provider.issuer))
        .header("content-type", "application/json")
        .body(user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "the provider accepts the user");
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let callback = client.get(pending.callback_url).send().await.unwrap();
    let status = callback.status().as_u16();

    let any_login =
        |object: &Value| object["event"] == "login" || object["event"] == "login_failed";
    let event = assert_one_line_and_entry(&app, &receiver, "lone surrogate", any_login).await;
    // serde_json rejects the escape while the token response is parsed, and a
    // response that carries an unreadable ID token counts as an invalid ID token.
    assert_eq!(event["event"], "login_failed", "{event}");
    assert_eq!(event["reason"], "id_token", "{event}");
    assert_eq!(status, 400);
}

/// Paths with hostile bytes, percent-encoded as a client must send them, each
/// with a query string that must not be logged.
const HOSTILE_PATHS: [&str; 9] = [
    "/x%0d%0a%7b%22event%22:%22login%22%7d",
    "/x%22quoted%22",
    "/x%5cback%5cslash",
    "/x%1b%5b31mred",
    "/x%e2%80%a8sep",
    "/x%00nul",
    "/x%ff%fe",
    "/nixtla%0a",
    "/login",
];

/// A query parameter that no log line may contain.
const QUERY_MARKER: &str = "query-marker-4711";

#[tokio::test]
async fn hostile_paths_give_one_line_each() {
    let receiver = Receiver::start(&[]);
    let app = spawn_shipping(&receiver, free_port(), &[]).await;
    let client = browser_like_client();
    for (index, path) in HOSTILE_PATHS.iter().enumerate() {
        let request_id = format!("path-case-{index}");
        let url = format!(
            "{}?next=%0d%0a{QUERY_MARKER}&token={QUERY_MARKER}",
            app.url(path)
        );
        let response = client
            .get(&url)
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let case = format!("request to {path}");
        let event = assert_one_line_and_entry(&app, &receiver, &case, |object| {
            object["request_id"] == request_id.as_str() && object["event"] == "http_request"
        })
        .await;
        assert_eq!(event["status"], status, "{case}");
        let expected_route = if *path == "/login" {
            "/login"
        } else {
            "unmatched"
        };
        assert_eq!(event["route"], expected_route, "{case}");
    }
    assert_no_line_contains(&app, &receiver, QUERY_MARKER).await;
}

#[tokio::test]
async fn raw_bytes_in_request_line_are_contained() {
    let receiver = Receiver::start(&[]);
    let app = spawn_shipping(&receiver, free_port(), &[]).await;
    // Sent over a plain socket, because HTTP clients escape these bytes. The
    // HTTP parser (hyper 1) responds with 400 itself for bytes outside the URI
    // grammar, so those requests never reach the app and are not logged.
    let cases: [(&[u8], bool); 4] = [
        (b"/x\"quoted\"", true),
        (b"/x\\back\\slash", true),
        (b"/x\xff\xfe", false),
        (b"/x\x1b[31m", false),
    ];
    for (index, (target, reaches_app)) in cases.into_iter().enumerate() {
        let request_id = format!("raw-case-{index}");
        let status = raw_get(app.port, target, &request_id).await;
        let case = format!("raw request to {target:?}");
        if !reaches_app {
            assert_eq!(status, 400, "{case}");
            continue;
        }
        let event = assert_one_line_and_entry(&app, &receiver, &case, |object| {
            object["request_id"] == request_id.as_str() && object["event"] == "http_request"
        })
        .await;
        assert_eq!(event["status"], status, "{case}");
        assert_eq!(event["route"], "unmatched", "{case}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for index in [2, 3] {
        let request_id = format!("raw-case-{index}");
        let lines = stdout_matching(&app, |object| object["request_id"] == request_id.as_str());
        assert_eq!(
            lines,
            Vec::<String>::new(),
            "a request rejected by the parser was logged"
        );
    }
    for (line, _) in stdout_objects(&app) {
        assert!(!line.contains('\u{1b}'), "raw ESC on stdout: {line:?}");
    }
}

/// Sends one GET with `target` as the exact request-target bytes and returns
/// the response status.
async fn raw_get(port: u16, target: &[u8], request_id: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the app");
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Request-Id: {request_id}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let head = String::from_utf8_lossy(&response);
    let status = head.split(' ').nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status line in {head:?}"))
}

#[tokio::test]
async fn full_sign_in_logs_no_secret() {
    let receiver = Receiver::start(&[]);
    let port = free_port();
    let provider = TestProvider::spawn(&format!("http://127.0.0.1:{port}/auth"));
    let env = [
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OAUTH_CLIENT_ID", CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("SESSION_KEY", TEST_SESSION_KEY),
        ("RUST_LOG", "trace"),
    ];
    let app = spawn_shipping(&receiver, port, &env).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let authorize_query = |name: &str| {
        pending
            .authorize_url
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_else(|| panic!("no {name} in the authorization request"))
    };
    let state = authorize_query("state");
    let nonce = authorize_query("nonce");
    let callback = client.get(pending.callback_url).send().await.unwrap();
    assert_eq!(callback.status(), 303);
    let session_cookie = callback
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find_map(|value| {
            let pair = value.split(';').next()?.to_owned();
            pair.strip_prefix("nixtla_session=").map(str::to_owned)
        })
        .expect("a session cookie after sign-in");
    let page = client.get(app.url("/nixtla")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let logout = client.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(logout.status(), 303);

    let tokens: Value = reqwest::get(format!("{}/control/last-tokens", provider.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = |name: &str| {
        tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {tokens}"))
            .to_owned()
    };
    let secrets = [
        ("authorization code", token("code")),
        ("PKCE verifier", token("code_verifier")),
        ("access token", token("access_token")),
        ("ID token", token("id_token")),
        ("ID token signature", last_segment(&token("id_token"))),
        ("client secret", CLIENT_SECRET.to_owned()),
        (
            "client secret in Basic auth",
            basic_auth(CLIENT_ID, CLIENT_SECRET),
        ),
        ("state", state),
        ("nonce", nonce),
        ("session cookie", session_cookie),
        ("session key", TEST_SESSION_KEY.to_owned()),
    ];
    loki_matching(&receiver, 1, |object| object["event"] == "logout").await;
    let stdout = app.stdout_lines();
    let stderr = app.stderr_lines();
    let loki: Vec<String> = receiver
        .entries()
        .await
        .into_iter()
        .map(|entry| format!("{} {:?}", entry.line, entry.metadata))
        .collect();
    assert!(stdout.len() > 10, "expected trace output, got {stdout:#?}");
    assert!(
        loki.len() > 10,
        "expected shipped trace output, got {loki:#?}"
    );
    for (name, secret) in &secrets {
        assert!(
            secret.len() >= 8,
            "{name} is too short to search for: {secret:?}"
        );
        for (source, lines) in [("stdout", &stdout), ("stderr", &stderr), ("Loki", &loki)] {
            let leaked = lines.iter().find(|line| line.contains(secret.as_str()));
            assert_eq!(leaked, None, "the {name} is in a {source} line");
        }
    }
}

fn last_segment(jwt: &str) -> String {
    jwt.rsplit('.').next().unwrap_or_default().to_owned()
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Asserts that each entry's structured metadata agrees with the fields of its
/// own line, so no value was altered on the way to Loki.
async fn assert_metadata_matches_lines(receiver: &Receiver) {
    for entry in receiver.entries().await {
        let object = parse_object(&entry.line);
        for (name, value) in &entry.metadata {
            let field = object[name].clone();
            let field = match field {
                Value::String(text) => Value::String(text),
                other => Value::String(other.to_string()),
            };
            assert_eq!(&field, value, "metadata {name} of {:?}", entry.line);
        }
    }
}

async fn assert_no_line_contains(app: &TestApp, receiver: &Receiver, needle: &str) {
    for line in app.stdout_lines() {
        assert!(
            !line.contains(needle),
            "stdout line contains {needle}: {line}"
        );
    }
    for entry in receiver.entries().await {
        assert!(
            !entry.line.contains(needle),
            "Loki line contains {needle}: {}",
            entry.line
        );
        let metadata = format!("{:?}", entry.metadata);
        assert!(
            !metadata.contains(needle),
            "Loki metadata contains {needle}: {metadata}"
        );
    }
}
