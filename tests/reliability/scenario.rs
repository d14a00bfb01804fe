//! One run of the fault matrix: the app with a real OpenID provider and the
//! fault-injecting Loki receiver, under load, while the receiver goes
//! through one fault mode. Then SIGTERM, and the shipper's own report is
//! compared with what the receiver stored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::faulty_loki::FaultyLoki;
use super::load::{LoadPlan, LoadStats, run_load};
use crate::common::oidc::{CLIENT_ID, CLIENT_SECRET, TestProvider};
use crate::common::{TEST_SESSION_KEY, TestApp, free_port};

/// Delay of each response in the `slow` modes.
const SLOW_RESPONSE_MS: u64 = 5000;
/// Request timeout set in the mode where slow responses time out.
const SHORT_REQUEST_TIMEOUT_MS: u64 = 2000;
/// Batch settings of the 413 mode, so bodies grow past the receiver's limit.
/// 5 MiB stays below Loki's 6 MB ingestion burst.
const LARGE_BATCH_MAX_BYTES: u64 = 5 << 20;
const LARGE_BATCH_MAX_WAIT_MS: u64 = 5000;
/// The shipper's shutdown deadline in every run, `LOKI_SHUTDOWN_TIMEOUT_MS`.
pub const LOKI_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// 429 responses per burst in the rate-limit mode.
const RATE_LIMIT_BURST: u64 = 5;

/// Targets whose events reach stdout but are never queued for Loki: the
/// shipper's own lines and the HTTP stack it uses (see `LokiLayer`).
const UNSHIPPED_TARGETS: [&str; 9] = [
    "nixtla::loki",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "want",
    "tower",
];

/// What the receiver does during a run. Faults last from a quarter to
/// three quarters of the run, except where a variant states other times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    NoFault,
    /// No receiver until a third of the run.
    DownAtStart,
    /// The receiver process is killed, then started again on the same port.
    DownMidRun,
    /// Killed and started again every flap period.
    Flapping,
    /// Pushes are read, and no response is ever sent.
    Hanging,
    /// Pushes are stored, and each response is sent 5 s later. The request
    /// timeout is the default 10 s.
    Slow,
    /// As `Slow`, with a 2 s request timeout, so every slow push times out
    /// after it was stored and its retry is a duplicate.
    SlowPastTimeout,
    /// 5 responses of 429 at the start of every flap period.
    RateLimitBursts,
    /// 500 for the first half of the fault, 503 for the second.
    ServerErrors,
    /// Every second entry of a push is rejected with 400, and the rest is stored.
    PartialRejects,
    /// The receiver responds with 413 to bodies over the threshold for the whole run.
    TooLarge,
    /// Every push connection is reset (TCP RST) without a response.
    ConnectionResets,
}

impl Mode {
    pub const ALL: [Mode; 12] = [
        Mode::NoFault,
        Mode::DownAtStart,
        Mode::DownMidRun,
        Mode::Flapping,
        Mode::Hanging,
        Mode::Slow,
        Mode::SlowPastTimeout,
        Mode::RateLimitBursts,
        Mode::ServerErrors,
        Mode::PartialRejects,
        Mode::TooLarge,
        Mode::ConnectionResets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::NoFault => "no fault",
            Mode::DownAtStart => "down at start",
            Mode::DownMidRun => "down mid-run",
            Mode::Flapping => "flapping",
            Mode::Hanging => "hanging",
            Mode::Slow => "slow 5 s",
            Mode::SlowPastTimeout => "slow 5 s, 2 s timeout",
            Mode::RateLimitBursts => "429 bursts",
            Mode::ServerErrors => "500 then 503",
            Mode::PartialRejects => "partial 400",
            Mode::TooLarge => "413 over limit",
            Mode::ConnectionResets => "connection resets",
        }
    }

    /// Returns the mode's name in `NIXTLA_RELIABILITY_MODES`.
    pub fn id(self) -> &'static str {
        match self {
            Mode::NoFault => "no-fault",
            Mode::DownAtStart => "down-at-start",
            Mode::DownMidRun => "down-mid-run",
            Mode::Flapping => "flapping",
            Mode::Hanging => "hanging",
            Mode::Slow => "slow",
            Mode::SlowPastTimeout => "slow-past-timeout",
            Mode::RateLimitBursts => "rate-limit-bursts",
            Mode::ServerErrors => "server-errors",
            Mode::PartialRejects => "partial-rejects",
            Mode::TooLarge => "too-large",
            Mode::ConnectionResets => "connection-resets",
        }
    }

    /// Returns the modes listed in `NIXTLA_RELIABILITY_MODES` (comma-separated
    /// ids), or every mode when it is unset.
    pub fn selected() -> Vec<Mode> {
        let Ok(list) = std::env::var("NIXTLA_RELIABILITY_MODES") else {
            return Mode::ALL.to_vec();
        };
        list.split(',')
            .map(|id| {
                let id = id.trim();
                Mode::ALL
                    .into_iter()
                    .find(|mode| mode.id() == id)
                    .unwrap_or_else(|| {
                        let ids: Vec<&str> = Mode::ALL.iter().map(|m| m.id()).collect();
                        panic!("invalid mode {id:?} in NIXTLA_RELIABILITY_MODES: expected one of {ids:?}")
                    })
            })
            .collect()
    }

    /// Returns whether a push can time out after the receiver stored it,
    /// which is the only way an entry can reach Loki twice.
    pub fn may_duplicate(self) -> bool {
        self == Mode::SlowPastTimeout
    }
}

