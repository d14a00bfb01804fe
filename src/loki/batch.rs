//! Entries, per-stream batches and their limits.
//!
//! A batch closes when adding the next entry would pass the byte limit, or
//! when its oldest entry has waited for the time limit. Within a stream,
//! timestamps are made strictly increasing (a tie or a step back becomes the
//! previous timestamp plus 1 ns), because Loki stores only one of two entries
//! with the same timestamp and line. The one exception is `i64::MAX`, where
//! the addition saturates and later entries repeat that timestamp.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::telemetry::FieldValues;

/// Appended to a line that was cut to the maximum line size.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// Protobuf framing bytes counted per entry on top of its text: the
/// timestamp message and the tags and lengths of the line and entry.
const ENTRY_FRAMING_BYTES: usize = 24;
/// Protobuf framing bytes counted per structured metadata pair.
const PAIR_FRAMING_BYTES: usize = 4;

/// One log entry on its way to Loki.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The log line, at most the maximum line size.
    pub line: String,
    /// Structured metadata as (name, value) pairs.
    pub metadata: FieldValues,
}

impl Entry {
    /// Returns the bytes this entry is charged in the queue and in a batch: its
    /// text plus an estimate of the protobuf framing, close to its encoded size.
    pub fn cost(&self) -> usize {
        let names: usize = self.metadata.iter().map(|(name, _)| name.len()).sum();
        let metadata = names + self.metadata.text_len() + self.metadata.len() * PAIR_FRAMING_BYTES;
        self.line.len() + metadata + ENTRY_FRAMING_BYTES
    }
}

/// Cuts `line` at a character boundary so that, with [`TRUNCATION_MARKER`]
/// appended, it is at most `max_bytes` long. Returns false when the line
/// already fits and was left alone.
pub fn truncate_line(line: &mut String, max_bytes: usize) -> bool {
    if line.len() <= max_bytes {
        return false;
    }
    let mut cut = max_bytes.saturating_sub(TRUNCATION_MARKER.len());
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    line.truncate(cut);
    line.push_str(TRUNCATION_MARKER);
    true
}

/// The entries of one stream within a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntries {
    /// The stream selector, for example `{env="dev", service_name="nixtla"}`.
    pub labels: Arc<str>,
    pub entries: Vec<Entry>,
}

/// A group of entries that will be pushed in one request.
#[derive(Debug, Clone)]
pub struct Batch {
    pub streams: Vec<StreamEntries>,
    /// Sum of the entries' [`Entry::cost`].
    pub cost: usize,
    pub entry_count: usize,
    opened_at: Instant,
}

impl Batch {
    fn new(opened_at: Instant) -> Self {
        Self {
            streams: Vec::new(),
            cost: 0,
            entry_count: 0,
            opened_at,
        }
    }

    fn push(&mut self, labels: &Arc<str>, entry: Entry) {
        self.cost += entry.cost();
        self.entry_count += 1;
        match self
            .streams
            .iter_mut()
            .find(|s| Arc::ptr_eq(&s.labels, labels) || s.labels == *labels)
        {
            Some(stream) => stream.entries.push(entry),
            None => self.streams.push(StreamEntries {
                labels: Arc::clone(labels),
                entries: vec![entry],
            }),
        }
    }
}

/// Groups entries into batches and orders timestamps within each stream.
#[derive(Debug)]
pub struct Batcher {
    max_bytes: usize,
    max_wait: Duration,
    current: Option<Batch>,
    last_timestamp_ns: HashMap<Arc<str>, i64>,
}

impl Batcher {
    /// Creates a batcher that closes batches at `max_bytes` of entry cost or
    /// after `max_wait`.
    pub fn new(max_bytes: usize, max_wait: Duration) -> Self {
        Self {
            max_bytes,
            max_wait,
            current: None,
            last_timestamp_ns: HashMap::new(),
        }
    }

    /// Adds an entry to the stream `labels`. When the entry does not fit in
    /// the open batch, that batch is closed and returned, and the entry opens
    /// the next one. An entry larger than the limit gets a batch of its own;
    /// callers drop such entries before they get here.
    pub fn push(&mut self, labels: &Arc<str>, mut entry: Entry, now: Instant) -> Option<Batch> {
        entry.timestamp_ns = self.next_timestamp(labels, entry.timestamp_ns);
        let full = match &self.current {
            Some(batch) if batch.cost + entry.cost() > self.max_bytes => self.current.take(),
            _ => None,
        };
        self.current
            .get_or_insert_with(|| Batch::new(now))
            .push(labels, entry);
        full
    }

    /// Returns when the open batch must be flushed, if one is open.
    pub fn flush_at(&self) -> Option<Instant> {
        self.current
            .as_ref()
            .map(|batch| batch.opened_at + self.max_wait)
    }

    /// Closes and returns the open batch, if any.
    pub fn take(&mut self) -> Option<Batch> {
        self.current.take()
    }

