//! Batch encoding: entries go through nixtla's batcher and encoder, and the
//! push bodies are read back with an independent snappy decoder and protobuf
//! reader. Every entry must come back exactly once, in order, with its line,
//! metadata and a timestamp that never moves backward within its stream. The
//! halves of a split batch (the shipper splits on 413) must also add up to the
//! whole.

#![no_main]

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nixtla::loki::{Batch, Batcher, DEFAULT_METADATA_FIELDS, EncodedBatch, Encoder, Entry, Labels};
use nixtla_fuzz::{
    push_request::{self, decode_push_request},
    selector::parse_selector,
    snappy,
};

#[derive(Debug, Arbitrary)]
struct Input {
    /// Batch size limit in bytes of entry cost.
    max_batch_bytes: u16,
    /// Values of the `env` label of up to three streams.
    stream_envs: Vec<String>,
    entries: Vec<InputEntry>,
}

#[derive(Debug, Arbitrary)]
struct InputEntry {
    stream: u8,
    timestamp_ns: i64,
    line: String,
    /// (index into the metadata field names, value) pairs.
    metadata: Vec<(u8, String)>,
}

/// One entry as it is expected to come out: stream selector and entry.
type Sent = (Arc<str>, Entry);

fuzz_target!(|input: Input| {
    let streams = stream_selectors(&input.stream_envs);
    let now = Instant::now();
    let mut batcher = Batcher::new(usize::from(input.max_batch_bytes), Duration::from_secs(1));
    let mut encoder = Encoder::default();
    let mut pushed = Vec::new();
    let mut delivered = Vec::new();
    for item in input.entries {
        let labels = &streams[usize::from(item.stream) % streams.len()];
        let metadata = item
            .metadata
            .into_iter()
            .map(|(field, value)| {
                let name =
                    DEFAULT_METADATA_FIELDS[usize::from(field) % DEFAULT_METADATA_FIELDS.len()];
                (name, value)
            })
            .collect();
        let entry = Entry {
            timestamp_ns: item.timestamp_ns,
            line: item.line,
            metadata,
        };
        pushed.push((Arc::clone(labels), entry.clone()));
        if let Some(batch) = batcher.push(labels, entry, now) {
            delivered.extend(check_batch(&mut encoder, batch));
        }
    }
    if let Some(batch) = batcher.take() {
        delivered.extend(check_batch(&mut encoder, batch));
    }
    check_delivery(&pushed, &delivered);
});

/// Builds the stream selectors: one per valid `env` value, at most three,
/// and a fixed one when none is valid.
fn stream_selectors(envs: &[String]) -> Vec<Arc<str>> {
    let mut selectors = Vec::new();
    for env in envs.iter().take(3) {
        let mut labels = Labels::new();
        labels.insert("service_name", "nixtla").unwrap();
        if labels.insert("env", env).is_ok() {
            selectors.push(Arc::from(labels.to_selector()));
        }
    }
    if selectors.is_empty() {
        selectors.push(Arc::from("{service_name=\"nixtla\"}"));
    }
    selectors
}

/// Encodes one batch, decodes it independently, compares, and returns the
/// entries as decoded.
fn check_batch(encoder: &mut Encoder, batch: Batch) -> Vec<Sent> {
    let expected = flatten(&batch);
    assert_eq!(
        batch.entry_count,
        expected.len(),
        "entry_count of the batch"
    );
    let cost: usize = expected.iter().map(|(_, entry)| entry.cost()).sum();
    assert_eq!(batch.cost, cost, "cost of the batch");

    let encoded = encoder.encode_batch(batch.clone());
    let decoded = decode(&encoded);
    assert_eq!(decoded, expected, "decoded batch differs from the batch");
    assert_eq!(
        encoded.entry_count,
        expected.len(),
        "entry_count after encoding"
    );
    assert_eq!(encoded.cost, cost, "cost after encoding");

    match encoder.split(encoded) {
        Ok((first, second)) => {
            let head = decode(&first);
            let tail = decode(&second);
            assert_eq!(head.len(), expected.len() / 2, "size of the first half");
            assert_eq!(
                first.entry_count,
                head.len(),
                "entry_count of the first half"
            );
            assert_eq!(
                second.entry_count,
                tail.len(),
                "entry_count of the second half"
            );
            assert_eq!(first.cost + second.cost, cost, "cost of the halves");
            let joined: Vec<Sent> = head.into_iter().chain(tail).collect();
            assert_eq!(joined, expected, "the halves differ from the batch");
        }
        Err(unsplit) => assert!(
            unsplit.entry_count < 2,
            "a batch of 2 or more was not split"
        ),
    }
    decoded
}

