//! The shipper's own warnings and reports.
//!
//! They are written as JSON lines in the same schema as every other log line,
//! straight to stdout (or a caller-supplied sink), and never through
//! `tracing`: a warning about a full queue must not itself go into the queue.
//! Warnings are rate-limited per kind. Each warning that is written carries
//! the number of warnings of its kind that were held back since the last one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::telemetry::format::{now_ns, write_json_str, write_rfc3339_nanos};
use crate::telemetry::write_line;

/// Target written in the shipper's own lines.
pub const TARGET: &str = "nixtla::loki";

/// Destination of the shipper's own lines.
#[derive(Clone, Default)]
pub enum DiagnosticOutput {
    /// Standard output, one line per write.
    #[default]
    Stdout,
    /// Standard error, one line per write.
    Stderr,
    /// A callback that receives each line without the trailing newline.
    Callback(Arc<dyn Fn(&str) + Send + Sync>),
}

impl fmt::Debug for DiagnosticOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiagnosticOutput::Stdout => f.write_str("Stdout"),
            DiagnosticOutput::Stderr => f.write_str("Stderr"),
            DiagnosticOutput::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

/// Kinds of warnings, each rate-limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarnKind {
    QueueFull,
    PushFailed,
    RetriesExhausted,
    Rejected,
    LineTooLong,
}

const KINDS: usize = 5;

/// A field value in a diagnostic line.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    U64(u64),
}

/// Rate-limited writer of the shipper's own lines.
#[derive(Debug)]
pub struct Diagnostics {
    output: DiagnosticOutput,
    interval_ns: i64,
    last_ns: [AtomicI64; KINDS],
    held_back: [AtomicU64; KINDS],
}

impl Diagnostics {
    /// Creates a writer that lets one warning of each kind through per `interval`.
    pub fn new(output: DiagnosticOutput, interval: Duration) -> Self {
        Self {
            output,
            interval_ns: i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX),
            last_ns: std::array::from_fn(|_| AtomicI64::new(i64::MIN)),
            held_back: Default::default(),
        }
    }

    /// Writes a WARN line unless one of the same kind was written within the
    /// interval, in which case it only counts it.
    pub fn warn(&self, kind: WarnKind, message: &str, fields: &[(&str, Value<'_>)]) {
        let index = kind as usize;
        let now = now_ns();
        let last = self.last_ns[index].load(Relaxed);
        let due = last == i64::MIN || now.saturating_sub(last) >= self.interval_ns;
        if !due
            || self.last_ns[index]
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            self.held_back[index].fetch_add(1, Relaxed);
            return;
        }
        let held_back = self.held_back[index].swap(0, Relaxed);
        let mut all_fields = fields.to_vec();
        if held_back > 0 {
            all_fields.push(("suppressed_warnings", Value::U64(held_back)));
        }
        self.write("WARN", now, message, &all_fields);
    }

    /// Writes an INFO line; these are not rate-limited.
    pub fn info(&self, message: &str, fields: &[(&str, Value<'_>)]) {
        self.write("INFO", now_ns(), message, fields);
    }

    fn write(&self, level: &str, timestamp_ns: i64, message: &str, fields: &[(&str, Value<'_>)]) {
        let line = render_line(level, timestamp_ns, message, fields);
        match &self.output {
            DiagnosticOutput::Stdout => write_line(std::io::stdout().lock(), &line),
            DiagnosticOutput::Stderr => write_line(std::io::stderr().lock(), &line),
            DiagnosticOutput::Callback(callback) => callback(&line),
        }
    }
}

fn render_line(
    level: &str,
    timestamp_ns: i64,
    message: &str,
    fields: &[(&str, Value<'_>)],
) -> String {
    let mut line = String::with_capacity(128 + message.len());
    line.push_str("{\"timestamp\":\"");
    write_rfc3339_nanos(&mut line, timestamp_ns);
    line.push_str("\",\"level\":\"");
    line.push_str(level);
    line.push_str("\",\"target\":\"");
    line.push_str(TARGET);
    line.push_str("\",\"message\":");
    write_json_str(&mut line, message);
    for (name, value) in fields {
        line.push(',');
        write_json_str(&mut line, name);
        line.push(':');
        match value {
            Value::Str(text) => write_json_str(&mut line, text),
            Value::U64(number) => line.push_str(&number.to_string()),
        }
    }
    line.push('}');
    line
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn captured(interval: Duration) -> (Diagnostics, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let output = DiagnosticOutput::Callback(Arc::new(move |line: &str| {
            sink.lock().unwrap().push(line.to_owned());
        }));
        (Diagnostics::new(output, interval), lines)
    }

    #[test]
    fn warnings_are_rate_limited_per_kind() {
        let (diag, lines) = captured(Duration::from_secs(3600));
        for _ in 0..5 {
            diag.warn(WarnKind::QueueFull, "queue full", &[]);
        }
        diag.warn(WarnKind::Rejected, "rejected", &[]);
        assert_eq!(lines.lock().unwrap().len(), 2);
    }

    #[test]
    fn held_back_count_is_reported() {
        let (diag, lines) = captured(Duration::ZERO);
        diag.warn(WarnKind::QueueFull, "first", &[]);
        diag.held_back[WarnKind::QueueFull as usize].store(7, Relaxed);
        diag.warn(WarnKind::QueueFull, "second", &[]);
        let lines = lines.lock().unwrap();
        assert!(
            lines[1].ends_with(",\"suppressed_warnings\":7}"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn line_is_valid_json_in_log_schema() {
        let (diag, lines) = captured(Duration::ZERO);
        diag.info(
            "stopped \"now\"",
            &[("sent", Value::U64(3)), ("url", Value::Str("x"))],
        );
        let line = lines.lock().unwrap()[0].clone();
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["level"], "INFO");
        assert_eq!(parsed["target"], TARGET);
        assert_eq!(parsed["message"], "stopped \"now\"");
        assert_eq!(parsed["sent"], 3);
        assert_eq!(parsed["url"], "x");
    }
}
