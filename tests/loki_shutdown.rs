//! Shutdown with entries pending, with the Loki test receiver up and down.

mod loki_common;

use std::time::{Duration, Instant};

use loki_common::{Receiver, Shipper, assert_identity, fast_builder, parse_line};
use serde_json::json;

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
