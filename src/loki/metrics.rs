//! Self-metrics of the shipper, kept in atomics and rendered as Prometheus
//! text.
//!
//! Every entry the layer produces is counted once as generated and then, at
//! any moment, is in exactly one of three places: queued (in the channel, a
//! batch or an HTTP request), sent, or dropped with one reason. So
//! `generated = sent + dropped + queued` is true whenever the shipper is idle.
//! While an entry is being handed over, a concurrent reader may see one side
//! of the move before the other.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Reason an entry was dropped. The set is fixed so the metric has bounded labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The byte-bounded queue was full when the event was logged.
    QueueFull,
    /// Loki kept responding with 429 until the retry time ran out.
    RateLimited,
    /// Loki rejected the entries (400, 401, 403, 413 for a single entry, 422,
    /// other 4xx) or kept failing with 5xx or transport errors until the
    /// retry time ran out.
    Rejected,
    /// The entry stayed larger than a batch after truncation, or truncation
    /// is turned off.
    LineTooLong,
    /// The shutdown deadline passed, or the event was logged after shutdown.
    Shutdown,
}

impl DropReason {
    /// Every reason, in the order they are rendered.
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::RateLimited,
        DropReason::Rejected,
        DropReason::LineTooLong,
        DropReason::Shutdown,
    ];

    /// Returns the value of the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::RateLimited => "rate_limited",
            DropReason::Rejected => "rejected",
            DropReason::LineTooLong => "line_too_long",
            DropReason::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the push latency histogram buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counters and gauges shared by the layer, the batcher and the pusher.
#[derive(Debug)]
pub struct Metrics {
    generated: AtomicU64,
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    compressed_bytes_sent: AtomicU64,
    batches_sent: AtomicU64,
    retries: AtomicU64,
    dropped: [AtomicU64; 5],
    truncated: AtomicU64,
    queued_entries: AtomicU64,
    queued_bytes: AtomicU64,
    up: AtomicBool,
    push_buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    push_count: AtomicU64,
    push_sum_ns: AtomicU64,
}

/// A consistent-enough copy of the counters, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub generated: u64,
    pub sent: u64,
    pub bytes_sent: u64,
    pub compressed_bytes_sent: u64,
    pub batches_sent: u64,
    pub retries: u64,
    pub dropped_queue_full: u64,
    pub dropped_rate_limited: u64,
    pub dropped_rejected: u64,
    pub dropped_line_too_long: u64,
    pub dropped_shutdown: u64,
    pub truncated: u64,
    pub queued_entries: u64,
    pub queued_bytes: u64,
    pub up: bool,
}

