//! Shutdown with entries pending, with the Loki test receiver up and down:
//! first the shipper in process, then the `nixtla` binary on SIGTERM and
//! SIGKILL.

mod common;
mod loki_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::TestApp;
use loki_common::{Receiver, Shipper, assert_identity, fast_builder, parse_line};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_loki_up_delivers_pending() {
    let receiver = Receiver::start(&[]);
    // Batches would wait a minute; shutdown must not.
    let builder = fast_builder(&receiver.url).batch_max_wait(Duration::from_secs(60));
    let shipper = Shipper::install(builder);

    for index in 0..100 {
        tracing::info!(index, "pending");
    }
    assert_eq!(
        receiver.entries().await.len(),
        0,
        "nothing sent before shutdown"
    );
    let started = Instant::now();
    let report = shipper.handle.shutdown(Duration::from_secs(5)).await;

    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.finished);
    assert_eq!(report.delivered, 100);
    assert_eq!(report.lost, 0);
    assert_eq!(receiver.entries().await.len(), 100);
    assert_identity(&report.metrics);
    let lines = shipper.diagnostic_lines();
    let last = parse_line(lines.last().expect("a shutdown report line"));
    assert_eq!(last["message"], "Loki shipper stopped");
    assert_eq!(last["delivered"], 100);
    assert_eq!(last["lost"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_loki_down_reports_losses() {
    let receiver = Receiver::start(&[]);
    receiver.fault(json!({"mode": "refuse"})).await;
    let shipper = Shipper::install(fast_builder(&receiver.url));

    for index in 0..100 {
        tracing::info!(index, "undeliverable");
    }
    let started = Instant::now();
    let report = shipper.handle.shutdown(Duration::from_millis(500)).await;
    let elapsed = started.elapsed();

    assert!(
        elapsed >= Duration::from_millis(400),
        "gave up early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "missed the deadline: {elapsed:?}"
    );
    assert!(report.finished);
    assert_eq!(report.delivered, 0);
    assert_eq!(report.lost, 100);
    assert_eq!(report.metrics.dropped_shutdown, 100);
    assert_identity(&report.metrics);
    let lines = shipper.diagnostic_lines();
    let last = parse_line(lines.last().expect("a shutdown report line"));
    assert_eq!(last["lost"], 100);
    assert_eq!(last["dropped_shutdown"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_a_hung_request() {
    let receiver = Receiver::start(&[]);
    receiver.fault(json!({"mode": "hang"})).await;
    let builder = fast_builder(&receiver.url).request_timeout(Duration::from_secs(30));
    let shipper = Shipper::install(builder);

    tracing::info!("stuck");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let report = shipper.handle.shutdown(Duration::from_millis(300)).await;

    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(report.finished);
    assert_eq!(report.metrics.dropped_shutdown, 1);
    assert_identity(&report.metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_a_long_backoff() {
    let receiver = Receiver::start(&[]);
    receiver
        .fault(json!({"mode": "status", "status": 503, "count": 1}))
        .await;
    // Backoffs are drawn from 0 to 60 s, far past the shutdown deadline, and
    // the retry time is long enough for any of them.
    let builder = fast_builder(&receiver.url)
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .max_retry_duration(Duration::from_secs(600));
    let shipper = Shipper::install(builder);

    for index in 0..10 {
        tracing::info!(index, "retried at shutdown");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while shipper.snapshot().retries == 0 {
        assert!(Instant::now() < deadline, "the shipper never backed off");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let report = shipper.handle.shutdown(Duration::from_secs(2)).await;

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited out the backoff"
    );
    assert!(report.finished);
    assert_eq!(report.delivered, 10);
    assert_eq!(report.lost, 0);
    assert_eq!(receiver.statuses().await, vec![503, 204]);
    assert_identity(&report.metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_shutdown_are_counted() {
    let receiver = Receiver::start(&[]);
    let shipper = Shipper::install(fast_builder(&receiver.url));

    tracing::info!("before");
    let report = shipper.handle.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.delivered, 1);
    tracing::info!("after");

    let snapshot = shipper.snapshot();
    assert_eq!(snapshot.generated, 2);
    assert_eq!(snapshot.dropped_shutdown, 1);
    assert_eq!(
        shipper.mirrored_lines().len(),
        2,
        "the mirror still sees every line"
    );
    assert_identity(&snapshot);
}

/// Shutdown deadline of the binary in these tests, `LOKI_SHUTDOWN_TIMEOUT_MS`.
const PROCESS_DEADLINE: Duration = Duration::from_secs(2);

/// Time a process may take past its deadline: poem's graceful stop, the
/// shipper's 250 ms grace for its final count, and process exit.
const EXIT_SLACK: Duration = Duration::from_millis(1500);

/// Targets whose lines reach stdout but are never queued for Loki: the
/// shipper's own lines and the HTTP stack it uses.
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

/// Starts the binary in development-login mode, shipping to `loki_url`.
async fn spawn_shipping_app(loki_url: &str, extra_env: &[(&str, &str)]) -> TestApp {
    let deadline_ms = PROCESS_DEADLINE.as_millis().to_string();
    let mut env = vec![
        ("LOKI_URL", loki_url),
        ("LOKI_SHUTDOWN_TIMEOUT_MS", deadline_ms.as_str()),
    ];
    env.extend_from_slice(extra_env);
    TestApp::spawn_on(common::free_port(), &env).await
}

/// Sends `count` page requests one after the other; each logs a page view
/// and a request event.
async fn request_pages(app: &TestApp, count: usize) {
    let client = reqwest::Client::new();
    for _ in 0..count {
        let response = client.get(app.url("/")).send().await.expect("GET /");
        assert_eq!(response.status(), 200);
    }
}

fn is_shipped(line: &str) -> bool {
    let event = parse_line(line);
    let target = event["target"].as_str().unwrap_or_default();
    let crate_name = target.split("::").next().unwrap_or(target);
    !UNSHIPPED_TARGETS.contains(&target) && !UNSHIPPED_TARGETS.contains(&crate_name)
}

/// Counts the stdout lines the shipper queues for Loki.
fn shipped_line_count(app: &TestApp) -> u64 {
    let lines = app.stdout_lines();
    lines.iter().filter(|line| is_shipped(line)).count() as u64
}

/// Returns the shipper's shutdown report from stdout.
fn shutdown_report(app: &TestApp) -> serde_json::Map<String, Value> {
    let lines = app.stdout_lines();
    let report = lines
        .iter()
        .rev()
        .map(|line| parse_line(line))
        .find(|event| event["target"] == "nixtla::loki" && event.contains_key("still_queued"));
    report.unwrap_or_else(|| panic!("no shutdown report on stdout:\n{}", lines.join("\n")))
}

/// Sends SIGTERM and returns the time until the process exited.
fn time_sigterm(app: &mut TestApp) -> Duration {
    let started = Instant::now();
    let exit_code = app.terminate();
    let elapsed = started.elapsed();
    assert_eq!(exit_code, Some(0), "exit code after SIGTERM");
    elapsed
}

/// Reads every unlabelled or single-labelled `nixtla_loki_*` sample.
async fn scrape_loki_metrics(app: &TestApp) -> HashMap<String, u64> {
    let body = reqwest::get(app.url("/metrics"))
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("read /metrics");
    body.lines()
        .filter(|line| line.starts_with("nixtla_loki_"))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_loki_up_delivers_all() {
    let receiver = Receiver::start(&[]);
    // Batches would wait a minute, so every entry is still pending at SIGTERM.
    let mut app = spawn_shipping_app(&receiver.url, &[("LOKI_BATCH_MAX_WAIT_MS", "60000")]).await;
    request_pages(&app, 100).await;
    assert_eq!(
        receiver.entries().await.len(),
        0,
        "nothing sent before SIGTERM"
    );

    let elapsed = time_sigterm(&mut app);

    assert!(
        elapsed < PROCESS_DEADLINE + EXIT_SLACK,
        "exit took {elapsed:?}"
    );
    let report = shutdown_report(&app);
    assert_eq!(report["message"], "Loki shipper stopped");
    let generated = report["generated"].as_u64().expect("generated");
    assert!(generated >= 200, "two events per page request: {report:?}");
    assert_eq!(generated, shipped_line_count(&app));
    assert_eq!(report["delivered"], generated);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["still_queued"], 0);
    assert_eq!(receiver.entries().await.len() as u64, generated);
    println!("SIGTERM, Loki up: {generated} entries delivered, exit after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_loki_down_counts_losses() {
    // Nothing listens on this port, so every push is refused.
    let loki_url = format!("http://127.0.0.1:{}", common::free_port());
    let mut app = spawn_shipping_app(&loki_url, &[]).await;
    request_pages(&app, 100).await;

    let elapsed = time_sigterm(&mut app);

    assert!(
        elapsed >= PROCESS_DEADLINE,
        "gave up before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < PROCESS_DEADLINE + EXIT_SLACK,
        "exit took {elapsed:?}"
    );
    let report = shutdown_report(&app);
    assert_eq!(report["message"], "Loki shipper stopped");
    let generated = report["generated"].as_u64().expect("generated");
    assert_eq!(generated, shipped_line_count(&app));
    assert_eq!(report["delivered"], 0);
    assert_eq!(report["lost"], generated, "every line is reported lost");
    assert_eq!(report["dropped_shutdown"], generated);
    assert_eq!(report["still_queued"], 0);
    println!("SIGTERM, Loki down: {generated} entries reported lost, exit after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_at_most_the_queue() {
    let receiver = Receiver::start(&[]);
    // The first push hangs, so everything after it stays queued until the
    // queue is full and later entries are dropped as queue_full.
    receiver.fault(json!({"mode": "hang"})).await;
    let queue_max_bytes: u64 = 64 * 1024;
    let queue_max = queue_max_bytes.to_string();
    let env = [
        ("LOKI_QUEUE_MAX_BYTES", queue_max.as_str()),
        ("LOKI_BATCH_MAX_BYTES", "16384"),
        ("LOKI_BATCH_MAX_WAIT_MS", "50"),
        ("LOKI_REQUEST_TIMEOUT_MS", "60000"),
    ];
    let mut app = spawn_shipping_app(&receiver.url, &env).await;
    request_pages(&app, 400).await;

    let metrics = scrape_loki_metrics(&app).await;
    app.kill();
    // Lets the stdout reader catch up with what the process wrote.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let count = |name: &str| {
        metrics
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let generated = count("nixtla_loki_entries_generated_total");
    let sent = count("nixtla_loki_entries_sent_total");
    let queued = count("nixtla_loki_queued_entries");
    let queued_bytes = count("nixtla_loki_queue_bytes");
    let dropped: u64 = metrics
        .iter()
        .filter(|(name, _)| name.starts_with("nixtla_loki_dropped_entries_total{"))
        .map(|(_, value)| value)
        .sum();
    let queue_full = count("nixtla_loki_dropped_entries_total{reason=\"queue_full\"}");
    assert!(queue_full > 0, "the queue never filled: {metrics:?}");
    assert!(queued > 0, "{metrics:?}");
    assert!(
        queued_bytes <= queue_max_bytes,
        "queue holds {queued_bytes} bytes, bound {queue_max_bytes}"
    );
    assert_eq!(sent, 0, "the receiver hangs, so nothing is delivered");
    assert_eq!(generated, sent + dropped + queued, "{metrics:?}");

    // Lines logged from the scrape's own request event on came after the
    // counters were read. Every line before it was delivered, counted as
    // dropped, or queued, so SIGKILL lost exactly the queued entries.
    let lines: Vec<String> = app
        .stdout_lines()
        .into_iter()
        .filter(|l| is_shipped(l))
        .collect();
    let scrape_line = lines
        .iter()
        .position(|line| {
            let event = parse_line(line);
            event.get("event") == Some(&json!("http_request"))
                && event.get("route") == Some(&json!("/metrics"))
        })
        .expect("the scrape's request event");
    assert_eq!(scrape_line as u64, generated, "lines before the scrape");
    let stored = receiver.entries().await.len() as u64;
    let lost_without_count = scrape_line as u64 - stored - dropped;
    assert_eq!(lost_without_count, queued);
    println!(
        "SIGKILL: generated {generated}, sent {sent}, dropped {dropped} (queue_full {queue_full}), \
         lost without a count {lost_without_count} = queued {queued} entries, \
         {queued_bytes} of {queue_max_bytes} queue bytes"
    );
    assert!(
        !app.stdout_lines()
            .iter()
            .any(|line| line.contains("Loki shipper stopped")),
        "SIGKILL leaves no shutdown report"
    );
}
