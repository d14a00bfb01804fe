//! Encode throughput and wire size of the activity event.
//!
//! - `encode/nixtla`: a batch of activity entries goes through this crate's
//!   `Batcher` and `Encoder` (protobuf with structured metadata, then raw
//!   snappy), on one core.
//! - `encode/tracing-loki-method`: the same events as tracing-loki 0.2.7
//!   formats them, encoded the way tracing-loki encodes a batch. Each line
//!   is cloned into the request, the protobuf goes into a reused buffer, and
//!   the snappy output is copied out of a buffer sized for the worst case.
//!
//! After criterion, the binary derives entries/s and MB/s from criterion's
//! median and measures wire size: compressed bytes per line at several batch
//! sizes, and as each shipper sends them at 5,000 events/s. Results go to
//! `target/bench-results/encode.json`. Run with `cargo bench --bench encode`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{NullLoki, Shipper};
use criterion::{BatchSize, Criterion, Throughput};
use nixtla::loki::{Batcher, DEFAULT_METADATA_FIELDS, Encoder, Entry};
use nixtla::telemetry::format;
use serde_json::{Value, json};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// Entries per encoded batch: about 0.8 MB of entry cost, just under the
/// shipper's default 1 MiB batch.
const BATCH_ENTRIES: usize = 2048;

fn main() {
    let bench = common::bench_mode();
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    let ours = capture_nixtla_entries(BATCH_ENTRIES);
    let theirs = capture_tracing_loki_lines(BATCH_ENTRIES);
    let our_line_bytes: usize = ours.iter().map(|e| e.line.len()).sum();
    let their_line_bytes: usize = theirs.iter().map(|(_, line)| line.len()).sum();

    let mut group = criterion.benchmark_group("encode");
    group.throughput(Throughput::Elements(BATCH_ENTRIES as u64));
    let stream: Arc<str> = Arc::from("{env=\"bench\", service_name=\"nixtla\"}");
    let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
    let mut encoder = Encoder::default();
    group.bench_function("nixtla", |b| {
        b.iter_batched(
            || ours.clone(),
            |entries| encode_nixtla(&mut batcher, &mut encoder, &stream, entries),
            BatchSize::LargeInput,
        )
    });
    let mut buffers = TracingLokiBuffers::default();
    group.bench_function("tracing-loki-method", |b| {
        b.iter(|| buffers.encode(&theirs).len())
    });
    group.finish();
    criterion.final_summary();

    let our_raw = encode_nixtla(&mut batcher, &mut encoder, &stream, ours.clone());
    let their_raw = TracingLokiBuffers::default().raw_len(&theirs);
    let throughput = json!({
        "batch_entries": BATCH_ENTRIES,
        "nixtla": throughput_summary("nixtla", our_line_bytes, our_raw),
        "tracing-loki-method": throughput_summary("tracing-loki-method", their_line_bytes, their_raw),
    });

    let sizes = json!({
        "per_batch_size": batch_size_table(&ours, &theirs),
        "as_sent_at_5000_per_s": if bench { as_sent() } else { Value::Null },
    });
    if bench {
        common::write_results(
            "encode",
            &json!({"throughput": throughput, "wire_size": sizes}),
        );
    }
}

/// Batches and encodes `entries`; returns the protobuf length before
/// compression.
fn encode_nixtla(
    batcher: &mut Batcher,
    encoder: &mut Encoder,
    stream: &Arc<str>,
    entries: Vec<Entry>,
) -> usize {
    let now = Instant::now();
    for entry in entries {
        let full = batcher.push(stream, entry, now);
        assert!(full.is_none(), "the benchmark batch must fit one batch");
    }
    let batch = batcher.take().expect("a batch is open");
    let encoded = encoder.encode_batch(batch);
    std::hint::black_box(&encoded.body);
    encoded.raw_bytes
}

/// tracing-loki's way of encoding a batch, written for this benchmark: its
/// queue keeps the events, so each line is cloned into the request.
#[derive(Default)]
struct TracingLokiBuffers {
    encoded: Vec<u8>,
    snappy: Vec<u8>,
}

