//! Public pages, headers, the API explorer and operational endpoints.

mod common;

use common::{TestApp, browser_like_client, location};

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = TestApp::spawn_dev().await;
    let response = reqwest::get(app.url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "pages need no scripts: {csp}");
}

#[tokio::test]
async fn signed_out_nixtla_redirects_to_login() {
    let app = TestApp::spawn_dev().await;
    let response = browser_like_client()
        .get(app.url("/nixtla"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/login?next=/nixtla");
}

#[tokio::test]
async fn api_me_requires_session() {
    let app = TestApp::spawn_dev().await;
    let response = reqwest::get(app.url("/api/me")).await.unwrap();
    assert_eq!(response.status(), 401);
    let forged = reqwest::Client::new()
        .get(app.url("/api/me"))
        .header("cookie", "nixtla_session=forged-value")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn openapi_spec_and_explorer_are_served() {
    let app = TestApp::spawn_dev().await;
    let spec: serde_json::Value = reqwest::get(app.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/me"]["get"].is_object(), "{spec}");
    assert_eq!(
        spec["servers"][0]["url"], "/api",
        "explorer must follow the host it is on"
    );
    let scheme = &spec["components"]["securitySchemes"]["SessionCookie"];
    assert_eq!(scheme["in"], "cookie");
    assert_eq!(scheme["name"], "nixtla_session");
    let docs = reqwest::get(app.url("/docs")).await.unwrap();
    assert_eq!(docs.status(), 200);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src"), "{csp}");
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn health_and_metrics_respond() {
    let app = TestApp::spawn_dev().await;
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(app.url("/readyz")).await.unwrap().status(),
        200
    );
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "nixtla_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn favicon_request_is_not_an_error() {
    let app = TestApp::spawn_dev().await;
    let response = reqwest::get(app.url("/favicon.ico")).await.unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn unknown_paths_get_an_error_page() {
    let app = TestApp::spawn_dev().await;
    let response = reqwest::get(app.url("/no/such/page?code=secret-code"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("Not found"));
    let event = app
        .wait_for_event("http_request", |event| event["status"] == 404)
        .await;
    assert_eq!(event["route"], "unmatched");
    let log = app.stdout_lines().join("\n");
    assert!(!log.contains("secret-code"), "query string reached the log");
}

#[tokio::test]
async fn request_id_is_kept_or_replaced() {
    let app = TestApp::spawn_dev().await;
    let client = reqwest::Client::new();
    let kept = client
        .get(app.url("/"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123");
    let hostile = client
        .get(app.url("/"))
        .header("x-request-id", "a\"b} {evil=1")
        .send()
        .await
        .unwrap();
    let replaced = hostile.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(replaced, "a\"b} {evil=1");
    assert_eq!(replaced.len(), 36, "expected a UUID, got {replaced}");
}
