"""The service of the worker tests: ``python service.py WORKERS`` or
``trio-runner serve tests.kernel.workers.service:service --workers N``.

Listens on ``$WORKERS_TEST_PORT``; logs at ``$WORKERS_TEST_LOG`` (default WARNING: the
per-call INFO lines cost the load tests time). ``w.pid`` answers the worker's pid,
``w.slow`` sleeps then answers it; with ``$WORKERS_TEST_CRASH`` set every worker fails at
start.
"""

from __future__ import annotations

import os
import sys

import attrs
import trio

import kernel
import resilience as rs

TOKEN = "workers-token"


@attrs.frozen
class Order:
    qty: int


async def _pid() -> int:
    return os.getpid()


async def _slow(seconds: float) -> int:
    await trio.sleep(seconds)
    return os.getpid()


async def _order(order: Order) -> int:
    return order.qty


pid = kernel.task("w.pid")(_pid)
slow = kernel.task("w.slow")(_slow)
order = kernel.task("w.order", input=Order)(_order)


@kernel.resource("w.start")
async def start() -> None:
    if os.environ.get("WORKERS_TEST_CRASH"):
        raise RuntimeError("this worker cannot start")


exposure = kernel.exposure.http(
    "w.http",
    port=int(os.environ.get("WORKERS_TEST_PORT", "0")),
    auth=kernel.exposure.BearerAuth(tokens=[TOKEN]),
    allow_tasks=["w.*"],
    body_limit=1_000,
)
app = kernel.App("w", register=[pid, slow, order, start, exposure])
service = kernel.Service(
    app=app,
    workers=2,
    drain_timeout=5.0,
    log=kernel.LogConfig(level=os.environ.get("WORKERS_TEST_LOG", "WARNING")),
    worker_restart=rs.Retry(attempts=3, wait=rs.backoff.constant(0.1)),
)

if __name__ == "__main__":
    kernel.main(service, workers=int(sys.argv[1]))
