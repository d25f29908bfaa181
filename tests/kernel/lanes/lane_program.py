"""One process of the lane crash tests (``test_processes.py``).

    python -m tests.kernel.lanes.lane_program consume URL PREFIX OUT
    python -m tests.kernel.lanes.lane_program produce URL PREFIX COUNT

A consumer runs the lane's hook for every ``order.placed`` and appends one JSON line per
run to OUT (order, message id, attempt, pid), flushed at once, then runs until SIGTERM
(``kernel.main``). It prints ``ready`` once its consumer reads. A producer emits COUNT
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


def app(url: str, prefix: str, *, consume: bool, out: Any = None) -> kernel.App:
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
        assert emission.delivery is not None
        await trio.sleep(0.002)  # some work
        line = {
            "order": emission.payload.order,
            "message_id": emission.delivery.message_id,
            "attempt": emission.delivery.attempt,
            "pid": os.getpid(),
        }
        out.write(json.dumps(line) + "\n")
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
    if mode == "consume":
        with open(arg, "a", encoding="utf-8") as out:
            kernel.main(app(url, prefix, consume=True, out=out), serve=_ready, drain_timeout=2.0)
    else:
        trio.run(produce, url, prefix, int(arg))


if __name__ == "__main__":
    main(sys.argv[1:])
