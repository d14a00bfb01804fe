//! Behaviour while the Loki test receiver is down, slow, rate limiting or
//! failing: logging never waits, memory stays bounded, and every entry is
//! either delivered or counted as dropped.

mod loki_common;

use std::time::{Duration, Instant};

use loki_common::{Receiver, Shipper, assert_identity, fast_builder, free_port, parse_line};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_down_at_first_event_then_recovers() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let shipper = Shipper::install(fast_builder(&url));

    let started = Instant::now();
    for index in 0..1000 {
        tracing::info!(index, "while down");
    }
    let logging_time = started.elapsed();
    // Generous bound: a blocking call would wait for a connection attempt.
    assert!(
        logging_time < Duration::from_secs(2),
        "logging took {logging_time:?}"
    );

    wait_until(|| !shipper.handle.is_up(), "readiness to report Loki down").await;
    let receiver = Receiver::start_on(port, &[]);
    let entries = receiver.wait_for_entries(1000, WAIT).await;

    assert_eq!(entries.len(), 1000);
    assert_eq!(parse_line(&entries[999].line)["index"], 999);
    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert!(snapshot.retries > 0);
    assert!(snapshot.up, "ready again after a delivered push");
    assert_eq!(snapshot.dropped(), 0);
    assert_identity(&snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_while_down_stays_within_queue_bound() {
    let receiver = Receiver::start(&[]);
    receiver.fault(json!({"mode": "refuse"})).await;
    let queue_max_bytes = 256 * 1024;
    let builder = fast_builder(&receiver.url)
        .queue_max_bytes(queue_max_bytes)
        .batch_max_bytes(64 * 1024);
    let shipper = Shipper::install(builder);

    // 10k events in about one second, logged in steps of 100 every 10 ms.
    let mut peak_queue_bytes = 0;
    for step in 0..100 {
        for index in 0..100 {
            tracing::info!(step, index, user_id = "u-1", "flood");
        }
        peak_queue_bytes = peak_queue_bytes.max(shipper.snapshot().queued_bytes);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let snapshot = shipper.snapshot();
    assert!(
        peak_queue_bytes <= queue_max_bytes as u64,
        "peak {peak_queue_bytes}"
    );
    assert_eq!(snapshot.generated, 10_000);
    assert!(snapshot.dropped_queue_full > 0, "{snapshot:?}");
    assert_eq!(snapshot.sent, 0);
    assert!(!snapshot.up);
    assert_identity(&snapshot);
    let warnings: Vec<String> = shipper
        .diagnostic_lines()
        .into_iter()
        .filter(|l| l.contains("queue is full"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "rate-limited to one per interval: {warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_five_times_then_recovers() {
    let receiver = Receiver::start(&[]);
    receiver
        .fault(json!({"mode": "status", "status": 429, "count": 5}))
        .await;
    let shipper = Shipper::install(fast_builder(&receiver.url));

    for index in 0..50 {
        tracing::info!(index, "throttled");
    }
    let entries = receiver.wait_for_entries(50, WAIT).await;

    assert_eq!(entries.len(), 50);
    let statuses = receiver.statuses().await;
    assert_eq!(statuses[..5], [429, 429, 429, 429, 429]);
    assert_eq!(statuses[5..].iter().filter(|&&s| s != 204).count(), 0);
    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert_eq!(snapshot.retries, 5);
    assert_eq!(snapshot.sent, 50);
    assert_eq!(snapshot.dropped(), 0);
    assert!(snapshot.up, "429 does not mark Loki down");
    assert_identity(&snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_end_after_max_duration() {
    let receiver = Receiver::start(&[]);
    receiver
        .fault(json!({"mode": "status", "status": 429}))
        .await;
    let builder = fast_builder(&receiver.url).max_retry_duration(Duration::from_millis(300));
    let shipper = Shipper::install(builder);

    for _ in 0..3 {
        tracing::info!("never accepted");
    }
    let snapshot = shipper.wait_until_idle(WAIT).await;

    assert_eq!(snapshot.dropped_rate_limited, 3);
    assert!(snapshot.retries >= 1);
    assert_identity(&snapshot);
    let diagnostics = shipper.diagnostic_lines();
    assert!(
        diagnostics
            .iter()
            .any(|l| l.contains("retry time exhausted")),
        "{diagnostics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_mark_down_then_recover() {
    let receiver = Receiver::start(&[]);
    receiver
        .fault(json!({"mode": "status", "status": 503, "count": 3}))
        .await;
    let builder =
        fast_builder(&receiver.url).backoff(Duration::from_millis(200), Duration::from_millis(400));
    let shipper = Shipper::install(builder);

    tracing::info!("during outage");
    wait_until(|| !shipper.handle.is_up(), "readiness to report Loki down").await;
    receiver.wait_for_entries(1, WAIT).await;

    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert!(snapshot.up);
    assert_eq!(snapshot.retries, 3);
    assert_eq!(receiver.statuses().await, vec![503, 503, 503, 204]);
    assert_identity(&snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_connection_times_out_and_retries() {
    let receiver = Receiver::start(&[]);
    receiver.fault(json!({"mode": "hang", "count": 1})).await;
    let builder = fast_builder(&receiver.url).request_timeout(Duration::from_millis(300));
    let shipper = Shipper::install(builder);

    let started = Instant::now();
    for index in 0..10 {
        tracing::info!(index, "behind a hung request");
    }
    let entries = receiver.wait_for_entries(10, WAIT).await;

    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(entries.len(), 10);
    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert_eq!(snapshot.retries, 1);
    assert_eq!(snapshot.sent, 10);
    assert_identity(&snapshot);
    let diagnostics = shipper.diagnostic_lines();
    assert!(
        diagnostics
            .iter()
            .any(|l| l.contains("retrying") && l.contains("timed out")),
        "{diagnostics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_rejection_is_not_resent() {
    let receiver = Receiver::start(&[]);
    receiver
        .fault(json!({"mode": "partial", "count": 1, "reject_every": 2}))
        .await;
    let builder = fast_builder(&receiver.url).batch_max_wait(Duration::from_millis(300));
    let shipper = Shipper::install(builder);

    for index in 0..4 {
        tracing::info!(index, "partly rejected");
    }
    let snapshot = shipper.wait_until_idle(WAIT).await;

    assert_eq!(receiver.statuses().await, vec![400]);
    assert_eq!(receiver.entries().await.len(), 2);
    assert_eq!(snapshot.retries, 0);
    assert_eq!(snapshot.queued_entries, 0);
    assert_identity(&snapshot);
}

async fn wait_until(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_exhaust_as_rejected() {
    let receiver = Receiver::start(&[]);
    receiver
        .fault(json!({"mode": "status", "status": 500}))
        .await;
    let builder = fast_builder(&receiver.url).max_retry_duration(Duration::from_millis(300));
    let shipper = Shipper::install(builder);

    tracing::info!("lost to a broken Loki");
    tracing::info!("lost too");
    let snapshot = shipper.wait_until_idle(WAIT).await;

    assert_eq!(snapshot.dropped_rejected, 2);
    assert_eq!(snapshot.dropped_rate_limited, 0);
    assert!(!snapshot.up, "still down after the last 500");
    assert_identity(&snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_slow_push_is_resent() {
    let receiver = Receiver::start(&[]);
    // The receiver stores the push, then responds after the client gave up.
    receiver
        .fault(json!({"mode": "slow", "delay_ms": 1500, "count": 1}))
        .await;
    let builder = fast_builder(&receiver.url).request_timeout(Duration::from_millis(300));
    let shipper = Shipper::install(builder);

    for index in 0..5 {
        tracing::info!(index, "maybe twice");
    }
    let snapshot = shipper.wait_until_idle(WAIT).await;

    assert_eq!(snapshot.sent, 5);
    assert_eq!(snapshot.retries, 1);
    let requests = receiver.requests().await;
    let duplicates: u64 = requests
        .iter()
        .map(|r| r["duplicates"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        duplicates, 5,
        "the resent batch repeats (timestamp, line) exactly"
    );
    assert_eq!(receiver.entries().await.len(), 5, "Loki keeps one copy");
    assert_identity(&snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_threads_keep_stream_order() {
    let receiver = Receiver::start(&[]);
    let shipper = Shipper::install(fast_builder(&receiver.url));
    let dispatch = tracing::dispatcher::get_default(|current| current.clone());

    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for index in 0..500 {
                        tracing::info!(thread, index, "concurrent");
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("logging thread");
    }
    let entries = receiver.wait_for_entries(2000, WAIT).await;

    assert_eq!(entries.len(), 2000);
    for pair in entries.windows(2) {
        assert!(
            pair[0].timestamp_ns < pair[1].timestamp_ns,
            "timestamps must increase"
        );
    }
    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert_eq!(snapshot.sent, 2000);
    assert_identity(&snapshot);
}
