//! Test helpers: start the real `nixtla` binary on a free port and read its log.
#![allow(dead_code)]

pub mod hostile_provider;
pub mod oidc;

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Environment variables of the service that a test must set itself.
const SERVICE_VARS: [&str; 14] = [
    "NIXTLA_LISTEN",
    "NIXTLA_PUBLIC_URL",
    "OIDC_ISSUER",
    "OAUTH_CLIENT_ID",
    "OAUTH_CLIENT_SECRET",
    "OAUTH_CLIENT_SECRET_FILE",
    "SESSION_KEY",
    "SESSION_KEY_FILE",
    "ALLOWED_EMAIL_DOMAINS",
    "LOG_FORMAT",
    "LOKI_URL",
    "LOKI_LABELS",
    "LOKI_TENANT",
    "RUST_LOG",
];

/// A 64-byte session key for tests.
pub const TEST_SESSION_KEY: &str =
    "test-session-key-test-session-key-test-session-key-test-session-key";

/// The running binary. Killed on drop.
pub struct TestApp {
    pub base_url: String,
    pub port: u16,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Returns a port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl TestApp {
    /// Starts the binary in development-login mode.
    pub async fn spawn_dev() -> Self {
        Self::spawn_on(free_port(), &[]).await
    }

    /// Starts the binary on `port` with extra environment variables and waits until
    /// `/healthz` answers.
    pub async fn spawn_on(port: u16, env: &[(&str, &str)]) -> Self {
        let base_url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_nixtla"));
        for var in SERVICE_VARS {
            command.env_remove(var);
        }
        command
            .env("NIXTLA_LISTEN", format!("127.0.0.1:{port}"))
            .env("NIXTLA_PUBLIC_URL", &base_url)
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the nixtla binary");
        let stdout = collect_lines(child.stdout.take().expect("stdout"));
        let stderr = collect_lines(child.stderr.take().expect("stderr"));
        let app = Self {
            base_url,
            port,
            child,
            stdout,
            stderr,
        };
        app.wait_until_healthy().await;
        app
    }

    async fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = self.url("/healthz");
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nixtla did not become healthy at {url}\nstdout:\n{}\nstderr:\n{}",
            self.stdout_lines().join("\n"),
            self.stderr_lines().join("\n")
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Parses every stdout line as JSON; panics on a line that is not.
    pub fn log_events(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
            })
            .collect()
    }

    /// Waits until an activity event with `event == name` satisfying `filter` shows up.
    pub async fn wait_for_event(&self, name: &str, filter: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .log_events()
                .into_iter()
                .find(|event| event["event"] == name && filter(event));
            if let Some(event) = found {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no `{name}` event; log:\n{}",
                self.stdout_lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns the process id of the running binary.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and waits for the process to exit.
    pub fn kill(&mut self) {
        self.child.kill().expect("send SIGKILL to nixtla");
        self.child.wait().expect("wait for the killed nixtla");
    }

    /// Waits until at least `count` events named `name` satisfy `filter` (the log is
    /// read by another thread, so it can lag behind the HTTP response), then returns
    /// how many there are.
    pub async fn wait_for_event_count(
        &self,
        name: &str,
        count: usize,
        filter: impl Fn(&Value) -> bool,
    ) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self
                .log_events()
                .iter()
                .filter(|event| event["event"] == name && filter(event))
                .count();
            if seen >= count || Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nixtla did not exit within 15 s of SIGTERM");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A client that keeps cookies and does not follow redirects, so tests see each hop.
pub fn browser_like_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build the test HTTP client")
}

/// Returns the `Location` header of a response.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location header (status {})", response.status()))
        .to_str()
        .expect("Location is ASCII")
        .to_owned()
}
