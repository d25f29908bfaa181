"""One process of the lane crash tests (``test_processes.py``).

    python -m tests.kernel.lanes.lane_program consume URL PREFIX OUT
    python -m tests.kernel.lanes.lane_program consume-slow URL PREFIX OUT
    python -m tests.kernel.lanes.lane_program produce URL PREFIX COUNT

A consumer runs the lane's hook for every ``order.placed`` and appends one JSON line per
run to OUT (order, message id, attempt, pid), flushed at once, then runs until SIGTERM
(``kernel.main``, drain budget 2 s). It prints ``ready`` once its consumer reads. A slow
consumer (the shutdown test) also writes a line with ``"phase": "start"`` when a run starts,
and its runs last 0.3 s for even orders and 30 s for odd ones (cut at the drain deadline).
A producer emits COUNT
events (orders ``0`` .. ``COUNT - 1``) and exits.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import attrs
import trio

import kernel
from resilience import redis as shared

SECRET = b"crash-test-secret-0123456789"


@attrs.frozen
class Placed:
    order: int


placed = kernel.event("order.placed", payload=Placed)


def _line(emission: kernel.Emission, **extra: Any) -> str:
    assert emission.delivery is not None
    line = {
        "order": emission.payload.order,
        "message_id": emission.delivery.message_id,
        "attempt": emission.delivery.attempt,
        "pid": os.getpid(),
        **extra,
    }
    return json.dumps(line) + "\n"


def app(url: str, prefix: str, *, consume: bool, out: Any = None, slow: bool = False) -> kernel.App:
    store = kernel.redis.resource(
        "redis", shared.Store.from_url(url, prefix=prefix, op_timeout=2.0)
    )
    lane = kernel.lanes.redis(
        "orders.lane",
        store=store,
        events=[placed],
        group="billing",
        consume=consume,
        claim_idle=0.5,
        batch=16,
        secret=SECRET,
    )

    @kernel.hook("bill", on=placed)
    async def bill(emission: kernel.Emission) -> None:
        if slow:
            out.write(_line(emission, phase="start"))
            out.flush()
            await trio.sleep(30.0 if emission.payload.order % 2 else 0.3)
        else:
            await trio.sleep(0.002)  # some work
        out.write(_line(emission))
        out.flush()

    register: list[Any] = [placed, store, lane]
    if consume:
        register.append(bill)
    return kernel.App("crash", register=register)


async def _ready(rt: kernel.Runtime) -> None:
    print("ready", flush=True)
    await trio.sleep_forever()


async def produce(url: str, prefix: str, count: int) -> None:
    async with kernel.run(app(url, prefix, consume=False)) as rt:
        for order in range(count):
            await rt.emit(placed, Placed(order))
    print("produced", count, flush=True)


def main(argv: list[str]) -> None:
    mode, url, prefix, arg = argv
    if mode in ("consume", "consume-slow"):
        with open(arg, "a", encoding="utf-8") as out:
            target = app(url, prefix, consume=True, out=out, slow=mode == "consume-slow")
            kernel.main(target, serve=_ready, drain_timeout=2.0)
    else:
        trio.run(produce, url, prefix, int(arg))


if __name__ == "__main__":
    main(sys.argv[1:])
