//! An unread stdout (a stalled log driver, a full pipe) must not stall requests,
//! because lines are dropped and counted instead.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::free_port;

/// Kills the child on drop, so a failed assertion does not leave it running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn unread_stdout_does_not_block_requests() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nixtla"))
        .env("NIXTLA_LISTEN", format!("127.0.0.1:{port}"))
        .env("NIXTLA_PUBLIC_URL", &base)
        .env("LOG_FORMAT", "json")
        .env_remove("OAUTH_CLIENT_ID")
        .env_remove("LOKI_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nixtla");
    let _unread_pipe = child.stdout.take();
    let mut child = KillOnDrop(child);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nixtla did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // About 2 lines of 300 bytes per request: far more than a 64 KiB pipe holds.
    for index in 0..2_000 {
        let response = client.get(format!("{base}/?n={index}")).send().await;
        let response = response.unwrap_or_else(|e| panic!("request {index} failed: {e}"));
        assert_eq!(response.status(), 200, "request {index}");
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The queue (65,536 lines) absorbs these 4,000 lines; without it the write that
    // fills the pipe would block around request 110 and the client would time out.
    let counter = metrics
        .lines()
        .find_map(|line| line.strip_prefix("nixtla_stdout_dropped_lines_total "));
    assert!(counter.is_some(), "no stdout drop counter in /metrics");

    let pid = child.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "nixtla did not exit with stdout stalled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
