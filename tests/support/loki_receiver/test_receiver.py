"""Tests for the Loki test receiver, run against the real receiver process.

Run with the interpreter that has requirements.txt installed:
    $NIXTLA_TEST_PYTHON tests/support/loki_receiver/test_receiver.py

Push bodies are built here by hand (protobuf wire format and snappy literals),
so these tests do not share an encoder with the receiver's decoder.
"""

import base64
import gzip
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import unittest
import zlib

import cramjam

HERE = os.path.dirname(os.path.abspath(__file__))
RECEIVER = os.path.join(HERE, "receiver.py")
PYTHON = os.environ.get("NIXTLA_TEST_PYTHON") or sys.executable
PROTOBUF = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
JSON = {"Content-Type": "application/json"}
SECOND_NS = 1_000_000_000


# --- hand-built wire format ---


def varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varint_field(number, value):
    return varint(number << 3) + varint(value)


def as_bytes(value):
    return value if isinstance(value, bytes) else value.encode("utf-8")


def encode_entry(timestamp_ns, line, metadata=()):
    seconds, nanos = divmod(timestamp_ns, SECOND_NS)
    timestamp = varint_field(1, seconds) + varint_field(2, nanos)
    out = length_delimited(1, timestamp) + length_delimited(2, as_bytes(line))
    for name, value in metadata:
        pair = length_delimited(1, as_bytes(name)) + length_delimited(2, as_bytes(value))
        out += length_delimited(3, pair)
    return out


def encode_push(streams):
    """Encode `[(labels, [(timestamp_ns, line, metadata), ...]), ...]` as a PushRequest."""
    out = b""
    for labels, entries in streams:
        stream = length_delimited(1, as_bytes(labels))
        for entry in entries:
            stream += length_delimited(2, encode_entry(*entry))
        stream += varint_field(3, 0)
        out += length_delimited(1, stream)
    return out


