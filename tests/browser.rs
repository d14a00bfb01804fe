//! Sign-in and sign-out in headless Chromium (Debian `chromium`), driven by
//! `tests/support/node/browser-flow.mjs` through playwright-core.

mod common;

use std::process::Command;

use common::{TestApp, oidc::spawn_with_provider};

/// Runs the browser driver and returns the JSON line it printed.
fn run_browser_flow(app: &TestApp, args: &[&str]) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/node/browser-flow.mjs"
    );
    let output = Command::new("node")
        .arg(script)
        .args(["--base-url", &app.base_url])
        .args(args)
        .output()
        .expect("start node; run the tests through tests/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser flow failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON {stdout}: {e}"))
}

fn screenshot_path(name: &str) -> String {
    format!("{}/screenshots/{name}.png", env!("CARGO_TARGET_TMPDIR"))
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_with_provider() {
    let (app, _provider) = spawn_with_provider(&[]).await;
    let screenshot = screenshot_path("oidc-signed-in");
    let seen = tokio::task::block_in_place(|| {
        run_browser_flow(
            &app,
            &[
                "--mode",
                "oidc",
                "--expect-greeting",
                "Hello Ada Lovelace!",
                "--screenshot",
                &screenshot,
            ],
        )
    });
    assert_eq!(seen["greeting"], "Hello Ada Lovelace!", "{seen}");
    assert_eq!(seen["signed_out"], true, "{seen}");
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
    app.wait_for_event("logout", |event| event["user_id"] == "u-1")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_with_dev_login() {
    let app = TestApp::spawn_dev().await;
    let screenshot = screenshot_path("dev-signed-in");
    let seen = tokio::task::block_in_place(|| {
        run_browser_flow(
            &app,
            &[
                "--mode",
                "dev",
                "--name",
                "Zoë <b>Ōkubo</b>",
                "--email",
                "zoe@example.org",
                "--expect-greeting",
                "Hello Zoë <b>Ōkubo</b>!",
                "--screenshot",
                &screenshot,
            ],
        )
    });
    assert_eq!(seen["signed_out"], true, "{seen}");
    app.wait_for_event("login", |event| event["provider"] == "development")
        .await;
}
