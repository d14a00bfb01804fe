#!/usr/bin/env python3
"""A Loki push endpoint stand-in for tests, with fault injection.

Usage:
    receiver.py [--port 0] [--require-tenant] [--basic-auth USER:PASS]
                [--bearer-token TOKEN] [--max-body-bytes N]

Once ready it prints exactly one line, `listening http://127.0.0.1:PORT`, on
stdout. Logs go to stderr.

Endpoints:
- `POST /loki/api/v1/push`: decodes and validates a push as Loki 3.7 does (see
  `push_decode.py` and `ingest.py`) and stores the accepted entries.
- `GET /control/streams`: accepted entries per stream, in arrival order.
  `labels` includes the `service_name` that Loki would add, and `labels_raw`
  is the label string of the push that created the stream, as sent.
- `GET /control/requests`: one record per push, in arrival order, with
  `status` (null when no response was sent), `body_bytes`, `content_type`,
  `content_encoding`, `tenant`, `auth` (`basic`, `bearer` or null), `entries`
  (decoded), `accepted`, `rejected`, `duplicates`, `error` (the response
  text), `fault` and `received_at_ns`. The top-level `in_flight` is the
  number of pushes being read or processed right now, hung ones included.
- `POST /control/fault`: `{"mode": "none"|"status"|"hang"|"slow"|"refuse"|
  "partial", "status": 429, "count": 5, "delay_ms": 2000, "reject_every": 2}`.
  The fault applies to the next `count` pushes, or to every push until the
  next fault or reset when `count` is absent.
  - `status` responds with that status and stores nothing.
  - `hang` reads the request and never responds. The connection is closed
    without a response when the fault is replaced or reset.
  - `slow` stores the push first and responds after `delay_ms`, so a client
    that times out cannot know whether its entries were stored.
  - `refuse` resets the connection (TCP RST) without reading the body.
  - `partial` rejects every `reject_every`-th entry of a push (the 2nd, 4th,
    ... by default) with 400 and stores the others.
- `POST /control/reset`: clears streams, request records and faults.
- `GET /ready`: 200.
"""

import argparse
import base64
import hmac
import json
import logging
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The sibling modules are imported by name, which needs this directory on the
# path even when Python runs with -P or PYTHONSAFEPATH.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from faults import Fault, parse_fault_plan, partial_rejecter
    from ingest import LabelParseError, Store, prepare_streams
    from push_decode import BodyError, BodyTooLarge, decode_push
except ModuleNotFoundError as missing:
    sys.exit(
        f"loki_receiver: missing Python package {missing.name!r}; install it with "
        f"`pip install -r {os.path.dirname(os.path.abspath(__file__))}/requirements.txt`"
    )

PUSH_PATH = "/loki/api/v1/push"
# Loki 3.7 `distributor.max_recv_msg_size`: the largest compressed push body.
DEFAULT_MAX_BODY_BYTES = 100 << 20
# dskit's tenant ID rules: at most 150 bytes of these characters, and not "." or "..".
_TENANT_ID = re.compile(r"[a-zA-Z0-9!\-_.*'()]{1,150}\Z")

log = logging.getLogger("loki_receiver")


class Receiver:
    """Configuration and shared state of one receiver process."""

    def __init__(self, args):
        self.max_body_bytes = args.max_body_bytes
        self.require_tenant = args.require_tenant
        self.basic_auth = args.basic_auth
        self.bearer_token = args.bearer_token
        self.store = Store()
        self.fault = Fault()
        self._requests_lock = threading.Lock()
        self._requests = []
        self._in_flight = 0

    def push_started(self):
        with self._requests_lock:
            self._in_flight += 1

    def push_finished(self):
        with self._requests_lock:
            self._in_flight -= 1

    def in_flight(self):
        with self._requests_lock:
            return self._in_flight

    def record(self, record):
        with self._requests_lock:
            self._requests.append(record)

    def requests(self):
        with self._requests_lock:
            return list(self._requests)

    def reset(self):
        self.fault.configure({"mode": "none"})
        self.store.reset()
        with self._requests_lock:
            self._requests = []


