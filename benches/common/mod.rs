//! Parts shared by the benchmarks: the activity event that every subscriber
//! gets, the three subscribers under comparison, an in-process HTTP sink that
//! accepts Loki pushes, and result files.
#![allow(dead_code)]

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nixtla::loki::{DiagnosticOutput, LokiBuilder, LokiHandle, Snapshot};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;

/// The subscribers under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shipper {
    /// This crate's `LokiLayer`.
    Nixtla,
    /// `tracing-loki` 0.2.7.
    TracingLoki,
    /// `tracing-subscriber`'s JSON formatter writing to `io::sink`: formatting
    /// with no shipping, the floor of what a JSON logger costs.
    JsonSink,
}

impl Shipper {
    pub const ALL: [Shipper; 3] = [Shipper::Nixtla, Shipper::TracingLoki, Shipper::JsonSink];
    /// The two shippers that push to Loki.
    pub const LOKI: [Shipper; 2] = [Shipper::Nixtla, Shipper::TracingLoki];

    pub fn name(self) -> &'static str {
        match self {
            Shipper::Nixtla => "nixtla",
            Shipper::TracingLoki => "tracing-loki",
            Shipper::JsonSink => "json-sink",
        }
    }

    pub fn parse(name: &str) -> Option<Shipper> {
        Self::ALL.into_iter().find(|shipper| shipper.name() == name)
    }
}

/// Returns `count` distinct request ids in UUID form. They are made before
/// a measurement so that formatting them is not part of any measured cost.
pub fn request_ids(count: usize) -> Vec<String> {
    (0..count as u128)
        .map(|index| {
            let bits = 0x5eed_0000_0000_4000_8000_0000_0000_0000
                ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            uuid::Uuid::from_u128(bits).hyphenated().to_string()
        })
        .collect()
}

/// Logs the benchmark's activity event: six fields (user id, user name,
/// request id, route, status, latency) and a message, as the service logs a
/// page view. `sequence` varies the latency so consecutive lines differ.
#[inline]
pub fn log_activity(sequence: u64, request_id: &str) {
    tracing::info!(
        target: "nixtla::activity",
        user_id = "u-1042",
        user_name = "Ada Lovelace",
        request_id,
        route = "/nixtla",
        status = 200u16,
        latency_ms = sequence % 500,
        "page view"
    );
}

/// A runtime with one worker thread for the shippers' background tasks, so
/// the calling thread and the shipper each have a core of the two.
pub fn shipper_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("shipper")
        .enable_all()
        .build()
        .expect("failed to start the shipper runtime")
}

/// A subscriber under test, with what is needed to stop it.
pub struct Installed {
    pub shipper: Shipper,
    pub dispatch: Dispatch,
    stop: Stop,
}

enum Stop {
    Nixtla(LokiHandle),
    TracingLoki(
        tracing_loki::BackgroundTaskController,
        tokio::task::JoinHandle<()>,
    ),
    Nothing,
}

/// How a shipper ended: the counts it knows about itself.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Whether the background task finished before the deadline.
    pub finished: bool,
    /// This crate's counters; `None` for tracing-loki and the JSON sink,
    /// which count nothing.
    pub snapshot: Option<Snapshot>,
}

