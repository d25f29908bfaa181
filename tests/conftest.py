from __future__ import annotations

from collections.abc import Iterator

import pytest

from middleware.observability import MetricsRegistry, default_registry
from resilience import Event, _observe
from tests.resilience.redis.server import RedisServer, redis_server


@pytest.fixture
def events() -> Iterator[list[Event]]:
    """Every event the primitives report during the test, in order."""
    seen: list[Event] = []
    with _observe.observe(seen.append):
        yield seen


@pytest.fixture
def registry() -> MetricsRegistry:
    """A fresh metrics registry."""
    return MetricsRegistry()


@pytest.fixture
def clean_default() -> Iterator[MetricsRegistry]:
    """The process-wide registry, emptied before and after the test."""
    default_registry.reset()
    yield default_registry
    default_registry.reset()


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """The session's throwaway redis-server, shared by every suite that needs one (never
    killed: tests that kill one use `own_redis`); each test keeps to a key prefix of its own."""
    with redis_server() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server for this test alone, which it may kill, restart or pause."""
    with redis_server() as server:
        yield server
