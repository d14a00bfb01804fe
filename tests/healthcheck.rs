//! The `healthcheck` subcommand that Docker's HEALTHCHECK runs.

mod common;

use std::process::Command;

use common::{TestApp, free_port};

fn healthcheck(listen: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nixtla"))
        .arg("healthcheck")
        .env("NIXTLA_LISTEN", listen)
        .output()
        .expect("run nixtla healthcheck");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn healthcheck_passes_on_listen_port() {
    let app = TestApp::spawn_dev().await;
    let (code, stderr) = healthcheck(&format!("0.0.0.0:{}", app.port));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = free_port();
    let (code, stderr) = healthcheck(&format!("127.0.0.1:{port}"));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "{stderr}"
    );
}
