"""The HTTP row: a trivial task served by ``kernel.exposure.http`` on loopback, called
through ``kernel.remote`` from a client app with 64 requests in flight.

The per-call figure is wall time / requests: one over the throughput. Client and server
share this process and its one trio thread, so it is the CPU cost of a request on both
sides (HTTP/1.1 over loopback, JSON both ways). Requests/s and the latency percentiles
come from the loop's `Concurrent.details`, printed with the notes. A repetition is never
fewer requests than the concurrency (`Concurrent.min_calls`): quick runs make a few
hundred requests, full runs about 1,200 (more on a fast machine).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import trio
from loguru import logger

import kernel
from bench._scenario import Scenario
from bench._timing import Loop

#: Requests in flight at once (the issue's load row: 5,000 requests at concurrency 64).
CONCURRENCY = 64
#: The fewest requests per repetition: 15 timed repetitions of a full run make >= 5,040.
MIN_PER_REPETITION = 336
TOKEN = "bench-token"


@attrs.frozen(kw_only=True)
class LoadSummary:
    """What a `Concurrent` loop saw over its latest run of same-size calls."""

    requests: int
    wall_ns: int
    p50_ns: int
    p99_ns: int
    #: CPU time of this process over those calls (client and server, when both are here).
    cpu_ns: int = 0

    @property
    def cpu_per_request_ns(self) -> float:
        """CPU nanoseconds of this process per request: what bounds the figure on a busy
        machine (requests/s <= 1 / this, on one core)."""
        return self.cpu_ns / max(self.requests, 1)

    @property
    def per_second(self) -> float:
        """Requests per second over the wall time of those calls."""
        return self.requests * 1e9 / max(self.wall_ns, 1)


def _percentile(ordered: list[int], q: float) -> int:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of sorted samples."""
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@attrs.define(eq=False)
class Concurrent:
    """A timing loop: ``await loop(n)`` makes ``n`` requests, ``concurrency`` at a time.

    Each request is ``await request()``; its latency is recorded. The summary covers the
    latest calls made with the same ``n`` (the harness's warm-up and timed repetitions,
    after calibration has settled on ``n``). A failed request propagates.
    """

    request: Callable[[], Awaitable[object]]
    concurrency: int = CONCURRENCY
    _size: int = 0
    _left: int = 0
    _wall_ns: int = 0
    _cpu_ns: int = 0
    _latencies: list[int] = attrs.Factory(list)

    #: The fewest calls per repetition the bench may ask for (never fewer than one per slot).
    minimum: int = 0

    @property
    def min_calls(self) -> int:
        """The fewest calls per repetition the bench may ask for."""
        return max(self.minimum, self.concurrency)

    async def __call__(self, n: int) -> None:
        if n != self._size:
            self.reset()
            self._size = n
        self._left = n
        start, cpu = time.perf_counter_ns(), time.process_time_ns()
        async with trio.open_nursery() as nursery:
            for _ in range(min(self.concurrency, n)):
                nursery.start_soon(self._worker)
        self._wall_ns += time.perf_counter_ns() - start
        self._cpu_ns += time.process_time_ns() - cpu

    async def _worker(self) -> None:
        request, record, clock = self.request, self._latencies.append, time.perf_counter_ns
        while self._left > 0:
            self._left -= 1
            began = clock()
            await request()
            record(clock() - began)

    def reset(self) -> None:
        """Forget what was recorded (after a warm-up)."""
        self._size, self._wall_ns, self._cpu_ns, self._latencies = 0, 0, 0, []

    def summary(self) -> LoadSummary | None:
        """Requests, wall time and latency p50/p99 of the latest same-size calls."""
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        return LoadSummary(
            requests=len(ordered),
            wall_ns=self._wall_ns,
            p50_ns=_percentile(ordered, 0.50),
            p99_ns=_percentile(ordered, 0.99),
            cpu_ns=self._cpu_ns,
        )

    def details(self) -> str | None:
        """The summary as the bench report prints it."""
        s = self.summary()
        if s is None:
            return None
        return (
            f"{s.per_second:,.0f} requests/s; latency p50 {s.p50_ns / 1e6:.2f} ms, "
            f"p99 {s.p99_ns / 1e6:.2f} ms; CPU {s.cpu_per_request_ns / 1e3:,.0f} µs per "
            f"request in this process ({s.requests:,} requests, {self.concurrency} in flight)"
        )


async def _ping(x: Any = None) -> Any:
    """The trivial task: returns its argument."""
    return x


ping = kernel.task("bench.http.ping")(_ping)


@contextmanager
def quiet_exposure() -> Iterator[None]:
    """The exposure's per-call log lines off (loguru's default sink is the terminal: the
    figures would measure it)."""
    logger.disable("kernel.exposure")
    try:
        yield
    finally:
        logger.enable("kernel.exposure")


@asynccontextmanager
async def serving() -> AsyncIterator[str]:
    """An app exposing ``ping`` over HTTP on loopback; yields its URL."""
    from kernel.exposure._config import BearerAuth
    from kernel.exposure._server import http

    exposure = http("bench.http.exposure", auth=BearerAuth(tokens=[TOKEN]), allow_tasks=[ping.id])
    async with kernel.run(kernel.App("bench.http.server", register=[ping, exposure])) as rt:
        yield rt.resource(exposure).url


