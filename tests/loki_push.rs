//! Delivery to the Loki test receiver: wire format, labels, metadata,
//! timestamps, size limits and authentication.

mod loki_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use loki_common::{Receiver, Shipper, assert_identity, fast_builder, parse_line};
use nixtla::loki::{Auth, Secret, TRUNCATION_MARKER};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn now_ns() -> i64 {
    nixtla::telemetry::format::now_ns()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_label_values_round_trip() {
    let receiver = Receiver::start(&[]);
    let value = "quote\" backslash\\ cr\r lf\n nul\0 nbsp\u{a0} zwsp\u{200b} e\u{301} tab\t";
    let builder = fast_builder(&receiver.url).label("note", value).unwrap();
    let shipper = Shipper::install(builder);

    tracing::info!("labelled");
    let _ = receiver.wait_for_entries(1, WAIT).await;

    let streams = receiver.streams().await;
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].labels["note"], value);
    assert_eq!(streams[0].labels["service_name"], "nixtla");
    assert_eq!(streams[0].labels["env"], "test");
    assert_eq!(receiver.statuses().await, vec![204]);
    drop(shipper);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_headers_are_protobuf_snappy() {
    let receiver = Receiver::start(&[]);
    let _shipper = Shipper::install(fast_builder(&receiver.url));

    tracing::info!("one");
    receiver.wait_for_entries(1, WAIT).await;

    let requests = receiver.requests().await;
    assert_eq!(requests[0]["content_type"], "application/x-protobuf");
    assert_eq!(requests[0]["content_encoding"], "snappy");
    assert_eq!(requests[0]["status"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_carries_per_event_values() {
    let receiver = Receiver::start(&[]);
    let shipper = Shipper::install(fast_builder(&receiver.url));

    let span = tracing::info_span!("request", request_id = "req-42", route = "/nixtla");
    span.in_scope(|| {
        tracing::info!(
            target: "nixtla::activity",
            event = "page_view",
            user_id = "u-1",
            user_name = "Ada Lovelace",
            status = 200,
            "page viewed"
        );
    });
    let entries = receiver.wait_for_entries(1, WAIT).await;

    let metadata = &entries[0].metadata;
    assert_eq!(metadata["user_id"], "u-1");
    assert_eq!(metadata["user_name"], "Ada Lovelace");
    assert_eq!(metadata["request_id"], "req-42");
    assert_eq!(metadata["route"], "/nixtla");
    assert_eq!(metadata["level"], "INFO");
    assert_eq!(metadata["event"], "page_view");
    assert!(!metadata.contains_key("status"), "status is not metadata");

    let streams = receiver.streams().await;
    let label_names: Vec<&String> = streams[0].labels.keys().collect();
    assert_eq!(label_names, ["env", "service_name"]);
    assert_eq!(entries[0].line, shipper.mirrored_lines()[0]);
    let line = parse_line(&entries[0].line);
    assert_eq!(line["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_millisecond_events_all_stored() {
    let receiver = Receiver::start(&[]);
    let fixed_ns = now_ns() / 1_000_000 * 1_000_000;
    let builder = fast_builder(&receiver.url).clock(move || fixed_ns);
    let shipper = Shipper::install(builder);

    for index in 0..21 {
        tracing::info!(index, "burst");
    }
    let entries = receiver.wait_for_entries(21, WAIT).await;

    assert_eq!(entries.len(), 21);
    let timestamps: Vec<i64> = entries.iter().map(|e| e.timestamp_ns).collect();
    let expected: Vec<i64> = (0..21).map(|i| fixed_ns + i).collect();
    assert_eq!(timestamps, expected);
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(parse_line(&entry.line)["index"], index);
    }
    assert_identity(&shipper.wait_until_idle(WAIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_events_are_both_stored() {
    let receiver = Receiver::start(&[]);
    let fixed_ns = now_ns();
    let builder = fast_builder(&receiver.url).clock(move || fixed_ns);
    let shipper = Shipper::install(builder);

    tracing::info!(user_id = "u-1", "same");
    tracing::info!(user_id = "u-1", "same");
    let entries = receiver.wait_for_entries(2, WAIT).await;

    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].line, entries[1].line);
    assert_eq!(entries[1].timestamp_ns, entries[0].timestamp_ns + 1);
    let requests = receiver.requests().await;
    let duplicates: u64 = requests
        .iter()
        .map(|r| r["duplicates"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(duplicates, 0);
    assert_eq!(shipper.wait_until_idle(WAIT).await.sent, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_line_is_truncated_and_counted() {
    let receiver = Receiver::start(&[]);
    let shipper = Shipper::install(fast_builder(&receiver.url));

    let big = "x".repeat(300_000);
    tracing::info!(payload = %big, "big");
    tracing::info!("small");
    let entries = receiver.wait_for_entries(2, WAIT).await;

    assert!(
        entries[0].line.len() <= 256 * 1024,
        "{}",
        entries[0].line.len()
    );
    assert!(entries[0].line.ends_with(TRUNCATION_MARKER));
    assert!(
        shipper.mirrored_lines()[0].len() > 300_000,
        "stdout keeps the whole line"
    );
    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert_eq!(snapshot.truncated, 1);
    assert_eq!(snapshot.sent, 2);
    assert_eq!(receiver.statuses().await, vec![204]);
}

/// Returns `len` hex characters from a xorshift generator; snappy cannot
/// compress them much, so body size tracks line size.
fn noise(seed: &mut u64, len: usize) -> String {
    let mut text = String::with_capacity(len);
    while text.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        text.push_str(&format!("{:016x}", *seed));
    }
    text.truncate(len);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_split_on_413() {
    let receiver = Receiver::start(&["--max-body-bytes", "1000000"]);
    let builder = fast_builder(&receiver.url)
        .batch_max_bytes(4 << 20)
        .batch_max_wait(Duration::from_millis(500));
    let shipper = Shipper::install(builder);

    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let count = 1500;
    for index in 0..count {
        tracing::info!(index, noise = %noise(&mut seed, 2000), "noise");
    }
    let entries = receiver.wait_for_entries(count, WAIT).await;

    assert_eq!(entries.len(), count, "every entry stored exactly once");
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(parse_line(&entry.line)["index"], index, "order kept");
    }
    let statuses = receiver.statuses().await;
    assert!(
        statuses.contains(&413),
        "expected a 413 first: {statuses:?}"
    );
    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert_eq!(snapshot.sent, count as u64);
    assert_eq!(snapshot.dropped(), 0);
    assert_identity(&snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_entry_rejected_without_resending_good_ones() {
    let receiver = Receiver::start(&[]);
    let eight_days_ns = 8 * 24 * 3600 * 1_000_000_000;
    let offset = Arc::new(AtomicI64::new(eight_days_ns));
    let clock_offset = Arc::clone(&offset);
    let builder = fast_builder(&receiver.url)
        .batch_max_wait(Duration::from_millis(300))
        .clock(move || now_ns() - clock_offset.load(Ordering::SeqCst));
    let shipper = Shipper::install(builder);

    tracing::info!("too old");
    offset.store(0, Ordering::SeqCst);
    tracing::info!("good 1");
    tracing::info!("good 2");
    let snapshot = shipper.wait_until_idle(WAIT).await;

    let entries = receiver.entries().await;
    let messages: Vec<String> = entries
        .iter()
        .map(|e| parse_line(&e.line)["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages, ["good 1", "good 2"]);
    assert_eq!(receiver.statuses().await, vec![400], "no retry after a 400");
    assert_eq!(snapshot.retries, 0);
    assert!(snapshot.dropped_rejected >= 1);
    assert_identity(&snapshot);
    assert!(
        shipper
            .diagnostic_lines()
            .iter()
            .any(|l| l.contains("400 Bad Request")),
        "{:?}",
        shipper.diagnostic_lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_basic_auth_are_sent() {
    let receiver = Receiver::start(&["--require-tenant", "--basic-auth", "loki:s3cret"]);
    let builder = fast_builder(&receiver.url)
        .tenant("team-a")
        .auth(Auth::Basic {
            username: "loki".into(),
            password: Secret::new("s3cret"),
        });
    let _shipper = Shipper::install(builder);

    tracing::info!("authenticated");
    receiver.wait_for_entries(1, WAIT).await;

    let requests = receiver.requests().await;
    assert_eq!(requests[0]["tenant"], "team-a");
    assert_eq!(requests[0]["auth"], "basic");
    assert_eq!(requests[0]["status"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_sent() {
    let receiver = Receiver::start(&["--bearer-token", "tok-123"]);
    let builder = fast_builder(&receiver.url).auth(Auth::Bearer(Secret::new("tok-123")));
    let _shipper = Shipper::install(builder);

    tracing::info!("authenticated");
    receiver.wait_for_entries(1, WAIT).await;

    let requests = receiver.requests().await;
    assert_eq!(requests[0]["auth"], "bearer");
    assert_eq!(requests[0]["status"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_drop_without_retry() {
    let receiver = Receiver::start(&["--bearer-token", "right"]);
    let builder = fast_builder(&receiver.url).auth(Auth::Bearer(Secret::new("wrong")));
    let shipper = Shipper::install(builder);

    tracing::info!("denied");
    tracing::info!("denied too");
    let snapshot = shipper.wait_until_idle(WAIT).await;

    assert_eq!(receiver.statuses().await, vec![401]);
    assert_eq!(snapshot.dropped_rejected, 2);
    assert_eq!(snapshot.retries, 0);
    assert!(snapshot.up, "a 401 means Loki is reachable");
    assert_identity(&snapshot);
    let diagnostics = shipper.diagnostic_lines();
    assert!(
        diagnostics.iter().any(|l| l.contains("401")),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics.iter().all(|l| !l.contains("wrong")),
        "token leaked: {diagnostics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprocessable_status_is_not_retried() {
    let receiver = Receiver::start(&[]);
    receiver
        .fault(json!({"mode": "status", "status": 422, "count": 1}))
        .await;
    let shipper = Shipper::install(fast_builder(&receiver.url));

    tracing::info!("first");
    let snapshot = shipper.wait_until_idle(WAIT).await;
    assert_eq!(snapshot.dropped_rejected, 1);
    tracing::info!("second");
    let entries = receiver.wait_for_entries(1, WAIT).await;

    assert_eq!(parse_line(&entries[0].line)["message"], "second");
    assert_eq!(receiver.statuses().await, vec![422, 204]);
    assert_identity(&shipper.wait_until_idle(WAIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_render_after_delivery() {
    let receiver = Receiver::start(&[]);
    let shipper = Shipper::install(fast_builder(&receiver.url));

    tracing::info!("counted");
    receiver.wait_for_entries(1, WAIT).await;
    shipper.wait_until_idle(WAIT).await;

    let mut text = String::new();
    shipper.handle.render_metrics(&mut text);
    for expected in [
        "nixtla_loki_entries_generated_total 1",
        "nixtla_loki_entries_sent_total 1",
        "nixtla_loki_batches_sent_total 1",
        "nixtla_loki_queued_entries 0",
        "nixtla_loki_up 1",
        "nixtla_loki_push_duration_seconds_count 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_trickle_flushes_by_age() {
    let receiver = Receiver::start(&[]);
    let builder = fast_builder(&receiver.url).batch_max_wait(Duration::from_millis(100));
    let shipper = Shipper::install(builder);

    for index in 0..100 {
        tracing::info!(index, "trickle");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pushes_while_logging = receiver.requests().await.len();
    receiver.wait_for_entries(100, WAIT).await;

    // 100 events over at least 500 ms with a 100 ms age limit.
    assert!(
        pushes_while_logging >= 3,
        "only {pushes_while_logging} pushes"
    );
    assert_identity(&shipper.wait_until_idle(WAIT).await);
}

/// Characters that stress Go string escaping: quotes, backslashes, controls,
/// invisible and astral characters, combining marks and a BOM.
const TRICKY_CHARS: [char; 24] = [
    '"',
    '\\',
    '\n',
    '\r',
    '\t',
    '\0',
    '\u{1}',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{ad}',
    '\u{200b}',
    '\u{200e}',
    '\u{2028}',
    '\u{feff}',
    '\u{301}',
    'é',
    '日',
    '\u{1f600}',
    '\u{e0041}',
    '{',
    '}',
    '=',
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_label_values_round_trip() {
    let receiver = Receiver::start(&[]);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut expected = Vec::new();
    for _ in 0..25 {
        let mut value = String::from("v");
        for _ in 0..12 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            value.push(TRICKY_CHARS[(seed % TRICKY_CHARS.len() as u64) as usize]);
        }
        let builder = fast_builder(&receiver.url).label("note", &value).unwrap();
        let shipper = Shipper::install(builder);
        tracing::info!("labelled");
        shipper.handle.shutdown(Duration::from_secs(5)).await;
        expected.push(value);
    }

    let statuses = receiver.statuses().await;
    assert!(statuses.iter().all(|&s| s == 204), "{statuses:?}");
    let streams = receiver.streams().await;
    let stored: Vec<&str> = streams
        .iter()
        .map(|s| s.labels["note"].as_str().unwrap())
        .collect();
    assert_eq!(stored, expected);
}
