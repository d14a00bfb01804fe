//! The `tracing` layer: turns each event into a Loki entry and queues it.
//!
//! Queuing an entry does no I/O, takes no lock and never waits, because the
//! queue is an unbounded channel whose size is bounded in bytes by an atomic
//! reservation. When the reservation fails, the entry is dropped and counted
//! as `queue_full`. Two things do write from the calling thread: the optional
//! mirror callback, and the warning about drops, which is written at most
//! once per warning interval.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::batch::{Entry, truncate_line};
use super::diag::{Value, WarnKind};
use super::metrics::DropReason;
use super::worker::Shared;
use crate::telemetry::format::{self, Record};

/// Maximum bytes of one structured metadata value; longer values are cut.
/// Seven values of this size stay under Loki's 64 KB metadata limit.
pub const MAX_METADATA_VALUE_BYTES: usize = 8 * 1024;

/// Crates whose events are kept out of the queue: the HTTP stack the
/// pusher itself uses, whose connection tasks run outside the pusher's
/// silenced task. Their events still reach the mirror.
const HTTP_STACK_CRATES: [&str; 8] = [
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "want",
    "tower",
];

/// A callback that receives every formatted line, without a newline.
pub type Mirror = Arc<dyn Fn(&str) + Send + Sync>;

/// A source of event timestamps in nanoseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The layer half of the shipper: formats each event and queues it without
/// blocking, dropping and counting it when the queue is full.
pub struct LokiLayer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sender: mpsc::UnboundedSender<Entry>,
    pub(crate) metadata_fields: Arc<[&'static str]>,
    pub(crate) queue_max_bytes: u64,
    pub(crate) batch_max_bytes: usize,
    pub(crate) max_line_bytes: usize,
    pub(crate) truncate_long_lines: bool,
    pub(crate) mirror: Option<Mirror>,
    pub(crate) clock: Option<Clock>,
}

impl fmt::Debug for LokiLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiLayer")
            .field("metadata_fields", &self.metadata_fields)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for LokiLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        format::store_span_fields(attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        format::update_span_fields(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let timestamp_ns = self
            .clock
            .as_ref()
            .map_or_else(format::now_ns, |clock| clock());
        let record = format::format_event(event, &ctx, &self.metadata_fields, timestamp_ns);
        if let Some(mirror) = &self.mirror {
            mirror(&record.line);
        }
        if !is_http_stack(&record.target) {
            self.enqueue(record);
        }
    }
}

impl LokiLayer {
    fn enqueue(&self, record: Record) {
        let metrics = &self.shared.metrics;
        if self.shared.closed.load(Ordering::Relaxed) {
            metrics.drop_unqueued(DropReason::Shutdown);
            return;
        }
        let Some(entry) = self.to_entry(record) else {
            return;
        };
        let cost = entry.cost();
        if cost > self.batch_max_bytes {
            metrics.drop_unqueued(DropReason::LineTooLong);
            self.warn_too_long(cost);
            return;
        }
        if !metrics.try_enqueue(cost as u64, self.queue_max_bytes) {
            self.warn_queue_full();
            return;
        }
        if self.sender.send(entry).is_err() {
            // The task has ended, so nothing will ever send this entry.
            metrics.drop_queued(DropReason::Shutdown, 1, cost as u64);
        }
    }

    /// Applies the line and metadata limits; returns `None` when the entry
    /// was dropped.
    fn to_entry(&self, record: Record) -> Option<Entry> {
        let mut line = record.line;
        if line.len() > self.max_line_bytes {
            if !self.truncate_long_lines {
                self.shared.metrics.drop_unqueued(DropReason::LineTooLong);
                self.warn_too_long(line.len());
                return None;
            }
            truncate_line(&mut line, self.max_line_bytes);
            self.shared.metrics.truncated();
        }
        let mut metadata = record.fields;
        metadata.truncate_values(MAX_METADATA_VALUE_BYTES);
        Some(Entry {
            timestamp_ns: record.timestamp_ns,
            line,
            metadata,
        })
    }

    fn warn_queue_full(&self) {
        self.shared.diag.warn(
            WarnKind::QueueFull,
            "Loki queue is full, dropping log entries",
            &[("queue_max_bytes", Value::U64(self.queue_max_bytes))],
        );
    }

    fn warn_too_long(&self, bytes: usize) {
        self.shared.diag.warn(
            WarnKind::LineTooLong,
            "log entry is larger than a batch, dropping it",
            &[
                ("entry_bytes", Value::U64(bytes as u64)),
                ("max_line_bytes", Value::U64(self.max_line_bytes as u64)),
            ],
        );
    }
}

fn is_http_stack(target: &str) -> bool {
    // Compared by prefix, because splitting the target costs more than the
    // rest of this check on every event.
    HTTP_STACK_CRATES.iter().any(|name| {
        target
            .strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_stack_targets_are_recognised() {
        assert!(is_http_stack("hyper_util::client::legacy::pool"));
        assert!(is_http_stack("h2"));
        assert!(is_http_stack("reqwest::connect"));
        assert!(!is_http_stack("nixtla::activity"));
        assert!(!is_http_stack("hyperloop"));
    }
}
