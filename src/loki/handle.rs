//! The handle that reads the shipper's state and shuts it down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::diag::Value;
use super::metrics::{DropReason, Snapshot};
use super::worker::Shared;

/// Extra time given to the task after the deadline to finish its accounting.
const FINISH_GRACE: Duration = Duration::from_millis(250);

/// Reads metrics and readiness, and shuts the shipper down. Clones share
/// the same shipper.
#[derive(Debug, Clone)]
pub struct LokiHandle {
    shared: Arc<Shared>,
    deadline: Arc<watch::Sender<Option<Instant>>>,
    finished: watch::Receiver<bool>,
    shutdown_timeout: Duration,
}

/// Counts of delivered and lost entries, taken when shutdown finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Entries Loki accepted over the shipper's lifetime.
    pub delivered: u64,
    /// Entries dropped over the shipper's lifetime, plus those still queued
    /// when the task did not finish in time.
    pub lost: u64,
    /// Whether the task finished before the deadline (plus a short grace).
    pub finished: bool,
    /// The counters the report was made from.
    pub metrics: Snapshot,
}

impl LokiHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        deadline: watch::Sender<Option<Instant>>,
        finished: watch::Receiver<bool>,
        shutdown_timeout: Duration,
    ) -> Self {
        Self {
            shared,
            deadline: Arc::new(deadline),
            finished,
            shutdown_timeout,
        }
    }

    /// Returns the configured shutdown deadline (5 s unless set).
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// Returns a copy of the shipper's counters.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.metrics.snapshot()
    }

    /// Appends the `nixtla_loki_*` metrics in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        self.shared.metrics.render(out);
    }

    /// Returns false while the last push failed with a 5xx or transport error.
    pub fn is_up(&self) -> bool {
        self.shared.metrics.is_up()
    }

    /// Stops accepting entries, pushes what is queued until `deadline` from
    /// now, and writes a line with the delivered and lost counts. Entries
    /// logged after this call are dropped with reason `shutdown`.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.shared.closed.store(true, Ordering::SeqCst);
        let at = Instant::now() + deadline;
        self.deadline.send_modify(|current| {
            *current = Some(current.map_or(at, |earlier| earlier.min(at)));
        });

        let mut finished = self.finished.clone();
        let wait = finished.wait_for(|done| *done);
        let finished = matches!(
            tokio::time::timeout_at((at + FINISH_GRACE).into(), wait).await,
            Ok(Ok(_))
        );
        let report = self.report(finished);
        self.log_report(&report);
        report
    }

    fn report(&self, finished: bool) -> ShutdownReport {
        let metrics = self.snapshot();
        ShutdownReport {
            delivered: metrics.sent,
            lost: metrics.dropped() + metrics.queued_entries,
            finished,
            metrics,
        }
    }

    fn log_report(&self, report: &ShutdownReport) {
        let m = &report.metrics;
        let mut fields = vec![
            ("delivered", Value::U64(report.delivered)),
            ("lost", Value::U64(report.lost)),
            ("generated", Value::U64(m.generated)),
            ("still_queued", Value::U64(m.queued_entries)),
        ];
        for reason in DropReason::ALL {
            fields.push((dropped_field(reason), Value::U64(m.dropped_for(reason))));
        }
        let message = if report.finished {
            "Loki shipper stopped"
        } else {
            "Loki shipper did not finish before the shutdown deadline"
        };
        self.shared.diag.info(message, &fields);
    }
}

fn dropped_field(reason: DropReason) -> &'static str {
    match reason {
        DropReason::QueueFull => "dropped_queue_full",
        DropReason::RateLimited => "dropped_rate_limited",
        DropReason::Rejected => "dropped_rejected",
        DropReason::LineTooLong => "dropped_line_too_long",
        DropReason::Shutdown => "dropped_shutdown",
    }
}
