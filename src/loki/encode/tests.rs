use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::batch::{Batcher, Entry};
use super::*;
use crate::telemetry::FieldValues;
use prost::Message as _;

fn one_entry_batch() -> Batch {
    let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
    let entry = Entry {
        timestamp_ns: 1_000_000_002,
        line: "hi".into(),
        metadata: vec![("k", "v")].into(),
    };
    batcher.push(&Arc::from("{a=\"b\"}"), entry, Instant::now());
    batcher.take().unwrap()
}

/// The protobuf bytes of one stream `{a="b"}` with one entry at 1 s + 2 ns,
/// line `hi` and metadata `k=v`, worked out by hand from the field numbers.
const ONE_ENTRY_PROTOBUF: [u8; 31] = [
    0x0a, 0x1d, // PushRequest.streams (1), 29 bytes
    0x0a, 0x07, b'{', b'a', b'=', b'"', b'b', b'"', b'}', // StreamAdapter.labels (1)
    0x12, 0x12, // StreamAdapter.entries (2), 18 bytes
    0x0a, 0x04, 0x08, 0x01, 0x10, 0x02, // EntryAdapter.timestamp (1): seconds 1, nanos 2
    0x12, 0x02, b'h', b'i', // EntryAdapter.line (2)
    0x1a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // structuredMetadata (3): name, value
];

#[test]
fn protobuf_bytes_match_field_numbers() {
    let request = into_request(one_entry_batch());
    assert_eq!(request.encode_to_vec(), ONE_ENTRY_PROTOBUF);
}

#[test]
fn body_is_raw_snappy_of_protobuf() {
    let encoded = Encoder::default().encode_batch(one_entry_batch());
    assert_eq!(encoded.raw_bytes, ONE_ENTRY_PROTOBUF.len());
    // Raw snappy: the uncompressed length as a varint, then a literal of 31 bytes.
    assert_eq!(&encoded.body[..2], &[31, (31 - 1) << 2]);
    assert_eq!(&encoded.body[2..], &ONE_ENTRY_PROTOBUF);
    let decoded = snap::raw::Decoder::new()
        .decompress_vec(&encoded.body)
        .unwrap();
    assert_eq!(decoded, ONE_ENTRY_PROTOBUF);
}

#[test]
fn body_is_not_framed_snappy() {
    let encoded = Encoder::default().encode_batch(one_entry_batch());
    // The framed format starts with a stream identifier chunk: ff 06 00 00 "sNaPpY".
    assert_ne!(encoded.body[0], 0xff);
}

#[test]
fn counts_and_cost_are_carried() {
    let batch = one_entry_batch();
    let cost = batch.cost;
    let encoded = Encoder::default().encode_batch(batch);
    assert_eq!(encoded.entry_count, 1);
    assert_eq!(encoded.cost, cost);
}

#[test]
fn negative_timestamps_keep_positive_nanos() {
    let timestamp = timestamp_from_ns(-1);
    assert_eq!(timestamp.seconds, -1);
    assert_eq!(timestamp.nanos, 999_999_999);
}

#[test]
fn large_batch_round_trips() {
    let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
    let stream: Arc<str> = Arc::from("{service_name=\"nixtla\"}");
    let now = Instant::now();
    for index in 0..1000 {
        let entry = Entry {
            timestamp_ns: 1_700_000_000_000_000_000 + index,
            line: format!("{{\"message\":\"event {index}\"}}"),
            metadata: vec![("user_id", format!("u-{}", index % 7))].into(),
        };
        assert!(batcher.push(&stream, entry, now).is_none());
    }
    let batch = batcher.take().unwrap();
    let expected = into_request(batch.clone());
    let encoded = Encoder::default().encode_batch(batch);
    assert!(
        encoded.body.len() < encoded.raw_bytes,
        "snappy should shrink repeated text"
    );
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&encoded.body)
        .unwrap();
    let decoded = PushRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(decoded, expected);
    assert_eq!(decoded.streams[0].entries.len(), 1000);
    assert_eq!(
        decoded.streams[0].entries[999].line,
        "{\"message\":\"event 999\"}"
    );
}

