"""Decorate plain async functions with a full resilience stack, using ``@mw.apply``.

    python examples/decorate_functions.py

The functions call an inventory service with a real ``httpx.AsyncClient``; the service is a
simulated flaky server behind ``httpx.MockTransport`` (no network): it answers 503 with a
``Retry-After`` now and then, sometimes hangs, and goes down for a while.
"""

from __future__ import annotations

import random
from collections import Counter

import attrs
import httpx
import trio

import middleware as mw
import resilience as rs


class Unavailable(Exception):
    """The service answered 503; ``retry_after`` is its hint, in seconds."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("service unavailable")
        self.retry_after = retry_after


@attrs.define
class FlakyInventory:
    """The simulated server: 20 % 503s with Retry-After, 10 % hangs, down before ``down_until``."""

    rng: random.Random = attrs.Factory(lambda: random.Random(11))
    down_until: float = float("-inf")
    requests: int = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if trio.current_time() < self.down_until:
            raise httpx.ConnectError("connection refused", request=request)
        roll = self.rng.random()
        if roll < 0.2:
            return httpx.Response(503, headers={"Retry-After": "0.05"})
        await trio.sleep(5.0 if roll < 0.3 else 0.01)
        sku = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"sku": sku, "count": len(sku) * 3, "price": 9.5})


def retry_after(exc: Exception) -> float | None:
    return exc.retry_after if isinstance(exc, Unavailable) else None


async def get_json(client: httpx.AsyncClient, path: str) -> dict[str, object]:
    response = await client.get(path)
    if response.status_code == 503:
        raise Unavailable(float(response.headers.get("Retry-After", 1.0)))
    response.raise_for_status()
    data: dict[str, object] = response.json()
    return data


# The whole stack, outermost first: a 2 s budget for everything; None once the circuit is
# open; up to 4 attempts honouring Retry-After; a breaker; 50 calls/s; 0.3 s per attempt.
@mw.apply(
    mw.timeout(2.0),
    mw.fallback(value=None, on=(rs.CircuitOpen, rs.TimeoutExceeded, httpx.TransportError)),
    mw.retry(
        attempts=4,
        wait=rs.backoff.exponential(initial=0.05, maximum=0.5),
        on=(httpx.TransportError, Unavailable, rs.TimeoutExceeded),
        retry_after=retry_after,
    ),
    mw.circuit_breaker(failure_threshold=3, reset_timeout=0.5),
    mw.rate_limit(rate=50, per=1.0),
    mw.timeout(0.3),
)
async def stock(client: httpx.AsyncClient, sku: str) -> int | None:
    """How many of ``sku`` are in stock, or None when the service cannot say."""
    data = await get_json(client, f"/stock/{sku}")
    count = data["count"]
    assert isinstance(count, int)
    return count


# Prices change rarely: cache them per SKU (the client is not part of the key).
@mw.apply(
    mw.cache(ttl=60.0, key=lambda call: call.args[1]),
    mw.retry(attempts=5, wait=rs.backoff.constant(0.05), on=(Unavailable, rs.TimeoutExceeded)),
    mw.timeout(0.3),
)
async def price(client: httpx.AsyncClient, sku: str) -> float:
    data = await get_json(client, f"/price/{sku}")
    value = data["price"]
    assert isinstance(value, float)
    return value


async def main() -> None:
    server = FlakyInventory()
    events: Counter[str] = Counter()
    transitions: list[str] = []

    def tally(event: rs.Event) -> None:
        events[event.kind] += 1
        if event.kind == "circuit.state_changed":
            transitions.append(f"{event.data['old']} -> {event.data['new']}")

    transport = httpx.MockTransport(server.handle)
    async with httpx.AsyncClient(transport=transport, base_url="http://inventory.test") as client:
        with rs.observe(tally):
            answers = [await stock(client, f"sku-{n}") for n in range(12)]
            server.down_until = trio.current_time() + 1.0
            during_outage = [await stock(client, "sku-x") for _ in range(6)]
            await trio.sleep(1.0)
            after_outage = []
            for n in range(4):
                after_outage.append(await stock(client, f"sku-{n}"))
                await trio.sleep(0.6)  # more than reset_timeout: a re-opened circuit probes again
            prices = [await price(client, f"sku-{n % 3}") for n in range(9)]

    print("@mw.apply: plain async functions behind a full resilience stack")
    print(f"  stock, normal service: {sum(a is not None for a in answers)} of 12 answered")
    print(f"  stock, during an outage: {during_outage} (None = fallback)")
    print(f"  stock, after the outage: {after_outage}")
    print(f"  circuit: {', '.join(transitions)}; now {stock.breaker.state.value}")  # type: ignore[attr-defined]
    statistics = price.cache.statistics()  # type: ignore[attr-defined]
    print(f"  prices: {prices[:3]}, cache {statistics.hits} hits / {statistics.misses} misses")
    print(
        f"  events: {events['retry.attempt']} retries, {events['timeout.exceeded']} timeouts, "
        f"{events['circuit.rejected']} rejections; {server.requests} requests reached the server"
    )


if __name__ == "__main__":
    trio.run(main)
