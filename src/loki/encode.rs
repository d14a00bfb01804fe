//! Turns a batch into a push body: a protobuf `PushRequest` compressed with
//! snappy's raw (block) format, which is what Loki expects with
//! `Content-Type: application/x-protobuf`. The framed snappy format is not
//! accepted by Loki.
//!
//! The protobuf is written straight from the batch's entries rather than
//! through the prost types, because building those costs one allocation per
//! entry and per metadata name, several times the cost of the encoding
//! itself. The bytes are the same that prost writes for [`into_request`].

use super::batch::{Batch, StreamEntries};
use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
use crate::telemetry::FieldValues;

/// A batch ready to send, with its entries kept so it can be split on 413.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// The entries, per stream, in the order they were encoded.
    pub streams: Vec<StreamEntries>,
    /// The snappy-compressed protobuf body.
    pub body: Vec<u8>,
    /// Length of the protobuf before compression.
    pub raw_bytes: usize,
    pub entry_count: usize,
    /// Sum of the entries' queue cost, released when they are sent or dropped.
    pub cost: usize,
}

/// Reusable protobuf and snappy buffers.
pub struct Encoder {
    snappy: snap::raw::Encoder,
    raw: Vec<u8>,
    /// Snappy output, sized for the worst case; kept so it is zeroed only
    /// when it grows.
    compressed: Vec<u8>,
    entry_lengths: Vec<usize>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            snappy: snap::raw::Encoder::new(),
            raw: Vec::new(),
            compressed: Vec::new(),
            entry_lengths: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    /// Encodes and compresses a batch.
    pub fn encode_batch(&mut self, batch: Batch) -> EncodedBatch {
        self.encode_streams(batch.streams, batch.entry_count, batch.cost)
    }

    fn encode_streams(
        &mut self,
        streams: Vec<StreamEntries>,
        entry_count: usize,
        cost: usize,
    ) -> EncodedBatch {
        self.raw.clear();
        write_push_request(&mut self.raw, &streams, &mut self.entry_lengths);
        let max_len = snap::raw::max_compress_len(self.raw.len());
        if self.compressed.len() < max_len {
            self.compressed.resize(max_len, 0);
        }
        let compressed_len = self
            .snappy
            .compress(&self.raw, &mut self.compressed)
            .expect("snappy raw compression fails only for inputs over 4 GiB");
        let body = self.compressed[..compressed_len].to_vec();
        EncodedBatch {
            streams,
            body,
            raw_bytes: self.raw.len(),
            entry_count,
            cost,
        }
    }

    /// Splits a batch into two halves by entry count, re-encoding each.
    /// Returns the batch unchanged when it has fewer than two entries.
    pub fn split(
        &mut self,
        batch: EncodedBatch,
    ) -> Result<(EncodedBatch, EncodedBatch), EncodedBatch> {
        if batch.entry_count < 2 {
            return Err(batch);
        }
        let (first, second) = split_streams(batch.streams, batch.entry_count / 2);
        let (first_count, first_cost) = count_entries(&first);
        let (second_count, second_cost) = count_entries(&second);
        Ok((
            self.encode_streams(first, first_count, first_cost),
            self.encode_streams(second, second_count, second_cost),
        ))
    }
}

/// Protobuf wire type of varints.
const WIRE_VARINT: u8 = 0;
/// Protobuf wire type of strings and embedded messages.
const WIRE_LEN: u8 = 2;

/// Writes `streams` as a `PushRequest` (see `proto/push.proto`). As proto3
/// requires, fields holding their default value (0, an empty string) are left
/// out, except `timestamp`, which is a message and always present.
/// `entry_lengths` is scratch space for the encoded length of each entry.
fn write_push_request(
    out: &mut Vec<u8>,
    streams: &[StreamEntries],
    entry_lengths: &mut Vec<usize>,
) {
    for stream in streams {
        entry_lengths.clear();
        let mut stream_len = string_field_len(stream.labels.len());
        for entry in &stream.entries {
            let entry_len = entry_len(entry.timestamp_ns, &entry.line, &entry.metadata);
            entry_lengths.push(entry_len);
            stream_len += message_field_len(entry_len);
        }
        out.reserve(message_field_len(stream_len));
        put_key(out, 1, WIRE_LEN);
        put_varint(out, stream_len as u64);
        put_string_field(out, 1, &stream.labels);
        for (entry, &entry_len) in stream.entries.iter().zip(entry_lengths.iter()) {
            put_key(out, 2, WIRE_LEN);
            put_varint(out, entry_len as u64);
            let (seconds, nanos) = split_timestamp(entry.timestamp_ns);
            put_key(out, 1, WIRE_LEN);
            put_varint(out, timestamp_len(seconds, nanos) as u64);
            put_varint_field(out, 1, seconds as u64);
            put_varint_field(out, 2, nanos as u64);
            put_string_field(out, 2, &entry.line);
            for (name, value) in entry.metadata.iter() {
                put_key(out, 3, WIRE_LEN);
                put_varint(out, pair_len(name, value) as u64);
                put_string_field(out, 1, name);
                put_string_field(out, 2, value);
            }
        }
    }
}

