from __future__ import annotations

from datetime import timedelta

import pytest
import trio
import trio.testing

import resilience as rs
from resilience import Bulkhead, Event


async def hold(
    bulkhead: Bulkhead, log: list[tuple[str, float]], label: str, seconds: float
) -> None:
    async def work() -> None:
        log.append((f"{label} in", trio.current_time()))
        await trio.sleep(seconds)

    try:
        await bulkhead.call(work)
    except rs.BulkheadFull as exc:
        log.append((f"{label} rejected: {exc}", trio.current_time()))


async def test_at_most_max_concurrent_inside_and_fifo_queue(autojump_clock) -> None:
    bulkhead = Bulkhead(max_concurrent=2, max_queued=2)
    log: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        for label, seconds in [("a", 3), ("b", 1), ("c", 1), ("d", 1)]:
            nursery.start_soon(hold, bulkhead, log, label, seconds)
            await trio.testing.wait_all_tasks_blocked()
        assert bulkhead.statistics() == rs.BulkheadStatistics(
            max_concurrent=2, active=2, queued=2, rejected=0
        )
    assert log == [("a in", 0), ("b in", 0), ("c in", 1), ("d in", 2)]
    assert bulkhead.statistics().active == 0


async def test_rejects_at_once_when_the_queue_is_full(autojump_clock, events: list[Event]) -> None:
    bulkhead = Bulkhead(max_concurrent=1, name="pool")
    log: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, bulkhead, log, "a", 5)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(hold, bulkhead, log, "b", 5)
    assert log == [
        ("a in", 0),
        ("b rejected: bulkhead full: 1 running (max 1), 0 queued (max 0)", 0),
    ]
    assert bulkhead.statistics().rejected == 1
    assert [(e.kind, e.source, e.data["reason"]) for e in events] == [
        ("bulkhead.rejected", "pool", "full")
    ]


async def test_queue_timeout(autojump_clock) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=timedelta(seconds=2))
    log: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, bulkhead, log, "a", 5)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(hold, bulkhead, log, "b", 1)
    assert log == [("a in", 0), ("b rejected: bulkhead queue wait exceeded 2 s", 2)]
    assert bulkhead.statistics() == rs.BulkheadStatistics(
        max_concurrent=1, active=0, queued=0, rejected=1
    )


async def test_queued_caller_within_timeout_gets_the_slot(autojump_clock) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=2)
    log: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, bulkhead, log, "a", 1.5)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(hold, bulkhead, log, "b", 1)
    assert log == [("a in", 0), ("b in", 1.5)]


async def test_cancelled_waiter_leaves_the_queue_and_takes_no_slot(autojump_clock) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queued=2)
    log: list[tuple[str, float]] = []
    cancel = trio.CancelScope()

    async def queued_then_cancelled() -> None:
        with cancel:
            await bulkhead.call(trio.sleep, 1)
        log.append(("b cancelled", trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, bulkhead, log, "a", 2)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(queued_then_cancelled)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(hold, bulkhead, log, "c", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert bulkhead.statistics().queued == 2
        cancel.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert bulkhead.statistics().queued == 1
    assert cancel.cancelled_caught
    assert log == [("a in", 0), ("b cancelled", 0), ("c in", 2)]
    assert bulkhead.statistics().active == 0


async def test_async_with_and_release_on_error(autojump_clock) -> None:
    bulkhead = Bulkhead(max_concurrent=1)
    inside: list[int] = []

    async def enter_and_fail() -> None:
        async with bulkhead:
            inside.append(bulkhead.statistics().active)
            raise KeyError

    with pytest.raises(KeyError):
        await enter_and_fail()
    assert inside == [1]
    assert bulkhead.statistics().active == 0
    async with bulkhead as entered:
        assert entered is bulkhead


async def test_async_with_queues_too(autojump_clock) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queued=1)
    entered: list[float] = []

    async def enter() -> None:
        async with bulkhead:
            entered.append(trio.current_time())
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(enter)
        nursery.start_soon(enter)
    assert entered == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"max_concurrent": 0}, ValueError, "Bulkhead: max_concurrent must be >= 1"),
        ({"max_concurrent": 1.5}, TypeError, "Bulkhead: max_concurrent must be an int"),
        ({"max_concurrent": 1, "max_queued": -1}, ValueError, "max_queued must be >= 0"),
        ({"max_concurrent": 1, "max_queued": "2"}, TypeError, "max_queued must be an int"),
        ({"max_concurrent": 1, "queue_timeout": -2}, ValueError, "queue_timeout must be >= 0"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, exc, message) -> None:
    with pytest.raises(exc, match=message):
        Bulkhead(**kwargs)
