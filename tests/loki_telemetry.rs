//! `telemetry::init` with Loki on: the global subscriber ships to the test
//! receiver, and the HTTP client's own events never loop back into the queue,
//! even at `RUST_LOG=trace`.

mod loki_common;

use std::time::{Duration, Instant};

use clap::Parser as _;
use loki_common::{Receiver, assert_identity, parse_line};
use nixtla::telemetry::{self, TelemetryArgs};

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[test]
fn init_ships_without_self_loop() {
    // SAFETY: this is the only test in its binary and no other thread runs
    // yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("RUST_LOG", "trace") };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a Tokio runtime");
    runtime.block_on(check_init_ships_without_self_loop());
}

async fn check_init_ships_without_self_loop() {
    let receiver = Receiver::start(&[]);
    let args = [
        "nixtla",
        "--log-format",
        "json",
        "--env",
        "ci",
        "--loki-url",
        &receiver.url,
        "--loki-labels",
        "team=web",
        "--loki-batch-max-wait-ms",
        "20",
    ];
    let cli = Cli::try_parse_from(args).expect("valid arguments");
    let telemetry = telemetry::init(&cli.telemetry).expect("telemetry starts");
    assert_eq!(telemetry.loki_ready(), Some(true));

    for index in 0..5 {
        tracing::info!(target: "nixtla::activity", event = "page_view", index, "viewed");
        // Let several pushes happen, each of which makes the HTTP stack log.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let entries = receiver.wait_for_entries(5, Duration::from_secs(20)).await;
    let loki = telemetry.loki().expect("Loki is on");
    wait_until_idle(loki).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let snapshot = loki.snapshot();
    assert_eq!(
        snapshot.generated, 5,
        "only the test's own events are queued: {snapshot:?}"
    );
    assert_eq!(entries.len(), 5);
    for entry in &entries {
        assert_eq!(parse_line(&entry.line)["target"], "nixtla::activity");
    }
    let streams = receiver.streams().await;
    assert_eq!(streams[0].labels["service_name"], "nixtla");
    assert_eq!(streams[0].labels["env"], "ci");
    assert_eq!(streams[0].labels["team"], "web");
    assert_identity(&snapshot);

    let mut metrics = String::new();
    telemetry.render_metrics(&mut metrics);
    assert!(
        metrics.contains("nixtla_loki_entries_sent_total 5"),
        "{metrics}"
    );
    telemetry.shutdown(Duration::from_secs(2)).await;
}

async fn wait_until_idle(loki: &nixtla::loki::LokiHandle) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while loki.snapshot().queued_entries > 0 {
        assert!(
            Instant::now() < deadline,
            "queue did not drain: {:?}",
            loki.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
