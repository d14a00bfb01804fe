//! Child processes of the harness: the Loki test receiver, shipper children
//! and the service, each killed when its guard is dropped.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::ChildArgs;

/// A child process, killed on drop, whose stdout lines arrive on a channel.
pub struct Process {
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `command` with stdout piped; stderr is inherited unless the
    /// command sets it.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {name} ({command:?}): {error}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
        }
    }

    /// Starts `command` with stdout discarded and stderr inherited.
    pub fn spawn_quiet(name: &str, mut command: Command) -> Self {
        command.stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {name} ({command:?}): {error}"));
        Self {
            name: name.to_owned(),
            child,
            lines: mpsc::channel().1,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the next stdout line, or panics after `timeout` or at EOF.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(error) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{} printed no line within {timeout:?} ({error}); exit status {status:?}",
                    self.name
                );
            }
        }
    }

    /// Returns whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the resident set size of `pid` in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a shipper child of this same binary.
pub fn spawn_child(args: &ChildArgs) -> Process {
    let exe = std::env::current_exe().expect("path of the running benchmark");
    let mut command = Command::new(exe);
    command.args(args.to_args());
    Process::spawn(&format!("{} child", args.shipper.name()), command)
}

/// Python used to run the receiver: `NIXTLA_TEST_PYTHON`, else the venv
/// that `tests/run.sh` makes, else `python3`.
fn python() -> String {
    if let Ok(python) = std::env::var("NIXTLA_TEST_PYTHON") {
        return python;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".to_owned()
}

/// The Loki test receiver (`tests/support/loki_receiver/receiver.py`).
pub struct Receiver {
    pub url: String,
    /// The running receiver, killed when this value is dropped.
    _process: Process,
    client: reqwest::Client,
}

impl Receiver {
    /// Starts the receiver on a free port of 127.0.0.1, logging to
    /// `target/bench-results/receiver.log`.
    pub fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/support/loki_receiver/receiver.py");
        let log_path = crate::common::results_dir().join("receiver.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("failed to create {}: {e}", log_path.display()));
        let mut command = Command::new(python());
        // The receiver logs every push; its log goes to a file.
        command.arg(&script).args(["--port", "0"]).stderr(log);
        let mut process = Process::spawn("Loki test receiver", command);
        let line = process.next_line(Duration::from_secs(20));
        let url = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| {
                panic!(
                    "the receiver printed {line:?} instead of `listening URL`; run tests/run.sh \
                     once to create target/test-venv, or set NIXTLA_TEST_PYTHON to a Python with \
                     tests/support/loki_receiver/requirements.txt installed"
                )
            })
            .to_owned();
        Self {
            url,
            _process: process,
            client: reqwest::Client::new(),
        }
    }

    /// Clears stored entries, request records and faults.
    pub async fn reset(&self) {
        self.post("/control/reset", json!({})).await;
    }

    /// Sets a fault plan, for example `{"mode": "refuse"}`.
    pub async fn fault(&self, plan: Value) {
        self.post("/control/fault", plan).await;
    }

    /// Returns (entries accepted, pushes answered 2xx, pushes that failed).
    pub async fn totals(&self) -> (u64, u64, u64) {
        let body: Value = self
            .client
            .get(format!("{}/control/requests", self.url))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("receiver /control/requests")
            .json()
            .await
            .expect("receiver requests JSON");
        let requests = body["requests"].as_array().expect("requests array");
        let mut totals = (0, 0, 0);
        for request in requests {
            totals.0 += request["accepted"].as_u64().unwrap_or(0);
            match request["status"].as_u64() {
                Some(200..=299) => totals.1 += 1,
                _ => totals.2 += 1,
            }
        }
        totals
    }

    async fn post(&self, path: &str, body: Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receiver {path} failed: {e}"));
        assert!(
            response.status().is_success(),
            "receiver {path} answered {}",
            response.status()
        );
    }
}

/// Waits for a shipper child's result line, killing it after `limit`.
pub fn child_result(child: &mut Process, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} did not finish within {limit:?}",
            child.name
        );
        let line = child.next_line(left);
        if line.starts_with('{') {
            return serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{} printed invalid JSON {line:?}: {e}", child.name));
        }
    }
}
