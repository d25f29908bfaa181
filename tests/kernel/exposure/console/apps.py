"""A small app for the console's tests: tasks guarded by a breaker, a limiter and a
bulkhead, a health check that can be broken, a durable workflow waiting for a signal, and
(optionally) a lane-like resource."""

from __future__ import annotations

from typing import Any

import attrs

import kernel
import middleware as mw
from kernel import durable

approved: durable.Signal[Any] = durable.signal("shop.approved")
ENGINE = durable.engine("shop.durable", store=durable.MemoryStore(), polling_interval=0.05)


@attrs.define
class Switch:
    """A health check's fault, set by the test."""

    broken: bool = False


async def check(switch: Switch) -> None:
    if switch.broken:
        raise ConnectionError("the warehouse does not answer")


@kernel.resource("shop.warehouse", health=check)
async def warehouse() -> Switch:
    return Switch()


@attrs.frozen
class Order:
    item: str


@kernel.task(
    "shop.buy",
    input=Order,
    deps={"warehouse": warehouse},
    middleware=[mw.circuit_breaker(failure_threshold=2, reset_timeout=30.0, name="payments")],
)
async def buy(order: Order, *, warehouse: Switch) -> str:
    if order.item == "fail":
        raise RuntimeError("declined")
    return f"bought {order.item}"


@kernel.task("shop.limited", middleware=[mw.rate_limit(rate=100.0), mw.bulkhead(max_concurrent=3)])
async def limited() -> int:
    return 1


@kernel.task(
    "shop.approval",
    input=Order,
    deps={"engine": ENGINE},
    tags=[durable.workflow()],
)
async def approval(order: Order, *, engine: durable.Engine) -> dict[str, Any]:
    ctx = engine.context()

    async def reserve() -> str:
        return f"reserved {order.item}"

    reserved = await ctx.step("reserve", reserve)
    answer = await ctx.wait_for_signal(approved, timeout=3600.0)
    return {"reserved": reserved, "approved": answer.payload}


placed = kernel.event("shop.placed")


@kernel.hook("shop.notify", on=placed, deps={"warehouse": warehouse})
async def notify(emission: kernel.Emission, *, warehouse: Switch) -> None:
    pass


DEFINITIONS = (warehouse, buy, limited, ENGINE, approval, placed, notify)


def fresh_store() -> kernel.Override:
    """The override giving `ENGINE` a store of its own (one per test)."""
    return kernel.override(
        ENGINE, durable.engine("shop.durable", store=durable.MemoryStore(), polling_interval=0.05)
    )