def snappy_literals(data):
    """Compress into a raw snappy block made only of literals (no back-references)."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start : start + 65536]
        size = len(chunk) - 1
        if size < 60:
            out.append(size << 2)
        elif size < 256:
            out += bytes([60 << 2, size])
        else:
            out += bytes([61 << 2]) + size.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def snappy(data):
    return bytes(cramjam.snappy.compress_raw(data))


def now_ns():
    return time.time_ns()


# --- process and HTTP helpers ---


class ReceiverProcess:
    def __init__(self, *args):
        self.process = subprocess.Popen(
            [PYTHON, RECEIVER, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("listening http://127.0.0.1:"):
            self.process.kill()
            _, stderr = self.process.communicate(timeout=5)
            raise RuntimeError(f"receiver did not start: stdout {line!r}, stderr {stderr!r}")
        self.first_line = line
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()

    def request(self, method, path, body=None, headers=None, timeout=10):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8")
        finally:
            connection.close()

    def push(self, body, headers=PROTOBUF, timeout=10):
        return self.request("POST", "/loki/api/v1/push", body, headers, timeout)

    def push_streams(self, streams, headers=PROTOBUF):
        return self.push(snappy(encode_push(streams)), headers)

    def control(self, path, document=None):
        method = "GET" if document is None else "POST"
        body = None if document is None else json.dumps(document).encode()
        status, text = self.request(method, path, body, JSON)
        if status != 200:
            raise AssertionError(f"{method} {path} returned {status}: {text}")
        return json.loads(text)

    def streams(self):
        return self.control("/control/streams")["streams"]

    def requests(self):
        return self.control("/control/requests")["requests"]

    def reset(self):
        self.control("/control/reset", {})

    def stream_labels(self):
        return [stream["labels"] for stream in self.streams()]


class ReceiverTestCase(unittest.TestCase):
    receiver_args = ()

    @classmethod
    def setUpClass(cls):
        cls.receiver = ReceiverProcess(*cls.receiver_args)

    @classmethod
    def tearDownClass(cls):
        cls.receiver.stop()

    def setUp(self):
        self.receiver.reset()

    def assertPush(self, expected_status, result):
        status, text = result
        self.assertEqual(expected_status, status, f"response body: {text}")
        return text


# --- tests ---


class StartupTests(unittest.TestCase):
    def test_ready_line_and_sigterm(self):
        receiver = ReceiverProcess()
        try:
            self.assertRegex(receiver.first_line, r"^listening http://127\.0\.0\.1:\d+\n$")
            self.assertEqual((200, "ready\n"), receiver.request("GET", "/ready"))
            receiver.process.send_signal(signal.SIGTERM)
            self.assertEqual(0, receiver.process.wait(timeout=10))
            self.assertEqual("", receiver.process.stdout.read())
        finally:
            receiver.stop()


class ProtobufPushTests(ReceiverTestCase):
    def test_push_stores_entries_and_metadata(self):
        ts = now_ns()
        streams = [
            (
                '{service_name="nixtla", env="dev"}',
                [(ts, "first", [("user_id", "u-1"), ("event", "login")]), (ts + 1, "second", [])],
            )
        ]
        self.assertPush(204, self.receiver.push_streams(streams))

        stored = self.receiver.streams()
        self.assertEqual(1, len(stored))
        self.assertEqual({"service_name": "nixtla", "env": "dev"}, stored[0]["labels"])
        self.assertEqual('{service_name="nixtla", env="dev"}', stored[0]["labels_raw"])
        self.assertEqual(
            [
                {
                    "timestamp_ns": str(ts),
                    "line": "first",
                    "metadata": {"user_id": "u-1", "event": "login"},
                },
                {"timestamp_ns": str(ts + 1), "line": "second", "metadata": {}},
            ],
            stored[0]["entries"],
        )

        [record] = self.receiver.requests()
        self.assertEqual(204, record["status"])
        self.assertEqual("application/x-protobuf", record["content_type"])
        self.assertEqual("snappy", record["content_encoding"])
        self.assertEqual(2, record["entries"])
        self.assertIsNone(record["tenant"])
        self.assertIsNone(record["auth"])
        self.assertIsNone(record["error"])
        self.assertGreater(record["body_bytes"], 0)

    def test_literal_snappy_block_is_accepted(self):
        body = snappy_literals(encode_push([('{app="a"}', [(now_ns(), "x" * 70000, [])])]))
        self.assertPush(204, self.receiver.push(body))
        self.assertEqual(70000, len(self.receiver.streams()[0]["entries"][0]["line"]))

    def test_framed_snappy_and_garbage_are_400(self):
        message = encode_push([('{app="a"}', [(now_ns(), "x", [])])])
        bodies = {
            "framed snappy": bytes(cramjam.snappy.compress(message)),
            "uncompressed protobuf": message,
            "empty body": b"",
            "snappy of garbage": snappy(b"\xff\xff\xff\xff"),
            "truncated protobuf": snappy(message[:-3]),
        }
        for name, body in bodies.items():
            with self.subTest(name):
                self.assertPush(400, self.receiver.push(body))
        self.assertEqual([], self.receiver.streams())

    def test_label_values_round_trip_go_escapes(self):
        ts = now_ns()
        cases = {
            "quote": (r'"a\"b"', 'a"b'),
            "backslash": (r'"a\\b"', "a\\b"),
            "crlf": (r'"a\r\nb"', "a\r\nb"),
            "nul hex": (r'"a\x00b"', "a\x00b"),
            "nul octal": (r'"a\000b"', "a\x00b"),
            "nbsp": (r'"a\u00a0b"', "a\u00a0b"),
            "nbsp raw": ('"a\u00a0b"', "a\u00a0b"),
            "zero width space": (r'"a\u200bb"', "a\u200bb"),
            "combining mark": ('"e\u0301"', "e\u0301"),
            "combining mark escaped": (r'"e\u0301"', "e\u0301"),
            "astral": (r'"\U0001F600"', "\U0001f600"),
            "tab and bell": (r'"\t\a\b\f\v"', "\t\a\b\f\v"),
            "raw cr and tab": ('"a\rb\tc"', "a\rb\tc"),
            "single quotes": ("'it\\'s \"x\"'", 'it\'s "x"'),
            "backticks": ('`raw \\n "x"`', 'raw \\n "x"'),
            "hex bytes forming utf8": (r'"\xc3\xa9"', "é"),
        }
        for name, (literal, expected) in cases.items():
            with self.subTest(name):
                self.receiver.reset()
                labels = f'{{service_name="t", v={literal}}}'
                self.assertPush(204, self.receiver.push_streams([(labels, [(ts, "x", [])])]))
                [stream] = self.receiver.streams()
                self.assertEqual(expected, stream["labels"]["v"])
                self.assertEqual(labels, stream["labels_raw"])

    def test_unparsable_labels_reject_whole_push(self):
        good = ('{app="good"}', [(now_ns(), "kept?", [])])
        cases = {
            "raw line feed": '{app="a\nb"}',
            "rust debug nul": r'{app="a\0b"}',
            "rust debug unicode": r'{app="a\u{a0}b"}',
            "escaped single quote in double quotes": r'{app="it\'s"}',
            "unknown escape": r'{app="\q"}',
            "surrogate escape": r'{app="\ud800"}',
            "escape past max": r'{app="\U00110000"}',
            "short hex escape": r'{app="\x4"}',
            "unquoted value": "{app=web}",
            "not equal matcher": '{app!="web"}',
            "regex matcher": '{app=~"web"}',
            "colon in name": '{a:b="c"}',
            "dash in name": '{a-b="c"}',
            "leading digit": '{1a="c"}',
            "missing brace": '{app="a"',
            "trailing text": '{app="a"} x',
            "lone comma": "{,}",
            "double comma": '{a="1",,b="2"}',
            "unterminated": '{app="a}',
            "literal U+FFFD": '{app="\ufffd"}',
            "invalid utf8": b'{app="\xff"}',
        }
        for name, labels in cases.items():
            with self.subTest(name):
                self.receiver.reset()
                text = self.assertPush(400, self.receiver.push_streams([good, (labels, good[1])]))
                self.assertIn("cannot parse", text)
                self.assertEqual([], self.receiver.streams())

    def test_label_syntax_accepts_promql_forms(self):
        cases = {
            "trailing comma": ('{a="1", b="2",}', {"a": "1", "b": "2"}),
            "whitespace and newlines": ('{\n a = "1" ,\tb="2"\r\n}', {"a": "1", "b": "2"}),
            "comment": ('{a="1", # note\n b="2"}', {"a": "1", "b": "2"}),
            "comment ended by CR": ('{a="1", # note\r b="2"}', {"a": "1", "b": "2"}),
            "metric name": ('web_app:x{a="1"}', {"__name__": "web_app:x", "a": "1"}),
            "empty value dropped": ('{a="1", b=""}', {"a": "1"}),
        }
        for name, (labels, expected) in cases.items():
            with self.subTest(name):
                self.receiver.reset()
                self.assertPush(204, self.receiver.push_streams([(labels, [(now_ns(), "x", [])])]))
                expected = dict(expected, service_name="unknown_service")
                self.assertEqual([expected], self.receiver.stream_labels())

    def test_service_name_is_discovered_like_loki(self):
        ts = now_ns()
        streams = [
            ('{app="web", job="j"}', [(ts, "a", [])]),
            ('{job="j"}', [(ts, "b", [])]),
            ('{foo="x"}', [(ts, "c", [])]),
            ('{service_name="own", app="web"}', [(ts, "d", [])]),
        ]
        self.assertPush(204, self.receiver.push_streams(streams))
        services = [labels["service_name"] for labels in self.receiver.stream_labels()]
        self.assertEqual(["web", "j", "unknown_service", "own"], services)

    def test_label_limits_reject_only_the_stream(self):
        ts = now_ns()
        fifteen = ", ".join(f'l{i}="v"' for i in range(15))
        sixteen = ", ".join(f'l{i}="v"' for i in range(16))
        accepted = {
            "15 labels plus service_name": f'{{service_name="s", {fifteen}}}',
            "name of 1024 bytes": f'{{{"n" * 1024}="v"}}',
            "value of 2048 bytes": f'{{a="{"v" * 2048}"}}',
            "16 labels with one empty": f'{{service_name="s", {fifteen}, e=""}}',
            # Loki adds service_name="unknown_service" before it checks for an
            # empty label set, so these pass with the default configuration.
            "no labels": "{}",
            "only empty values": '{a=""}',
        }
        rejected = {
            "16 labels plus service_name": f'{{service_name="s", {sixteen}}}',
            "16 labels": f"{{{sixteen}}}",
            "name of 1025 bytes": f'{{{"n" * 1025}="v"}}',
            "value of 2049 bytes": f'{{a="{"v" * 2049}"}}',
            "duplicate name": '{a="1", a="2"}',
        }
        for name, labels in accepted.items():
            with self.subTest(name):
                self.receiver.reset()
                self.assertPush(204, self.receiver.push_streams([(labels, [(ts, "x", [])])]))
        for name, labels in rejected.items():
            with self.subTest(name):
                self.receiver.reset()
                streams = [(labels, [(ts, "bad", [])]), ('{app="ok"}', [(ts, "good", [])])]
                self.assertPush(400, self.receiver.push_streams(streams))
                stored = self.receiver.streams()
                self.assertEqual(["good"], [e["line"] for s in stored for e in s["entries"]])

    def test_stream_without_entries_is_accepted(self):
        self.assertPush(204, self.receiver.push_streams([('{app="a"}', [])]))
        self.assertEqual([], self.receiver.streams())

    def test_no_streams_is_422(self):
        self.assertPush(422, self.receiver.push(snappy(b"")))
        self.assertPush(422, self.receiver.push(b"\x00"))
        self.assertPush(422, self.receiver.push(b'{"streams":[]}', JSON))
        self.assertPush(422, self.receiver.push(b"{}", JSON))

    def test_old_entry_rejected_and_good_ones_kept(self):
        ts = now_ns()
        eight_days = 8 * 24 * 3600 * SECOND_NS
        entries = [(ts, "good-1", []), (ts - eight_days, "too-old", []), (ts + 1, "good-2", [])]
        text = self.assertPush(400, self.receiver.push_streams([('{app="a"}', entries)]))
        self.assertIn("older than the 7-day limit", text)
        [stream] = self.receiver.streams()
        self.assertEqual(["good-1", "good-2"], [e["line"] for e in stream["entries"]])
        [record] = self.receiver.requests()
        self.assertEqual((3, 2, 1), (record["entries"], record["accepted"], record["rejected"]))

    def test_future_entries_over_ten_minutes_rejected(self):
        ts = now_ns()
        entries = [(ts + 9 * 60 * SECOND_NS, "nine", []), (ts + 11 * 60 * SECOND_NS, "eleven", [])]
        text = self.assertPush(400, self.receiver.push_streams([('{app="a"}', entries)]))
        self.assertIn("in the future", text)
        self.assertEqual(["nine"], [e["line"] for e in self.receiver.streams()[0]["entries"]])

    def test_line_size_limit_is_256_kib(self):
        ts = now_ns()
        entries = [(ts, "a" * 262144, []), (ts + 1, "b" * 262145, []), (ts + 2, "c" * 300_000, [])]
        text = self.assertPush(400, self.receiver.push_streams([('{app="a"}', entries)]))
        self.assertIn("max_line_size", text)
        [stream] = self.receiver.streams()
        self.assertEqual([262144], [len(e["line"]) for e in stream["entries"]])

    def test_structured_metadata_limits(self):
        ts = now_ns()
        pairs_128 = [(f"k{i}", "v") for i in range(128)]
        pairs_129 = [(f"k{i}", "v") for i in range(129)]
        size_limit = [("k", "v" * (65536 - 1))]
        size_over = [("k", "v" * 65536)]
        entries = [
            (ts, "128 pairs", pairs_128),
            (ts + 1, "129 pairs", pairs_129),
            (ts + 2, "64 KiB", size_limit),
            (ts + 3, "over 64 KiB", size_over),
        ]
        text = self.assertPush(400, self.receiver.push_streams([('{app="a"}', entries)]))
        self.assertIn("structured metadata", text)
        lines = [e["line"] for e in self.receiver.streams()[0]["entries"]]
        self.assertEqual(["128 pairs", "64 KiB"], lines)

    def test_identical_entries_are_deduplicated(self):
        ts = now_ns()
        entries = [(ts, "same", []), (ts, "same", []), (ts, "other", [])]
        self.assertPush(204, self.receiver.push_streams([('{app="a"}', entries)]))
        self.assertPush(204, self.receiver.push_streams([('{app="a"}', [(ts, "same", [])])]))
        self.assertPush(204, self.receiver.push_streams([('{app="b"}', [(ts, "same", [])])]))
        lines = {
            s["labels"]["app"]: [e["line"] for e in s["entries"]] for s in self.receiver.streams()
        }
        self.assertEqual({"a": ["same", "other"], "b": ["same"]}, lines)
        duplicates = [record["duplicates"] for record in self.receiver.requests()]
        self.assertEqual([1, 1, 0], duplicates)

    def test_same_millisecond_entries_stored(self):
        base = now_ns() // 1_000_000 * 1_000_000
        entries = [(base + i, "event", []) for i in range(21)]
        self.assertPush(204, self.receiver.push_streams([('{app="a"}', entries)]))
        self.assertEqual(21, len(self.receiver.streams()[0]["entries"]))

    def test_out_of_order_entries_keep_arrival_order(self):
        ts = now_ns()
        entries = [
            (ts, "third", []),
            (ts - 2 * SECOND_NS, "first", []),
            (ts - SECOND_NS, "second", []),
        ]
        self.assertPush(204, self.receiver.push_streams([('{app="a"}', entries)]))
        lines = [e["line"] for e in self.receiver.streams()[0]["entries"]]
        self.assertEqual(["third", "first", "second"], lines)

    def test_entry_too_far_behind_is_rejected(self):
        ts = now_ns()
        two_hours = 2 * 3600 * SECOND_NS
        self.assertPush(204, self.receiver.push_streams([('{app="a"}', [(ts, "new", [])])]))
        text = self.assertPush(
            400, self.receiver.push_streams([('{app="a"}', [(ts - two_hours, "old", [])])])
        )
        self.assertIn("too far behind", text)
        self.assertPush(
            204, self.receiver.push_streams([('{app="b"}', [(ts - two_hours, "old", [])])])
        )

    def test_invalid_utf8_line_replaced(self):
        self.assertPush(
            204, self.receiver.push_streams([('{app="a"}', [(now_ns(), b"a\xffb", [])])])
        )
        self.assertEqual("a\ufffdb", self.receiver.streams()[0]["entries"][0]["line"])

    def test_unknown_protobuf_fields_ignored(self):
        ts = now_ns()
        timestamp = varint_field(1, ts // SECOND_NS) + varint_field(2, ts % SECOND_NS)
        parsed = length_delimited(4, length_delimited(1, b"p") + length_delimited(2, b"q"))
        entry = length_delimited(1, timestamp) + length_delimited(2, b"x") + parsed
        entry += varint_field(9, 7)
        stream = length_delimited(1, b'{app="a"}') + length_delimited(2, entry)
        stream += varint_field(3, 12345) + length_delimited(15, b"extra")
        self.assertPush(204, self.receiver.push(snappy(length_delimited(1, stream))))
        [stored] = self.receiver.streams()
        self.assertEqual(
            [{"timestamp_ns": str(ts), "line": "x", "metadata": {}}], stored["entries"]
        )

    def test_timestamp_nanos_out_of_range_is_400(self):
        timestamp = varint_field(1, now_ns() // SECOND_NS) + varint_field(2, SECOND_NS)
        entry = length_delimited(1, timestamp) + length_delimited(2, b"x")
        stream = length_delimited(1, b'{app="a"}') + length_delimited(2, entry)
        self.assertPush(400, self.receiver.push(snappy(length_delimited(1, stream))))


class EncodingTests(ReceiverTestCase):
    def json_body(self, ts, line="hello", metadata=None, key="streams"):
        value = [str(ts), line] + ([metadata] if metadata is not None else [])
        return json.dumps(
            {key: [{"stream": {"app": "j", "env": "a\nb"}, "values": [value]}]}
        ).encode()

    def test_json_push_with_metadata(self):
        ts = now_ns()
        self.assertPush(
            204, self.receiver.push(self.json_body(ts, metadata={"user_id": "u-1"}), JSON)
        )
        [stream] = self.receiver.streams()
        self.assertEqual({"app": "j", "env": "a\nb", "service_name": "j"}, stream["labels"])
        self.assertEqual(
            [{"timestamp_ns": str(ts), "line": "hello", "metadata": {"user_id": "u-1"}}],
            stream["entries"],
        )

    def test_json_streams_key_ignores_ascii_case(self):
        self.assertPush(204, self.receiver.push(self.json_body(now_ns(), key="StReAmS"), JSON))
        self.assertEqual(1, len(self.receiver.streams()))

    def test_json_media_type_parameters_are_ignored(self):
        headers = {"Content-Type": "Application/JSON; charset=utf-8"}
        self.assertPush(204, self.receiver.push(self.json_body(now_ns()), headers))

    def test_invalid_json_bodies_are_400(self):
        ts = str(now_ns())
        bodies = {
            "not json": b"{",
            "numeric timestamp": json.dumps(
                {"streams": [{"stream": {"a": "b"}, "values": [[1, "x"]]}]}
            ),
            "word timestamp": json.dumps(
                {"streams": [{"stream": {"a": "b"}, "values": [["now", "x"]]}]}
            ),
            "metadata number": json.dumps(
                {"streams": [{"stream": {"a": "b"}, "values": [[ts, "x", {"k": 1}]]}]}
            ),
            "label number": json.dumps({"streams": [{"stream": {"a": 1}, "values": [[ts, "x"]]}]}),
            "invalid label name": json.dumps(
                {"streams": [{"stream": {"a.b": "c"}, "values": [[ts, "x"]]}]}
            ),
        }
        for name, body in bodies.items():
            with self.subTest(name):
                body = body if isinstance(body, bytes) else body.encode()
                self.assertPush(400, self.receiver.push(body, JSON))
        self.assertEqual([], self.receiver.streams())

    def test_gzip_and_raw_deflate_encodings(self):
        message = snappy(encode_push([('{app="p"}', [(now_ns(), "proto", [])])]))
        raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        deflated = raw_deflate.compress(message) + raw_deflate.flush()
        cases = {
            "gzip json": (gzip.compress(self.json_body(now_ns())), "application/json", "gzip"),
            "gzip protobuf": (gzip.compress(message), "application/x-protobuf", "gzip"),
            "raw deflate protobuf": (deflated, "application/x-protobuf", "deflate"),
        }
        for name, (body, content_type, encoding) in cases.items():
            with self.subTest(name):
                headers = {"Content-Type": content_type, "Content-Encoding": encoding}
                self.assertPush(204, self.receiver.push(body, headers))

    def test_unsupported_or_broken_encodings_are_400(self):
        message = snappy(encode_push([('{app="p"}', [(now_ns(), "proto", [])])]))
        cases = {
            "brotli": (message, "application/x-protobuf", "br"),
            "uppercase gzip": (gzip.compress(message), "application/x-protobuf", "GZIP"),
            "zlib wrapped deflate": (zlib.compress(message), "application/x-protobuf", "deflate"),
            "gzip header on plain body": (message, "application/x-protobuf", "gzip"),
        }
        for name, (body, content_type, encoding) in cases.items():
            with self.subTest(name):
                headers = {"Content-Type": content_type, "Content-Encoding": encoding}
                self.assertPush(400, self.receiver.push(body, headers))
        self.assertEqual([], self.receiver.streams())

    def test_missing_content_type_is_400(self):
        message = snappy(encode_push([('{app="p"}', [(now_ns(), "proto", [])])]))
        text = self.assertPush(400, self.receiver.push(message, {}))
        self.assertIn("Content-Type", text)

    def test_other_content_types_mean_protobuf(self):
        message = snappy(encode_push([('{app="p"}', [(now_ns(), "proto", [])])]))
        self.assertPush(204, self.receiver.push(message, {"Content-Type": "text/plain"}))


class BodyLimitTests(ReceiverTestCase):
    receiver_args = ("--max-body-bytes", "1000")

    def test_oversized_body_is_413(self):
        ts = now_ns()
        small = snappy_literals(encode_push([('{app="a"}', [(ts, "small", [])])]))
        large = snappy_literals(encode_push([('{app="a"}', [(ts + 1, "x" * 2000, [])])]))
        connection = http.client.HTTPConnection("127.0.0.1", self.receiver.port, timeout=10)
        try:
            for body, expected in ((large, 413), (small, 204)):
                connection.request("POST", "/loki/api/v1/push", body=body, headers=PROTOBUF)
                response = connection.getresponse()
                response.read()
                self.assertEqual(expected, response.status)
        finally:
            connection.close()
        self.assertEqual(["small"], [e["line"] for e in self.receiver.streams()[0]["entries"]])

    def test_chunked_body_over_limit_is_413(self):
        large = snappy_literals(encode_push([('{app="a"}', [(now_ns(), "x" * 2000, [])])]))
        connection = http.client.HTTPConnection("127.0.0.1", self.receiver.port, timeout=10)
        try:
            chunks = (large[i : i + 300] for i in range(0, len(large), 300))
            connection.request(
                "POST", "/loki/api/v1/push", body=chunks, headers=PROTOBUF, encode_chunked=True
            )
            self.assertEqual(413, connection.getresponse().status)
        finally:
            connection.close()

    def test_decompression_bomb_is_413(self):
        body = gzip.compress(b" " * 60_000)
        self.assertLess(len(body), 1000)
        self.assertPush(
            413,
            self.receiver.push(
                body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            ),
        )


class TenantAndBasicAuthTests(ReceiverTestCase):
    receiver_args = ("--require-tenant", "--basic-auth", "loki:s3cret")

    def headers(self, tenant=None, password="s3cret"):
        token = base64.b64encode(f"loki:{password}".encode()).decode()
        headers = dict(PROTOBUF, Authorization=f"Basic {token}")
        if tenant is not None:
            headers["X-Scope-OrgID"] = tenant
        return headers

    def test_auth_and_tenant_are_required(self):
        body = snappy(encode_push([('{app="a"}', [(now_ns(), "x", [])])]))
        no_auth = dict(PROTOBUF, **{"X-Scope-OrgID": "t1"})
        self.assertPush(401, self.receiver.push(body, no_auth))
        self.assertPush(401, self.receiver.push(body, self.headers("t1", password="wrong")))
        self.assertPush(401, self.receiver.push(body, self.headers(None)))
        self.assertPush(400, self.receiver.push(body, self.headers("a|b")))
        self.assertPush(400, self.receiver.push(body, self.headers("a/b")))
        self.assertEqual([], self.receiver.streams())
        self.assertPush(204, self.receiver.push(body, self.headers("t1")))
        records = self.receiver.requests()
        self.assertEqual([401, 401, 401, 400, 400, 204], [r["status"] for r in records])
        self.assertEqual("t1", records[-1]["tenant"])
        self.assertEqual("basic", records[-1]["auth"])
        self.assertIsNone(records[0]["auth"])


class BearerAuthTests(ReceiverTestCase):
    receiver_args = ("--bearer-token", "tok-123")

    def test_bearer_token_is_required(self):
        body = snappy(encode_push([('{app="a"}', [(now_ns(), "x", [])])]))
        self.assertPush(401, self.receiver.push(body, dict(PROTOBUF, Authorization="Bearer nope")))
        self.assertPush(
            204, self.receiver.push(body, dict(PROTOBUF, Authorization="Bearer tok-123"))
        )
        self.assertEqual(["bearer", "bearer"], [r["auth"] for r in self.receiver.requests()])
        self.assertEqual([None, None], [r["tenant"] for r in self.receiver.requests()])


class FaultTests(ReceiverTestCase):
    def body(self, line="x"):
        return snappy(encode_push([('{app="f"}', [(now_ns(), line, [])])]))

    def test_status_fault_applies_to_next_count_pushes(self):
        self.receiver.control("/control/fault", {"mode": "status", "status": 429, "count": 2})
        statuses = [self.receiver.push(self.body(f"line-{i}"))[0] for i in range(3)]
        self.assertEqual([429, 429, 204], statuses)
        self.assertEqual(["line-2"], [e["line"] for e in self.receiver.streams()[0]["entries"]])
        self.assertEqual(["status", "status", None], [r["fault"] for r in self.receiver.requests()])

    def test_status_fault_without_count_lasts_until_cleared(self):
        self.receiver.control("/control/fault", {"mode": "status", "status": 503})
        for _ in range(3):
            self.assertPush(503, self.receiver.push(self.body()))
        self.receiver.control("/control/fault", {"mode": "none"})
        self.assertPush(204, self.receiver.push(self.body()))

    def test_hang_does_not_block_control_endpoints(self):
        self.receiver.control("/control/fault", {"mode": "hang", "count": 1})
        started = time.monotonic()
        with self.assertRaises(TimeoutError):
            self.receiver.push(self.body("hung"), timeout=1)
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertEqual((200, "ready\n"), self.receiver.request("GET", "/ready", timeout=2))
        [record] = self.receiver.requests()
        self.assertIsNone(record["status"])
        self.assertEqual("hang", record["fault"])
        self.assertPush(204, self.receiver.push(self.body("after")))
        self.assertEqual(["after"], [e["line"] for e in self.receiver.streams()[0]["entries"]])

    def test_hung_connection_closes_on_reset(self):
        self.receiver.control("/control/fault", {"mode": "hang"})
        outcome = {}

        def push():
            try:
                outcome["result"] = self.receiver.push(self.body(), timeout=10)
            except (http.client.HTTPException, OSError) as error:
                outcome["error"] = error

        thread = threading.Thread(target=push)
        thread.start()
        time.sleep(0.5)
        self.receiver.reset()
        thread.join(timeout=5)
        self.assertFalse(thread.is_alive())
        self.assertIsInstance(
            outcome.get("error"), (http.client.RemoteDisconnected, ConnectionError)
        )

    def test_in_flight_counts_hung_pushes(self):
        self.assertEqual(0, self.receiver.control("/control/requests")["in_flight"])
        self.receiver.control("/control/fault", {"mode": "hang"})
        thread = threading.Thread(target=self.push_ignoring_errors)
        thread.start()
        deadline = time.monotonic() + 5
        while self.receiver.control("/control/requests")["in_flight"] != 1:
            self.assertLess(time.monotonic(), deadline, "the hung push was never counted")
            time.sleep(0.02)
        self.receiver.reset()
        thread.join(timeout=5)
        deadline = time.monotonic() + 5
        while self.receiver.control("/control/requests")["in_flight"] != 0:
            self.assertLess(time.monotonic(), deadline, "the released push is still counted")
            time.sleep(0.02)
        self.assertPush(204, self.receiver.push(self.body("after")))
        # The handler counts a push as finished just after its response is sent.
        deadline = time.monotonic() + 5
        while self.receiver.control("/control/requests")["in_flight"] != 0:
            self.assertLess(time.monotonic(), deadline, "a finished push is still counted")
            time.sleep(0.02)

    def push_ignoring_errors(self):
        try:
            self.receiver.push(self.body(), timeout=10)
        except (http.client.HTTPException, OSError):
            pass

    def test_slow_fault_stores_before_answering(self):
        self.receiver.control("/control/fault", {"mode": "slow", "delay_ms": 800, "count": 1})
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(r=self.receiver.push(self.body("slow")))
        )
        started = time.monotonic()
        thread.start()
        time.sleep(0.4)
        self.assertEqual(["slow"], [e["line"] for e in self.receiver.streams()[0]["entries"]])
        thread.join(timeout=5)
        self.assertGreaterEqual(time.monotonic() - started, 0.8)
        self.assertEqual(204, result["r"][0])

    def test_refuse_resets_connection(self):
        self.receiver.control("/control/fault", {"mode": "refuse", "count": 1})
        with self.assertRaises((ConnectionError, http.client.RemoteDisconnected)):
            self.receiver.push(self.body("refused"))
        self.assertPush(204, self.receiver.push(self.body("accepted")))
        self.assertEqual(["accepted"], [e["line"] for e in self.receiver.streams()[0]["entries"]])
        self.assertEqual(["refuse", None], [r["fault"] for r in self.receiver.requests()])

    def test_partial_fault_rejects_every_second_entry(self):
        self.receiver.control("/control/fault", {"mode": "partial", "count": 1})
        ts = now_ns()
        entries = [(ts + i, f"e{i}", []) for i in range(4)]
        self.assertPush(400, self.receiver.push_streams([('{app="f"}', entries)]))
        self.assertEqual(["e0", "e2"], [e["line"] for e in self.receiver.streams()[0]["entries"]])

    def test_invalid_fault_requests_are_400(self):
        cases = {
            "unknown mode": {"mode": "explode"},
            "status without code": {"mode": "status"},
            "status out of range": {"mode": "status", "status": 99},
            "zero count": {"mode": "status", "status": 429, "count": 0},
            "slow without delay": {"mode": "slow"},
        }
        for name, document in cases.items():
            with self.subTest(name):
                status, _ = self.receiver.request(
                    "POST", "/control/fault", json.dumps(document), JSON
                )
                self.assertEqual(400, status)

    def test_reset_clears_streams_requests_and_faults(self):
        self.assertPush(204, self.receiver.push(self.body()))
        self.receiver.control("/control/fault", {"mode": "status", "status": 500})
        self.receiver.reset()
        self.assertEqual([], self.receiver.streams())
        self.assertEqual([], self.receiver.requests())
        self.assertPush(204, self.receiver.push(self.body()))

    def test_malformed_chunked_body_is_400(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.receiver.port, timeout=10)
        try:
            connection.putrequest("POST", "/loki/api/v1/push")
            connection.putheader("Content-Type", "application/x-protobuf")
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            connection.send(b"zz\r\nabc\r\n0\r\n\r\n")
            self.assertEqual(400, connection.getresponse().status)
        finally:
            connection.close()

    def test_unknown_paths_and_methods(self):
        self.assertEqual(404, self.receiver.request("GET", "/nope")[0])
        self.assertEqual(405, self.receiver.request("GET", "/loki/api/v1/push")[0])


if __name__ == "__main__":
    unittest.main()
