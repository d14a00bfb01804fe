//! Attacks on the callback, the session cookie and the response headers.

mod common;

use common::{
    TEST_SESSION_KEY, TestApp, browser_like_client, free_port,
    hostile_provider::{HostileProvider, TokenReply},
    location,
    oidc::{CLIENT_ID, CLIENT_SECRET, TestProvider, sign_in, spawn_with_provider, start_login},
};

fn query_value(url: &url::Url, name: &str) -> String {
    let pair = url.query_pairs().find(|(key, _)| key == name);
    pair.map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

fn session_cookie(response: &reqwest::Response) -> String {
    let header = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with("nixtla_session="))
        .expect("a session cookie");
    header.split(';').next().unwrap().to_owned()
}

/// Runs `/login` against a hostile provider and calls `/auth` with a made-up code.
async fn callback_with_hostile_provider(
    reply: TokenReply,
) -> (TestApp, HostileProvider, reqwest::Response) {
    let provider = HostileProvider::start("nixtla-test", reply).await;
    let env = [
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OAUTH_CLIENT_ID", "nixtla-test"),
        ("OAUTH_CLIENT_SECRET", "secret"),
        ("SESSION_KEY", TEST_SESSION_KEY),
    ];
    let app = TestApp::spawn_on(free_port(), &env).await;
    let client = browser_like_client();
    let login = client.get(app.url("/login")).send().await.unwrap();
    let authorize = url::Url::parse(&location(&login)).unwrap();
    provider.expect_nonce(&query_value(&authorize, "nonce"));
    let state = query_value(&authorize, "state");
    let callback = app.url(&format!("/auth?code=made-up-code&state={state}"));
    let response = client.get(callback).send().await.unwrap();
    (app, provider, response)
}

#[tokio::test]
async fn token_error_with_status_200_fails() {
    let (app, _provider, response) =
        callback_with_hostile_provider(TokenReply::ErrorWithStatus200).await;
    assert_eq!(response.status(), 400);
    app.wait_for_event("login_failed", |event| event["reason"] == "token_exchange")
        .await;
}

#[tokio::test]
async fn id_token_with_unknown_key_fails() {
    let (app, _provider, response) =
        callback_with_hostile_provider(TokenReply::SignedWithUnknownKey).await;
    assert_eq!(response.status(), 400);
    app.wait_for_event("login_failed", |event| event["reason"] == "id_token")
        .await;
}

#[tokio::test]
async fn missing_id_token_fails() {
    let (app, _provider, response) = callback_with_hostile_provider(TokenReply::NoIdToken).await;
    assert_eq!(response.status(), 400);
    app.wait_for_event("login_failed", |event| event["reason"] == "id_token")
        .await;
}

#[tokio::test]
async fn extra_audience_without_azp_fails() {
    let (app, _provider, response) =
        callback_with_hostile_provider(TokenReply::ExtraAudienceWithoutAzp).await;
    assert_eq!(response.status(), 400);
    app.wait_for_event("login_failed", |event| event["reason"] == "id_token")
        .await;
}

#[tokio::test]
async fn state_from_another_browser_fails() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let victim = browser_like_client();
    let attacker = browser_like_client();
    start_login(&victim, &app, "/nixtla").await;
    let attacker_login = start_login(&attacker, &app, "/nixtla").await;
    let response = victim
        .get(attacker_login.callback_url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    app.wait_for_event("login_failed", |event| event["reason"] == "state_mismatch")
        .await;
}

#[tokio::test]
async fn every_provider_error_gets_a_page() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let errors = [
        ("access_denied", 403, "access_denied"),
        ("invalid_request", 400, "provider_error"),
        ("unauthorized_client", 400, "provider_error"),
        ("unsupported_response_type", 400, "provider_error"),
        ("invalid_scope", 400, "provider_error"),
        ("server_error", 400, "provider_error"),
        ("temporarily_unavailable", 400, "provider_error"),
        ("login_required", 400, "provider_error"),
        ("consent_required", 400, "provider_error"),
        ("interaction_required", 400, "provider_error"),
        ("<script>alert(1)</script>", 400, "provider_error"),
        ("", 400, "provider_error"),
    ];
    for (index, (error, status, reason)) in errors.into_iter().enumerate() {
        let client = browser_like_client();
        let pending = start_login(&client, &app, "/nixtla").await;
        let state = query_value(&pending.authorize_url, "state");
        let encoded: String = url::form_urlencoded::byte_serialize(error.as_bytes()).collect();
        let callback = app.url(&format!("/auth?state={state}&error={encoded}"));
        let response = client.get(callback).send().await.unwrap();
        assert_eq!(response.status(), status, "error {error:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains("Sign-in failed"), "error {error:?}: {body}");
        assert!(
            !body.contains("<script>alert"),
            "error {error:?} reflected: {body}"
        );
        let failures = app
            .wait_for_event_count("login_failed", index + 1, |_| true)
            .await;
        assert_eq!(failures, index + 1, "error {error:?} was not logged");
        let events = app.log_events();
        let latest = events
            .iter()
            .rfind(|event| event["event"] == "login_failed")
            .unwrap();
        assert_eq!(latest["reason"], reason, "error {error:?}");
    }
}

