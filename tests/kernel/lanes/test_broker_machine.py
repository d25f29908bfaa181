"""The memory stream against Redis's: one random sequence of operations on both, the same
answers (entry ids mapped one to one), the same pending counts and dead letters."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kernel.lanes import MemoryBroker
from kernel.lanes._redis import RedisBroker
from resilience import redis as shared
from tests.resilience.redis.server import RedisServer

_streams = itertools.count(1)
consumers = st.sampled_from(["c1", "c2"])


class Streams(RuleBasedStateMachine):
    """Both brokers, driven by the same rules; each step is one trio run (a MockClock kept
    across them, so the memory broker's idle times stay consistent)."""

    url: str

    def __init__(self) -> None:
        super().__init__()
        self.clock = trio.testing.MockClock()
        self.memory = MemoryBroker()
        self.stream = f"machine:{next(_streams)}"
        self.ids: dict[str, str] = {}  # memory id -> redis id
        self.known: list[str] = []  # memory ids, oldest first

    def both(self, op: Callable[[Any], Awaitable[Any]]) -> tuple[Any, Any]:
        async def run() -> tuple[Any, Any]:
            store = shared.Store.from_url(self.url, prefix="machine", op_timeout=5.0)
            async with store:
                redis = RedisBroker(store, self.stream, "g")
                return await op(self.memory), await op(redis)

        return trio.run(run, clock=self.clock)

    @initialize()
    def prepare(self) -> None:
        self.both(lambda broker: broker.prepare())

    @rule(n=st.integers(0, 99))
    def add(self, n: int) -> None:
        memory_id, redis_id = self.both(lambda broker: broker.add({"n": str(n)}))
        self.ids[memory_id] = redis_id
        self.known.append(memory_id)

    @rule(consumer=consumers, count=st.integers(1, 3))
    def read(self, consumer: str, count: int) -> None:
        memory, redis = self.both(lambda broker: broker.read(consumer, count, 0.0))
        assert [self.ids[e.id] for e in memory] == [e.id for e in redis]
        assert [e.attempt for e in memory] == [e.attempt for e in redis] == [1] * len(memory)
        assert [dict(e.fields) for e in memory] == [
            {k.decode(): v.decode() for k, v in e.fields.items()} for e in redis
        ]

    def _pick(self, data: st.DataObject) -> str | None:
        return data.draw(st.sampled_from(self.known)) if self.known else None

    @rule(data=st.data(), consumer=consumers)
    def claim(self, data: st.DataObject, consumer: str) -> None:
        mid = self._pick(data)
        if mid is not None:
            ids = {id(self.memory): mid}
            memory, redis = self.both(
                lambda broker: broker.claim(consumer, ids.get(id(broker), self.ids[mid]), 0.0)
            )
            assert memory == redis

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        mid = self._pick(data)
        if mid is not None:
            ids = {id(self.memory): mid}
            self.both(lambda broker: broker.ack(ids.get(id(broker), self.ids[mid])))

    @rule(data=st.data())
    def bury(self, data: st.DataObject) -> None:
        mid = self._pick(data)
        if mid is not None:
            ids = {id(self.memory): mid}
            record = {"message_id": mid, "envelope": '["n", "buried"]'}
            memory, redis = self.both(
                lambda broker: broker.bury(ids.get(id(broker), self.ids[mid]), record)
            )
            assert memory == redis

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        mid = self._pick(data)
        if mid is not None:
            ids = {id(self.memory): mid}
            memory, redis = self.both(
                lambda broker: broker.replay(ids.get(id(broker), self.ids[mid]))
            )
            assert (memory is None) == (redis is None)
            if memory is not None:
                self.ids[memory] = redis
                self.known.append(memory)

    @invariant()
    def same_pending_and_dead_letters(self) -> None:
        if not hasattr(self, "stream"):
            return
        memory, redis = self.both(lambda broker: broker.pending())
        assert memory == redis
        memory, redis = self.both(lambda broker: broker.dead_letters(100))
        assert memory == redis


@pytest.mark.slow
def test_the_memory_stream_behaves_as_redis(redis: RedisServer) -> None:
    Streams.url = redis.url
    run = Streams.TestCase
    run.settings = settings(
        max_examples=10,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    run().runTest()
