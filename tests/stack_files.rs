//! Runs the offline checks of the Docker Compose and Grafana stack files.
//!
//! `tests/stack/check.py` runs Compose's `config`, check-jsonschema, yamllint and
//! Grafana's LogQL grammar over compose.yaml, the Dockerfile and grafana/, plus
//! negative self-tests that prove each check can fail. It needs the Python
//! packages of `tests/stack/requirements.txt` and `npm ci` in `tests/stack`;
//! `tests/run.sh` installs both. A missing tool fails the test with its name.

use std::path::Path;
use std::process::Command;

#[test]
fn stack_files_pass_offline_checks() {
    let python = std::env::var("NIXTLA_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&python)
        .arg(root.join("tests/stack/check.py"))
        .current_dir(root)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "failed to start {python}: {error}. \
                 Set NIXTLA_TEST_PYTHON to the test venv's python."
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/stack/check.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
