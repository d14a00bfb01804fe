//! A hand-written protobuf reader for Loki's `PushRequest`, sharing no code
//! with prost or with nixtla's generated types.
//!
//! Field numbers follow Loki's `push.proto` (package `logproto`):
//! - `PushRequest`: 1 `streams` (message, repeated);
//! - `StreamAdapter`: 1 `labels` (string), 2 `entries` (message, repeated),
//!   3 `hash` (uint64);
//! - `EntryAdapter`: 1 `timestamp` (google.protobuf.Timestamp), 2 `line`
//!   (string), 3 `structuredMetadata` (message, repeated);
//! - `LabelPairAdapter`: 1 `name`, 2 `value` (strings);
//! - `Timestamp`: 1 `seconds` (int64), 2 `nanos` (int32).
//!
//! The reader is stricter than protobuf requires, because it checks one
//! encoder's output: an unknown field, a wrong wire type, a repeated
//! singular field or invalid UTF-8 in a string is an error.

use std::fmt;

/// The reason a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn error<T>(message: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(message.into()))
}

/// One decoded stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    pub labels: String,
    pub entries: Vec<Entry>,
    pub hash: u64,
}

/// One decoded entry. `timestamp` is `None` when the field is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub timestamp: Option<Timestamp>,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// A decoded `google.protobuf.Timestamp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    /// Returns nanoseconds since the Unix epoch, which may not fit in an i64.
    pub fn as_nanos(self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }
}

/// Decodes a serialized `PushRequest` into its streams.
pub fn decode_push_request(bytes: &[u8]) -> Result<Vec<Stream>, DecodeError> {
    let mut streams = Vec::new();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(body)) => streams.push(decode_stream(body)?),
            other => return unexpected("PushRequest", other),
        }
    }
    Ok(streams)
}

fn decode_stream(bytes: &[u8]) -> Result<Stream, DecodeError> {
    let mut stream = Stream::default();
    let mut seen = Seen::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(text)) => {
                seen.once("StreamAdapter.labels", 1)?;
                stream.labels = utf8(text, "StreamAdapter.labels")?;
            }
            (2, Value::Bytes(body)) => stream.entries.push(decode_entry(body)?),
            (3, Value::Varint(hash)) => {
                seen.once("StreamAdapter.hash", 3)?;
                stream.hash = hash;
            }
            other => return unexpected("StreamAdapter", other),
        }
    }
    Ok(stream)
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let mut entry = Entry::default();
    let mut seen = Seen::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(body)) => {
                seen.once("EntryAdapter.timestamp", 1)?;
                entry.timestamp = Some(decode_timestamp(body)?);
            }
            (2, Value::Bytes(text)) => {
                seen.once("EntryAdapter.line", 2)?;
                entry.line = utf8(text, "EntryAdapter.line")?;
            }
            (3, Value::Bytes(body)) => entry.metadata.push(decode_label_pair(body)?),
            other => return unexpected("EntryAdapter", other),
        }
    }
    Ok(entry)
}

fn decode_timestamp(bytes: &[u8]) -> Result<Timestamp, DecodeError> {
    let mut timestamp = Timestamp::default();
    let mut seen = Seen::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(seconds)) => {
                seen.once("Timestamp.seconds", 1)?;
                // int64 is the two's complement bit pattern as a 64-bit varint.
                timestamp.seconds = seconds as i64;
            }
            (2, Value::Varint(nanos)) => {
                seen.once("Timestamp.nanos", 2)?;
                // int32 is sign-extended to 64 bits, so a valid value survives the cast.
                let wide = nanos as i64;
                timestamp.nanos = i32::try_from(wide)
                    .or_else(|_| error(format!("Timestamp.nanos {wide} overflows int32")))?;
            }
            other => return unexpected("Timestamp", other),
        }
    }
    Ok(timestamp)
}

fn decode_label_pair(bytes: &[u8]) -> Result<(String, String), DecodeError> {
    let mut pair = (String::new(), String::new());
    let mut seen = Seen::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(text)) => {
                seen.once("LabelPairAdapter.name", 1)?;
                pair.0 = utf8(text, "LabelPairAdapter.name")?;
            }
            (2, Value::Bytes(text)) => {
                seen.once("LabelPairAdapter.value", 2)?;
                pair.1 = utf8(text, "LabelPairAdapter.value")?;
            }
            other => return unexpected("LabelPairAdapter", other),
        }
    }
    Ok(pair)
}

fn utf8(bytes: &[u8], field: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).or_else(|e| error(format!("{field} is not valid UTF-8: {e}")))
}

fn unexpected<T>(message: &str, (number, value): (u32, Value)) -> Result<T, DecodeError> {
    error(format!(
        "{message}: unexpected field {number} with wire type {}",
        value.wire_type()
    ))
}

