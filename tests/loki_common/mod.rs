//! Helpers for the Loki integration tests: start the Loki-compatible test
//! receiver (`tests/support/loki_receiver/receiver.py`) on a free port, read
//! what it stored, and install a shipper for the current test thread.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nixtla::loki::{DiagnosticOutput, LokiBuilder, LokiHandle, Snapshot};
use serde_json::Value;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt as _;

/// Maximum wait for the receiver to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Python used to run the receiver: `NIXTLA_TEST_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("NIXTLA_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn receiver_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/loki_receiver/receiver.py")
}

/// Returns a port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A running test receiver, killed on drop.
pub struct Receiver {
    pub url: String,
    child: Child,
    client: reqwest::Client,
}

/// One stored stream, as `/control/streams` returns it.
#[derive(Debug, Clone)]
pub struct Stream {
    pub labels: serde_json::Map<String, Value>,
    pub labels_raw: String,
    pub entries: Vec<StoredEntry>,
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub timestamp_ns: i64,
    pub line: String,
    pub metadata: serde_json::Map<String, Value>,
}

impl Receiver {
    /// Starts a receiver on a free port with extra command-line arguments.
    pub fn start(args: &[&str]) -> Self {
        Self::start_on(0, args)
    }

    /// Starts a receiver on `port` (0 picks a free one).
    pub fn start_on(port: u16, args: &[&str]) -> Self {
        let script = receiver_script();
        let python = python();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "failed to start the Loki test receiver with {python:?} {}: {error}; \
                     set NIXTLA_TEST_PYTHON to a Python with tests/support/loki_receiver/requirements.txt \
                     installed (tests/run.sh does this)",
                    script.display()
                )
            });
        let url = read_listening_line(&mut child);
        Self {
            url,
            child,
            client: reqwest::Client::new(),
        }
    }

    /// Returns the accepted streams.
    pub async fn streams(&self) -> Vec<Stream> {
        let body = self.get("/control/streams").await;
        let streams = body["streams"].as_array().expect("streams array");
        streams.iter().map(parse_stream).collect()
    }

    /// Returns every accepted entry of every stream, in arrival order per stream.
    pub async fn entries(&self) -> Vec<StoredEntry> {
        let streams = self.streams().await;
        streams.into_iter().flat_map(|s| s.entries).collect()
    }

    /// Returns one record per push request.
    pub async fn requests(&self) -> Vec<Value> {
        let body = self.get("/control/requests").await;
        body["requests"].as_array().expect("requests array").clone()
    }

    /// Returns how many pushes the receiver is reading or processing now.
    pub async fn in_flight(&self) -> u64 {
        let body = self.get("/control/requests").await;
        body["in_flight"].as_u64().expect("in_flight count")
    }

    /// Returns the statuses of every push, in order.
    pub async fn statuses(&self) -> Vec<u64> {
        let requests = self.requests().await;
        requests
            .iter()
            .map(|r| r["status"].as_u64().unwrap_or(0))
            .collect()
    }

    /// Sets a fault plan, for example `{"mode": "status", "status": 429, "count": 5}`.
    pub async fn fault(&self, plan: Value) {
        let response = self
            .client
            .post(format!("{}/control/fault", self.url))
            .json(&plan)
            .send()
            .await
            .expect("set receiver fault");
        assert_eq!(response.status(), 200, "fault {plan} was not accepted");
    }

    /// Waits until at least `count` entries are stored, or panics after `timeout`.
    pub async fn wait_for_entries(&self, count: usize, timeout: Duration) -> Vec<StoredEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.entries().await;
            if entries.len() >= count {
                return entries;
            }
            if Instant::now() > deadline {
                panic!(
                    "receiver stored {} entries, expected {count} within {timeout:?}; requests: {:?}",
                    entries.len(),
                    self.statuses().await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .expect("receiver control request");
        response.json().await.expect("receiver control JSON")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_listening_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("receiver stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(START_TIMEOUT).unwrap_or_default();
    match line.trim().strip_prefix("listening ") {
        Some(url) => url.to_owned(),
        None => {
            let _ = child.kill();
            panic!(
                "the Loki test receiver did not print `listening http://127.0.0.1:PORT` within \
                 {START_TIMEOUT:?} (got {line:?}); see its stderr above. Is NIXTLA_TEST_PYTHON set \
                 to a venv with tests/support/loki_receiver/requirements.txt?"
            );
        }
    }
}

fn parse_stream(value: &Value) -> Stream {
    let entries = value["entries"].as_array().expect("entries array");
    Stream {
        labels: value["labels"].as_object().expect("labels object").clone(),
        labels_raw: value["labels_raw"].as_str().expect("labels_raw").to_owned(),
        entries: entries.iter().map(parse_entry).collect(),
    }
}

fn parse_entry(value: &Value) -> StoredEntry {
    StoredEntry {
        timestamp_ns: value["timestamp_ns"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("timestamp_ns as a decimal string"),
        line: value["line"].as_str().expect("line").to_owned(),
        metadata: value["metadata"].as_object().cloned().unwrap_or_default(),
    }
}

/// Returns a builder with short timers so tests run fast: 50 ms batches,
/// backoff 10..100 ms, 2 s request timeout, warnings captured.
pub fn fast_builder(url: &str) -> LokiBuilder {
    LokiBuilder::new(url)
        .expect("valid receiver URL")
        .label("service_name", "nixtla")
        .expect("valid label")
        .label("env", "test")
        .expect("valid label")
        .batch_max_wait(Duration::from_millis(50))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .request_timeout(Duration::from_secs(2))
        .max_retry_duration(Duration::from_secs(30))
}

/// A shipper installed as the current thread's subscriber.
pub struct Shipper {
    pub handle: LokiHandle,
    /// Lines the shipper wrote about itself (warnings and the shutdown report).
    pub diagnostics: Arc<Mutex<Vec<String>>>,
    /// Lines passed to the mirror, which stdout would print.
    pub mirrored: Arc<Mutex<Vec<String>>>,
    _guard: DefaultGuard,
}

impl Shipper {
    /// Builds the shipper, spawns its task, and makes it the subscriber of
    /// the calling thread until dropped.
    pub fn install(builder: LokiBuilder) -> Self {
        let diagnostics = Arc::new(Mutex::new(Vec::new()));
        let mirrored = Arc::new(Mutex::new(Vec::new()));
        let diag_sink = Arc::clone(&diagnostics);
        let mirror_sink = Arc::clone(&mirrored);
        let builder = builder
            .diagnostics(DiagnosticOutput::Callback(Arc::new(move |line: &str| {
                diag_sink.lock().unwrap().push(line.to_owned());
            })))
            .mirror(move |line| mirror_sink.lock().unwrap().push(line.to_owned()));
        let (layer, task, handle) = builder.build().expect("valid shipper configuration");
        tokio::spawn(task);
        let subscriber = tracing_subscriber::registry().with(layer);
        let guard = tracing::subscriber::set_default(subscriber);
        Self {
            handle,
            diagnostics,
            mirrored,
            _guard: guard,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.handle.snapshot()
    }

    pub fn diagnostic_lines(&self) -> Vec<String> {
        self.diagnostics.lock().unwrap().clone()
    }

    pub fn mirrored_lines(&self) -> Vec<String> {
        self.mirrored.lock().unwrap().clone()
    }

    /// Waits until nothing is queued, or panics after `timeout`.
    pub async fn wait_until_idle(&self, timeout: Duration) -> Snapshot {
        let deadline = Instant::now() + timeout;
        loop {
            let snapshot = self.snapshot();
            if snapshot.queued_entries == 0 {
                return snapshot;
            }
            if Instant::now() > deadline {
                panic!("shipper still has queued entries after {timeout:?}: {snapshot:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Asserts generated = sent + dropped + queued.
pub fn assert_identity(snapshot: &Snapshot) {
    assert_eq!(
        snapshot.generated,
        snapshot.sent + snapshot.dropped() + snapshot.queued_entries,
        "generated = sent + dropped + queued must hold: {snapshot:?}"
    );
}

/// Parses a JSON line, panicking with the line when it is not an object.
pub fn parse_line(line: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(line) {
        Ok(Value::Object(map)) => map,
        other => panic!("not a JSON object: {line:?}: {other:?}"),
    }
}
