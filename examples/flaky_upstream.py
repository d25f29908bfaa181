"""Call a flaky, slow, rate-limited upstream through trio-runner's resilience primitives.

    make run        # or: python examples/flaky_upstream.py

A simulated pricing service fails now and then, is sometimes slow, has a quota and goes
down for a while. Six short scenes show what each primitive does about it, from the events
they report to `rs.observe`. The upstream is seeded, so a run tells the same story each time.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable

import attrs
import trio

import resilience as rs


class Throttled(Exception):
    """The upstream's 429: come back after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"quota exceeded, retry after {retry_after:.3f} s")
        self.retry_after = retry_after


@attrs.define
class Upstream:
    """A pricing service: ``failure_rate`` of calls fail, ``slow_rate`` take 0.5 s, at most
    ``quota`` calls per second are accepted, and nothing works before ``down_until``."""

    rng: random.Random = attrs.Factory(lambda: random.Random(7))
    failure_rate: float = 0.25
    slow_rate: float = 0.0
    quota: int = 1_000
    down_until: float = float("-inf")
    calls: int = 0
    accepted: list[float] = attrs.Factory(list)

    async def price(self, sku: str) -> float:
        self.calls += 1
        now = trio.current_time()
        recent = [t for t in self.accepted if t > now - 1.0]
        if len(recent) >= self.quota:
            raise Throttled(retry_after=recent[0] + 1.0 - now)
        self.accepted = [*recent, now]
        if now < self.down_until:
            await trio.sleep(0.002)
            raise ConnectionError("upstream unavailable")
        await trio.sleep(0.5 if self.rng.random() < self.slow_rate else 0.01)
        if self.rng.random() < self.failure_rate:
            raise ConnectionError("connection reset by peer")
        return 10.0 + 1.5 * len(sku)


@attrs.define
class Tally:
    """Counts the events the primitives report; remembers circuit transitions."""

    started: float = 0.0
    kinds: Counter[str] = attrs.Factory(Counter)
    transitions: list[str] = attrs.Factory(list)

    def __call__(self, event: rs.Event) -> None:
        self.kinds[event.kind] += 1
        if event.kind == "circuit.state_changed":
            at = (event.time or 0.0) - self.started
            self.transitions.append(f"{event.data['old']} -> {event.data['new']} at {at:.2f} s")

    def reset(self) -> None:
        self.kinds.clear()
        self.transitions.clear()
        self.started = trio.current_time()


def say(line: str = "") -> None:
    print(line, flush=True)


async def scene_retry(tally: Tally) -> None:
    upstream = Upstream(failure_rate=0.4, slow_rate=0.15)
    timeout = rs.Timeout(0.1)
    retry = rs.Retry(
        attempts=5,
        wait=rs.backoff.exponential(initial=0.01, maximum=0.2),
        on=(ConnectionError, rs.TimeoutExceeded),
    )
    ok = failed = 0
    for n in range(20):
        try:
            await retry.call(timeout.call, upstream.price, f"sku-{n}")
            ok += 1
        except (ConnectionError, rs.TimeoutExceeded):
            failed += 1
    say("1. Retry + Timeout: 20 lookups, 40 % of calls fail and 15 % are too slow")
    say(
        f"   {ok} succeeded, {failed} gave up; {upstream.calls} upstream calls, "
        f"{tally.kinds['retry.attempt']} retries, {tally.kinds['timeout.exceeded']} timeouts"
    )


async def scene_cache(tally: Tally) -> None:
    upstream = Upstream(failure_rate=0.0)
    cache = rs.Cache(ttl=60.0, max_size=100)
    for n in range(50):
        await cache.get_or_compute(f"sku-{n % 5}", upstream.price, f"sku-{n % 5}")
    stats = cache.statistics()
    say("2. Cache: 50 lookups over 5 SKUs")
    say(f"   {stats.hits} hits, {stats.misses} misses; the upstream saw {upstream.calls} calls")


async def scene_circuit(tally: Tally) -> None:
    upstream = Upstream(failure_rate=0.0, down_until=trio.current_time() + 0.3)
    breaker = rs.CircuitBreaker(failure_threshold=3, reset_timeout=0.1, name="pricing")
    last_known = rs.Fallback(value=-1.0, on=(ConnectionError, rs.CircuitOpen))
    served = Counter[str]()
    for _ in range(40):
        price = await last_known.call(breaker.call, upstream.price, "sku-1")
        served["fallback" if price < 0 else "live"] += 1
        await trio.sleep(0.02)
    say("3. Circuit breaker + Fallback: the upstream is down for 0.3 s, one call every 20 ms")
    say(
        f"   {served['live']} live answers, {served['fallback']} fallbacks, "
        f"{tally.kinds['circuit.rejected']} calls rejected without touching the upstream "
        f"({upstream.calls} upstream calls in all)"
    )
    for transition in tally.transitions:
        say(f"   circuit {transition}")


async def scene_rate_limit(tally: Tally) -> None:
    upstream = Upstream(failure_rate=0.0, quota=20)
    limiter = rs.RateLimiter(rate=20, per=1.0, algorithm="sliding_window")
    throttled = 0

    async def one(n: int) -> None:
        nonlocal throttled
        await limiter.acquire()
        try:
            await upstream.price(f"sku-{n}")
        except Throttled:
            throttled += 1

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n in range(30):
            nursery.start_soon(one, n)
    elapsed = trio.current_time() - start
    say("4. Rate limiter: a burst of 30 calls against a quota of 20 per second")
    say(
        f"   {tally.kinds['ratelimit.waited']} callers waited for a permit; all done in "
        f"{elapsed:.2f} s; the upstream throttled {throttled} calls"
    )


async def scene_bulkhead(tally: Tally) -> None:
    upstream = Upstream(failure_rate=0.0)
    bulkhead = rs.Bulkhead(max_concurrent=3, max_queued=3)
    rejected = 0

    async def one(n: int) -> None:
        nonlocal rejected
        try:
            await bulkhead.call(upstream.price, f"sku-{n}")
        except rs.BulkheadFull:
            rejected += 1

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(one, n)
    say("5. Bulkhead: 10 concurrent calls, 3 slots and 3 queue places")
    say(f"   {10 - rejected} ran, {rejected} were turned away at once")


async def scene_hedge(tally: Tally) -> None:
    latencies: dict[str, list[float]] = {"plain": [], "hedged": []}
    hedge = rs.Hedge(delay=0.05, max_attempts=2)
    for mode, call in (("plain", _direct), ("hedged", hedge.call)):
        upstream = Upstream(rng=random.Random(3), failure_rate=0.0, slow_rate=0.2)
        for n in range(15):
            start = trio.current_time()
            await call(upstream.price, f"sku-{n}")
            latencies[mode].append(trio.current_time() - start)
    say("6. Hedge: 20 % of calls take 0.5 s; a second attempt starts after 50 ms")
    say(
        f"   slowest call: {max(latencies['plain']):.2f} s plain, "
        f"{max(latencies['hedged']):.2f} s hedged ({tally.kinds['hedge.attempt']} hedges)"
    )


async def _direct(fn: Callable[[str], Awaitable[float]], sku: str) -> float:
    return await fn(sku)


async def main() -> None:
    tally = Tally()
    say("trio-runner resilience, against a simulated flaky upstream")
    say()
    with rs.observe(tally):
        for scene in (
            scene_retry,
            scene_cache,
            scene_circuit,
            scene_rate_limit,
            scene_bulkhead,
            scene_hedge,
        ):
            tally.reset()
            await scene(tally)
            say()


if __name__ == "__main__":
    trio.run(main)
