//! The test OpenID provider (npm `oidc-provider` 8), started as a child process.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use serde_json::{Value, json};

use super::{TEST_SESSION_KEY, TestApp, free_port, location};

pub const CLIENT_ID: &str = "nixtla-test";
pub const CLIENT_SECRET: &str = "nixtla-test-secret";

pub struct TestProvider {
    pub issuer: String,
    child: Child,
    control: reqwest::Client,
}

impl TestProvider {
    /// Starts the provider with `redirect_uri` registered for the test client.
    pub fn spawn(redirect_uri: &str) -> Self {
        Self::spawn_on(0, redirect_uri)
    }

    /// Starts the provider on `port` (0 picks a free one).
    pub fn spawn_on(port: u16, redirect_uri: &str) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/node/oidc-provider.mjs"
        );
        let mut child = Command::new("node")
            .args([
                script,
                "--port",
                &port.to_string(),
                "--redirect-uri",
                redirect_uri,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node; run the tests through tests/run.sh, which installs packages");
        let mut first_line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("read provider stdout");
        let issuer = first_line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("provider did not start: {first_line:?}"))
            .to_owned();
        Self {
            issuer,
            child,
            control: reqwest::Client::new(),
        }
    }

    async fn control(&self, path: &str, body: Value) {
        let response = self
            .control
            .post(format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .expect("reach the provider's control endpoint");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    /// Sets the claims of the person who signs in next.
    pub async fn set_user(&self, claims: Value) {
        self.control("/control/user", claims).await;
    }

    /// Makes the next authorization request fail with `error`.
    pub async fn fail_next_authorization(&self, error: &str) {
        self.control("/control/next-error", json!({ "error": error }))
            .await;
    }

    /// Replaces claims of the next ID token (still validly signed).
    pub async fn override_next_id_token(&self, claims: Value) {
        self.control("/control/next-id-token", claims).await;
    }
}

impl TestProvider {
    /// Stops the provider, so later requests to it fail to connect.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a provider and the app configured for it.
pub async fn spawn_with_provider(extra_env: &[(&str, &str)]) -> (TestApp, TestProvider) {
    let port = free_port();
    let provider = TestProvider::spawn(&format!("http://127.0.0.1:{port}/auth"));
    let mut env = vec![
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OAUTH_CLIENT_ID", CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("SESSION_KEY", TEST_SESSION_KEY),
    ];
    env.extend_from_slice(extra_env);
    let app = TestApp::spawn_on(port, &env).await;
    (app, provider)
}

/// The steps of one sign-in, stopped at the callback so tests can tamper with it.
pub struct PendingLogin {
    /// The provider's authorization URL that `/login` redirected to.
    pub authorize_url: url::Url,
    /// The app's `/auth?...` URL that the provider redirected back to.
    pub callback_url: url::Url,
}

/// Runs `/login?next=...` and the provider's redirects until the provider sends the
/// browser back to the app's callback. Does not call the callback.
pub async fn start_login(client: &reqwest::Client, app: &TestApp, next: &str) -> PendingLogin {
    let response = client
        .get(app.url(&format!("/login?next={next}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        302,
        "/login should redirect to the provider"
    );
    let authorize_url = url::Url::parse(&location(&response)).unwrap();
    let mut next_url = authorize_url.clone();
    for _ in 0..10 {
        if next_url.as_str().starts_with(&app.url("/auth")) {
            return PendingLogin {
                authorize_url,
                callback_url: next_url,
            };
        }
        let response = client.get(next_url.clone()).send().await.unwrap();
        assert!(
            response.status().is_redirection(),
            "provider step {next_url} returned {}",
            response.status()
        );
        next_url = next_url.join(&location(&response)).unwrap();
    }
    panic!("the provider did not redirect back to the app");
}

/// Signs in completely and returns the callback's response.
pub async fn sign_in(client: &reqwest::Client, app: &TestApp) -> reqwest::Response {
    let pending = start_login(client, app, "/nixtla").await;
    client.get(pending.callback_url).send().await.unwrap()
}
