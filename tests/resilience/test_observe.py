from __future__ import annotations

import pytest
import trio
from loguru import logger

import resilience as rs
from resilience import Retry, _observe
from resilience.backoff import constant


async def boom() -> None:
    raise ValueError("boom")


async def test_listener_receives_events_until_unsubscribed(autojump_clock) -> None:
    seen: list[rs.Event] = []
    subscription = rs.observe(seen.append)
    with pytest.raises(ValueError, match="boom"):
        await Retry(attempts=2, wait=constant(0)).call(boom)
    subscription.unsubscribe()
    subscription.unsubscribe()  # a second time does nothing
    with pytest.raises(ValueError, match="boom"):
        await Retry(attempts=2, wait=constant(0)).call(boom)
    assert [e.kind for e in seen] == ["retry.attempt", "retry.gave_up"]
    assert not _observe.listeners
    assert not _observe.active


async def test_failing_listener_is_logged_and_does_not_change_the_call(autojump_clock) -> None:
    messages: list[str] = []
    sink = logger.add(messages.append, level="ERROR", format="{message}")

    def broken(event: rs.Event) -> None:
        raise RuntimeError("listener bug")

    try:
        with rs.observe(broken), pytest.raises(ValueError, match="boom"):
            await Retry(attempts=2, wait=constant(0)).call(boom)
    finally:
        logger.remove(sink)
    assert len(messages) == 2
    assert "failed on retry.attempt" in messages[0]


def test_events_outside_a_trio_run_have_no_time() -> None:
    seen: list[rs.Event] = []
    with rs.observe(seen.append):
        _observe.emit("custom.kind", "me", value=1)
    assert seen == [rs.Event("custom.kind", "me", {"value": 1}, None)]


async def test_events_inside_trio_carry_trio_time(autojump_clock) -> None:
    await trio.sleep(4)
    seen: list[rs.Event] = []
    with rs.observe(seen.append):
        _observe.emit("custom.kind", None)
    assert seen[0].time == 4.0


def test_listener_must_be_callable() -> None:
    with pytest.raises(TypeError, match="observe: listener must be callable"):
        rs.observe("not callable")  # type: ignore[arg-type]


async def test_a_registry_sees_only_the_events_of_its_context(autojump_clock) -> None:
    first, second = rs.Listeners(), rs.Listeners()
    seen: dict[str, list[str | None]] = {"first": [], "second": [], "everyone": []}
    kept = first.observe(lambda e: seen["first"].append(e.source))
    handle = second.observe(lambda e: seen["second"].append(e.source))
    breaker = rs.CircuitBreaker(failure_threshold=1, name="shared")

    async def time_out(source: str) -> None:
        with pytest.raises(rs.TimeoutExceeded):
            await rs.Timeout(0.1, name=source).call(trio.sleep_forever)

    async def report(registry: rs.Listeners, source: str) -> None:
        with registry.applied():
            async with trio.open_nursery() as nursery:  # tasks started here inherit it
                nursery.start_soon(time_out, source)
            if source == "a":
                breaker.isolate()
            else:
                await trio.sleep(1)
                breaker.reset()

    with rs.observe(lambda e: seen["everyone"].append(e.source)):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, first, "a")
            nursery.start_soon(report, second, "b")
    handle.unsubscribe()
    with second.applied():
        breaker.isolate()

    assert seen["first"] == ["a", "shared"]
    assert seen["second"] == ["b", "shared"]
    assert sorted(map(str, seen["everyone"])) == ["a", "b", "shared", "shared"]
    assert _observe.active == 1  # the first registry's listener is still registered
    kept.unsubscribe()
    assert _observe.active == 0


def test_registry_listeners_must_be_callable() -> None:
    with pytest.raises(TypeError, match="listener must be callable"):
        rs.Listeners().observe(42)  # type: ignore[arg-type]