fn entry_len(timestamp_ns: i64, line: &str, metadata: &FieldValues) -> usize {
    let (seconds, nanos) = split_timestamp(timestamp_ns);
    let metadata_len: usize = metadata
        .iter()
        .map(|(name, value)| message_field_len(pair_len(name, value)))
        .sum();
    message_field_len(timestamp_len(seconds, nanos)) + string_field_len(line.len()) + metadata_len
}

fn pair_len(name: &str, value: &str) -> usize {
    string_field_len(name.len()) + string_field_len(value.len())
}

/// Length of a `Timestamp` message. Negative seconds are written as ten-byte
/// varints, as for every negative `int64`.
fn timestamp_len(seconds: i64, nanos: i32) -> usize {
    varint_field_len(seconds as u64) + varint_field_len(nanos as u64)
}

/// Length of a varint field with a one-byte key; 0 when the value is 0.
fn varint_field_len(value: u64) -> usize {
    if value == 0 { 0 } else { 1 + varint_len(value) }
}

/// Length of a string field with a one-byte key; 0 when the string is empty.
fn string_field_len(len: usize) -> usize {
    if len == 0 { 0 } else { message_field_len(len) }
}

/// Length of a length-delimited field with a one-byte key.
fn message_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn varint_len(value: u64) -> usize {
    // Each byte carries 7 bits; `| 1` makes 0 take one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes a field key; every field number here is below 16, so one byte.
fn put_key(out: &mut Vec<u8>, field: u8, wire_type: u8) {
    out.push(field << 3 | wire_type);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u8, value: u64) {
    if value != 0 {
        put_key(out, field, WIRE_VARINT);
        put_varint(out, value);
    }
}

fn put_string_field(out: &mut Vec<u8>, field: u8, text: &str) {
    if !text.is_empty() {
        put_key(out, field, WIRE_LEN);
        put_varint(out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
}

fn split_timestamp(timestamp_ns: i64) -> (i64, i32) {
    (
        timestamp_ns.div_euclid(1_000_000_000),
        timestamp_ns.rem_euclid(1_000_000_000) as i32,
    )
}

/// Converts a batch into the prost request, moving its lines. The shipper
/// encodes batches directly; this is for tests and tools that need the
/// decoded form.
pub fn into_request(batch: Batch) -> PushRequest {
    let streams = batch
        .streams
        .into_iter()
        .map(|stream| StreamAdapter {
            labels: stream.labels.to_string(),
            entries: stream
                .entries
                .into_iter()
                .map(|entry| EntryAdapter {
                    timestamp: Some(timestamp_from_ns(entry.timestamp_ns)),
                    line: entry.line,
                    structured_metadata: entry
                        .metadata
                        .iter()
                        .map(|(name, value)| LabelPairAdapter {
                            name: name.to_owned(),
                            value: value.to_owned(),
                        })
                        .collect(),
                })
                .collect(),
            hash: 0,
        })
        .collect();
    PushRequest { streams }
}

/// Converts nanoseconds since the Unix epoch to a protobuf timestamp.
pub fn timestamp_from_ns(timestamp_ns: i64) -> prost_types::Timestamp {
    let (seconds, nanos) = split_timestamp(timestamp_ns);
    prost_types::Timestamp { seconds, nanos }
}

/// Returns the number of entries and their summed queue cost.
fn count_entries(streams: &[StreamEntries]) -> (usize, usize) {
    let entries = streams.iter().flat_map(|s| &s.entries);
    entries.fold((0, 0), |(count, cost), entry| {
        (count + 1, cost + entry.cost())
    })
}

/// Moves the first `first_count` entries, in stream order, into the first
/// list and the rest into the second.
fn split_streams(
    streams: Vec<StreamEntries>,
    first_count: usize,
) -> (Vec<StreamEntries>, Vec<StreamEntries>) {
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut remaining = first_count;
    for mut stream in streams {
        if remaining >= stream.entries.len() {
            remaining -= stream.entries.len();
            first.push(stream);
        } else if remaining == 0 {
            second.push(stream);
        } else {
            let tail = stream.entries.split_off(remaining);
            remaining = 0;
            second.push(StreamEntries {
                labels: stream.labels.clone(),
                entries: tail,
            });
            first.push(stream);
        }
    }
    (first, second)
}

#[cfg(test)]
mod tests;