/// Field numbers already read in one message, for singular fields.
#[derive(Default)]
struct Seen(u64);

impl Seen {
    fn once(&mut self, field: &str, number: u32) -> Result<(), DecodeError> {
        let bit = 1u64 << number;
        if self.0 & bit != 0 {
            return error(format!("{field} appears twice"));
        }
        self.0 |= bit;
        Ok(())
    }
}

/// A field's payload, by wire type.
#[derive(Debug)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

impl Value<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64 => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32 => 5,
        }
    }
}

/// Iterates over the `(field number, value)` pairs of one message.
struct Fields<'a> {
    input: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            failed: false,
        }
    }

    fn read_field(&mut self) -> Result<(u32, Value<'a>), DecodeError> {
        let key = read_varint(&mut self.input)?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return error(format!("invalid field number {number}"));
        }
        let value = match key & 0b111 {
            0 => Value::Varint(read_varint(&mut self.input)?),
            1 => {
                take(&mut self.input, 8)?;
                Value::Fixed64
            }
            2 => {
                let length = read_varint(&mut self.input)?;
                let length = usize::try_from(length)
                    .or_else(|_| error(format!("length {length} does not fit in memory")))?;
                Value::Bytes(take(&mut self.input, length)?)
            }
            5 => {
                take(&mut self.input, 4)?;
                Value::Fixed32
            }
            other => return error(format!("unsupported wire type {other}")),
        };
        Ok((number as u32, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.input.is_empty() {
            return None;
        }
        let field = self.read_field();
        self.failed = field.is_err();
        Some(field)
    }
}

/// Reads a base-128 varint of at most ten bytes.
fn read_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for index in 0..10 {
        let byte = take(input, 1)?[0];
        if index == 9 && byte > 1 {
            return error("varint overflows 64 bits");
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    error("varint is longer than ten bytes")
}

fn take<'a>(input: &mut &'a [u8], count: usize) -> Result<&'a [u8], DecodeError> {
    if input.len() < count {
        return error(format!(
            "truncated message: {count} bytes needed, {} left",
            input.len()
        ));
    }
    let (taken, rest) = input.split_at(count);
    *input = rest;
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends a length-delimited field.
    fn bytes_field(out: &mut Vec<u8>, number: u8, body: &[u8]) {
        out.push((number << 3) | 2);
        out.push(body.len() as u8);
        out.extend_from_slice(body);
    }

    #[test]
    fn push_request_decodes() {
        let mut timestamp = vec![0x08];
        // seconds = -1 as a ten-byte varint.
        timestamp.extend_from_slice(&[0xff; 9]);
        timestamp.push(0x01);
        timestamp.extend_from_slice(&[0x10, 0x05]);
        let mut pair = Vec::new();
        bytes_field(&mut pair, 1, b"user_id");
        bytes_field(&mut pair, 2, b"u-1");
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, &timestamp);
        bytes_field(&mut entry, 2, b"hello");
        bytes_field(&mut entry, 3, &pair);
        let mut stream = Vec::new();
        bytes_field(&mut stream, 1, b"{a=\"b\"}");
        bytes_field(&mut stream, 2, &entry);
        stream.extend_from_slice(&[0x18, 0x07]);
        let mut request = Vec::new();
        bytes_field(&mut request, 1, &stream);

        let streams = decode_push_request(&request).unwrap();
        let expected = Stream {
            labels: "{a=\"b\"}".into(),
            entries: vec![Entry {
                timestamp: Some(Timestamp {
                    seconds: -1,
                    nanos: 5,
                }),
                line: "hello".into(),
                metadata: vec![("user_id".into(), "u-1".into())],
            }],
            hash: 7,
        };
        assert_eq!(streams, vec![expected]);
        assert_eq!(
            streams[0].entries[0].timestamp.unwrap().as_nanos(),
            -999_999_995
        );
    }

    #[test]
    fn invalid_messages_are_rejected() {
        let cases: [&[u8]; 6] = [
            // Field 2 is not part of PushRequest.
            &[0x12, 0x00],
            // Stream body longer than the input.
            &[0x0a, 0x05, 0x0a],
            // Labels given twice.
            &[0x0a, 0x06, 0x0a, 0x01, b'a', 0x0a, 0x01, b'b'],
            // Labels with invalid UTF-8.
            &[0x0a, 0x03, 0x0a, 0x01, 0xff],
            // Hash sent as a length-delimited field.
            &[0x0a, 0x02, 0x1a, 0x00],
            // Field number 0.
            &[0x02, 0x00],
        ];
        for bytes in cases {
            assert!(
                decode_push_request(bytes).is_err(),
                "{bytes:?} was accepted"
            );
        }
    }
}
