from __future__ import annotations

import pytest
import trio
from loguru import logger

import resilience as rs
from resilience import _observe
from resilience._retry import Retry
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
