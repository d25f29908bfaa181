"""`reclaim` keeps a cursor: idle entries behind a long run of live ones (Redis looks at
``count * 10`` pending entries per ``XAUTOCLAIM``) are reached by the calls that follow,
and the scan starts over at the end. The same on both brokers."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import trio

from kernel.lanes import MemoryBroker
from kernel.lanes._broker import Broker
from kernel.lanes._redis import RedisBroker
from resilience import redis as shared

_streams = itertools.count(1)
IDLE = 1.0  # seconds; real time on Redis, the MockClock's on memory


@pytest.fixture
async def broker(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    if kind == "memory":
        yield MemoryBroker()
        return
    server = request.getfixturevalue("redis")
    async with shared.Store.from_url(server.url, prefix="cursor", op_timeout=2.0) as store:
        yield RedisBroker(store, f"cursor:{next(_streams)}", "g")


async def test_reclaim_scans_on_past_live_entries_then_starts_over(
    broker: Broker, clock: object
) -> None:
    await broker.prepare()
    ids = [await broker.add({"n": str(n)}) for n in range(30)]
    assert [e.id for e in await broker.read("c1", 30, 0.0)] == ids
    await trio.sleep(IDLE + 0.1)
    await broker.touch("c1", ids[:25])  # c1 still runs the first 25; the last 5 are idle

    # One entry a call: 10 looked at per call, so two calls find nothing, the third the
    # first idle one; the next ones follow, each starting after the last.
    taken = [[e.id for e in await broker.reclaim("c2", IDLE, 1)] for _ in range(7)]
    assert taken == [[], [], [ids[25]], [ids[26]], [ids[27]], [ids[28]], [ids[29]]]
    # The end was reached: this call starts over and looks at the oldest 10, all live.
    assert await broker.reclaim("c2", IDLE, 1) == []

    await trio.sleep(IDLE + 0.1)  # now all 30 are idle
    # On from the 11th to the end, then over again from the start.
    later = await broker.reclaim("c2", IDLE, 30)
    assert [e.id for e in later] == ids[10:]
    first = await broker.reclaim("c2", IDLE, 30)
    assert [e.id for e in first] == ids[:10]
    attempts = {e.id: e.attempt for e in [*later, *first]}
    assert attempts == {mid: 3 if mid in ids[25:] else 2 for mid in ids}  # each delivery counts
