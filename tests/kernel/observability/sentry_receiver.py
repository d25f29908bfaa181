"""A Sentry ingestion endpoint for tests: a thread HTTP server on 127.0.0.1 that records each
envelope the real sentry-sdk posts to it, and a strict parser of the envelope format.

The envelope format (https://develop.sentry.dev/sdk/envelopes/): a header line (JSON), then
items, each a header line (JSON, with the payload's ``length`` in bytes when it has one) and
its payload, items separated by a newline. sentry-sdk sends it to
``/api/<project id>/envelope/``, gzip-compressed (``Content-Encoding: gzip``), with the DSN's
public key in the ``X-Sentry-Auth`` header.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

PUBLIC_KEY = "testpublickey0123"
PROJECT = 42


@attrs.frozen
class Item:
    headers: dict[str, Any]
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


@attrs.frozen
class Envelope:
    headers: dict[str, Any]
    items: list[Item]
    #: The whole body as sent, decompressed: what a secret must not be found in.
    raw: bytes


def parse_envelope(body: bytes) -> Envelope:
    """Parse one envelope; raise ValueError on anything that does not follow the format."""
    header_line, _, rest = body.partition(b"\n")
    headers = json.loads(header_line)
    if not isinstance(headers, dict):
        raise ValueError(f"envelope header is not an object: {header_line!r}")
    items: list[Item] = []
    position = 0
    while position < len(rest):
        end = rest.find(b"\n", position)
        end = len(rest) if end == -1 else end
        item_headers = json.loads(rest[position:end])
        if not isinstance(item_headers, dict) or not isinstance(item_headers.get("type"), str):
            raise ValueError(f"bad item header: {rest[position:end]!r}")
        position = end + 1
        length = item_headers.get("length")
        if length is None:  # the payload runs to the next newline
            end = rest.find(b"\n", position)
            end = len(rest) if end == -1 else end
            payload, position = rest[position:end], end + 1
        else:
            payload = rest[position : position + length]
            if len(payload) != length:
                raise ValueError(f"item payload truncated: {len(payload)} of {length} bytes")
            position += length
            if position < len(rest):
                if rest[position : position + 1] != b"\n":
                    raise ValueError("an item payload is not followed by a newline")
                position += 1
        items.append(Item(item_headers, payload))
    return Envelope(headers, items, body)


@attrs.define
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@attrs.define(eq=False)
class Receiver:
    """What the server received; ``stall`` set makes every request wait until it is set."""

    port: int = 0
    requests: list[Request] = attrs.Factory(list)
    stall: threading.Event | None = None
    lock: threading.Lock = attrs.Factory(threading.Lock)

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.port}/{PROJECT}"

    def envelopes(self) -> list[Envelope]:
        with self.lock:
            requests = list(self.requests)
        for request in requests:
            assert request.path == f"/api/{PROJECT}/envelope/", request.path
            assert f"sentry_key={PUBLIC_KEY}" in request.headers["x-sentry-auth"]
        return [parse_envelope(request.body) for request in requests]

    def events(self) -> list[dict[str, Any]]:
        """The payloads of every ``event`` item received, in order."""
        return [
            item.json()
            for envelope in self.envelopes()
            for item in envelope.items
            if item.headers["type"] == "event"
        ]

    def raw(self) -> bytes:
        """Every body received, decompressed, joined."""
        return b"\n".join(envelope.raw for envelope in self.envelopes())


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            encoding = self.headers.get("content-encoding")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding is not None:
                raise AssertionError(f"unexpected content-encoding {encoding!r}")
            headers = {key.lower(): value for key, value in self.headers.items()}
            with receiver.lock:
                receiver.requests.append(Request(self.path, headers, body))
            if receiver.stall is not None:
                receiver.stall.wait(timeout=30)
            answer = b'{"id": "ok"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def receiving(*, stall: bool = False) -> Iterator[Receiver]:
    """A receiver serving on 127.0.0.1 (an ephemeral port) inside the block; stopped after."""
    receiver = Receiver(stall=threading.Event() if stall else None)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, args=(0.01,), name="sentry-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.stall is not None:
            receiver.stall.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
