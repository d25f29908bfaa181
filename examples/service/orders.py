"""The order service's domain: an order store, a flaky payment provider, tasks and a hook."""

from __future__ import annotations

import itertools
import random
from typing import Any

import attrs
import trio

import kernel
import middleware as mw
import resilience as rs


@attrs.frozen
class NewOrder:
    """What a client sends to place an order."""

    item: str = attrs.field(validator=attrs.validators.min_len(1))
    quantity: int = attrs.field(validator=attrs.validators.gt(0))


@attrs.frozen
class Order:
    """A placed order."""

    id: int
    item: str
    quantity: int
    status: str


@attrs.frozen
class OrderId:
    id: int


class OrderNotFound(kernel.PublicError):
    """No order has that id (a 404 for HTTP callers)."""

    http_status = 404
    code = "order_not_found"


class PaymentDeclined(Exception):
    """The payment provider said no, for now."""


@attrs.frozen
class PaymentsConfig:
    """The simulated payment provider: how often it fails and how slow it is."""

    failure_rate: float = 0.3
    latency: float = 0.05
    seed: int | None = None


order_placed = kernel.event("orders.placed", payload=Order)


@kernel.resource("orders.store", deps={"log": kernel.logger})
async def store(*, log: Any) -> Any:
    """Orders by id, in memory."""
    orders: dict[int, Order] = {}
    yield orders
    log.info("closing the store with {} order(s)", len(orders))


async def payments_healthy(charge: Any) -> None:
    """The provider answers (a real check would call its status endpoint)."""


@kernel.resource(
    "payments.provider",
    config=PaymentsConfig,
    tags=[kernel.tags.external_io],
    health=payments_healthy,
)
async def payments(config: PaymentsConfig) -> Any:
    """A payment provider that declines now and then: the resilience stack rides it out."""
    rng = random.Random(config.seed)

    async def charge(item: str, amount: int) -> str:
        await trio.sleep(config.latency)
        if rng.random() < config.failure_rate:
            raise PaymentDeclined(f"payment of {amount} for {item} declined, try again")
        return f"paid {amount}"

    return charge


_ids = itertools.count(1)


def next_order_id() -> int:
    """A new order id (this process's counter: ids start at 1 again after a restart)."""
    return next(_ids)


@kernel.task(
    "orders.create",
    input=NewOrder,
    result=Order,
    deps={"store": store, "charge": payments, "placed": order_placed},
    middleware=[
        mw.timeout(5.0),
        mw.retry(attempts=4, wait=rs.backoff.exponential(0.05, 1.0), on=PaymentDeclined),
        mw.circuit_breaker(failure_threshold=5, reset_timeout=10.0),
    ],
)
async def create_order(
    order: NewOrder, *, store: dict[int, Order], charge: Any, placed: Any
) -> Order:
    """Charge the payment provider, store the order, announce it."""
    await charge(order.item, order.quantity * 10)  # retried on PaymentDeclined
    created = Order(next_order_id(), order.item, order.quantity, "paid")
    store[created.id] = created
    await placed(created)
    return created


@kernel.task("orders.get", input=OrderId, result=Order, deps={"store": store})
async def get_order(ask: OrderId, *, store: dict[int, Order]) -> Order:
    """An order by id; 404 when there is none."""
    try:
        return store[ask.id]
    except KeyError:
        raise OrderNotFound(f"no order {ask.id}") from None


@kernel.hook("orders.confirm", on=order_placed, deps={"log": kernel.logger})
async def confirm(emission: kernel.Emission, *, log: Any) -> None:
    """Would send a confirmation e-mail."""
    order: Order = emission.payload
    log.bind(data={"order_id": order.id}).info("confirmation sent for order {}", order.id)


def app(payments_config: PaymentsConfig | None = None) -> kernel.App:
    """The order domain as an App (without HTTP or approvals: see ``__main__``)."""
    return kernel.App(
        "orders",
        register=[
            store,
            payments.with_config(payments_config or PaymentsConfig()),
            order_placed,
            create_order,
            get_order,
            confirm,
        ],
    )
