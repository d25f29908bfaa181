"""Embed the trio-runner kernel inside an existing trio program.

    python examples/embedded_app.py

The program owns its nursery and its own background work (a heartbeat); the kernel is one
``async with kernel.run(app)`` inside it: resources start in dependency order, tasks get
their dependencies and middleware, hooks react to events, and everything is disposed in
reverse order when the block ends.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

import kernel
import middleware as mw
import resilience as rs


@attrs.frozen
class StoreConfig:
    """How the order store is set up (a dict from a config file works too)."""

    name: str
    capacity: int = 1_000


@attrs.frozen
class NewOrder:
    item: str
    quantity: int = attrs.field(validator=attrs.validators.gt(0))


@attrs.frozen
class OrderPlaced:
    order_id: int
    item: str


order_placed = kernel.event("orders.placed", payload=OrderPlaced)


@kernel.resource("orders.store", config=StoreConfig, deps={"log": kernel.logger})
async def store(config: StoreConfig, *, log: Any) -> Any:
    """An in-memory order store; a real app would open a database here."""
    orders: dict[int, NewOrder] = {}
    log.info("store {} open", config.name)
    yield orders
    log.info("store closed with {} orders", len(orders))


@kernel.resource("orders.outbox", deps={"store": store})
async def outbox(scope: kernel.Scope, *, store: dict[int, NewOrder]) -> Any:
    """Collects notifications and flushes them in the background every second."""
    pending: list[str] = []
    flushed: list[str] = []

    async def flush_forever() -> None:
        while True:
            await trio.sleep(1.0)
            flushed.extend(pending)
            pending.clear()

    scope.nursery.start_soon(flush_forever)  # cancelled when the outbox is disposed
    yield {"pending": pending, "flushed": flushed}


@kernel.task(
    "orders.place",
    input=NewOrder,
    deps={"store": store, "placed": order_placed},
    middleware=[mw.timeout(2.0), mw.retry(attempts=3, wait=rs.backoff.constant(0.1))],
)
async def place_order(order: NewOrder, *, store: dict[int, NewOrder], placed: Any) -> int:
    order_id = len(store) + 1
    store[order_id] = order
    await placed(OrderPlaced(order_id, order.item))
    return order_id


@kernel.hook("orders.notify", on=order_placed, deps={"outbox": outbox})
async def notify(emission: kernel.Emission, *, outbox: dict[str, list[str]]) -> None:
    outbox["pending"].append(f"order {emission.payload.order_id}: {emission.payload.item}")


app = kernel.App(
    "shop",
    register=[
        store.with_config({"name": "main", "capacity": 100}),
        outbox,
        order_placed,
        place_order,
        notify,
    ],
)


async def main() -> None:
    beats: list[float] = []

    async def heartbeat() -> None:  # the host program's own background work
        while True:
            beats.append(trio.current_time())
            await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat)
        async with kernel.run(app) as rt:
            first = await rt.run_task(place_order, {"item": "tea", "quantity": 2})
            second = await rt.run_task(place_order, NewOrder("cake", 1))
            try:
                await rt.run_task(place_order, {"item": "tea", "quantity": 0})
            except kernel.ConfigError as exc:
                print(f"refused: {exc}")
            box = rt.resource(outbox)
            print(f"placed orders {first} and {second}; pending {box['pending']}")
            await trio.sleep(1.5)
            print(f"after the background flush: {box['flushed']}")
        print(f"the kernel is disposed; the program's heartbeat went on ({len(beats)} beats)")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