class _BodyTooLargeToRead(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nixtla-test-loki-receiver"
    receiver = None  # set by main()
    bytes_read = 0

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)

    # --- routing ---

    def do_GET(self):
        routes = {
            "/ready": lambda: self.send_text(200, "ready"),
            "/control/streams": lambda: self.send_json(
                200, {"streams": self.receiver.store.snapshot()}
            ),
            "/control/requests": lambda: self.send_json(
                200,
                {
                    "requests": self.receiver.requests(),
                    "in_flight": self.receiver.in_flight(),
                },
            ),
        }
        self.dispatch(routes)

    def do_POST(self):
        routes = {
            PUSH_PATH: self.handle_push,
            "/control/fault": self.handle_fault,
            "/control/reset": self.handle_reset,
        }
        self.dispatch(routes)

    def dispatch(self, routes):
        path = self.path.split("?", 1)[0]
        handler = routes.get(path)
        if handler is not None:
            handler()
            return
        self.discard_body()
        known = path in (PUSH_PATH, "/ready") or path.startswith("/control/")
        self.send_text(405 if known else 404, f"no {self.command} handler for {path}")

    # --- control endpoints ---

    def handle_fault(self):
        try:
            plan = parse_fault_plan(json.loads(self.read_body(1 << 20) or b"null"))
        except (ValueError, _BodyTooLargeToRead) as error:
            log.warning("invalid fault request rejected: %s", error)
            self.send_text(400, f"invalid fault: {error}")
            return
        self.receiver.fault.configure(plan)
        log.info("fault set: %s", plan)
        self.send_json(200, {"fault": plan})

    def handle_reset(self):
        self.discard_body()
        self.receiver.reset()
        log.info("reset: streams, request records and faults cleared")
        self.send_json(200, {"reset": True})

    # --- push ---

    def handle_push(self):
        self.receiver.push_started()
        try:
            self.serve_push()
        finally:
            self.receiver.push_finished()

    def serve_push(self):
        plan, release = self.receiver.fault.take()
        record = self.new_push_record(plan)
        if plan["mode"] == "refuse":
            self.refuse(record)
            return

        try:
            body = self.read_body(self.receiver.max_body_bytes)
        except _BodyTooLargeToRead:
            body = None
        except ValueError as error:
            self.reject_framing(record, error)
            return
        record["body_bytes"] = len(body) if body is not None else self.bytes_read
        if plan["mode"] == "hang":
            self.hang(record, release)
            return

        status, message = self.process_push(body, plan, record)
        record["status"] = status
        record["error"] = message
        self.receiver.record(record)
        log_push(record)
        if plan["mode"] == "slow":
            time.sleep(plan["delay_ms"] / 1000)
        if status == 204:
            self.send_no_content()
        else:
            self.send_text(status, message)

    def new_push_record(self, plan):
        return {
            "status": None,
            "body_bytes": 0,
            "content_type": self.headers.get("Content-Type"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "tenant": self.headers.get("X-Scope-OrgID"),
            "auth": self.auth_scheme(),
            "entries": 0,
            "accepted": 0,
            "rejected": 0,
            "duplicates": 0,
            "error": None,
            "fault": None if plan["mode"] == "none" else plan["mode"],
            "received_at_ns": str(time.time_ns()),
        }

    def reject_framing(self, record, error):
        record["status"] = 400
        record["error"] = f"invalid request framing: {error}"
        self.receiver.record(record)
        log.warning("push rejected: %s", record["error"])
        self.close_connection = True
        self.send_text(400, record["error"])

    def process_push(self, body, plan, record):
        """Return (status, error message or None) for one push."""
        auth_error = self.check_auth()
        if auth_error:
            return 401, auth_error
        tenant_error = self.check_tenant()
        if tenant_error:
            return 400, tenant_error
        if body is None:
            return 413, f"request body too large: over {self.receiver.max_body_bytes} bytes"
        if plan["mode"] == "status":
            return plan["status"], f"fault injected by the test receiver: status {plan['status']}"

        try:
            streams = decode_push(
                body,
                self.headers.get("Content-Type"),
                self.headers.get("Content-Encoding", "").strip(),
                self.receiver.max_body_bytes,
            )
            record["entries"] = sum(len(stream.entries) for stream in streams)
            prepared = prepare_streams(streams)
        except BodyTooLarge as error:
            return 413, f"request body too large: {error}"
        except (BodyError, LabelParseError) as error:
            return 400, f"cannot parse push request: {error}"
        if not prepared:
            return 422, "at least one stream is required"

        outcome = self.receiver.store.ingest(prepared, reject_entry=partial_rejecter(plan))
        record["accepted"] = outcome.accepted
        record["rejected"] = outcome.rejected
        record["duplicates"] = outcome.duplicates
        if outcome.errors:
            return 400, "\n".join(outcome.errors)
        return 204, None

    def check_auth(self):
        """Return why the request is unauthorized, or None."""
        receiver = self.receiver
        if receiver.basic_auth or receiver.bearer_token:
            header = self.headers.get("Authorization", "")
            accepted = []
            if receiver.basic_auth:
                token = base64.b64encode(receiver.basic_auth.encode()).decode()
                accepted.append(f"Basic {token}")
            if receiver.bearer_token:
                accepted.append(f"Bearer {receiver.bearer_token}")
            if not any(hmac.compare_digest(header.encode(), a.encode()) for a in accepted):
                return "missing or invalid Authorization header"
        if receiver.require_tenant and not self.headers.get("X-Scope-OrgID"):
            return "no org id: the X-Scope-OrgID header is required"
        return None

    def check_tenant(self):
        """Return why the tenant ID is invalid, or None.

        Loki's push handler rejects an invalid tenant ID, or several IDs joined
        with `|`, with 400. Without auth, Loki ignores the header.
        """
        tenant = self.headers.get("X-Scope-OrgID")
        if not self.receiver.require_tenant:
            return None
        if "|" in tenant:
            return f"a push accepts one tenant ID, got {tenant!r} in X-Scope-OrgID"
        if not _TENANT_ID.match(tenant) or tenant in (".", ".."):
            return f"invalid tenant ID {tenant!r} in X-Scope-OrgID"
        return None

    def auth_scheme(self):
        scheme = self.headers.get("Authorization", "").split(" ", 1)[0].lower()
        return scheme if scheme in ("basic", "bearer") else None

    # --- faults that drop the connection ---

    def refuse(self, record):
        record["error"] = "connection reset by the refuse fault"
        self.receiver.record(record)
        log.info("push refused by fault: connection reset")
        self.reset_connection()

    def hang(self, record, release):
        record["error"] = "no response: hang fault"
        self.receiver.record(record)
        log.info("push hanging by fault until the fault is replaced or reset")
        release.wait()
        self.close_connection = True

    def reset_connection(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    # --- body reading ---

    def declared_length(self):
        """Return the Content-Length, raising ValueError when it is invalid."""
        value = self.headers.get("Content-Length", "0").strip()
        if not value.isdigit():
            raise ValueError(f"invalid Content-Length {value!r}")
        return int(value)

    def read_body(self, limit):
        """Read the whole body, raising `_BodyTooLargeToRead` past `limit` bytes.

        A body over the limit is still drained, so the connection stays usable.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked(limit)
        length = self.declared_length()
        self.bytes_read = length
        if length > limit:
            self.drain(length)
            raise _BodyTooLargeToRead()
        return self.rfile.read(length) if length > 0 else b""

    def read_chunked(self, limit):
        chunks, total = [], 0
        while True:
            size_line = self.rfile.readline(65537)
            size_text = size_line.split(b";", 1)[0].strip()
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise ValueError(f"invalid chunk size line {size_line[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total <= limit:
                chunks.append(self.rfile.read(size))
            else:
                self.drain(size)
            self.rfile.readline(3)
        self.bytes_read = total
        if total > limit:
            raise _BodyTooLargeToRead()
        return b"".join(chunks)

    def drain(self, length):
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def discard_body(self):
        try:
            self.read_body(0)
        except _BodyTooLargeToRead:
            pass
        except ValueError:
            self.close_connection = True

    # --- responses ---

    def send_no_content(self):
        self.send_response(204)
        self.end_headers()

    def send_text(self, status, text):
        body = (text + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, document):
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def log_push(record):
    message = record["error"]
    log.info(
        "push %s: %d entries, %d accepted, %d rejected, %d duplicates%s",
        record["status"],
        record["entries"],
        record["accepted"],
        record["rejected"],
        record["duplicates"],
        f": {message[:300]}" if message else "",
    )


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)"
    )
    parser.add_argument(
        "--require-tenant",
        action="store_true",
        help="respond 401 to pushes without an X-Scope-OrgID header, as Loki with auth_enabled",
    )
    parser.add_argument(
        "--basic-auth", metavar="USER:PASS", help="require this HTTP basic auth pair on pushes"
    )
    parser.add_argument(
        "--bearer-token", metavar="TOKEN", help="require this bearer token on pushes"
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"largest push body in bytes before 413 (default {DEFAULT_MAX_BODY_BYTES}, Loki's)",
    )
    args = parser.parse_args(argv)
    if args.basic_auth is not None and ":" not in args.basic_auth:
        parser.error("--basic-auth must be USER:PASS")
    if args.max_body_bytes < 1:
        parser.error("--max-body-bytes must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s loki_receiver %(levelname)s %(message)s",
    )
    Handler.receiver = Receiver(args)
    server = Server(("127.0.0.1", args.port), Handler)

    def stop(signum, _frame):
        log.info("signal %d received, stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    log.info("started on 127.0.0.1:%d, max body %d bytes", port, args.max_body_bytes)
    print(f"listening http://127.0.0.1:{port}", flush=True)
    server.serve_forever()
    Handler.receiver.fault.configure({"mode": "none"})
    server.server_close()
    log.info("stopped")


if __name__ == "__main__":
    main()