/// Size and timing of a run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub load: LoadPlan,
    /// Period of the flapping and of the 429 bursts.
    pub flap_period: Duration,
    /// Body size over which the receiver responds with 413 in [`Mode::TooLarge`].
    pub too_large_bytes: u64,
    /// `LOKI_QUEUE_MAX_BYTES`, or the app's default (32 MiB) when `None`.
    pub queue_max_bytes: Option<u64>,
}

impl Settings {
    /// Returns the settings of the default test suite: 4 s and 20 clients.
    pub fn short() -> Self {
        Self {
            load: LoadPlan {
                clients: 20,
                duration: Duration::from_secs(4),
                think_time: Duration::from_millis(20),
                sign_out_share: 0.05,
            },
            flap_period: Duration::from_millis(700),
            too_large_bytes: 16 << 10,
            queue_max_bytes: Some(8 << 20),
        }
    }

    /// Returns the full run's settings: 200 clients for 30 s, a 2 s flap
    /// period and a 1 MiB body limit. `NIXTLA_RELIABILITY_CLIENTS`, `NIXTLA_RELIABILITY_SECONDS`
    /// and `NIXTLA_RELIABILITY_THINK_MS` override the load.
    pub fn full() -> Self {
        Self {
            load: LoadPlan {
                clients: env_number("NIXTLA_RELIABILITY_CLIENTS", 200) as usize,
                duration: Duration::from_secs(env_number("NIXTLA_RELIABILITY_SECONDS", 30)),
                think_time: Duration::from_millis(env_number("NIXTLA_RELIABILITY_THINK_MS", 100)),
                sign_out_share: 0.02,
            },
            flap_period: Duration::from_secs(2),
            too_large_bytes: 1 << 20,
            queue_max_bytes: None,
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

/// The shipper's shutdown report, the JSON line it writes on stdout.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    pub finished: bool,
    pub generated: u64,
    pub delivered: u64,
    pub lost: u64,
    pub still_queued: u64,
    /// Dropped entries per reason, as in `nixtla_loki_dropped_entries_total`.
    pub dropped: BTreeMap<String, u64>,
}

/// Everything measured in one run.
#[derive(Debug)]
pub struct Outcome {
    pub mode: Mode,
    pub settings: Settings,
    pub load: LoadStats,
    pub report: Option<ShutdownReport>,
    /// Lines on stdout that the shipper counts as generated.
    pub stdout_entries: u64,
    /// Entries the receiver stored, each once.
    pub stored: u64,
    /// Entries the receiver found already stored and did not store again.
    pub duplicates: u64,
    /// Push responses of the receiver by status; `none` when it sent none.
    pub push_statuses: BTreeMap<String, u64>,
    /// `nixtla_loki_retries_total` read just before SIGTERM.
    pub retries: u64,
    /// `nixtla_loki_bytes_sent_total` and `nixtla_loki_compressed_bytes_sent_total`
    /// read just before SIGTERM.
    pub bytes_sent: u64,
    pub compressed_bytes_sent: u64,
    /// Largest push body the receiver got, in bytes.
    pub largest_push_bytes: u64,
    /// `login_failed` events on stdout, by reason and detail.
    pub login_failures: BTreeMap<String, u64>,
    /// Peak resident set size of the app (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
    pub shutdown_time: Duration,
    pub exit_code: Option<i32>,
}

/// Runs one mode of the fault matrix and returns what was measured.
pub async fn run_mode(mode: Mode, settings: Settings) -> Outcome {
    let receiver_args = match mode {
        Mode::TooLarge => vec![
            "--max-body-bytes".to_owned(),
            settings.too_large_bytes.to_string(),
        ],
        _ => Vec::new(),
    };
    let receiver_args: Vec<&str> = receiver_args.iter().map(String::as_str).collect();
    let mut loki = FaultyLoki::new(&receiver_args);
    if mode != Mode::DownAtStart {
        loki.come_up();
    }

    let port = free_port();
    let provider = TestProvider::spawn(&format!("http://127.0.0.1:{port}/auth"));
    let env = app_env(mode, &settings, &provider.issuer, &loki.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut app = TestApp::spawn_on(port, &env).await;

    let started = Instant::now();
    let load = tokio::spawn(run_load(app.base_url.clone(), settings.load));
    drive_faults(mode, &settings, &mut loki, started).await;
    let load = load.await.expect("the load task panicked");
    loki.come_up();
    loki.fault(json!({"mode": "none"})).await;

    let metrics = scrape_metrics(&app).await;
    let peak_rss_kib = peak_rss_kib(app.pid());
    let shutdown_started = Instant::now();
    let exit_code = app.terminate();
    let shutdown_time = shutdown_started.elapsed();
    let lines = app.stdout_lines();
    let requests = loki.all_requests().await;
    drop(provider);

    Outcome {
        mode,
        settings,
        load,
        report: find_report(&lines),
        stdout_entries: count_shipped_lines(&lines),
        stored: sum_field(&requests, "accepted"),
        duplicates: sum_field(&requests, "duplicates"),
        push_statuses: count_statuses(&requests),
        retries: metric(&metrics, "nixtla_loki_retries_total"),
        bytes_sent: metric(&metrics, "nixtla_loki_bytes_sent_total"),
        compressed_bytes_sent: metric(&metrics, "nixtla_loki_compressed_bytes_sent_total"),
        largest_push_bytes: requests
            .iter()
            .filter_map(|r| r["body_bytes"].as_u64())
            .max()
            .unwrap_or(0),
        login_failures: count_login_failures(&lines),
        peak_rss_kib,
        shutdown_time,
        exit_code,
    }
}

fn app_env(
    mode: Mode,
    settings: &Settings,
    issuer: &str,
    loki_url: &str,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("OIDC_ISSUER", issuer.to_owned()),
        ("OAUTH_CLIENT_ID", CLIENT_ID.to_owned()),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("SESSION_KEY", TEST_SESSION_KEY.to_owned()),
        ("LOKI_URL", loki_url.to_owned()),
        (
            "LOKI_SHUTDOWN_TIMEOUT_MS",
            LOKI_SHUTDOWN_TIMEOUT.as_millis().to_string(),
        ),
    ];
    if let Some(bytes) = settings.queue_max_bytes {
        env.push(("LOKI_QUEUE_MAX_BYTES", bytes.to_string()));
    }
    match mode {
        Mode::SlowPastTimeout => {
            env.push((
                "LOKI_REQUEST_TIMEOUT_MS",
                SHORT_REQUEST_TIMEOUT_MS.to_string(),
            ));
        }
        Mode::TooLarge => {
            env.push(("LOKI_BATCH_MAX_BYTES", LARGE_BATCH_MAX_BYTES.to_string()));
            env.push((
                "LOKI_BATCH_MAX_WAIT_MS",
                LARGE_BATCH_MAX_WAIT_MS.to_string(),
            ));
        }
        _ => {}
    }
    env
}

/// Walks the receiver through `mode` while the load runs. Returns once the
/// run's duration has passed, with the receiver up and without a fault.
async fn drive_faults(mode: Mode, settings: &Settings, loki: &mut FaultyLoki, started: Instant) {
    let duration = settings.load.duration;
    let fault_start = started + duration / 4;
    let fault_end = started + duration * 3 / 4;
    let half = started + duration / 2;
    match mode {
        Mode::NoFault | Mode::TooLarge => {}
        Mode::DownAtStart => {
            sleep_until(started + duration / 3).await;
            loki.come_up();
        }
        Mode::DownMidRun => {
            sleep_until(fault_start).await;
            loki.go_down().await;
            sleep_until(fault_end).await;
            loki.come_up();
        }
        Mode::Flapping => {
            let mut at = fault_start;
            while at < fault_end {
                sleep_until(at).await;
                if loki.is_up() {
                    loki.go_down().await;
                } else {
                    loki.come_up();
                }
                at += settings.flap_period;
            }
            sleep_until(fault_end).await;
            loki.come_up();
        }
        Mode::RateLimitBursts => {
            let mut at = fault_start;
            while at < fault_end {
                sleep_until(at).await;
                let plan = json!({"mode": "status", "status": 429, "count": RATE_LIMIT_BURST});
                loki.fault(plan).await;
                at += settings.flap_period;
            }
        }
        Mode::ServerErrors => {
            sleep_until(fault_start).await;
            loki.fault(json!({"mode": "status", "status": 500})).await;
            sleep_until(half).await;
            loki.fault(json!({"mode": "status", "status": 503})).await;
        }
        Mode::Hanging
        | Mode::Slow
        | Mode::SlowPastTimeout
        | Mode::PartialRejects
        | Mode::ConnectionResets => {
            sleep_until(fault_start).await;
            loki.fault(window_fault(mode)).await;
        }
    }
    sleep_until(fault_end.max(started)).await;
    loki.fault(json!({"mode": "none"})).await;
    sleep_until(started + duration).await;
}

fn window_fault(mode: Mode) -> Value {
    match mode {
        Mode::Hanging => json!({"mode": "hang"}),
        Mode::Slow | Mode::SlowPastTimeout => json!({"mode": "slow", "delay_ms": SLOW_RESPONSE_MS}),
        Mode::PartialRejects => json!({"mode": "partial", "reject_every": 2}),
        Mode::ConnectionResets => json!({"mode": "refuse"}),
        other => unreachable!("{other:?} has no single fault plan"),
    }
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

/// Reads every unlabelled sample from `/metrics`.
async fn scrape_metrics(app: &TestApp) -> BTreeMap<String, u64> {
    let body = reqwest::get(app.url("/metrics"))
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("read /metrics");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.contains('{'))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn metric(metrics: &BTreeMap<String, u64>, name: &str) -> u64 {
    *metrics
        .get(name)
        .unwrap_or_else(|| panic!("no {name} sample in /metrics: {metrics:?}"))
}

/// Reads `VmHWM`, the peak resident set size, of a running process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM line in {path}"))
}

/// Finds the shipper's shutdown report among stdout lines.
pub fn find_report(lines: &[String]) -> Option<ShutdownReport> {
    lines.iter().rev().find_map(|line| {
        let event: Value = serde_json::from_str(line).ok()?;
        if event["target"] != "nixtla::loki" || event.get("still_queued").is_none() {
            return None;
        }
        let number = |name: &str| {
            event[name]
                .as_u64()
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        let dropped = [
            "queue_full",
            "rate_limited",
            "rejected",
            "line_too_long",
            "shutdown",
        ]
        .into_iter()
        .map(|reason| (reason.to_owned(), number(&format!("dropped_{reason}"))))
        .collect();
        Some(ShutdownReport {
            finished: event["message"] == "Loki shipper stopped",
            generated: number("generated"),
            delivered: number("delivered"),
            lost: number("lost"),
            still_queued: number("still_queued"),
            dropped,
        })
    })
}

/// Counts the stdout lines that the shipper queues for Loki: every JSON line
/// except those of [`UNSHIPPED_TARGETS`].
pub fn count_shipped_lines(lines: &[String]) -> u64 {
    let shipped = lines.iter().filter(|line| {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        let target = event["target"].as_str().unwrap_or_default();
        let crate_name = target.split("::").next().unwrap_or(target);
        !UNSHIPPED_TARGETS.contains(&target) && !UNSHIPPED_TARGETS.contains(&crate_name)
    });
    shipped.count() as u64
}

fn count_login_failures(lines: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["event"] == "login_failed" {
            let key = format!("{}: {}", event["reason"], event["detail"]);
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    counts
}

fn sum_field(requests: &[Value], field: &str) -> u64 {
    requests
        .iter()
        .map(|r| r[field].as_u64().unwrap_or(0))
        .sum()
}

fn count_statuses(requests: &[Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for request in requests {
        let status = match request["status"].as_u64() {
            Some(status) => status.to_string(),
            None => "none".to_owned(),
        };
        *counts.entry(status).or_insert(0) += 1;
    }
    counts
}

impl Outcome {
    /// Checks the promises that must hold in every mode: no failed request,
    /// every entry delivered or counted as dropped, the receiver's count
    /// matching the shipper's, and a shutdown within its deadline.
    pub fn assert_promises(&self) {
        let mode = self.mode.name();
        assert_eq!(
            self.load.failed, 0,
            "{mode}: failed requests, for example {:?}; sign-in failures logged: {:?}",
            self.load.failure_samples, self.login_failures
        );
        assert!(self.load.requests > 0, "{mode}: the load sent no request");
        assert_eq!(
            self.load.provider_failures, 0,
            "{mode}: sign-in failed at the provider, for example {:?}",
            self.load.provider_failure_samples
        );

        assert_eq!(self.exit_code, Some(0), "{mode}: exit code after SIGTERM");
        let report = self
            .report
            .as_ref()
            .unwrap_or_else(|| panic!("{mode}: no shutdown report on stdout"));
        assert!(
            report.finished,
            "{mode}: the shipper missed its deadline: {report:?}"
        );
        assert_eq!(report.still_queued, 0, "{mode}: {report:?}");
        let dropped: u64 = report.dropped.values().sum();
        assert_eq!(
            report.lost, dropped,
            "{mode}: lost = sum of drops: {report:?}"
        );
        assert_eq!(
            report.generated,
            report.delivered + report.lost,
            "{mode}: generated = delivered + dropped: {report:?}"
        );
        assert_eq!(
            self.stdout_entries, report.generated,
            "{mode}: every shipped stdout line is counted as generated"
        );

        if !self.mode.may_duplicate() {
            assert_eq!(
                self.duplicates, 0,
                "{mode}: duplicates without a timed-out push"
            );
        }

        match self.mode {
            // The receiver's 400 message gives no count of rejected entries, so
            // the shipper counts the whole batch as rejected although half of
            // it was stored.
            Mode::PartialRejects => assert!(
                self.stored >= report.delivered
                    && self.stored - report.delivered <= report.dropped["rejected"],
                "{mode}: stored {} vs delivered {report:?}",
                self.stored
            ),
            // A push stored after its timeout and then dropped at shutdown
            // is stored but counted as dropped.
            Mode::SlowPastTimeout => assert!(
                self.stored >= report.delivered && self.stored - report.delivered <= dropped,
                "{mode}: stored {} vs delivered {report:?}",
                self.stored
            ),
            _ => assert_eq!(
                self.stored, report.delivered,
                "{mode}: the receiver stored what the shipper counts as delivered"
            ),
        }

        let limit = LOKI_SHUTDOWN_TIMEOUT + Duration::from_secs(2);
        assert!(
            self.shutdown_time < limit,
            "{mode}: shutdown took {:?}, over {limit:?}",
            self.shutdown_time
        );
    }

    /// Asserts the app's peak resident set size stayed under `limit_mib`.
    pub fn assert_peak_rss_below(&self, limit_mib: u64) {
        let peak_mib = self.peak_rss_kib as f64 / 1024.0;
        assert!(
            peak_mib < limit_mib as f64,
            "{}: peak RSS {peak_mib:.1} MiB, limit {limit_mib} MiB",
            self.mode.name()
        );
    }
}
