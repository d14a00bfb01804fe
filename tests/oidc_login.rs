//! Sign-in against a real OpenID provider (npm `oidc-provider` 8), including every
//! way the callback can go wrong.

mod common;

use common::{
    TestApp, browser_like_client, location,
    oidc::{sign_in, spawn_with_provider, start_login},
};
use serde_json::json;

fn query_value(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn assert_failed(app: &TestApp, response: reqwest::Response, status: u16, reason: &str) {
    assert_eq!(response.status(), status, "expected {reason}");
    let starts_session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|cookie| cookie.to_str().unwrap().starts_with("nixtla_session="));
    assert!(!starts_session, "a failed sign-in set a session cookie");
    let body = response.text().await.unwrap();
    assert!(body.contains("Sign-in failed"), "{body}");
    app.wait_for_event("login_failed", |event| event["reason"] == reason)
        .await;
}

#[tokio::test]
async fn sign_in_greets_user_and_signs_out() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let callback = sign_in(&client, &app).await;
    assert_eq!(callback.status(), 303);
    assert_eq!(location(&callback), "/nixtla");

    let page = client
        .get(app.url("/nixtla"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Hello Ada Lovelace!"), "{page}");
    assert!(
        !page.contains("dev-login-banner"),
        "banner shown with a real provider"
    );
    let me: serde_json::Value = client
        .get(app.url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "u-1");
    assert_eq!(me["email"], "ada@example.com");

    let login = app.wait_for_event("login", |_| true).await;
    assert_eq!(login["user_id"], "u-1");
    assert_eq!(login["email_domain"], "example.com");
    assert_eq!(login["provider"], "127.0.0.1");

    client.post(app.url("/logout")).send().await.unwrap();
    let after = client.get(app.url("/nixtla")).send().await.unwrap();
    assert_eq!(after.status(), 303);
    app.wait_for_event("logout", |event| event["user_id"] == "u-1")
        .await;
}

#[tokio::test]
async fn authorization_request_uses_pkce_state_and_nonce() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let response = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("nixtla_login="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Max-Age=600"), "{cookie}");
    let url = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(
        query_value(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_value(&url, "code_challenge").map(|c| c.len()),
        Some(43)
    );
    assert!(query_value(&url, "state").is_some_and(|state| state.len() >= 16));
    assert!(query_value(&url, "nonce").is_some_and(|nonce| nonce.len() >= 16));
    let redirect_uri = query_value(&url, "redirect_uri").unwrap();
    assert_eq!(redirect_uri, app.url("/auth"));
    let scope = query_value(&url, "scope").unwrap();
    assert_eq!(scope, "openid email profile");
}

#[tokio::test]
async fn redirect_uri_ignores_forwarded_headers() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let response = browser_like_client()
        .get(app.url("/login"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let url = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(query_value(&url, "redirect_uri").unwrap(), app.url("/auth"));
}

#[tokio::test]
async fn wrong_state_is_rejected() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let mut tampered = pending.callback_url.clone();
    let code = query_value(&pending.callback_url, "code").unwrap();
    tampered
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "forged");
    let response = client.get(tampered).send().await.unwrap();
    assert_failed(&app, response, 400, "state_mismatch").await;
}

#[tokio::test]
async fn replayed_callback_is_rejected() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let first = client
        .get(pending.callback_url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 303);
    client.post(app.url("/logout")).send().await.unwrap();
    let replay = client.get(pending.callback_url).send().await.unwrap();
    assert_failed(&app, replay, 400, "login_expired").await;
}

#[tokio::test]
async fn callback_without_code_is_rejected() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let state = query_value(&pending.authorize_url, "state").unwrap();
    let response = client
        .get(app.url(&format!("/auth?state={state}")))
        .send()
        .await
        .unwrap();
    assert_failed(&app, response, 400, "missing_code").await;
}

#[tokio::test]
async fn callback_without_login_cookie_is_rejected() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let response = browser_like_client()
        .get(app.url("/auth?code=abc&state=def"))
        .send()
        .await
        .unwrap();
    assert_failed(&app, response, 400, "login_expired").await;
}

#[tokio::test]
async fn tampered_login_cookie_is_rejected() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = forged
        .get(pending.callback_url)
        .header("cookie", "nixtla_login=AAAAforgedAAAA")
        .send()
        .await
        .unwrap();
    assert_failed(&app, response, 400, "login_expired").await;
}

#[tokio::test]
async fn access_denied_shows_friendly_error() {
    let (app, provider) = spawn_with_provider(&[]).await;
    provider.fail_next_authorization("access_denied").await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    assert_eq!(
        query_value(&pending.callback_url, "error").as_deref(),
        Some("access_denied")
    );
    let response = client.get(pending.callback_url).send().await.unwrap();
    assert_failed(&app, response, 403, "access_denied").await;
}