/// Builds `shipper` pushing to `loki_url` (a base URL such as
/// `http://127.0.0.1:3100`) and spawns its task on `runtime`. `tune` adjusts
/// this crate's builder and is ignored for the other subscribers.
pub fn install(
    shipper: Shipper,
    runtime: &tokio::runtime::Handle,
    loki_url: &str,
    tune: impl FnOnce(LokiBuilder) -> LokiBuilder,
) -> Installed {
    let (dispatch, stop) = match shipper {
        Shipper::Nixtla => {
            let builder = LokiBuilder::new(loki_url)
                .and_then(|b| Ok(b.label("service_name", "nixtla")?))
                .and_then(|b| Ok(b.label("env", "bench")?))
                .expect("valid Loki URL and labels")
                .diagnostics(DiagnosticOutput::Stderr);
            let (layer, task, handle) = tune(builder).build().expect("valid shipper settings");
            runtime.spawn(task);
            let subscriber = tracing_subscriber::registry().with(layer);
            (Dispatch::new(subscriber), Stop::Nixtla(handle))
        }
        Shipper::TracingLoki => {
            let url = tracing_loki::url::Url::parse(loki_url).expect("valid Loki URL");
            let (layer, controller, task) = tracing_loki::builder()
                .label("service_name", "nixtla")
                .and_then(|b| b.label("env", "bench"))
                .and_then(|b| b.build_controller_url(url))
                .expect("valid tracing-loki settings");
            let task = runtime.spawn(task);
            let subscriber = tracing_subscriber::registry().with(layer);
            (
                Dispatch::new(subscriber),
                Stop::TracingLoki(controller, task),
            )
        }
        Shipper::JsonSink => {
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .with_writer(io::sink);
            let subscriber = tracing_subscriber::registry().with(layer);
            (Dispatch::new(subscriber), Stop::Nothing)
        }
    };
    Installed {
        shipper,
        dispatch,
        stop,
    }
}

impl Installed {
    /// Returns this crate's counters, or `None` for the other subscribers.
    pub fn snapshot(&self) -> Option<Snapshot> {
        match &self.stop {
            Stop::Nixtla(handle) => Some(handle.snapshot()),
            _ => None,
        }
    }

    /// Flushes and stops the shipper, waiting at most `deadline`.
    pub async fn shutdown(self, deadline: Duration) -> Stopped {
        match self.stop {
            Stop::Nixtla(handle) => {
                let report = handle.shutdown(deadline).await;
                Stopped {
                    finished: report.finished,
                    snapshot: Some(report.metrics),
                }
            }
            Stop::TracingLoki(controller, task) => {
                // The controller only asks the task to stop, so the subscriber
                // is dropped too: tracing-loki's task ends once its channel
                // closes and its last request is answered.
                drop(self.dispatch);
                controller.shutdown().await;
                let finished = tokio::time::timeout(deadline, task).await.is_ok();
                Stopped {
                    finished,
                    snapshot: None,
                }
            }
            Stop::Nothing => Stopped {
                finished: true,
                snapshot: None,
            },
        }
    }
}

/// Counters of an in-process Loki stand-in.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub requests: AtomicU64,
    /// Bytes of the snappy-compressed request bodies.
    pub body_bytes: AtomicU64,
    /// Bytes of the protobuf after decompression.
    pub raw_bytes: AtomicU64,
    /// Entries decoded from the bodies.
    pub entries: AtomicU64,
    /// Bytes of the entries' log lines.
    pub line_bytes: AtomicU64,
    capture: AtomicBool,
    bodies: Mutex<Vec<Vec<u8>>>,
}