    fn next_timestamp(&mut self, labels: &Arc<str>, timestamp_ns: i64) -> i64 {
        // The first entry of a stream keeps its timestamp, i64::MIN included.
        let next = match self.last_timestamp_ns.get(labels) {
            Some(&last) if timestamp_ns <= last => last.saturating_add(1),
            _ => timestamp_ns,
        };
        self.last_timestamp_ns.insert(Arc::clone(labels), next);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(timestamp_ns: i64, line: &str) -> Entry {
        Entry {
            timestamp_ns,
            line: line.to_owned(),
            metadata: FieldValues::default(),
        }
    }

    fn timestamps(batch: &Batch) -> Vec<i64> {
        batch.streams[0]
            .entries
            .iter()
            .map(|e| e.timestamp_ns)
            .collect()
    }

    #[test]
    fn equal_timestamps_become_increasing() {
        let stream: Arc<str> = Arc::from("{a=\"b\"}");
        let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
        let now = Instant::now();
        for _ in 0..21 {
            assert!(batcher.push(&stream, entry(1_000, "same"), now).is_none());
        }
        let batch = batcher.take().unwrap();
        let expected: Vec<i64> = (1_000..1_021).collect();
        assert_eq!(timestamps(&batch), expected);
    }

    #[test]
    fn first_entry_keeps_minimum_timestamp() {
        let stream: Arc<str> = Arc::from("{a=\"b\"}");
        let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
        let now = Instant::now();
        batcher.push(&stream, entry(i64::MIN, "first"), now);
        batcher.push(&stream, entry(i64::MIN, "second"), now);
        let expected = vec![i64::MIN, i64::MIN + 1];
        assert_eq!(timestamps(&batcher.take().unwrap()), expected);
    }

    #[test]
    fn earlier_timestamp_follows_the_latest() {
        let stream: Arc<str> = Arc::from("{a=\"b\"}");
        let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
        let now = Instant::now();
        batcher.push(&stream, entry(500, "late"), now);
        batcher.push(&stream, entry(400, "early"), now);
        batcher.push(&stream, entry(900, "later"), now);
        assert_eq!(timestamps(&batcher.take().unwrap()), vec![500, 501, 900]);
    }

    #[test]
    fn ordering_continues_across_batches() {
        let stream: Arc<str> = Arc::from("{a=\"b\"}");
        let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
        let now = Instant::now();
        batcher.push(&stream, entry(7, "x"), now);
        batcher.take().unwrap();
        batcher.push(&stream, entry(7, "x"), now);
        assert_eq!(timestamps(&batcher.take().unwrap()), vec![8]);
    }

    #[test]
    fn streams_are_ordered_independently() {
        let first: Arc<str> = Arc::from("{a=\"1\"}");
        let second: Arc<str> = Arc::from("{a=\"2\"}");
        let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
        let now = Instant::now();
        batcher.push(&first, entry(5, "x"), now);
        batcher.push(&second, entry(5, "x"), now);
        batcher.push(&first, entry(5, "x"), now);
        let batch = batcher.take().unwrap();
        assert_eq!(batch.streams.len(), 2);
        assert_eq!(timestamps(&batch), vec![5, 6]);
        assert_eq!(batch.streams[1].entries[0].timestamp_ns, 5);
    }

    #[test]
    fn batch_closes_before_passing_byte_limit() {
        let stream: Arc<str> = Arc::from("{}");
        let line = "x".repeat(100);
        let cost = entry(0, &line).cost();
        let mut batcher = Batcher::new(cost * 3, Duration::from_secs(1));
        let now = Instant::now();
        for ts in 0..3 {
            assert!(batcher.push(&stream, entry(ts, &line), now).is_none());
        }
        let full = batcher.push(&stream, entry(3, &line), now).unwrap();
        assert_eq!(full.entry_count, 3);
        assert_eq!(full.cost, cost * 3);
        assert_eq!(batcher.take().unwrap().entry_count, 1);
    }

    #[test]
    fn flush_time_follows_first_entry() {
        let stream: Arc<str> = Arc::from("{}");
        let mut batcher = Batcher::new(1 << 20, Duration::from_millis(250));
        assert_eq!(batcher.flush_at(), None);
        let opened = Instant::now();
        batcher.push(&stream, entry(1, "a"), opened);
        batcher.push(&stream, entry(2, "b"), opened + Duration::from_millis(100));
        assert_eq!(
            batcher.flush_at(),
            Some(opened + Duration::from_millis(250))
        );
    }

    #[test]
    fn truncation_keeps_char_boundary_and_limit() {
        let mut line = "é".repeat(200);
        assert!(truncate_line(&mut line, 101));
        assert!(line.len() <= 101);
        assert!(line.ends_with(TRUNCATION_MARKER));
        let mut short = String::from("short");
        assert!(!truncate_line(&mut short, 101));
        assert_eq!(short, "short");
    }

    #[test]
    fn cost_counts_line_and_metadata() {
        let mut with_metadata = entry(0, "abc");
        with_metadata.metadata.push("user_id", "u-1");
        assert_eq!(entry(0, "abc").cost(), 3 + ENTRY_FRAMING_BYTES);
        assert_eq!(
            with_metadata.cost(),
            3 + ENTRY_FRAMING_BYTES + 7 + 3 + PAIR_FRAMING_BYTES
        );
    }
}
