from __future__ import annotations

from typing import Any

import pytest
import trio
from loguru import logger

import middleware as mw
import resilience as rs
from middleware.observability import log


@pytest.fixture
def records() -> Any:
    seen: list[Any] = []
    sink = logger.add(lambda m: seen.append(m.record), level="DEBUG")
    yield seen
    logger.remove(sink)


async def test_success_is_logged_with_source_outcome_duration_and_attempts(
    autojump_clock, records
) -> None:
    calls = 0

    @mw.apply(log(), mw.retry(attempts=2, wait=rs.backoff.constant(0.25)))
    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        if calls == 1:
            raise ConnectionError
        return "ok"

    assert await fetch() == "ok"
    [record] = records
    assert record["level"].name == "DEBUG"
    assert record["extra"]["source"].endswith(".fetch")
    assert record["extra"]["data"] == {"outcome": "success", "duration_ms": 2250.0, "attempt": 2}
    assert record["message"].endswith("fetch succeeded in 2250.0 ms")


async def test_failure_is_logged_with_the_exception(records) -> None:
    @mw.apply(log(error_level="warning"), mw.cache(ttl=1))
    async def broken(x: int) -> None:
        raise KeyError(x)

    with pytest.raises(KeyError):
        await broken(1)
    [record] = records
    assert record["level"].name == "WARNING"
    assert record["exception"].type is KeyError
    assert record["extra"]["data"]["outcome"] == "error"
    assert record["extra"]["data"]["cache_hit"] is False


async def test_cancellation_is_logged_and_propagates(autojump_clock, records) -> None:
    seen_sources: list[str] = []

    def custom(source: str) -> Any:
        seen_sources.append(source)
        return logger.bind(source=f"custom:{source}")

    wrapped = mw.Pipeline([log(level="info", logger=custom)]).wrap(trio.sleep, target_id="nap")
    with trio.move_on_after(1) as scope:
        await wrapped(5)
    assert scope.cancelled_caught
    assert seen_sources == ["nap"]
    [record] = records
    assert record["extra"]["source"] == "custom:nap"
    assert record["extra"]["data"] == {"outcome": "cancelled", "duration_ms": 1000.0}


@pytest.mark.parametrize("kwargs", [{"level": "LOUD"}, {"error_level": "nope"}])
def test_levels_are_checked(kwargs: dict[str, str]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"mw.log: {name} must be a loguru level name"):
        log(**kwargs)