impl TracingLokiBuffers {
    fn request(lines: &[(SystemTime, String)]) -> loki_api::logproto::PushRequest {
        let entries = lines
            .iter()
            .map(|(timestamp, line)| loki_api::logproto::EntryAdapter {
                timestamp: Some((*timestamp).into()),
                line: line.clone(),
            })
            .collect();
        let stream = loki_api::logproto::StreamAdapter {
            labels: "{env=\"bench\",level=\"info\",service_name=\"nixtla\"}".to_owned(),
            entries,
            hash: 0,
        };
        loki_api::logproto::PushRequest {
            streams: vec![stream],
        }
    }

    fn encode(&mut self, lines: &[(SystemTime, String)]) -> Vec<u8> {
        use loki_api::prost::Message as _;
        self.encoded.clear();
        Self::request(lines)
            .encode(&mut self.encoded)
            .expect("a Vec grows as needed");
        self.snappy
            .resize(snap::raw::max_compress_len(self.encoded.len()), 0);
        let length = snap::raw::Encoder::new()
            .compress(&self.encoded, &mut self.snappy)
            .expect("snappy raw compression fails only for inputs over 4 GiB");
        self.snappy[..length].to_owned()
    }

    fn raw_len(&mut self, lines: &[(SystemTime, String)]) -> usize {
        self.encode(lines);
        self.encoded.len()
    }
}

/// Reads criterion's median for `encode/<id>` and turns it into rates.
fn throughput_summary(id: &str, line_bytes: usize, raw_bytes: usize) -> Value {
    let path = common::results_dir()
        .join("../criterion/encode")
        .join(id)
        .join("new/estimates.json");
    let Some(median_ns) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|estimates| estimates["median"]["point_estimate"].as_f64())
    else {
        return Value::Null;
    };
    let seconds = median_ns / 1e9;
    let summary = json!({
        "median_ns_per_batch": median_ns,
        "entries_per_s": BATCH_ENTRIES as f64 / seconds,
        "line_mb_per_s": line_bytes as f64 / seconds / 1e6,
        "protobuf_mb_per_s": raw_bytes as f64 / seconds / 1e6,
        "line_bytes_per_entry": line_bytes as f64 / BATCH_ENTRIES as f64,
        "protobuf_bytes_per_entry": raw_bytes as f64 / BATCH_ENTRIES as f64,
    });
    println!("{id}: {summary}");
    summary
}

/// Compressed bytes per line when batches hold 1, 10, 100 or all entries.
fn batch_size_table(ours: &[Entry], theirs: &[(SystemTime, String)]) -> Value {
    let stream: Arc<str> = Arc::from("{env=\"bench\", service_name=\"nixtla\"}");
    let mut rows = Vec::new();
    for size in [1, 10, 100, BATCH_ENTRIES] {
        let mut encoder = Encoder::default();
        let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
        let (mut our_body, mut our_raw) = (0, 0);
        for chunk in ours.chunks(size) {
            let now = Instant::now();
            for entry in chunk {
                batcher.push(&stream, entry.clone(), now);
            }
            let encoded = encoder.encode_batch(batcher.take().expect("a batch is open"));
            our_body += encoded.body.len();
            our_raw += encoded.raw_bytes;
        }
        let mut buffers = TracingLokiBuffers::default();
        let (mut their_body, mut their_raw) = (0, 0);
        for chunk in theirs.chunks(size) {
            their_body += buffers.encode(chunk).len();
            their_raw += buffers.encoded.len();
        }
        let row = json!({
            "batch_entries": size,
            "nixtla_compressed_bytes_per_line": our_body as f64 / ours.len() as f64,
            "nixtla_compression_ratio": our_raw as f64 / our_body as f64,
            "tracing_loki_compressed_bytes_per_line": their_body as f64 / theirs.len() as f64,
            "tracing_loki_compression_ratio": their_raw as f64 / their_body as f64,
        });
        println!("wire size, batches of {size}: {row}");
        rows.push(row);
    }
    Value::Array(rows)
}