#[test]
fn split_halves_keep_order_and_streams() {
    let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
    let first: Arc<str> = Arc::from("{s=\"1\"}");
    let second: Arc<str> = Arc::from("{s=\"2\"}");
    let now = Instant::now();
    for index in 0..3 {
        let entry = |ts| Entry {
            timestamp_ns: ts,
            line: format!("line {ts}"),
            metadata: FieldValues::default(),
        };
        batcher.push(&first, entry(index), now);
        batcher.push(&second, entry(100 + index), now);
    }

    let mut encoder = Encoder::default();
    let whole = encoder.encode_batch(batcher.take().unwrap());
    let whole_cost = whole.cost;
    let (left, right) = encoder.split(whole).unwrap();

    assert_eq!(left.entry_count, 3);
    assert_eq!(right.entry_count, 3);
    assert_eq!(left.cost + right.cost, whole_cost);

    let lines = |batch: &EncodedBatch| -> Vec<(String, String)> {
        let streams = batch.streams.iter();
        streams
            .flat_map(|s| {
                s.entries
                    .iter()
                    .map(|e| (s.labels.to_string(), e.line.clone()))
            })
            .collect()
    };
    let expected_left = [
        ("{s=\"1\"}", "line 0"),
        ("{s=\"1\"}", "line 1"),
        ("{s=\"1\"}", "line 2"),
    ];
    let expected_right = [
        ("{s=\"2\"}", "line 100"),
        ("{s=\"2\"}", "line 101"),
        ("{s=\"2\"}", "line 102"),
    ];
    let as_owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(lines(&left), as_owned(&expected_left));
    assert_eq!(lines(&right), as_owned(&expected_right));
}

#[test]
fn split_inside_a_stream() {
    let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
    let stream: Arc<str> = Arc::from("{s=\"1\"}");
    for index in 0..5 {
        let entry = Entry {
            timestamp_ns: index,
            line: index.to_string(),
            metadata: FieldValues::default(),
        };
        batcher.push(&stream, entry, Instant::now());
    }
    let mut encoder = Encoder::default();
    let whole = encoder.encode_batch(batcher.take().unwrap());
    let (left, right) = encoder.split(whole).unwrap();
    assert_eq!(left.streams[0].entries.len(), 2);
    assert_eq!(right.streams[0].entries.len(), 3);
    assert_eq!(&*right.streams[0].labels, "{s=\"1\"}");
}

#[test]
fn single_entry_cannot_split() {
    let mut encoder = Encoder::default();
    let single = encoder.encode_batch(one_entry_batch());
    assert!(encoder.split(single).is_err());
}

#[test]
fn direct_encoding_matches_prost() {
    let mut batcher = Batcher::new(1 << 20, Duration::from_secs(1));
    let first: Arc<str> = Arc::from("{service_name=\"nixtla\"}");
    let second: Arc<str> = Arc::from("");
    let now = Instant::now();
    let cases = [
        (0, String::new(), vec![]),
        (
            -1,
            "before the epoch".to_owned(),
            vec![("user_id", String::new())],
        ),
        (
            1_000_000_000,
            "x".repeat(200),
            vec![("level", "INFO".to_owned())],
        ),
        (
            1_764_000_000_123_456_789,
            "é".repeat(10_000),
            vec![
                ("user_id", "u-1".to_owned()),
                ("route", "/nixtla".to_owned()),
            ],
        ),
        (
            i64::MIN,
            "minimum".to_owned(),
            vec![("event", "x".repeat(300))],
        ),
    ];
    for (index, (timestamp_ns, line, metadata)) in cases.into_iter().enumerate() {
        let stream = if index % 2 == 0 { &first } else { &second };
        let entry = Entry {
            timestamp_ns,
            line,
            metadata: metadata.into(),
        };
        assert!(batcher.push(stream, entry, now).is_none());
    }
    let batch = batcher.take().unwrap();
    let expected = into_request(batch.clone()).encode_to_vec();
    let encoded = Encoder::default().encode_batch(batch);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&encoded.body)
        .unwrap();
    assert_eq!(raw.len(), encoded.raw_bytes);
    assert_eq!(raw, expected);
}
