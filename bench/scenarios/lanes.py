"""Event lanes (``kernel.lanes``) on Redis, beside one coredis ``XADD`` and streaq.

- Publish cost: ``await rt.emit(event, payload)`` on a lane that only produces (payload
  validated, envelope signed with HMAC-SHA256, one ``XADD`` with ``MAXLEN ~``), beside one
  raw ``XADD`` of an entry of the same size from the same coredis client.
- Hand-off: 1 producer (this process) and 2 consumer processes (``bench/lanes_worker.py``)
  on loopback. A loop of ``n`` emits them one after the other, then waits until the
  consumers have delivered all ``n``: per event = wall time / ``n`` (1 / throughput); the
  row's details give events/s and the delivery latency p50/p99 (emitted to hook started).
  The anchor is streaq (a Redis-streams task queue on anyio, here on trio) doing the same
  hand-off: ``enqueue`` from this process, two worker processes.

The server is the redis rows' throwaway ``redis-server``; without it (or without streaq
for the anchor) the rows are unavailable.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from bench import redis_server
from bench._scenario import Scenario, Unavailable
from bench._timing import Loop
from bench.worker_processes import worker_processes

#: Consumer processes of the hand-off rows.
CONSUMERS = 2
WORKER = Path(__file__).resolve().parent.parent / "lanes_worker.py"


def _kernel() -> Any:
    try:
        import coredis  # noqa: F401

        import kernel
    except ImportError as exc:
        raise Unavailable(
            f"the lanes rows need coredis: pip install -e '.[redis]' ({exc})"
        ) from None
    return kernel


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@asynccontextmanager
async def xadd() -> AsyncIterator[Loop]:
    """``await client.xadd(stream, fields)`` of an envelope-sized entry, ``MAXLEN ~``."""
    kernel = _kernel()
    from coredis.tokens import PureToken

    from bench.lanes_worker import Sent, ours_app

    async with redis_server.redis() as url:
        app, event, definition = ours_app(url, f"bench-xadd-{uuid.uuid4().hex[:6]}", consume=False)
        async with kernel.run(app) as rt:
            lane = rt.resource(definition)
            fields = lane.envelope(event, Sent(time.time()), None)
            client = lane.broker.store.client
            stream = lane.broker.stream + ":raw"

            async def loop(n: int) -> None:
                for _ in range(n):
                    await client.xadd(
                        stream,
                        fields,
                        trim_strategy=PureToken.MAXLEN,
                        trim_operator=PureToken.APPROXIMATELY,
                        threshold=100_000,
                    )

            yield loop


@asynccontextmanager
async def publish() -> AsyncIterator[Loop]:
    """``await rt.emit(event, payload)`` on a lane that only produces."""
    kernel = _kernel()
    from bench.lanes_worker import Sent, ours_app

    async with redis_server.redis() as url:
        app, event, _ = ours_app(url, f"bench-pub-{uuid.uuid4().hex[:6]}", consume=False)
        async with kernel.run(app) as rt:
            payload = Sent(time.time())
            emit = rt.emit

            async def loop(n: int) -> None:
                for _ in range(n):
                    await emit(event, payload)

            yield loop


@attrs.define(eq=False)
class HandOff:
    """``await loop(n)``: ``n`` events from this process, delivered by the consumers."""

    send: Callable[[], Awaitable[None]]
    processes: list[trio.Process]
    size: int = 0
    events: int = 0
    wall_ns: int = 0
    latencies: list[float] = attrs.Factory(list)

    @property
    def min_calls(self) -> int:
        return 200

    async def __call__(self, n: int) -> None:
        if n != self.size:  # figures of the latest calls of one size (not the calibration)
            self.size, self.events, self.wall_ns, self.latencies = n, 0, 0, []
        began = time.perf_counter_ns()
        for _ in range(n):
            await self.send()
        delivered = 0
        while delivered < n:
            for process in self.processes:
                report = await _report(process)
                delivered += report["count"]
                self.latencies.extend(report["latencies"])
            if delivered < n:
                await trio.sleep(0.001)
        self.wall_ns += time.perf_counter_ns() - began
        self.events += n

    def details(self) -> str | None:
        if not self.events or not self.latencies:
            return None
        rate = self.events * 1e9 / max(self.wall_ns, 1)
        p50, p99 = _quantile(self.latencies, 0.5), _quantile(self.latencies, 0.99)
        return (
            f"{rate:,.0f} events/s, delivery latency p50 {p50 * 1e3:.2f} ms, "
            f"p99 {p99 * 1e3:.2f} ms ({CONSUMERS} consumer processes)"
        )


async def _readline(process: trio.Process) -> bytes:
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await process.stdout.receive_some(1)
        if not chunk:
            raise RuntimeError("a lanes bench worker ended")
        line += chunk
    return line


async def _report(process: trio.Process) -> Any:
    assert process.stdin is not None
    await process.stdin.send_all(b"report\n")
    buffer = b""
    while not buffer.endswith(b"\n"):
        assert process.stdout is not None
        chunk = await process.stdout.receive_some(1 << 16)
        if not chunk:
            raise RuntimeError("a lanes bench worker ended")
        buffer += chunk
    return json.loads(buffer)


@asynccontextmanager
async def _consumers(mode: str, url: str, name: str) -> AsyncIterator[list[trio.Process]]:
    command = [sys.executable, str(WORKER), mode, url, name]
    async with worker_processes(command, CONSUMERS) as processes:
        with trio.fail_after(30):
            for process in processes:
                if (await _readline(process)).strip() != b"ready":
                    raise RuntimeError("a lanes bench worker did not start")
        yield processes


@asynccontextmanager
async def hand_off() -> AsyncIterator[Loop]:
    kernel = _kernel()
    from bench.lanes_worker import Sent, ours_app

    async with redis_server.redis() as url:
        prefix = f"bench-e2e-{uuid.uuid4().hex[:6]}"
        app, event, _ = ours_app(url, prefix, consume=False)
        async with kernel.run(app) as rt, _consumers("ours", url, prefix) as processes:
            emit = rt.emit

            async def send() -> None:
                await emit(event, Sent(time.time()))

            yield HandOff(send, processes)


@asynccontextmanager
async def streaq_hand_off() -> AsyncIterator[Loop]:
    _kernel()
    if importlib.util.find_spec("streaq") is None:
        raise Unavailable("the streaq anchor needs streaq: pip install -e '.[bench]'")
    from bench.lanes_worker import streaq_worker

    async with redis_server.redis() as url, AsyncExitStack() as stack:
        queue = f"bench-streaq-{uuid.uuid4().hex[:6]}"
        worker, deliver = streaq_worker(url, queue)
        processes = await stack.enter_async_context(_consumers("streaq", url, queue))
        await stack.enter_async_context(worker)

        async def send() -> None:
            await deliver.enqueue(time.time())

        yield HandOff(send, processes)


def _row(key: str, label: str, setup: Any, *, who: str = "ours", **extra: Any) -> Scenario:
    return Scenario(id=f"lanes.{key}", label=label, group="redis", who=who, setup=setup, **extra)


SCENARIOS = (
    _row("xadd", "coredis: XADD of one lane envelope (the floor)", xadd, who="coredis"),
    _row("publish", "ours: rt.emit on a lane (validate, sign, XADD)", publish),
    _row(
        "handoff",
        f"ours: lane hand-off, 1 producer + {CONSUMERS} consumer processes, per event",
        hand_off,
        shape="handoff",
        note="1 / events per second, emit to hook; details: latency p50/p99",
    ),
    _row(
        "handoff_streaq",
        f"streaq: task hand-off, 1 producer + {CONSUMERS} worker processes, per task",
        streaq_hand_off,
        who="streaq",
        shape="handoff",
        may_fail=True,
    ),
)