@asynccontextmanager
async def remote_calls(concurrency: int = CONCURRENCY) -> AsyncIterator[Concurrent]:
    """A `Concurrent` loop of ``await rt.run_task(ping, 1)`` in a client app where ``ping``
    is ``kernel.remote(ping, ...)`` of the served one."""
    from kernel.exposure._remote import remote, remote_task

    async with serving() as url:
        endpoint = remote("bench.http.endpoint", base_url=url, token=TOKEN)
        client = kernel.App(
            "bench.http.client",
            register=[endpoint, ping],
            overrides=[kernel.override(ping, remote_task(ping, via=endpoint))],
        )
        async with kernel.run(client) as rt:
            run_task = rt.run_task

            async def request() -> None:
                if await run_task(ping, 1) != 1:
                    raise RuntimeError("bench.http.ping: wrong answer")

            yield Concurrent(request, concurrency, minimum=MIN_PER_REPETITION)


@asynccontextmanager
async def load_64() -> AsyncIterator[Loop]:
    """The bench row: `remote_calls` with 64 in flight, the exposure's log lines off, its
    connections opened by a first wave of requests left out of the figures."""
    with quiet_exposure():
        async with remote_calls() as loop:
            await loop(CONCURRENCY)
            loop.reset()
            yield loop


class RawClient:
    """The floor of a client: kept-alive trio sockets, one per request in flight, each
    request written as bytes and its answer read by ``Content-Length``; what ``kernel.remote``
    is measured against on the same server. A kept-alive socket the server closed while idle
    (its keep-alive timeout) is replaced, and the request sent again (it is idempotent)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self._address = (host, port)
        self._head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
            f"authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n"
        ).encode()
        self._idle: list[tuple[trio.SocketStream, bytearray]] = []

    async def call(self, input: Any) -> Any:
        """POST ``{"input": input}``; the answer's ``result`` (RuntimeError if not 200)."""
        body = json.dumps({"input": input}).encode()
        request = self._head + b"content-length: %d\r\n\r\n" % len(body) + body
        if self._idle:
            stream, buffer = self._idle.pop()
            try:
                return await self._exchange(stream, buffer, request)
            except _IdleClosed:
                pass  # closed by the server while idle: once more on a new connection
        stream = await trio.open_tcp_stream(*self._address)
        return await self._exchange(stream, bytearray(), request)

    async def _exchange(self, stream: trio.SocketStream, buffer: bytearray, request: bytes) -> Any:
        try:
            try:
                await stream.send_all(request)
                first = await stream.receive_some()
            except trio.BrokenResourceError:
                raise _IdleClosed from None
            if not first:
                raise _IdleClosed
            buffer += first
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                buffer += await _received(stream)
            head = bytes(buffer[: end + 2]).lower()  # each header line ends with CRLF
            start = head.index(b"content-length:") + len(b"content-length:")
            length = int(head[start : head.index(b"\r\n", start)])
            while len(buffer) < end + 4 + length:
                buffer += await _received(stream)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        answer = json.loads(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        self._idle.append((stream, buffer))
        if not head.startswith(b"http/1.1 200"):
            raise RuntimeError(f"raw client: {head.splitlines()[0]!r}")
        return answer["result"]

    async def aclose(self) -> None:
        """Close every kept-alive socket."""
        idle, self._idle = self._idle, []
        for stream, _ in idle:
            await stream.aclose()


class _IdleClosed(Exception):
    """The server had closed a kept-alive connection before the request was answered."""


async def _received(stream: trio.SocketStream) -> bytes:
    data = await stream.receive_some()
    if not data:
        raise RuntimeError("raw client: the server closed the connection mid-answer")
    return bytes(data)


@asynccontextmanager
async def raw_64() -> AsyncIterator[Loop]:
    """`RawClient` calls of the served ``ping``, 64 in flight (the exposure's log lines off,
    the first wave of connections left out of the figures)."""
    with quiet_exposure():
        async with serving() as url:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            client = RawClient(host, int(port), f"/__runner/task/{ping.id}")

            async def request() -> None:
                if await client.call([1]) != 1:
                    raise RuntimeError("bench.http.ping: wrong answer")

            loop = Concurrent(request, CONCURRENCY, minimum=MIN_PER_REPETITION)
            try:
                await loop(CONCURRENCY)
                loop.reset()
                yield loop
            finally:
                await client.aclose()


SCENARIOS = (
    Scenario(
        id="http.remote_64",
        label="http: kernel.remote -> kernel.exposure.http, 64 in flight (per request)",
        group="http",
        who="ours",
        baseline=None,
        setup=load_64,
        note=(
            "per request = 1 / throughput; client and server share this process and thread "
            "(HTTP/1.1 on loopback); each repetition is at least 336 requests (a full run times "
            ">= 5,040, and any failed request fails the run); the "
            "exposure's per-call log lines are off"
        ),
    ),
    Scenario(
        id="http.raw_64",
        label="http: raw-socket client -> kernel.exposure.http, 64 in flight (per request)",
        group="http",
        who="raw sockets",
        baseline=None,
        setup=raw_64,
        note=(
            "the same server and load as http.remote_64, the client side cut to its floor: "
            "kept-alive trio sockets writing the request bytes and reading the answer by "
            "Content-Length (what the remote hop is measured against)"
        ),
    ),
)
