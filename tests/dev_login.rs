//! The development login, end to end through the real binary.

mod common;

use common::{TestApp, browser_like_client, location};

#[tokio::test]
async fn dev_login_signs_in_greets_and_signs_out() {
    let app = TestApp::spawn_dev().await;
    let client = browser_like_client();

    let form = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let body = form.text().await.unwrap();
    assert!(body.contains("id=\"dev-login-banner\""), "{body}");

    let signed_in = client
        .post(app.url("/login"))
        .form(&[
            ("name", "Ada Lovelace"),
            ("email", "ada@example.org"),
            ("next", "/nixtla"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(location(&signed_in), "/nixtla");

    let page = client.get(app.url("/nixtla")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("Hello Ada Lovelace!"), "{body}");
    assert!(body.contains("action=\"/logout\""), "{body}");

    let me: serde_json::Value = client
        .get(app.url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "dev:ada@example.org");
    assert_eq!(me["name"], "Ada Lovelace");

    let signed_out = client.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(signed_out.status(), 303);
    let after = client.get(app.url("/nixtla")).send().await.unwrap();
    assert_eq!(after.status(), 303);
    assert_eq!(location(&after), "/login?next=/nixtla");
}

#[tokio::test]
async fn dev_login_logs_activity_in_order() {
    let app = TestApp::spawn_dev().await;
    let client = browser_like_client();
    client
        .post(app.url("/login"))
        .form(&[("name", "Ada"), ("email", "ada@example.org")])
        .send()
        .await
        .unwrap();
    client.get(app.url("/nixtla")).send().await.unwrap();
    client.get(app.url("/logout")).send().await.unwrap();

    let logout = app.wait_for_event("logout", |_| true).await;
    assert_eq!(logout["user_id"], "dev:ada@example.org");
    let events: Vec<String> = app
        .log_events()
        .iter()
        .filter(|event| event["target"] == "nixtla::activity" && event["event"] != "http_request")
        .map(|event| event["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["login", "page_view", "logout"]);

    let login = app.wait_for_event("login", |_| true).await;
    assert_eq!(login["email_domain"], "example.org");
    assert_eq!(login["provider"], "development");
    let view = app.wait_for_event("page_view", |_| true).await;
    assert_eq!(view["path"], "/nixtla");
    assert_eq!(view["user_name"], "Ada");
}

#[tokio::test]
async fn dev_login_rejects_invalid_form() {
    let app = TestApp::spawn_dev().await;
    let client = browser_like_client();
    let cases = [
        ("", "ada@example.org"),
        ("Ada", "not-an-email"),
        ("Ada", ""),
    ];
    for (name, email) in cases {
        let response = client
            .post(app.url("/login"))
            .form(&[("name", name), ("email", email)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "name {name:?} email {email:?}");
        assert!(response.headers().get("set-cookie").is_none());
    }
    let missing_field = client
        .post(app.url("/login"))
        .form(&[("name", "Ada")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing_field.status(), 400);
    app.wait_for_event("login_failed", |event| event["reason"] == "invalid_input")
        .await;
}

#[tokio::test]
async fn hostile_names_are_escaped_and_bounded() {
    let app = TestApp::spawn_dev().await;
    let long_name = "x".repeat(10_000);
    let names = [
        (
            "<script>alert(1)</script>",
            "&#60;script&#62;alert(1)&#60;/script&#62;",
        ),
        ("מרים \u{202e}Ada", "מרים \u{202e}Ada"),
        ("Zoë Ōkubo 王", "Zoë Ōkubo 王"),
    ];
    for (name, shown) in names {
        let client = browser_like_client();
        client
            .post(app.url("/login"))
            .form(&[("name", name), ("email", "a@example.org")])
            .send()
            .await
            .unwrap();
        let body = client
            .get(app.url("/nixtla"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains(&format!("Hello {shown}!")), "{name}: {body}");
        assert!(!body.contains("<script>alert"), "{body}");
        let login = app
            .wait_for_event("login", |event| event["user_name"] == name)
            .await;
        assert_eq!(login["user_name"], name);
    }
    let client = browser_like_client();
    let response = client
        .post(app.url("/login"))
        .form(&[("name", long_name.as_str()), ("email", "a@example.org")])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("session cookie");
    assert!(cookie.len() < 4096, "cookie is {} bytes", cookie.len());
    let body = client
        .get(app.url("/nixtla"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(&format!("Hello {}!", "x".repeat(200))),
        "long name not shown"
    );
    assert!(!body.contains(&"x".repeat(201)), "long name not cut");
}

#[tokio::test]
async fn unsafe_next_falls_back_to_own_page() {
    let app = TestApp::spawn_dev().await;
    for next in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "/%2F%2Fevil",
    ] {
        let client = browser_like_client();
        let response = client
            .post(app.url("/login"))
            .form(&[("name", "Ada"), ("email", "a@example.org"), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&response), "/nixtla", "next {next:?}");
    }
}
