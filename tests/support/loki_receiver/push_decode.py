"""Decode Loki push bodies without sharing any code with the Rust client.

The rules follow `parsePushRequestBody` in `pkg/loghttp/push/push.go` of
Loki 3.7:

- `Content-Encoding` is compared exactly: empty or `snappy` leave the body as
  is, `gzip` is gunzipped, `deflate` is raw DEFLATE (Go's `compress/flate`, so
  a zlib-wrapped body fails). Any other value is rejected with 400.
- `Content-Type` goes through Go's `mime.ParseMediaType`, which fails on an
  empty value, so a push without the header gets 400, although a comment in
  Loki's code states that a missing header selects protobuf.
  `application/json` selects the JSON form. Every other media type means a
  protobuf `PushRequest` in raw (block) snappy.
- The protobuf schema is built at run time with Loki's field numbers. Labels,
  lines and structured metadata are declared as `bytes`, because Loki's
  hand-written decoder does not check UTF-8 in them.
"""

import json
import re
import zlib
from dataclasses import dataclass, field

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import timestamp_pb2

from label_syntax import format_labels

# Loki caps the decompressed body at 50 times `max_recv_msg_size`
# (`distributor.max-decompressed-size`, default 5242880000 bytes).
# NOTE: this default comes from Loki's configuration reference just before
# `max_push_size` replaced both limits; whether Loki 3.7 has it is unchecked.
DECOMPRESSED_SIZE_FACTOR = 50

# Go's time.Time range that gogo's Timestamp conversion accepts: 0001-01-01
# up to, not including, 10000-01-01, in seconds since the Unix epoch.
_MIN_TIMESTAMP_SECONDS = -62135596800
_MAX_TIMESTAMP_SECONDS = 253402300800

_MIME_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


class BodyError(ValueError):
    """A push body that Loki rejects as a whole with 400."""


class BodyTooLarge(ValueError):
    """A push body over the configured size limit (413)."""


@dataclass
class Entry:
    timestamp_ns: int
    line: bytes
    metadata: list = field(default_factory=list)  # (name bytes, value bytes) pairs


@dataclass
class Stream:
    labels_raw: bytes
    entries: list


def decode_push(body, content_type, content_encoding, max_body_bytes):
    """Decode a push body into a list of `Stream`.

    Raises `BodyError` for a body Loki would reject with 400 and
    `BodyTooLarge` for one over the decompressed size limit.
    """
    max_decompressed = max_body_bytes * DECOMPRESSED_SIZE_FACTOR
    data = _decode_content_encoding(body, content_encoding, max_decompressed)
    media_type = parse_media_type(content_type)
    if media_type == "application/json":
        return decode_json(data)
    return decode_protobuf(_decompress_snappy(data, max_decompressed))


def parse_media_type(value):
    """Return the lowercase media type, failing like Go's `mime.ParseMediaType`."""
    base = (value or "").split(";", 1)[0].strip().lower()
    if not base:
        raise BodyError("invalid Content-Type: no media type")
    main, slash, subtype = base.partition("/")
    if not _MIME_TOKEN.match(main) or (slash and not _MIME_TOKEN.match(subtype)):
        raise BodyError(f"invalid Content-Type {value!r}: expected type/subtype")
    # NOTE: media type parameters are not checked, but Go rejects some
    # malformed parameters that this function lets through.
    return base


def _decode_content_encoding(body, encoding, max_decompressed):
    if encoding in ("", "snappy"):
        return body
    if encoding == "gzip":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return _bounded_decompress(decompressor, body, max_decompressed)
        except zlib.error as error:
            raise BodyError(f"invalid gzip body: {error}") from None
    if encoding == "deflate":
        try:
            decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            return _bounded_decompress(decompressor, body, max_decompressed)
        except zlib.error as error:
            raise BodyError(f"invalid raw deflate body: {error}") from None
    raise BodyError(f"Content-Encoding {encoding!r} is not supported")


def _bounded_decompress(decompressor, body, max_decompressed):
    data = decompressor.decompress(body, max_decompressed + 1)
    if len(data) > max_decompressed:
        raise BodyTooLarge(f"decompressed body exceeds {max_decompressed} bytes")
    if not decompressor.eof:
        raise zlib.error("truncated stream")
    return data


def _decompress_snappy(data, max_decompressed):
    declared = _read_uvarint(data)
    if declared is None:
        raise BodyError("invalid snappy block: missing or corrupt length header")
    if declared > max_decompressed:
        raise BodyTooLarge(f"snappy block declares {declared} bytes, over {max_decompressed}")
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except cramjam.DecompressionError as error:
        raise BodyError(f"invalid snappy block: {error}") from None


def _read_uvarint(data):
    value = 0
    for index, byte in enumerate(data[:5]):
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return value if value <= 0xFFFFFFFF else None
    return None


