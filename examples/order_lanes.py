"""An order service emits ``order.placed`` on an event lane; a separate billing process
consumes it (Redis Streams, at least once, signed envelopes, retries).

    .venv/bin/python examples/order_lanes.py           # REDIS_URL=redis://host:6379/0 to use yours

Without ``REDIS_URL`` it starts a throwaway ``redis-server`` (no persistence, a free local
port) and says so. This process is the order service: it starts the billing process, places
five orders (``await rt.emit`` returns once Redis has each), waits until the lane has nothing
pending, then stops billing with SIGTERM (a graceful shutdown). The card of order ``A-3`` is
declined once: billing's hook fails, and the lane delivers the message again (attempt 2).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from typing import Any

import attrs
import trio
from throwaway_redis import redis_url

import kernel
from resilience import redis as shared

#: Both processes sign and check every envelope with this key (from a secret store in real life).
SECRET = b"example-lane-secret-0123456789"
ORDERS = [("A-1", 30), ("A-2", 12), ("A-3", 99), ("A-4", 7), ("A-5", 45)]


@attrs.frozen
class OrderPlaced:
    order_id: str
    amount: int


order_placed = kernel.event("order.placed", payload=OrderPlaced)


def lane_for(url: str, prefix: str, *, consume: bool) -> tuple[kernel.Resource, kernel.Resource]:
    """The store resource and the lane, the same in both processes (billing consumes)."""
    store = kernel.redis.resource("redis", shared.Store.from_url(url, prefix=prefix))
    lane = kernel.lanes.redis(
        "orders.lane",
        store=store,
        events=[order_placed],
        group="billing",
        consume=consume,
        secret=SECRET,
        retry_delay=0.2,
        max_attempts=3,
    )
    return store, lane


# --------------------------------------------------------------------- the billing process


def billing_app(url: str, prefix: str) -> kernel.App:
    store, lane = lane_for(url, prefix, consume=True)
    billed: list[str] = []

    @kernel.hook("billing.charge", on=order_placed)
    async def charge(emission: kernel.Emission) -> None:
        order, delivery = emission.payload, emission.delivery
        assert delivery is not None  # it came over the lane
        if order.order_id == "A-3" and delivery.attempt == 1:
            print(f"billing: card declined for {order.order_id}, the lane will retry", flush=True)
            raise RuntimeError("card declined")
        billed.append(order.order_id)
        print(
            f"billing: charged {order.amount} for {order.order_id} "
            f"(message {delivery.message_id}, attempt {delivery.attempt})",
            flush=True,
        )

    @kernel.hook("billing.report", on=kernel.events.disposing)
    async def report(emission: kernel.Emission) -> None:
        print(f"billing: {len(billed)} orders billed, shutting down", flush=True)

    return kernel.App("billing", register=[order_placed, store, lane, charge, report])


async def _billing_ready(rt: kernel.Runtime) -> None:
    print("billing: ready", flush=True)
    await trio.sleep_forever()


# --------------------------------------------------------------------- the order service


async def order_service(url: str) -> None:
    prefix = f"lanes-example-{uuid.uuid4().hex[:8]}"
    store, lane = lane_for(url, prefix, consume=False)

    @kernel.task("orders.place", deps={"placed": order_placed})
    async def place(order_id: str, amount: int, *, placed: Any) -> None:
        await placed(OrderPlaced(order_id, amount))  # returns once Redis has it

    app = kernel.App("orders", register=[order_placed, store, lane, place])
    command = [sys.executable, __file__, "--billing", url, prefix]
    done: list[subprocess.CompletedProcess[bytes]] = []

    async def billing(task_status: trio.TaskStatus[trio.Process]) -> None:
        done.append(await trio.run_process(command, task_status=task_status, check=False))

    async with kernel.run(app) as rt, trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(billing)
        for order_id, amount in ORDERS:
            await rt.run_task(place, order_id, amount)
        print(f"orders: placed {len(ORDERS)} orders on the lane")
        value: kernel.lanes.Lane = rt.resource(lane)
        for _ in range(600):  # up to 30 s: a look at the stream every 50 ms
            if not await value.pending():
                break
            await trio.sleep(0.05)
        letters = await value.dead_letters()
        print(f"orders: nothing pending on the lane, {len(letters)} dead letters")
        process.send_signal(signal.SIGTERM)
    print(f"billing exited with {done[0].returncode}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--billing"]:
        _, _, url, prefix = sys.argv
        kernel.main(billing_app(url, prefix), serve=_billing_ready, drain_timeout=5.0)
    else:
        with redis_url("lanes") as url:
            trio.run(order_service, url)