impl Snapshot {
    /// Total entries dropped, over all reasons.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_rate_limited
            + self.dropped_rejected
            + self.dropped_line_too_long
            + self.dropped_shutdown
    }

    /// Entries dropped for one reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.dropped_queue_full,
            DropReason::RateLimited => self.dropped_rate_limited,
            DropReason::Rejected => self.dropped_rejected,
            DropReason::LineTooLong => self.dropped_line_too_long,
            DropReason::Shutdown => self.dropped_shutdown,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            generated: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            compressed_bytes_sent: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped: Default::default(),
            truncated: AtomicU64::new(0),
            queued_entries: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            up: AtomicBool::new(true),
            push_buckets: Default::default(),
            push_count: AtomicU64::new(0),
            push_sum_ns: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Reserves queue space for one entry of `cost` bytes; returns false, and
    /// counts the entry as generated and dropped, when that would pass
    /// `capacity_bytes`.
    pub fn try_enqueue(&self, cost: u64, capacity_bytes: u64) -> bool {
        self.generated.fetch_add(1, Relaxed);
        let reserved = self.queued_bytes.fetch_update(Relaxed, Relaxed, |queued| {
            let total = queued.checked_add(cost)?;
            (total <= capacity_bytes).then_some(total)
        });
        if reserved.is_err() {
            self.dropped[DropReason::QueueFull.index()].fetch_add(1, Relaxed);
            return false;
        }
        self.queued_entries.fetch_add(1, Relaxed);
        true
    }

    /// Counts an entry that was generated but never queued.
    pub fn drop_unqueued(&self, reason: DropReason) {
        self.generated.fetch_add(1, Relaxed);
        self.dropped[reason.index()].fetch_add(1, Relaxed);
    }

    /// Moves queued entries to dropped.
    pub fn drop_queued(&self, reason: DropReason, entries: u64, cost: u64) {
        self.dropped[reason.index()].fetch_add(entries, Relaxed);
        self.release(entries, cost);
    }

    /// Moves queued entries to sent.
    pub fn sent(&self, entries: u64, cost: u64) {
        self.sent.fetch_add(entries, Relaxed);
        self.release(entries, cost);
    }

    fn release(&self, entries: u64, cost: u64) {
        self.queued_entries.fetch_sub(entries, Relaxed);
        self.queued_bytes.fetch_sub(cost, Relaxed);
    }

    /// Counts one successful push of a body.
    pub fn batch_sent(&self, raw_bytes: u64, compressed_bytes: u64) {
        self.batches_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(raw_bytes, Relaxed);
        self.compressed_bytes_sent
            .fetch_add(compressed_bytes, Relaxed);
    }

    /// Counts one retry of a push.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// Counts one line that was cut to the maximum line size.
    pub fn truncated(&self) {
        self.truncated.fetch_add(1, Relaxed);
    }

    /// Records whether the last push reached a working Loki.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Relaxed);
    }

    /// Returns whether the last push reached a working Loki.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Records the duration of one HTTP push attempt, whatever its outcome.
    pub fn observe_push(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS_S.iter().zip(&self.push_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.push_count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.push_sum_ns.fetch_add(nanos, Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> Snapshot {
        let dropped = |reason: DropReason| self.dropped[reason.index()].load(Relaxed);
        Snapshot {
            generated: self.generated.load(Relaxed),
            sent: self.sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            compressed_bytes_sent: self.compressed_bytes_sent.load(Relaxed),
            batches_sent: self.batches_sent.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dropped_queue_full: dropped(DropReason::QueueFull),
            dropped_rate_limited: dropped(DropReason::RateLimited),
            dropped_rejected: dropped(DropReason::Rejected),
            dropped_line_too_long: dropped(DropReason::LineTooLong),
            dropped_shutdown: dropped(DropReason::Shutdown),
            truncated: self.truncated.load(Relaxed),
            queued_entries: self.queued_entries.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            up: self.is_up(),
        }
    }

    /// Appends the metrics in the Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let snap = self.snapshot();
        let counters = [
            (
                "entries_generated_total",
                "Entries produced by the layer.",
                snap.generated,
            ),
            ("entries_sent_total", "Entries accepted by Loki.", snap.sent),
            (
                "bytes_sent_total",
                "Uncompressed protobuf bytes of accepted pushes.",
                snap.bytes_sent,
            ),
            (
                "compressed_bytes_sent_total",
                "Snappy-compressed body bytes of accepted pushes.",
                snap.compressed_bytes_sent,
            ),
            (
                "batches_sent_total",
                "Push requests accepted by Loki.",
                snap.batches_sent,
            ),
            (
                "retries_total",
                "Push attempts repeated after a retryable failure.",
                snap.retries,
            ),
            (
                "truncated_lines_total",
                "Lines cut to the maximum line size before sending.",
                snap.truncated,
            ),
        ];
        for (name, help, value) in counters {
            write_metric(out, name, "counter", help, value);
        }
        render_dropped(out, &snap);
        write_metric(
            out,
            "queue_bytes",
            "gauge",
            "Bytes of entries not yet sent or dropped.",
            snap.queued_bytes,
        );
        write_metric(
            out,
            "queued_entries",
            "gauge",
            "Entries not yet sent or dropped.",
            snap.queued_entries,
        );
        write_metric(
            out,
            "up",
            "gauge",
            "1 unless the last push failed with a 5xx or transport error.",
            u64::from(snap.up),
        );
        self.render_latency(out);
    }

    fn render_latency(&self, out: &mut String) {
        let name = "nixtla_loki_push_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Duration of each push attempt to Loki.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in LATENCY_BUCKETS_S.iter().zip(&self.push_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.push_count.load(Relaxed);
        let sum_s = self.push_sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum_s}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn render_dropped(out: &mut String, snap: &Snapshot) {
    let name = "nixtla_loki_dropped_entries_total";
    let _ = writeln!(
        out,
        "# HELP {name} Entries that will never reach Loki, by reason."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for reason in DropReason::ALL {
        let value = snap.dropped_for(reason);
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", reason.as_str());
    }
}

fn write_metric(out: &mut String, suffix: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP nixtla_loki_{suffix} {help}");
    let _ = writeln!(out, "# TYPE nixtla_loki_{suffix} {kind}");
    let _ = writeln!(out, "nixtla_loki_{suffix} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_respects_capacity() {
        let metrics = Metrics::default();
        assert!(metrics.try_enqueue(60, 100));
        assert!(!metrics.try_enqueue(60, 100));
        assert!(metrics.try_enqueue(40, 100));
        let snap = metrics.snapshot();
        assert_eq!(snap.generated, 3);
        assert_eq!(snap.queued_entries, 2);
        assert_eq!(snap.queued_bytes, 100);
        assert_eq!(snap.dropped_queue_full, 1);
    }

    #[test]
    fn identity_holds_through_moves() {
        let metrics = Metrics::default();
        for _ in 0..10 {
            assert!(metrics.try_enqueue(10, 1000));
        }
        metrics.drop_unqueued(DropReason::Shutdown);
        metrics.sent(6, 60);
        metrics.drop_queued(DropReason::Rejected, 3, 30);
        let snap = metrics.snapshot();
        assert_eq!(
            snap.generated,
            snap.sent + snap.dropped() + snap.queued_entries
        );
        assert_eq!(snap.queued_entries, 1);
        assert_eq!(snap.queued_bytes, 10);
        assert_eq!(snap.dropped_rejected, 3);
        assert_eq!(snap.dropped_shutdown, 1);
    }

    #[test]
    fn render_lists_every_metric() {
        let metrics = Metrics::default();
        metrics.observe_push(Duration::from_millis(3));
        let mut text = String::new();
        metrics.render(&mut text);
        for name in [
            "nixtla_loki_entries_generated_total 0",
            "nixtla_loki_entries_sent_total 0",
            "nixtla_loki_bytes_sent_total 0",
            "nixtla_loki_compressed_bytes_sent_total 0",
            "nixtla_loki_batches_sent_total 0",
            "nixtla_loki_retries_total 0",
            "nixtla_loki_truncated_lines_total 0",
            "nixtla_loki_dropped_entries_total{reason=\"queue_full\"} 0",
            "nixtla_loki_dropped_entries_total{reason=\"shutdown\"} 0",
            "nixtla_loki_queue_bytes 0",
            "nixtla_loki_queued_entries 0",
            "nixtla_loki_up 1",
            "nixtla_loki_push_duration_seconds_bucket{le=\"0.001\"} 0",
            "nixtla_loki_push_duration_seconds_bucket{le=\"0.005\"} 1",
            "nixtla_loki_push_duration_seconds_bucket{le=\"+Inf\"} 1",
            "nixtla_loki_push_duration_seconds_count 1",
        ] {
            assert!(text.contains(name), "missing {name:?} in:\n{text}");
        }
    }
}