#[tokio::test]
async fn id_token_with_wrong_claims_is_rejected() {
    let cases = [
        json!({ "nonce": "not-the-nonce" }),
        json!({ "aud": "someone-else" }),
        json!({ "iss": "http://127.0.0.1:1" }),
        json!({ "exp_offset_s": -3600 }),
    ];
    let (app, provider) = spawn_with_provider(&[]).await;
    for (index, case) in cases.into_iter().enumerate() {
        provider.override_next_id_token(case.clone()).await;
        let client = browser_like_client();
        let response = sign_in(&client, &app).await;
        assert_eq!(response.status(), 400, "case {case}");
        let count = app
            .wait_for_event_count("login_failed", index + 1, |event| {
                event["reason"] == "id_token"
            })
            .await;
        assert_eq!(count, index + 1, "case {case} was not logged as id_token");
    }
}

#[tokio::test]
async fn expiry_within_clock_leeway_is_accepted() {
    let (app, provider) = spawn_with_provider(&[]).await;
    provider
        .override_next_id_token(json!({ "exp_offset_s": -30 }))
        .await;
    let response = sign_in(&browser_like_client(), &app).await;
    assert_eq!(response.status(), 303);
}

#[tokio::test]
async fn unverified_email_is_rejected() {
    let (app, provider) = spawn_with_provider(&[]).await;
    provider
        .set_user(json!({ "sub": "u-2", "name": "Eve", "email": "eve@example.com", "email_verified": false }))
        .await;
    let response = sign_in(&browser_like_client(), &app).await;
    assert_failed(&app, response, 403, "email_unverified").await;
}

#[tokio::test]
async fn disallowed_domain_is_rejected() {
    let (app, provider) = spawn_with_provider(&[("ALLOWED_EMAIL_DOMAINS", "example.org")]).await;
    let response = sign_in(&browser_like_client(), &app).await;
    assert_failed(&app, response, 403, "domain_not_allowed").await;
    provider
        .set_user(json!({ "sub": "u-3", "name": "Bo", "email": "bo@EXAMPLE.org", "email_verified": true }))
        .await;
    let allowed = sign_in(&browser_like_client(), &app).await;
    assert_eq!(allowed.status(), 303);
}

#[tokio::test]
async fn missing_name_falls_back() {
    let (app, provider) = spawn_with_provider(&[]).await;
    provider
        .set_user(json!({ "sub": "u-4", "given_name": "Grace", "email": "g@example.com", "email_verified": true }))
        .await;
    let client = browser_like_client();
    sign_in(&client, &app).await;
    let page = client
        .get(app.url("/nixtla"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Hello Grace!"), "{page}");

    provider
        .set_user(json!({ "sub": "u-5", "email": "noname@example.com", "email_verified": true }))
        .await;
    let client = browser_like_client();
    sign_in(&client, &app).await;
    let page = client
        .get(app.url("/nixtla"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Hello noname@example.com!"), "{page}");
}

#[tokio::test]
async fn hostile_provider_name_is_escaped() {
    let (app, provider) = spawn_with_provider(&[]).await;
    let name = "<script>alert(1)</script>";
    provider
        .set_user(
            json!({ "sub": "u-6", "name": name, "email": "x@example.com", "email_verified": true }),
        )
        .await;
    let client = browser_like_client();
    sign_in(&client, &app).await;
    let page = client
        .get(app.url("/nixtla"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{page}"
    );
    assert!(!page.contains(name), "{page}");
}

#[tokio::test]
async fn next_parameter_survives_sign_in_only_when_local() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    for (next, expected) in [("/api/me", "/api/me"), ("//evil.example", "/nixtla")] {
        let client = browser_like_client();
        let pending = start_login(&client, &app, next).await;
        let response = client.get(pending.callback_url).send().await.unwrap();
        assert_eq!(location(&response), expected, "next {next}");
    }
}

#[tokio::test]
async fn log_never_contains_secrets() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let code = query_value(&pending.callback_url, "code").unwrap();
    let state = query_value(&pending.callback_url, "state").unwrap();
    let response = client.get(pending.callback_url).send().await.unwrap();
    let session_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let session_value = session_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("nixtla_session=");
    client.get(app.url("/nixtla")).send().await.unwrap();
    app.wait_for_event("page_view", |event| event["path"] == "/nixtla")
        .await;
    let log = format!(
        "{}\n{}",
        app.stdout_lines().join("\n"),
        app.stderr_lines().join("\n")
    );
    for (what, secret) in [
        ("code", code.as_str()),
        ("state", state.as_str()),
        ("client secret", common::oidc::CLIENT_SECRET),
        ("session cookie", session_value),
        ("session key", common::TEST_SESSION_KEY),
    ] {
        assert!(!log.contains(secret), "the log contains the {what}");
    }
}

#[tokio::test]
async fn unreachable_token_endpoint_is_a_bad_gateway() {
    let (app, mut provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    provider.stop();
    let response = client.get(pending.callback_url).send().await.unwrap();
    assert_failed(&app, response, 502, "provider_unavailable").await;
}

#[tokio::test]
async fn tampered_session_cookie_counts_as_signed_out() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let response = sign_in(&client, &app).await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("nixtla_session=");
    let mut bytes = value.as_bytes().to_vec();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("nixtla_session={}", String::from_utf8(bytes).unwrap());
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = plain
        .get(app.url("/nixtla"))
        .header("cookie", &tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(location(&page), "/login?next=/nixtla");
    let me = plain
        .get(app.url("/api/me"))
        .header("cookie", &tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}
