"""Fixtures of the lane tests: every conformance test runs once on a memory lane (under a
MockClock) and once on a Redis lane (a throwaway server for the session, a key prefix per
test); `Kit` builds the lane and the app around it."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
import trio.testing

import kernel
from resilience import redis as shared
from tests.resilience.redis.server import RedisServer

_prefixes = itertools.count(1)


@attrs.frozen
class Placed:
    order: str
    amount: int


placed = kernel.event("order.placed", payload=Placed)
untyped = kernel.event("note")


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> object:
    """A MockClock for the memory lane (pytest-trio runs the test on it); nothing for Redis."""
    return trio.testing.MockClock(autojump_threshold=0) if kind == "memory" else object()


@attrs.define
class Kit:
    """Builds a lane of the test's kind: ``lane(**options)``, then ``app(*definitions)``."""

    kind: str
    server: RedisServer | None
    prefix: str
    broker: kernel.lanes.MemoryBroker = attrs.field(factory=kernel.lanes.MemoryBroker)
    #: The store resource of each Redis lane built (by the lane's identity).
    stores: dict[int, kernel.Resource] = attrs.field(factory=dict)

    def store(self) -> shared.Store:
        assert self.server is not None
        return shared.Store.from_url(self.server.url, prefix=self.prefix, op_timeout=2.0)

    def lane(self, lane_id: str = "orders.lane", **options: Any) -> kernel.Resource:
        events = options.pop("events", [placed, untyped])
        if self.kind == "memory":
            options.pop("group", None)
            return kernel.lanes.memory(lane_id, events=events, broker=self.broker, **options)
        group = options.pop("group", "billing")
        store = kernel.redis.resource(f"{lane_id}.redis", self.store())
        lane = kernel.lanes.redis(lane_id, store=store, events=events, group=group, **options)
        self.stores[id(lane)] = store
        return lane

    def app(self, *register: Any) -> kernel.App:
        """An app of the events, ``register`` and the store of each Redis lane in it."""
        stores = [self.stores[id(d)] for d in register if id(d) in self.stores]
        return kernel.App("app", register=[placed, untyped, *stores, *register])


@pytest.fixture
def kit(kind: str, request: pytest.FixtureRequest) -> Kit:
    server = request.getfixturevalue("redis") if kind == "redis" else None
    return Kit(kind, server, f"lanes{next(_prefixes)}")
