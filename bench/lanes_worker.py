"""One consumer process of the lane hand-off rows.

    python bench/lanes_worker.py ours URL PREFIX      # a kernel.lanes.redis consumer
    python bench/lanes_worker.py streaq URL QUEUE     # a streaq worker (the anchor)

Each delivery records its latency: ``time.time()`` when its hook (or task) starts, minus the
``sent`` time the producer put in the payload (one machine, one clock). For every line read
on stdin it answers one JSON line ``{"count": n, "latencies": [...]}`` of what it delivered
since the last answer. It prints ``ready`` once consuming, and ends when stdin closes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

#: Deliveries at once in each process (ours: the lane's batch; streaq: its concurrency).
CONCURRENCY = 32


@attrs.frozen
class Sent:
    sent: float


latencies: list[float] = []


def record(sent: float) -> None:
    latencies.append(time.time() - sent)


async def answer_reports(ready: Callable[[], Awaitable[None]]) -> None:
    await ready()
    print("ready", flush=True)
    while await trio.to_thread.run_sync(sys.stdin.readline):
        batch, latencies[:] = list(latencies), []
        print(json.dumps({"count": len(batch), "latencies": batch}), flush=True)


def ours_app(url: str, prefix: str, *, consume: bool) -> Any:
    import kernel
    from resilience import redis as shared

    event = kernel.event("bench.sent", payload=Sent)
    store = kernel.redis.resource(
        "redis", shared.Store.from_url(url, prefix=prefix, op_timeout=5.0)
    )
    lane = kernel.lanes.redis(
        "bench.lane",
        store=store,
        events=[event],
        group="bench",
        consume=consume,
        batch=CONCURRENCY,
        secret=b"bench-lane-secret-0123456789",
    )

    @kernel.hook("bench.record", on=event)
    async def on_sent(emission: kernel.Emission) -> None:
        record(emission.payload.sent)

    register: list[Any] = [event, store, lane] + ([on_sent] if consume else [])
    return kernel.App("bench-lanes", register=register), event, lane


async def ours(url: str, prefix: str) -> None:
    import kernel

    app, _, _ = ours_app(url, prefix, consume=True)
    async with kernel.run(app) as rt:
        await answer_reports(rt.wait_ready)


def streaq_worker(url: str, queue: str) -> Any:
    from streaq import Worker

    worker = Worker(
        redis_url=url,
        queue_name=queue,
        concurrency=CONCURRENCY,
        anyio_backend="trio",
        handle_signals=False,
    )

    @worker.task(name="deliver", silent=True, ttl=0, max_tries=1)
    async def deliver(sent: float) -> None:
        record(sent)

    return worker, deliver


async def streaq(url: str, queue: str) -> None:
    worker, _ = streaq_worker(url, queue)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run_async)

        async def started() -> None:
            await trio.lowlevel.checkpoint()

        await answer_reports(started)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    mode, url, name = sys.argv[1:]
    trio.run(ours if mode == "ours" else streaq, url, name)