fn flatten(batch: &Batch) -> Vec<Sent> {
    let mut sent = Vec::new();
    for stream in &batch.streams {
        for entry in &stream.entries {
            sent.push((Arc::clone(&stream.labels), entry.clone()));
        }
    }
    sent
}

/// Reads an encoded batch back with the independent decoders.
fn decode(encoded: &EncodedBatch) -> Vec<Sent> {
    let raw = snappy::decompress(&encoded.body).expect("the body is valid raw snappy");
    assert_eq!(
        raw.len(),
        encoded.raw_bytes,
        "raw_bytes of the encoded batch"
    );
    let reference = snap::raw::Decoder::new()
        .decompress_vec(&encoded.body)
        .expect("the snap crate decodes the body");
    assert_eq!(raw, reference, "the two snappy decoders disagree");
    let streams = decode_push_request(&raw).expect("the body is a valid PushRequest");

    let mut sent = Vec::new();
    for stream in streams {
        assert_eq!(stream.hash, 0, "clients send hash 0");
        assert!(
            !stream.entries.is_empty(),
            "stream {} has no entries",
            stream.labels
        );
        parse_selector(&stream.labels).expect("the labels parse as a selector");
        let labels: Arc<str> = Arc::from(stream.labels);
        for entry in stream.entries {
            sent.push((Arc::clone(&labels), into_entry(entry)));
        }
    }
    sent
}

fn into_entry(entry: push_request::Entry) -> Entry {
    let timestamp = entry.timestamp.expect("every entry has a timestamp");
    assert!(
        (0..1_000_000_000).contains(&timestamp.nanos),
        "nanos out of range: {timestamp:?}"
    );
    let timestamp_ns = i64::try_from(timestamp.as_nanos()).expect("the timestamp fits in i64");
    let metadata = entry
        .metadata
        .into_iter()
        .map(|(name, value)| {
            let name = DEFAULT_METADATA_FIELDS
                .into_iter()
                .find(|known| *known == name)
                .unwrap_or_else(|| panic!("unknown metadata name {name:?}"));
            (name, value)
        })
        .collect();
    Entry {
        timestamp_ns,
        line: entry.line,
        metadata,
    }
}

/// Checks that every pushed entry was delivered once, in order per stream,
/// with its content unchanged. Its timestamp may change only as the batcher
/// documents: one that is not after the stream's previous timestamp becomes
/// the previous one plus 1 ns, saturating at `i64::MAX`.
fn check_delivery(pushed: &[Sent], delivered: &[Sent]) {
    assert_eq!(delivered.len(), pushed.len(), "delivered entry count");
    let mut by_stream: HashMap<&str, Vec<&Entry>> = HashMap::new();
    for (labels, entry) in delivered {
        by_stream.entry(labels).or_default().push(entry);
    }
    let mut positions: HashMap<&str, usize> = HashMap::new();
    let mut previous: HashMap<&str, i64> = HashMap::new();
    for (labels, entry) in pushed {
        let position = positions.entry(labels).or_default();
        let got = by_stream
            .get(&**labels)
            .and_then(|entries| entries.get(*position));
        let got = got.unwrap_or_else(|| panic!("entry {position} of {labels} is missing"));
        *position += 1;
        let expected_ns = match previous.get(&**labels) {
            Some(&last) if entry.timestamp_ns <= last => last.saturating_add(1),
            _ => entry.timestamp_ns,
        };
        previous.insert(labels, expected_ns);
        assert_eq!(got.timestamp_ns, expected_ns, "timestamp of {entry:?}");
        assert_eq!(got.line, entry.line, "line");
        assert_eq!(got.metadata, entry.metadata, "metadata");
    }
}
