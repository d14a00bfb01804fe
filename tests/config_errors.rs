//! Invalid configuration stops the binary with a clear message and no panic.

use std::process::Command;

fn run_with(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nixtla"))
        .env_remove("OAUTH_CLIENT_ID")
        .env_remove("SESSION_KEY")
        .env_remove("OAUTH_CLIENT_SECRET")
        .env_remove("NIXTLA_ENV")
        .env_remove("LOKI_URL")
        .env("NIXTLA_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .expect("run nixtla");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn client_id_without_session_key_is_rejected() {
    let (code, stderr) = run_with(&[("OAUTH_CLIENT_ID", "id")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("SESSION_KEY is required"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn short_session_key_is_rejected() {
    let (code, stderr) = run_with(&[("OAUTH_CLIENT_ID", "id"), ("SESSION_KEY", "short")]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("SESSION_KEY is 5 bytes long but must be at least 64"),
        "{stderr}"
    );
}

#[test]
fn missing_secret_file_is_named() {
    let (code, stderr) = run_with(&[("SESSION_KEY_FILE", "/nonexistent/key")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("/nonexistent/key"), "{stderr}");
}

#[test]
fn scopes_without_openid_are_rejected() {
    let key = "k".repeat(64);
    let (code, stderr) = run_with(&[
        ("OAUTH_CLIENT_ID", "id"),
        ("SESSION_KEY", &key),
        ("OAUTH_SCOPES", "email profile"),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("must include `openid`"), "{stderr}");
}

#[test]
fn unreachable_issuer_fails_startup_with_its_url() {
    let key = "k".repeat(64);
    let (code, stderr) = run_with(&[
        ("OAUTH_CLIENT_ID", "id"),
        ("SESSION_KEY", &key),
        ("OIDC_ISSUER", "http://127.0.0.1:9"),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("http://127.0.0.1:9"), "{stderr}");
}

#[test]
fn help_lists_environment_variables() {
    let output = Command::new(env!("CARGO_BIN_EXE_nixtla"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for var in [
        "NIXTLA_LISTEN",
        "OIDC_ISSUER",
        "OAUTH_CLIENT_SECRET_FILE",
        "SESSION_KEY",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}

#[test]
fn secret_without_client_id_is_rejected() {
    let (code, stderr) = run_with(&[("OAUTH_CLIENT_ID", " "), ("OAUTH_CLIENT_SECRET", "s")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("OAUTH_CLIENT_ID is empty"), "{stderr}");
}

#[test]
fn dev_login_refused_outside_dev() {
    let (code, stderr) = run_with(&[
        ("NIXTLA_ENV", "production"),
        ("NIXTLA_PUBLIC_URL", "https://nixtla.example"),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("development login is only allowed"),
        "{stderr}"
    );
}

#[test]
fn huge_session_lifetime_is_rejected() {
    let (code, stderr) = run_with(&[("SESSION_TTL_MINUTES", "18446744073709551615")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("must be between 1 and 43200"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn loki_url_password_is_never_echoed() {
    let (code, stderr) = run_with(&[("LOKI_URL", "http://admin:SuperSecretPw@127.0.0.1:1")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("LOKI_USERNAME"), "{stderr}");
    assert!(!stderr.contains("SuperSecretPw"), "{stderr}");
}

#[test]
fn invalid_loki_labels_fail_without_loki() {
    let (code, stderr) = run_with(&[("LOKI_LABELS", "team")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("label"), "{stderr}");
}