def _build_push_request_class():
    """Build the `PushRequest` message class from Loki's field numbers."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="nixtla_test_receiver_push.proto",
        package="nixtla_test_receiver",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    field_type = descriptor_pb2.FieldDescriptorProto

    def add_message(name, fields):
        message = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            message.field.add(
                name=field_name, number=number, type=kind, label=label, type_name=type_name
            )

    optional = field_type.LABEL_OPTIONAL
    repeated = field_type.LABEL_REPEATED
    add_message(
        "LabelPairAdapter",
        [
            ("name", 1, field_type.TYPE_BYTES, optional, None),
            ("value", 2, field_type.TYPE_BYTES, optional, None),
        ],
    )
    pair = ".nixtla_test_receiver.LabelPairAdapter"
    add_message(
        "EntryAdapter",
        [
            ("timestamp", 1, field_type.TYPE_MESSAGE, optional, ".google.protobuf.Timestamp"),
            ("line", 2, field_type.TYPE_BYTES, optional, None),
            ("structuredMetadata", 3, field_type.TYPE_MESSAGE, repeated, pair),
            ("parsed", 4, field_type.TYPE_MESSAGE, repeated, pair),
        ],
    )
    add_message(
        "StreamAdapter",
        [
            ("labels", 1, field_type.TYPE_BYTES, optional, None),
            ("entries", 2, field_type.TYPE_MESSAGE, repeated, ".nixtla_test_receiver.EntryAdapter"),
            ("hash", 3, field_type.TYPE_UINT64, optional, None),
        ],
    )
    add_message(
        "PushRequest",
        [("streams", 1, field_type.TYPE_MESSAGE, repeated, ".nixtla_test_receiver.StreamAdapter")],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("nixtla_test_receiver.PushRequest")
    return message_factory.GetMessageClass(descriptor)


PushRequest = _build_push_request_class()


def decode_protobuf(data):
    request = PushRequest()
    try:
        request.ParseFromString(data)
    except Exception as error:  # the upb and Python backends raise different types
        raise BodyError(f"invalid protobuf PushRequest: {error}") from None
    streams = []
    for stream in request.streams:
        entries = [_protobuf_entry(entry) for entry in stream.entries]
        streams.append(Stream(labels_raw=stream.labels, entries=entries))
    return streams


def _protobuf_entry(entry):
    seconds, nanos = entry.timestamp.seconds, entry.timestamp.nanos
    if not 0 <= nanos < 1_000_000_000:
        raise BodyError(f"invalid timestamp: nanos {nanos} out of range")
    if not _MIN_TIMESTAMP_SECONDS <= seconds < _MAX_TIMESTAMP_SECONDS:
        raise BodyError(f"invalid timestamp: seconds {seconds} out of range")
    metadata = [(pair.name, pair.value) for pair in entry.structuredMetadata]
    return Entry(seconds * 1_000_000_000 + nanos, entry.line, metadata)


def decode_json(data):
    """Decode the JSON push form.

    Loki decodes the top-level `streams` key with jsoniter, which matches the
    key without regard to ASCII case and lets the last occurrence win. The
    keys inside a stream (`stream`, `values`) are case-sensitive. Go's JSON
    decoder turns an unpaired surrogate escape into U+FFFD, and so does this.
    """
    try:
        document = json.loads(data, object_pairs_hook=_JsonObject)
    except (ValueError, UnicodeDecodeError) as error:
        raise BodyError(f"invalid JSON body: {error}") from None
    if not isinstance(document, _JsonObject):
        raise BodyError("invalid JSON body: expected an object")
    raw_streams = None
    for key, value in document.pairs:
        if key.isascii() and key.lower() == "streams":
            raw_streams = value
    if raw_streams is None:
        return []
    if not isinstance(raw_streams, list):
        raise BodyError("invalid JSON body: 'streams' must be an array")
    return [_json_stream(raw, index) for index, raw in enumerate(raw_streams)]


class _JsonObject(dict):
    """A JSON object that also keeps its key/value pairs in document order."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.pairs = pairs


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _fix_surrogates(text):
    return _LONE_SURROGATE.sub("\ufffd", text)


def _utf8(text):
    return _fix_surrogates(text).encode("utf-8")


def _json_stream(raw, index):
    if not isinstance(raw, dict):
        raise BodyError(f"invalid JSON body: stream {index} is not an object")
    labels = raw.get("stream") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise BodyError(f"invalid JSON body: stream {index} labels must be string values")
    values = raw.get("values") or []
    if not isinstance(values, list):
        raise BodyError(f"invalid JSON body: stream {index} 'values' must be an array")
    entries = [_json_entry(value, index) for value in values]
    clean = {_fix_surrogates(name): _fix_surrogates(value) for name, value in labels.items()}
    return Stream(labels_raw=format_labels(clean).encode("utf-8"), entries=entries)


def _json_entry(value, stream_index):
    where = f"stream {stream_index}"
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise BodyError(f"invalid JSON body: {where} entry must be [ts, line] or [ts, line, {{}}]")
    timestamp, line = value[0], value[1]
    if not isinstance(timestamp, str) or not re.fullmatch(r"[+-]?[0-9]+", timestamp):
        raise BodyError(
            f"invalid JSON body: {where} timestamp {timestamp!r} is not a decimal string"
        )
    timestamp_ns = int(timestamp)
    if not -(2**63) <= timestamp_ns < 2**63:
        raise BodyError(f"invalid JSON body: {where} timestamp {timestamp} overflows int64")
    if not isinstance(line, str):
        raise BodyError(f"invalid JSON body: {where} line must be a string")
    metadata = []
    if len(value) == 3:
        raw_metadata = value[2]
        if not isinstance(raw_metadata, dict):
            raise BodyError(f"invalid JSON body: {where} structured metadata must be an object")
        for name, meta_value in raw_metadata.items():
            if not isinstance(meta_value, str):
                raise BodyError(f"invalid JSON body: {where} metadata {name!r} must be a string")
            metadata.append((_utf8(name), _utf8(meta_value)))
    return Entry(timestamp_ns, _utf8(line), metadata)