#[tokio::test]
async fn sign_in_issues_a_new_session_cookie() {
    let app = TestApp::spawn_dev().await;
    let client = browser_like_client();
    let form = [("name", "Ada"), ("email", "ada@example.org")];
    let first = client
        .post(app.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let first_cookie = session_cookie(&first);
    client.post(app.url("/logout")).send().await.unwrap();
    let second = client
        .post(app.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_ne!(session_cookie(&second), first_cookie);
}

#[tokio::test]
async fn cookie_replayed_after_sign_out_is_signed_out() {
    let app = TestApp::spawn_dev().await;
    let client = browser_like_client();
    let form = [("name", "Ada"), ("email", "ada@example.org")];
    let signed_in = client
        .post(app.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(&signed_in);
    let plain = reqwest::Client::new();
    let before = plain
        .get(app.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), 200);

    let signed_out = client.post(app.url("/logout")).send().await.unwrap();
    let removal = signed_out.headers()["set-cookie"].to_str().unwrap();
    assert!(removal.starts_with("nixtla_session=;"), "{removal}");
    let after = plain
        .get(app.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn truncated_or_foreign_cookie_is_signed_out() {
    let app = TestApp::spawn_dev().await;
    let other = TestApp::spawn_dev().await;
    let client = browser_like_client();
    let form = [("name", "Ada"), ("email", "ada@example.org")];
    let response = client
        .post(other.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let foreign = session_cookie(&response);
    let truncated = foreign[..foreign.len() - 8].to_owned();
    let plain = reqwest::Client::new();
    for cookie in [foreign, truncated, "nixtla_session=".to_owned()] {
        let response = plain
            .get(app.url("/api/me"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "cookie {cookie}");
    }
}

#[tokio::test]
async fn cookies_are_secure_behind_https() {
    let port = free_port();
    let (app, _provider) = spawn_with_provider(&[]).await;
    drop(app);
    let public_url = format!("https://127.0.0.1:{port}");
    let app = TestApp::spawn_on(port, &[("NIXTLA_PUBLIC_URL", public_url.as_str())]).await;
    let form = [("name", "Ada"), ("email", "ada@example.org")];
    let response = browser_like_client()
        .post(app.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
}

#[tokio::test]
async fn login_cookie_is_secure_behind_https() {
    let port = free_port();
    let provider = common::oidc::TestProvider::spawn(&format!("https://127.0.0.1:{port}/auth"));
    let public_url = format!("https://127.0.0.1:{port}");
    let env = [
        ("NIXTLA_PUBLIC_URL", public_url.as_str()),
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OAUTH_CLIENT_ID", common::oidc::CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", common::oidc::CLIENT_SECRET),
        ("SESSION_KEY", TEST_SESSION_KEY),
    ];
    let app = TestApp::spawn_on(port, &env).await;
    let response = browser_like_client()
        .get(app.url("/login"))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("nixtla_login="), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn every_route_sends_security_headers() {
    let app = TestApp::spawn_dev().await;
    let client = browser_like_client();
    let requests = [
        ("GET", "/"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/auth"),
        ("GET", "/nixtla"),
        ("GET", "/logout"),
        ("POST", "/logout"),
        ("GET", "/api/me"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/no-such-page"),
        ("DELETE", "/nixtla"),
    ];
    for (method, path) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        let route = format!("{method} {path} ({})", response.status());
        assert!(headers.contains_key("content-security-policy"), "{route}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{route}");
        assert_eq!(headers["x-frame-options"], "DENY", "{route}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{route}");
        assert!(response.status().as_u16() < 500, "{route}");
    }
}

#[tokio::test]
async fn rotated_provider_keys_are_fetched() {
    let app_port = free_port();
    let provider_port = free_port();
    let redirect = format!("http://127.0.0.1:{app_port}/auth");
    let mut provider = TestProvider::spawn_on(provider_port, &redirect);
    let env = [
        ("OIDC_ISSUER", provider.issuer.clone()),
        ("OAUTH_CLIENT_ID", CLIENT_ID.to_owned()),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("SESSION_KEY", TEST_SESSION_KEY.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    let app = TestApp::spawn_on(app_port, &env).await;
    assert_eq!(sign_in(&browser_like_client(), &app).await.status(), 303);

    provider.stop();
    let _rotated = TestProvider::spawn_on(provider_port, &redirect);
    let response = sign_in(&browser_like_client(), &app).await;
    assert_eq!(
        response.status(),
        303,
        "sign-in failed after the provider's key changed"
    );
    let logins = app.wait_for_event_count("login", 2, |_| true).await;
    assert_eq!(logins, 2);
}

#[tokio::test]
async fn forged_callback_keeps_sign_in_alive() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let client = browser_like_client();
    let pending = start_login(&client, &app, "/nixtla").await;
    let forged = client
        .get(app.url("/auth?state=forged&code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let genuine = client.get(pending.callback_url).send().await.unwrap();
    assert_eq!(genuine.status(), 303, "a forged link cancelled the sign-in");
}

#[tokio::test]
async fn oversized_form_is_rejected() {
    let app = TestApp::spawn_dev().await;
    let filler = "a".repeat(20 * 1024);
    let form = [
        ("name", "Ada"),
        ("email", "ada@example.org"),
        ("next", filler.as_str()),
    ];
    let response = browser_like_client()
        .post(app.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn cross_site_form_post_is_forbidden() {
    let app = TestApp::spawn_dev().await;
    let form = [("name", "Mallory"), ("email", "m@example.org")];
    let client = browser_like_client();
    let cross = client
        .post(app.url("/login"))
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert!(cross.headers().get("set-cookie").is_none());
    let fetch_cross = client
        .post(app.url("/login"))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "null")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(fetch_cross.status(), 403);
    let same = client
        .post(app.url("/login"))
        .header("origin", app.base_url.as_str())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 303);
}

#[tokio::test]
async fn unknown_methods_share_one_label() {
    let app = TestApp::spawn_dev().await;
    let client = reqwest::Client::new();
    for index in 0..20 {
        let method = reqwest::Method::from_bytes(format!("X{index:0>200}").as_bytes()).unwrap();
        client.request(method, app.url("/")).send().await.unwrap();
    }
    let metrics = client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(!metrics.contains("X000"), "raw method reached a label");
    let logged = app
        .wait_for_event("http_request", |event| event["method"] == "other")
        .await;
    assert_eq!(logged["method"], "other");
}

#[tokio::test]
async fn cookie_from_other_settings_is_signed_out() {
    let (app, provider) = spawn_with_provider(&[]).await;
    let response = sign_in(&browser_like_client(), &app).await;
    let oidc_cookie = session_cookie(&response);

    let strict_env = [
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OAUTH_CLIENT_ID", CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("SESSION_KEY", TEST_SESSION_KEY),
        ("ALLOWED_EMAIL_DOMAINS", "example.org"),
    ];
    let strict = TestApp::spawn_on(free_port(), &strict_env).await;
    let dev = TestApp::spawn_on(free_port(), &[("SESSION_KEY", TEST_SESSION_KEY)]).await;
    let form = [("name", "Mallory"), ("email", "m@example.com")];
    let dev_response = browser_like_client()
        .post(dev.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let dev_cookie = session_cookie(&dev_response);

    let plain = reqwest::Client::new();
    let same = plain
        .get(app.url("/api/me"))
        .header("cookie", &oidc_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        same.status(),
        200,
        "the issuing instance must accept its cookie"
    );
    let tightened = plain
        .get(strict.url("/api/me"))
        .header("cookie", &oidc_cookie)
        .send()
        .await;
    assert_eq!(
        tightened.unwrap().status(),
        401,
        "allow-list not applied to existing sessions"
    );
    let foreign = plain
        .get(app.url("/api/me"))
        .header("cookie", &dev_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign.status(),
        401,
        "a development session was accepted by a real instance"
    );
}