/// Logs 10,000 events at 5,000 per second through each shipper into the
/// in-process sink and reports the bytes it received per line.
fn as_sent() -> Value {
    let sink = NullLoki::start();
    let runtime = common::shipper_runtime();
    let request_ids = common::request_ids(4096);
    let mut results = serde_json::Map::new();
    for shipper in Shipper::LOKI {
        let installed = common::install(shipper, runtime.handle(), &sink.url, |b| b);
        let before = snapshot_sink(&sink);
        let events = 10_000u64;
        tracing::dispatcher::with_default(&installed.dispatch, || {
            let start = Instant::now();
            for n in 0..events {
                common::log_activity(n, &request_ids[n as usize % request_ids.len()]);
                if n % 50 == 49 {
                    // 50 events per 10 ms is 5,000 per second.
                    let due = start + Duration::from_millis((n + 1) / 50 * 10);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
        });
        runtime.block_on(installed.shutdown(Duration::from_secs(30)));
        sink.wait_for_entries(
            before[3] + events,
            Duration::from_secs(2),
            Duration::from_secs(30),
        );
        let after = snapshot_sink(&sink);
        let [requests, body, raw, entries] = [0, 1, 2, 3].map(|i| after[i] - before[i]);
        let row = json!({
            "requests": requests,
            "entries": entries,
            "entries_per_request": entries as f64 / requests as f64,
            "compressed_bytes_per_line": body as f64 / entries as f64,
            "protobuf_bytes_per_line": raw as f64 / entries as f64,
            "compression_ratio": raw as f64 / body as f64,
        });
        println!("as sent by {}: {row}", shipper.name());
        results.insert(shipper.name().to_owned(), row);
    }
    Value::Object(results)
}

fn snapshot_sink(sink: &NullLoki) -> [u64; 4] {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &sink.stats;
    [
        stats.requests.load(Relaxed),
        stats.body_bytes.load(Relaxed),
        stats.raw_bytes.load(Relaxed),
        stats.entries.load(Relaxed),
    ]
}

/// Formats events exactly as this crate's Loki layer does, without queuing.
struct CaptureEntries(Arc<Mutex<Vec<Entry>>>);

impl<S> Layer<S> for CaptureEntries
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let record = format::format_event(event, &ctx, &DEFAULT_METADATA_FIELDS, format::now_ns());
        self.0.lock().unwrap().push(Entry {
            timestamp_ns: record.timestamp_ns,
            line: record.line,
            metadata: record.fields,
        });
    }
}

fn capture_nixtla_entries(count: usize) -> Vec<Entry> {
    let entries = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let subscriber = tracing_subscriber::registry().with(CaptureEntries(Arc::clone(&entries)));
    let request_ids = common::request_ids(count);
    tracing::subscriber::with_default(subscriber, || {
        for (n, request_id) in request_ids.iter().enumerate() {
            common::log_activity(n as u64, request_id);
        }
    });
    std::mem::take(&mut *entries.lock().unwrap())
}

/// Returns tracing-loki's lines for `count` activity events, taken from the
/// pushes it sent to the in-process sink.
fn capture_tracing_loki_lines(count: usize) -> Vec<(SystemTime, String)> {
    use loki_api::prost::Message as _;
    let sink = NullLoki::start();
    sink.capture_bodies();
    let runtime = common::shipper_runtime();
    let installed = common::install(Shipper::TracingLoki, runtime.handle(), &sink.url, |b| b);
    let request_ids = common::request_ids(count);
    tracing::dispatcher::with_default(&installed.dispatch, || {
        for (n, request_id) in request_ids.iter().enumerate() {
            common::log_activity(n as u64, request_id);
            if n % 50 == 49 {
                // tracing-loki drops events when its 512-slot channel is
                // full, so each burst waits until the sink has it all.
                let logged = n as u64 + 1;
                sink.wait_for_entries(logged, Duration::from_secs(5), Duration::from_secs(30));
            }
        }
    });
    runtime.block_on(installed.shutdown(Duration::from_secs(30)));
    let mut lines = Vec::with_capacity(count);
    for body in sink.take_bodies() {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("raw snappy body");
        let request = loki_api::logproto::PushRequest::decode(raw.as_slice()).expect("protobuf");
        for entry in request.streams.into_iter().flat_map(|s| s.entries) {
            let timestamp = entry.timestamp.expect("entry timestamp");
            let since_epoch = Duration::new(timestamp.seconds as u64, timestamp.nanos as u32);
            lines.push((SystemTime::UNIX_EPOCH + since_epoch, entry.line));
        }
    }
    assert_eq!(
        lines.len(),
        count,
        "tracing-loki lost events while capturing lines"
    );
    lines
}