impl SinkStats {
    fn record(&self, body: &[u8]) {
        use loki_api::prost::Message as _;
        let raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .expect("push body is raw snappy");
        let request = loki_api::logproto::PushRequest::decode(raw.as_slice())
            .expect("push body is a protobuf PushRequest");
        let entries = request.streams.iter().flat_map(|stream| &stream.entries);
        let (count, line_bytes) = entries.fold((0, 0), |(count, bytes), entry| {
            (count + 1, bytes + entry.line.len() as u64)
        });
        self.requests.fetch_add(1, Relaxed);
        self.body_bytes.fetch_add(body.len() as u64, Relaxed);
        self.raw_bytes.fetch_add(raw.len() as u64, Relaxed);
        self.entries.fetch_add(count, Relaxed);
        self.line_bytes.fetch_add(line_bytes, Relaxed);
        if self.capture.load(Relaxed) {
            self.bodies.lock().unwrap().push(body.to_vec());
        }
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that answers every request with
/// 204 and counts the Loki pushes it receives. It decodes them to count
/// entries but validates nothing else, so it is much faster than the Python
/// receiver and never limits a shipper's throughput.
pub struct NullLoki {
    pub url: String,
    pub stats: Arc<SinkStats>,
    runtime: Runtime,
}

impl NullLoki {
    /// Starts the sink on its own thread.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("null-loki")
            .enable_all()
            .build()
            .expect("failed to start the sink runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("failed to bind the sink to 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let stats = Arc::new(SinkStats::default());
        let accept_stats = Arc::clone(&stats);
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let stats = Arc::clone(&accept_stats);
                tokio::spawn(async move {
                    if let Err(error) = serve_connection(socket, &stats).await {
                        eprintln!("null-loki: connection failed: {error}");
                    }
                });
            }
        });
        Self {
            url,
            stats,
            runtime,
        }
    }

    /// Keeps a copy of every body received from now on.
    pub fn capture_bodies(&self) {
        self.stats.capture.store(true, Relaxed);
    }

    /// Returns and forgets the captured bodies.
    pub fn take_bodies(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.stats.bodies.lock().unwrap())
    }

    /// Returns the entries received so far.
    pub fn entries(&self) -> u64 {
        self.stats.entries.load(Relaxed)
    }

    /// Waits until at least `count` entries arrived, no entry arrived for
    /// `quiet`, or `timeout` passed; returns the entries received.
    pub fn wait_for_entries(&self, count: u64, quiet: Duration, timeout: Duration) -> u64 {
        let start = std::time::Instant::now();
        let mut last_change = start;
        let mut last = self.entries();
        while last < count && start.elapsed() < timeout && last_change.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(5));
            let now = self.entries();
            if now != last {
                last = now;
                last_change = std::time::Instant::now();
            }
        }
        self.entries()
    }

    /// Returns a handle of the sink's runtime, for shippers that should not
    /// share the caller's core in a measurement.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }
}

/// Reads requests with a `Content-Length` body and answers each with 204.
async fn serve_connection(mut socket: TcpStream, stats: &SinkStats) -> io::Result<()> {
    let mut buffer: Vec<u8> = Vec::with_capacity(1 << 16);
    loop {
        let header_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            if socket.read_buf(&mut buffer).await? == 0 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            return Err(io::Error::other("chunked request bodies are not supported"));
        }
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buffer.len() < header_end + length {
            if socket.read_buf(&mut buffer).await? == 0 {
                return Err(io::Error::other("connection closed inside a request body"));
            }
        }
        stats.record(&buffer[header_end..header_end + length]);
        buffer.drain(..header_end + length);
        socket.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Returns the folder for machine-readable results, `target/bench-results`.
pub fn results_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("bench-results");
    std::fs::create_dir_all(&dir).expect("failed to create target/bench-results");
    dir
}

/// Writes `value` as pretty JSON to `target/bench-results/NAME.json` and
/// prints the path.
pub fn write_results(name: &str, value: &serde_json::Value) {
    let path = results_dir().join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("results serialize");
    std::fs::write(&path, text)
        .unwrap_or_else(|e| panic!("failed to write {}: {e}", path.display()));
    println!("results written to {}", path.display());
}

/// Whether the binary runs as a benchmark (`cargo bench`) rather than as a
/// quick check (`cargo test --benches`, which passes no `--bench` flag).
pub fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Sorted-sample percentiles in nanoseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl Percentiles {
    /// Sorts `samples` and reads the percentiles (nearest rank).
    pub fn from_samples(samples: &mut [u64]) -> Self {
        assert!(!samples.is_empty(), "no samples to summarize");
        samples.sort_unstable();
        let rank = |q: f64| {
            let index = ((samples.len() as f64) * q).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Self {
            samples: samples.len(),
            p50_ns: rank(0.50),
            p90_ns: rank(0.90),
            p99_ns: rank(0.99),
            p999_ns: rank(0.999),
            max_ns: samples[samples.len() - 1],
        }
    }
}
