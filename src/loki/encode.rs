//! Turns a batch into a push body: a protobuf `PushRequest` compressed with
//! snappy's raw (block) format, which is what Loki expects with
//! `Content-Type: application/x-protobuf`. The framed snappy format is not
//! accepted by Loki.

use super::batch::{Batch, entry_cost};
use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
use prost::Message;

/// A batch ready to send, with the request kept so it can be split on 413.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub request: PushRequest,
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
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            snappy: snap::raw::Encoder::new(),
            raw: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    /// Encodes and compresses a batch, moving its lines into the request.
    pub fn encode_batch(&mut self, batch: Batch) -> EncodedBatch {
        self.encode(into_request(batch))
    }

    /// Encodes and compresses a request.
    pub fn encode(&mut self, request: PushRequest) -> EncodedBatch {
        self.raw.clear();
        self.raw.reserve(request.encoded_len());
        request
            .encode(&mut self.raw)
            .expect("a Vec grows as needed, so encoding cannot run out of space");
        let body = self
            .snappy
            .compress_vec(&self.raw)
            .expect("snappy raw compression fails only for inputs over 4 GiB");
        let (entry_count, cost) = count_entries(&request);
        EncodedBatch {
            request,
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
        let (first, second) = split_request(batch.request, batch.entry_count / 2);
        Ok((self.encode(first), self.encode(second)))
    }
}

/// Converts a batch into the protobuf request, without copying lines.
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
                        .into_iter()
                        .map(|(name, value)| LabelPairAdapter {
                            name: name.to_owned(),
                            value,
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
    prost_types::Timestamp {
        seconds: timestamp_ns.div_euclid(1_000_000_000),
        nanos: timestamp_ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn count_entries(request: &PushRequest) -> (usize, usize) {
    let entries = request.streams.iter().flat_map(|s| &s.entries);
    entries.fold((0, 0), |(count, cost), entry| {
        let pairs = entry
            .structured_metadata
            .iter()
            .map(|pair| (pair.name.len(), pair.value.len()));
        (count + 1, cost + entry_cost(entry.line.len(), pairs))
    })
}

/// Moves the first `first_count` entries, in stream order, into the first
/// request and the rest into the second.
fn split_request(request: PushRequest, first_count: usize) -> (PushRequest, PushRequest) {
    let mut first = PushRequest::default();
    let mut second = PushRequest::default();
    let mut remaining = first_count;
    for mut stream in request.streams {
        if remaining >= stream.entries.len() {
            remaining -= stream.entries.len();
            first.streams.push(stream);
        } else if remaining == 0 {
            second.streams.push(stream);
        } else {
            let tail = stream.entries.split_off(remaining);
            remaining = 0;
            second.streams.push(StreamAdapter {
                labels: stream.labels.clone(),
                entries: tail,
                hash: 0,
            });
            first.streams.push(stream);
        }
    }
    (first, second)
}

#[cfg(test)]
mod tests;
