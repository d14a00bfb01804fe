"""Apply Loki's per-stream and per-entry rules and store accepted entries.

The defaults are those of Loki 3.7 (`pkg/validation/limits.go`,
`pkg/distributor/validator.go`, and the ingester's stream code):

- A stream has at most 15 label names, not counting `service_name`. Names
  are at most 1024 bytes and values at most 2048 bytes. A stream that breaks
  a label rule is rejected whole, and the other streams of the push are
  still stored.
- `max_line_size` 256 KiB (Loki's "256KB" is parsed with 1024-byte units).
- Entries older than 7 days, or more than 10 minutes in the future, are
  rejected.
- Structured metadata up to 64 KiB (sum of name and value bytes) and 128
  pairs per entry.
- The ingester rejects an entry more than 1 h (half of the 2 h
  `max_chunk_age`) older than the newest entry of its stream.
- An entry with the same timestamp and line as a stored entry of its stream
  is dropped silently. Loki's ingester compares only with the previous entry
  and its queries hide the remaining duplicates, so this receiver stores what
  a query would return.
- When a stream has no `service_name`, Loki copies the first present label
  of a fixed list into it, or sets `unknown_service`.

Rate limits are not enforced. A 429 comes only from a fault.

NOTE: Loki's default `discover_log_levels` adds a `detected_level` pair to
each entry's structured metadata, and Loki may rewrite metadata names that are
not valid label names. This receiver stores metadata exactly as sent.
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from label_syntax import LabelSyntaxError, format_labels, parse_labels

MAX_LABEL_NAMES_PER_SERIES = 15
MAX_LABEL_NAME_LENGTH = 1024
MAX_LABEL_VALUE_LENGTH = 2048
MAX_LINE_SIZE = 256 * 1024
MAX_STRUCTURED_METADATA_SIZE = 64 * 1024
MAX_STRUCTURED_METADATA_ENTRIES = 128
REJECT_OLD_SAMPLES_MAX_AGE_NS = 7 * 24 * 3600 * 1_000_000_000
CREATION_GRACE_PERIOD_NS = 10 * 60 * 1_000_000_000
TOO_FAR_BEHIND_NS = 3600 * 1_000_000_000

SERVICE_NAME = "service_name"
UNKNOWN_SERVICE = "unknown_service"
# Loki 3.7 default of `discover_service_name`, in priority order.
SERVICE_NAME_SOURCES = (
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
)


class LabelParseError(ValueError):
    """A stream label string that fails to parse, which rejects the whole push."""


@dataclass
class PreparedStream:
    labels: list  # sorted (name, value) pairs after empty values are dropped
    labels_raw: str
    entries: list


@dataclass
class StoredStream:
    labels: dict
    labels_raw: str
    entries: list = field(default_factory=list)
    seen: set = field(default_factory=set)
    newest_ns: int = None


@dataclass
class Outcome:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    errors: list = field(default_factory=list)


def prepare_streams(streams):
    """Parse every stream's labels and add `service_name` where it is missing.

    Raises `LabelParseError` on the first label string that does not parse,
    because Loki then rejects the push before storing anything.
    """
    prepared = []
    for index, stream in enumerate(streams):
        try:
            labels = parse_labels(stream.labels_raw)
        except LabelSyntaxError as error:
            raise LabelParseError(
                f"stream {index}: cannot parse labels {_show_raw(stream.labels_raw)}: {error}"
            ) from None
        labels_raw = stream.labels_raw.decode("utf-8")
        prepared.append(PreparedStream(_discover_service_name(labels), labels_raw, stream.entries))
    return prepared


def _show_raw(raw):
    text = raw.decode("utf-8", errors="backslashreplace")
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _discover_service_name(labels):
    names = dict(labels)
    if SERVICE_NAME in names:
        return labels
    source = next((names[name] for name in SERVICE_NAME_SOURCES if names.get(name)), None)
    merged = labels + [(SERVICE_NAME, source or UNKNOWN_SERVICE)]
    merged.sort(key=lambda pair: pair[0])
    return merged


def validate_labels(labels):
    """Return an error message for a label set that breaks a limit, or None."""
    stream_text = format_labels(dict(labels))
    if not labels:
        return f"stream {stream_text}: at least one label pair is required"
    count = len(labels) - (1 if any(name == SERVICE_NAME for name, _ in labels) else 0)
    if count > MAX_LABEL_NAMES_PER_SERIES:
        return (
            f"stream {stream_text}: {count} label names (not counting {SERVICE_NAME}) "
            f"exceed the limit of {MAX_LABEL_NAMES_PER_SERIES}"
        )
    previous = None
    for name, value in labels:
        if len(name.encode()) > MAX_LABEL_NAME_LENGTH:
            return (
                f"stream {stream_text}: label name of {len(name.encode())} bytes exceeds "
                f"{MAX_LABEL_NAME_LENGTH}"
            )
        if len(value.encode()) > MAX_LABEL_VALUE_LENGTH:
            return (
                f"stream {stream_text}: value of label {name!r} is {len(value.encode())} bytes, "
                f"over the limit of {MAX_LABEL_VALUE_LENGTH}"
            )
        if name == previous:
            return f"stream {stream_text}: duplicate label name {name!r}"
        previous = name
    return None


def validate_entry(entry, now_ns):
    """Return an error message for an entry the distributor rejects, or None."""
    oldest_ns = now_ns - REJECT_OLD_SAMPLES_MAX_AGE_NS
    if entry.timestamp_ns < oldest_ns:
        return (
            f"timestamp {format_ns(entry.timestamp_ns)} is older than the 7-day limit "
            f"(oldest accepted {format_ns(oldest_ns)})"
        )
    if entry.timestamp_ns > now_ns + CREATION_GRACE_PERIOD_NS:
        return f"timestamp {format_ns(entry.timestamp_ns)} is more than 10 minutes in the future"
    if len(entry.line) > MAX_LINE_SIZE:
        return f"line of {len(entry.line)} bytes exceeds max_line_size {MAX_LINE_SIZE}"
    if entry.metadata:
        size = sum(len(name) + len(value) for name, value in entry.metadata)
        if size > MAX_STRUCTURED_METADATA_SIZE:
            return (
                f"structured metadata of {size} bytes exceeds the limit of "
                f"{MAX_STRUCTURED_METADATA_SIZE}"
            )
        if len(entry.metadata) > MAX_STRUCTURED_METADATA_ENTRIES:
            return (
                f"{len(entry.metadata)} structured metadata pairs exceed the limit of "
                f"{MAX_STRUCTURED_METADATA_ENTRIES}"
            )
    return None


def format_ns(timestamp_ns):
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp_ns}ns"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _text(data):
    # NOTE: Loki stores invalid UTF-8 as sent; this receiver shows each invalid
    # sequence as U+FFFD because its control API returns JSON strings.
    return data.decode("utf-8", errors="replace")


class Store:
    """Accepted streams in first-arrival order. Every method is thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._streams = {}

    def reset(self):
        with self._lock:
            self._streams = {}

    def ingest(self, prepared_streams, reject_entry=None, now_ns=None):
        """Validate and store entries, returning an `Outcome`.

        `reject_entry(index)` may return an error message to reject the entry
        at that position of the push; the `partial` fault uses it.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        outcome = Outcome()
        position = 0
        with self._lock:
            for stream in prepared_streams:
                if not stream.entries:
                    continue
                label_error = validate_labels(stream.labels)
                if label_error:
                    outcome.errors.append(label_error)
                    outcome.rejected += len(stream.entries)
                    position += len(stream.entries)
                    continue
                for entry in stream.entries:
                    error = validate_entry(entry, now_ns)
                    if error is None and reject_entry is not None:
                        error = reject_entry(position)
                    position += 1
                    if error is None:
                        error = self._append(stream, entry, outcome)
                    if error is not None:
                        stream_text = format_labels(dict(stream.labels))
                        outcome.errors.append(f"stream {stream_text}: {error}")
                        outcome.rejected += 1
        return outcome

    def _append(self, stream, entry, outcome):
        key = tuple(stream.labels)
        stored = self._streams.get(key)
        if stored is None:
            stored = StoredStream(labels=dict(stream.labels), labels_raw=stream.labels_raw)
        fingerprint = (entry.timestamp_ns, entry.line)
        if fingerprint in stored.seen:
            outcome.duplicates += 1
            return None
        if (
            stored.newest_ns is not None
            and entry.timestamp_ns < stored.newest_ns - TOO_FAR_BEHIND_NS
        ):
            return (
                f"entry too far behind: timestamp {format_ns(entry.timestamp_ns)} is more than 1h "
                f"older than the stream's newest entry {format_ns(stored.newest_ns)}"
            )
        self._streams[key] = stored
        stored.seen.add(fingerprint)
        if stored.newest_ns is None or entry.timestamp_ns > stored.newest_ns:
            stored.newest_ns = entry.timestamp_ns
        stored.entries.append(
            {
                "timestamp_ns": str(entry.timestamp_ns),
                "line": _text(entry.line),
                "metadata": {_text(name): _text(value) for name, value in entry.metadata},
            }
        )
        outcome.accepted += 1
        return None

    def snapshot(self):
        with self._lock:
            return [
                {
                    "labels": dict(stream.labels),
                    "labels_raw": stream.labels_raw,
                    "entries": list(stream.entries),
                }
                for stream in self._streams.values()
            ]
