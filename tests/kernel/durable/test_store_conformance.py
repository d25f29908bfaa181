"""The store contract (`kernel.durable.Store`), sentence by sentence, for every store.

Written against the protocol only: each test runs once per store kind through the
``store`` fixture (memory, sqlite, postgres). Times are plain numbers passed as ``now``:
stores never read a clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from loguru import logger

from kernel.durable import (
    AuditEntry,
    CorruptRecordError,
    Execution,
    LeaseLostError,
    Schedule,
    Status,
    StepRecord,
    Store,
    StoreStats,
)
from tests.kernel.durable.conftest import KINDS, opened
from tests.kernel.durable.corruption import CANNOT, corrupt

TERMINAL_STATUSES: list[Status] = ["completed", "failed", "compensation_failed", "cancelled"]


def execution(execution_id: str, **fields: Any) -> Execution:
    """An execution of workflow ``wf`` (input ``{}``), created and updated at 0.0."""
    fields.setdefault("workflow", "wf")
    fields.setdefault("input", "{}")
    return Execution(id=execution_id, **fields)


async def claimed(store: Store, execution_id: str, worker: str = "w1", **fields: Any) -> None:
    """Create ``execution_id`` and let ``worker`` claim it (at now=10, lease until 20)."""
    await store.create_execution(execution(execution_id, **fields))
    taken = await store.claim(worker, now=10.0, lease_until=20.0, limit=100)
    assert execution_id in [e.id for e in taken]


async def claim_ids(store: Store, now: float, worker: str = "w", limit: int = 100) -> list[str]:
    return [e.id for e in await store.claim(worker, now=now, lease_until=now + 10, limit=limit)]


# ---------------------------------------------------------------------- executions


async def test_create_returns_the_execution_and_get_reads_it_back(store: Store) -> None:
    made = execution("e1", input='{"n":1}', attempt=2, wake_at=5.0, created_at=1.5, updated_at=2.5)
    assert await store.create_execution(made) == made
    assert await store.get_execution("e1") == made


async def test_get_unknown_execution_is_none(store: Store) -> None:
    assert await store.get_execution("nope") is None


async def test_idempotency_key_returns_the_existing_execution(store: Store) -> None:
    first = await store.create_execution(execution("e1", idempotency_key="k"))
    again = await store.create_execution(execution("e2", idempotency_key="k", input="[1]"))
    assert again == first
    assert await store.get_execution("e2") is None
    assert [e.id for e in await store.list_executions()] == ["e1"]


async def test_idempotency_key_is_checked_before_the_id(store: Store) -> None:
    first = await store.create_execution(execution("e1", idempotency_key="k"))
    assert await store.create_execution(execution("e1", idempotency_key="k")) == first


async def test_concurrent_creates_with_one_key_create_one_execution(store: Store) -> None:
    results: list[Execution] = []

    async def create(n: int) -> None:
        results.append(await store.create_execution(execution(f"e{n}", idempotency_key="k")))

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(create, n)
    assert len(results) == 8
    assert len({e.id for e in results}) == 1
    assert [e.id for e in await store.list_executions()] == [results[0].id]


async def test_duplicate_id_raises_value_error_and_changes_nothing(store: Store) -> None:
    original = await store.create_execution(execution("e1", input="[1]"))
    with pytest.raises(ValueError, match="e1"):
        await store.create_execution(execution("e1", input="[2]"))
    with pytest.raises(ValueError, match="e1"):
        await store.create_execution(execution("e1", idempotency_key="fresh"))
    assert await store.get_execution("e1") == original
    # The failed create did not reserve its key.
    other = await store.create_execution(execution("e2", idempotency_key="fresh"))
    assert other.id == "e2"


async def test_list_executions_oldest_first(store: Store) -> None:
    for execution_id, created_at in [("b", 3.0), ("a", 1.0), ("c", 2.0)]:
        await store.create_execution(execution(execution_id, created_at=created_at))
    assert [e.id for e in await store.list_executions()] == ["a", "c", "b"]


async def test_list_executions_filters(store: Store) -> None:
    await store.create_execution(execution("p1", created_at=1.0))
    await store.create_execution(execution("s1", status="sleeping", created_at=2.0))
    await store.create_execution(execution("c1", status="completed", created_at=3.0))
    await store.create_execution(execution("p2", workflow="other", created_at=4.0))

    async def ids(**filters: Any) -> list[str]:
        return [e.id for e in await store.list_executions(**filters)]

    assert await ids() == ["p1", "s1", "c1", "p2"]
    assert await ids(statuses=["pending"]) == ["p1", "p2"]
    assert await ids(statuses={"sleeping", "completed"}) == ["s1", "c1"]
    assert await ids(statuses=()) == []
    assert await ids(workflow="other") == ["p2"]
    assert await ids(workflow="wf", statuses=("pending",)) == ["p1"]
    assert await ids(workflow="missing") == []


async def test_list_executions_returns_full_records(store: Store) -> None:
    made = execution("e1", status="waiting", waiting_for="go", error="x", idempotency_key="k")
    await store.create_execution(made)
    assert await store.list_executions() == [made]


# ---------------------------------------------------------------------- claim: runnable


async def test_claim_pending_without_wake_at(store: Store) -> None:
    await store.create_execution(execution("e1", updated_at=3.0))
    assert await claim_ids(store, now=5.0) == ["e1"]


async def test_claim_pending_with_wake_at(store: Store) -> None:
    await store.create_execution(execution("e1", wake_at=10.0))
    assert await claim_ids(store, now=9.0) == []
    assert await claim_ids(store, now=10.0) == ["e1"]  # wake_at <= now


async def test_claim_sleeping(store: Store) -> None:
    await store.create_execution(execution("e1", status="sleeping", wake_at=10.0))
    await store.create_execution(execution("e2", status="sleeping"))  # wake_at None
    assert await claim_ids(store, now=9.5) == ["e2"]
    assert await claim_ids(store, now=10.0) == ["e1"]


async def test_claim_waiting_on_its_timeout(store: Store) -> None:
    await store.create_execution(execution("e1", status="waiting", waiting_for="go", wake_at=10.0))
    await store.create_execution(execution("e2", status="waiting", waiting_for="go"))
    assert await claim_ids(store, now=9.0) == []
    assert await claim_ids(store, now=10.0) == ["e1"]
    # No timeout and no signal: never (e1's lease has expired by then, so it comes back).
    assert await claim_ids(store, now=1e9) == ["e1"]


async def test_claim_waiting_with_a_buffered_signal(store: Store) -> None:
    await store.create_execution(execution("e1", status="waiting", waiting_for="go", wake_at=100.0))
    await store.create_execution(execution("e2", status="waiting", waiting_for="go"))
    assert await store.send_signal("e1", "go", "1", now=1.0)
    assert await store.send_signal("e2", "go", "2", now=1.0)
    assert sorted(await claim_ids(store, now=2.0)) == ["e1", "e2"]


async def test_claim_ignores_a_signal_for_another_id(store: Store) -> None:
    await store.create_execution(execution("e1", status="waiting", waiting_for="go"))
    assert await store.send_signal("e1", "other", "1", now=1.0)
    assert await claim_ids(store, now=2.0) == []


async def test_claim_ignores_a_consumed_signal(store: Store) -> None:
    await claimed(store, "e1")
    await store.send_signal("e1", "go", "1", now=10.0)
    assert await store.consume_signal("w1", "e1", "go", step_id="s", position=0, now=11.0)
    await store.release("e1", "w1", status="waiting", now=12.0, waiting_for="go")
    assert await claim_ids(store, now=13.0) == []


async def test_claim_running_only_when_the_lease_expired(store: Store) -> None:
    await claimed(store, "e1", worker="w1")  # lease until 20
    assert await claim_ids(store, now=19.0, worker="w2") == []
    assert await claim_ids(store, now=20.0, worker="w2") == []  # lease_until < now only
    taken = await store.claim("w2", now=20.5, lease_until=30.0, limit=1)
    assert [(e.id, e.owner, e.lease_until) for e in taken] == [("e1", "w2", 30.0)]


@pytest.mark.parametrize("status", TERMINAL_STATUSES)
async def test_claim_never_takes_a_terminal_execution(store: Store, status: Status) -> None:
    await store.create_execution(
        execution("e1", status=status, wake_at=1.0, waiting_for="go", lease_until=1.0)
    )
    await store.send_signal("e1", "go", "1", now=1.0)
    assert await claim_ids(store, now=1e9) == []


async def test_claim_nothing_is_an_empty_list(store: Store) -> None:
    assert await store.claim("w", now=1.0, lease_until=2.0, limit=10) == []


# ---------------------------------------------------------------------- claim: what and order


async def test_claim_sets_the_claimed_fields(store: Store) -> None:
    made = execution(
        "e1",
        status="waiting",
        waiting_for="go",
        wake_at=5.0,
        input='{"a":1}',
        attempt=3,
        idempotency_key="k",
        created_at=1.0,
    )
    await store.create_execution(made)
    [taken] = await store.claim("w1", now=6.0, lease_until=16.0, limit=1)
    assert (taken.status, taken.owner, taken.lease_until) == ("running", "w1", 16.0)
    assert (taken.wake_at, taken.waiting_for) == (None, None)
    assert (taken.input, taken.attempt, taken.idempotency_key, taken.created_at) == (
        '{"a":1}',
        3,
        "k",
        1.0,
    )
    assert await store.get_execution("e1") == taken


async def test_claim_respects_limit_earliest_due_first(store: Store) -> None:
    for execution_id, wake_at in [("d", 4.0), ("a", 1.0), ("c", 3.0), ("e", 5.0), ("b", 2.0)]:
        await store.create_execution(execution(execution_id, status="sleeping", wake_at=wake_at))
    assert await claim_ids(store, now=10.0, limit=2) == ["a", "b"]
    assert await claim_ids(store, now=10.0, limit=2) == ["c", "d"]
    assert await claim_ids(store, now=10.0, limit=2) == ["e"]


async def test_claim_orders_by_due_across_statuses(store: Store) -> None:
    await claimed(store, "lease", worker="old")  # running, lease until 20
    await store.create_execution(execution("sleep", status="sleeping", wake_at=21.0))
    await store.create_execution(
        execution("wait", status="waiting", waiting_for="go", wake_at=19.0)
    )
    await store.create_execution(execution("pend", wake_at=22.0))
    assert await claim_ids(store, now=30.0) == ["wait", "lease", "sleep", "pend"]


async def test_concurrent_claims_never_overlap(store: Store) -> None:
    for n in range(30):
        await store.create_execution(execution(f"e{n:02}", wake_at=float(n % 7)))
    taken: dict[str, list[str]] = {}

    async def claimer(worker: str) -> None:
        taken[worker] = []
        while batch := await store.claim(worker, now=10.0, lease_until=100.0, limit=3):
            taken[worker].extend(e.id for e in batch)

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(claimer, f"w{n}")
    every = [execution_id for ids in taken.values() for execution_id in ids]
    assert sorted(every) == [f"e{n:02}" for n in range(30)]  # each exactly once
    for worker, ids in taken.items():
        for execution_id in ids:
            got = await store.get_execution(execution_id)
            assert got is not None
            assert got.owner == worker


# ---------------------------------------------------------------------- fencing


def fenced_writes(store: Store, worker: str, execution_id: str) -> dict[str, Any]:
    """Each fenced write, ready to be awaited."""
    return {
        "renew": lambda: store.renew(execution_id, worker, lease_until=99.0),
        "release": lambda: store.release(execution_id, worker, status="completed", now=30.0),
        "record_step": lambda: store.record_step(
            worker, StepRecord(execution_id, "s9", 9, '"late"', 30.0)
        ),
        "consume_signal": lambda: store.consume_signal(
            worker, execution_id, "go", step_id="s9", position=9, now=30.0
        ),
    }


async def assert_all_fenced_out(store: Store, worker: str, execution_id: str) -> None:
    before = await store.get_execution(execution_id)
    for name, write in fenced_writes(store, worker, execution_id).items():
        with pytest.raises(LeaseLostError):
            await write()
        assert await store.get_execution(execution_id) == before, name
    assert "s9" not in [s.step_id for s in await store.list_step_results(execution_id)]


async def test_owner_may_renew(store: Store) -> None:
    await claimed(store, "e1")
    await store.renew("e1", "w1", lease_until=50.0)
    got = await store.get_execution("e1")
    assert got is not None
    assert (got.status, got.owner, got.lease_until) == ("running", "w1", 50.0)


async def test_fenced_writes_by_another_worker(store: Store) -> None:
    await claimed(store, "e1", worker="w1")
    await store.send_signal("e1", "go", "1", now=10.0)
    await assert_all_fenced_out(store, "w2", "e1")
    # The signal is still there for the owner.
    assert await store.consume_signal("w1", "e1", "go", step_id="s", position=0, now=11.0)


async def test_fenced_writes_on_an_unclaimed_or_unknown_execution(store: Store) -> None:
    await store.create_execution(execution("e1", wake_at=1e9))
    await assert_all_fenced_out(store, "w1", "e1")
    for write in fenced_writes(store, "w1", "unknown").values():
        with pytest.raises(LeaseLostError):
            await write()


async def test_fenced_writes_after_release(store: Store) -> None:
    await claimed(store, "e1")
    await store.release("e1", "w1", status="sleeping", now=11.0, wake_at=1e9)
    await store.send_signal("e1", "go", "1", now=11.0)
    await assert_all_fenced_out(store, "w1", "e1")


async def test_fenced_writes_after_cancel(store: Store) -> None:
    await claimed(store, "e1")
    await store.send_signal("e1", "go", "1", now=10.0)
    await store.request_cancel("e1", now=11.0)
    await assert_all_fenced_out(store, "w1", "e1")


async def test_fenced_writes_after_another_worker_reclaimed(store: Store) -> None:
    await claimed(store, "e1", worker="w1")  # lease until 20
    assert await claim_ids(store, now=21.0, worker="w2") == ["e1"]
    await store.send_signal("e1", "go", "1", now=21.0)
    await assert_all_fenced_out(store, "w1", "e1")
    await store.renew("e1", "w2", lease_until=40.0)  # the new owner may write
    await store.record_step("w2", StepRecord("e1", "s1", 0, "1", 22.0))
    assert [s.step_id for s in await store.list_step_results("e1")] == ["s1"]


async def test_an_expired_lease_not_yet_reclaimed_still_belongs_to_its_worker(
    store: Store,
) -> None:
    await claimed(store, "e1")  # lease until 20
    await store.renew("e1", "w1", lease_until=60.0)  # at any time: stores read no clock
    assert await claim_ids(store, now=50.0, worker="w2") == []


# ---------------------------------------------------------------------- release


async def test_release_sets_the_given_fields(store: Store) -> None:
    await claimed(store, "e1", attempt=1)
    released = await store.release(
        "e1",
        "w1",
        status="waiting",
        now=12.0,
        result='"r"',
        error="boom",
        wake_at=40.0,
        waiting_for="go",
        attempt=2,
    )
    assert (released.status, released.owner, released.lease_until) == ("waiting", None, None)
    assert (released.result, released.error, released.wake_at) == ('"r"', "boom", 40.0)
    assert (released.waiting_for, released.attempt) == ("go", 2)
    assert await store.get_execution("e1") == released


async def test_release_none_clears_and_attempt_none_keeps(store: Store) -> None:
    await claimed(store, "e1", attempt=4)
    await store.release(
        "e1", "w1", status="sleeping", now=11.0, error="x", result="1", wake_at=12.0
    )
    assert await claim_ids(store, now=13.0, worker="w1") == ["e1"]
    released = await store.release("e1", "w1", status="completed", now=14.0)
    assert (released.result, released.error, released.wake_at, released.waiting_for) == (
        None,
        None,
        None,
        None,
    )
    assert released.attempt == 4
    assert await store.get_execution("e1") == released


async def test_release_waiting_with_a_buffered_signal_is_claimable_at_once(
    store: Store,
) -> None:
    await claimed(store, "e1")
    assert await store.send_signal("e1", "go", '{"x":1}', now=10.5)
    await store.release("e1", "w1", status="waiting", now=11.0, waiting_for="go", wake_at=1e9)
    assert await claim_ids(store, now=11.0) == ["e1"]


async def test_release_waiting_then_signal_makes_it_claimable(store: Store) -> None:
    await claimed(store, "e1")
    await store.release("e1", "w1", status="waiting", now=11.0, waiting_for="go")
    assert await claim_ids(store, now=12.0) == []
    assert await store.send_signal("e1", "go", "1", now=12.0)
    assert await claim_ids(store, now=12.0) == ["e1"]


# ---------------------------------------------------------------------- cancel


@pytest.mark.parametrize("status", ["pending", "sleeping", "waiting"])
async def test_request_cancel_an_active_execution(store: Store, status: Status) -> None:
    await store.create_execution(execution("e1", status=status, wake_at=5.0, waiting_for="go"))
    cancelled = await store.request_cancel("e1", now=3.0)
    assert cancelled is not None
    assert (cancelled.status, cancelled.owner, cancelled.lease_until) == ("cancelled", None, None)
    assert await store.get_execution("e1") == cancelled
    assert await claim_ids(store, now=1e9) == []


async def test_request_cancel_a_running_execution(store: Store) -> None:
    await claimed(store, "e1")
    cancelled = await store.request_cancel("e1", now=11.0)
    assert cancelled is not None
    assert (cancelled.status, cancelled.owner, cancelled.lease_until) == ("cancelled", None, None)
    assert await store.get_execution("e1") == cancelled
    assert await claim_ids(store, now=1e9) == []  # not even when its old lease expires


@pytest.mark.parametrize("status", TERMINAL_STATUSES)
async def test_request_cancel_a_terminal_execution_changes_nothing(
    store: Store, status: Status
) -> None:
    made = await store.create_execution(execution("e1", status=status, result="1"))
    assert await store.request_cancel("e1", now=3.0) == made
    assert await store.get_execution("e1") == made


async def test_request_cancel_unknown_is_none(store: Store) -> None:
    assert await store.request_cancel("nope", now=1.0) is None


# ---------------------------------------------------------------------- next_due


async def test_stats_count_statuses_and_the_backlog(store: Store) -> None:
    assert await store.stats(now=0.0) == StoreStats({}, 0, None)
    await store.create_execution(execution("early", created_at=3.0, updated_at=3.0))
    await store.create_execution(execution("late", wake_at=500.0))
    await store.create_execution(execution("woken", wake_at=7.0))
    await store.create_execution(execution("run"))
    await store.create_execution(execution("wait"))
    await store.create_execution(execution("done", status="completed"))
    taken = {e.id for e in await store.claim("w", now=8.0, lease_until=20.0, limit=2)}
    assert taken == {"run", "wait"}  # (the earliest due: created at 0)
    await store.release("wait", "w", status="waiting", now=9.0, waiting_for="go")
    stats = await store.stats(now=10.0)
    assert stats.by_status == {"pending": 3, "running": 1, "waiting": 1, "completed": 1}
    assert (stats.due, stats.oldest_due) == (2, 3.0)  # early (since 3) and woken (since 7)
    await store.send_signal("wait", "go", "1", now=11.0)
    assert await store.stats(now=12.0) == StoreStats(
        {"pending": 3, "running": 1, "waiting": 1, "completed": 1}, 3, 3.0
    )
    # The running one's lease runs out at 20: runnable (again) since then.
    later = await store.stats(now=600.0)
    assert (later.due, later.oldest_due) == (5, 3.0)


async def test_next_due_none_when_nothing(store: Store) -> None:
    assert await store.next_due() is None
    await store.create_execution(execution("w", status="waiting", waiting_for="go"))
    await store.create_execution(execution("c", status="completed", wake_at=1.0))
    await store.put_schedule(Schedule("s", "wf", "{}", next_run_at=2.0, interval=60.0, paused=True))
    assert await store.next_due() is None


@pytest.mark.parametrize("status", ["pending", "sleeping", "waiting"])
async def test_next_due_is_a_wake_at(store: Store, status: Status) -> None:
    await store.create_execution(execution("e1", status=status, wake_at=7.0, updated_at=5.0))
    assert await store.next_due() == 7.0


async def test_next_due_of_a_pending_execution_without_wake_at_is_already_due(
    store: Store,
) -> None:
    await store.create_execution(execution("e1", created_at=4.0, updated_at=4.0))
    due = await store.next_due()
    assert due is not None
    assert due <= 4.0


async def test_next_due_is_a_lease_until(store: Store) -> None:
    await claimed(store, "e1")  # lease until 20
    assert await store.next_due() == 20.0


async def test_next_due_is_a_schedule(store: Store) -> None:
    await store.put_schedule(Schedule("s", "wf", "{}", next_run_at=8.0, interval=60.0))
    assert await store.next_due() == 8.0


async def test_next_due_is_the_earliest(store: Store) -> None:
    await store.put_schedule(Schedule("s1", "wf", "{}", next_run_at=9.0, interval=60.0))
    await store.put_schedule(
        Schedule("s2", "wf", "{}", next_run_at=1.0, interval=60.0, paused=True)
    )
    await store.create_execution(execution("e1", status="sleeping", wake_at=6.0))
    await store.create_execution(execution("e2", status="waiting", waiting_for="x", wake_at=7.0))
    await store.create_execution(execution("e3", status="failed", wake_at=2.0))
    assert await store.next_due() == 6.0


# ---------------------------------------------------------------------- steps


async def test_record_step_keeps_the_recorded_order(store: Store) -> None:
    await claimed(store, "e1")
    records = [
        StepRecord("e1", "b", 0, '"B"', 11.0),
        StepRecord("e1", "a", 1, '{"a":[1,2]}', 12.0),
        StepRecord("e1", "deadline", None, "30.5", 13.0),
    ]
    for record in records:
        await store.record_step("w1", record)
    assert await store.list_step_results("e1") == records


async def test_record_step_first_record_wins(store: Store) -> None:
    await claimed(store, "e1")
    first = StepRecord("e1", "a", 0, '"first"', 11.0)
    await store.record_step("w1", first)
    await store.record_step("w1", StepRecord("e1", "b", 1, '"b"', 12.0))
    await store.record_step("w1", StepRecord("e1", "a", 5, '"second"', 13.0))  # no-op
    assert [s for s in await store.list_step_results("e1") if s.step_id == "a"] == [first]
    assert [s.step_id for s in await store.list_step_results("e1")] == ["a", "b"]


async def test_steps_belong_to_their_execution(store: Store) -> None:
    await claimed(store, "e1")
    await claimed(store, "e2")
    await store.record_step("w1", StepRecord("e1", "a", 0, "1", 11.0))
    await store.record_step("w1", StepRecord("e2", "a", 0, "2", 11.0))
    assert [s.result for s in await store.list_step_results("e1")] == ["1"]
    assert [s.result for s in await store.list_step_results("e2")] == ["2"]
    assert await store.list_step_results("unknown") == []


# ---------------------------------------------------------------------- signals


async def test_send_signal_to_unknown_execution_is_false(store: Store) -> None:
    assert await store.send_signal("nope", "go", "1", now=1.0) is False


async def test_send_signal_to_a_known_execution_is_true(store: Store) -> None:
    await store.create_execution(execution("e1"))
    await store.create_execution(execution("e2", status="completed"))
    assert await store.send_signal("e1", "go", "1", now=1.0) is True
    assert await store.send_signal("e2", "go", "1", now=1.0) is True


async def test_consume_signal_oldest_first_per_id(store: Store) -> None:
    await claimed(store, "e1")
    for signal_id, payload in [("a", "1"), ("b", "2"), ("a", "3"), ("a", '{"x":[4]}')]:
        assert await store.send_signal("e1", signal_id, payload, now=10.0)

    async def consume(signal_id: str, step_id: str) -> Any:
        text = await store.consume_signal(
            "w1", "e1", signal_id, step_id=step_id, position=0, now=11.0
        )
        return None if text is None else json.loads(text)["payload"]

    assert await consume("a", "s1") == 1
    assert await consume("a", "s2") == 3
    assert await consume("b", "s3") == 2
    assert await consume("a", "s4") == {"x": [4]}
    assert await consume("a", "s5") is None
    assert await consume("b", "s6") is None


async def test_consume_signal_records_the_step_in_the_same_write(store: Store) -> None:
    await claimed(store, "e1")
    await store.send_signal("e1", "go", '{"ok":true}', now=10.0)
    text = await store.consume_signal("w1", "e1", "go", step_id="wait:go", position=3, now=12.5)
    assert text is not None
    assert json.loads(text) == {"kind": "signal", "payload": {"ok": True}}
    [step] = await store.list_step_results("e1")
    assert (step.execution_id, step.step_id, step.position, step.completed_at) == (
        "e1",
        "wait:go",
        3,
        12.5,
    )
    assert step.result == text


async def test_consume_signal_none_when_empty_and_writes_nothing(store: Store) -> None:
    await claimed(store, "e1")
    await store.send_signal("e1", "other", "1", now=10.0)
    assert await store.consume_signal("w1", "e1", "go", step_id="s", position=0, now=11.0) is None
    assert await store.list_step_results("e1") == []


async def test_signals_belong_to_their_execution(store: Store) -> None:
    await claimed(store, "e1")
    await claimed(store, "e2")
    await store.send_signal("e2", "go", "2", now=10.0)
    assert await store.consume_signal("w1", "e1", "go", step_id="s", position=0, now=11.0) is None
    assert await store.consume_signal("w1", "e2", "go", step_id="s", position=0, now=11.0)


async def test_each_signal_is_consumed_once(store: Store) -> None:
    await claimed(store, "e1")
    for n in range(3):
        await store.send_signal("e1", "go", str(n), now=10.0)
    got: list[int] = []

    async def consume(n: int) -> None:
        text = await store.consume_signal("w1", "e1", "go", step_id=f"s{n}", position=n, now=11.0)
        if text is not None:
            got.append(json.loads(text)["payload"])

    async with trio.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(consume, n)
    assert sorted(got) == [0, 1, 2]
    assert len(await store.list_step_results("e1")) == 3


# ---------------------------------------------------------------------- audit


async def test_audit_seq_counts_per_execution(store: Store) -> None:
    entries = [
        AuditEntry("e1", "status_changed", 1.0, data={"to": "running"}, seq=99),
        AuditEntry("e2", "note", 2.0, data={"text": "hi"}),
        AuditEntry("e1", "step_completed", 3.0, step_id="s1", data={"n": [1, {"a": None}]}),
        AuditEntry("e1", "sleep_started", 4.0),
    ]
    for entry in entries:
        await store.append_audit(entry)
    assert await store.list_audit_entries("e1") == [
        attrs.evolve(entries[0], seq=1),
        attrs.evolve(entries[2], seq=2),
        attrs.evolve(entries[3], seq=3),
    ]
    assert await store.list_audit_entries("e2") == [attrs.evolve(entries[1], seq=1)]
    assert await store.list_audit_entries("e3") == []


async def test_append_audit_is_not_fenced(store: Store) -> None:
    await claimed(store, "e1", worker="w1")
    await store.append_audit(AuditEntry("e1", "note", 11.0, data={"by": "anyone"}))
    [entry] = await store.list_audit_entries("e1")
    assert (entry.seq, entry.data) == (1, {"by": "anyone"})


async def test_writes_append_their_audit_line_in_the_same_transaction(store: Store) -> None:
    line = AuditEntry("e1", "status_changed", 1.0, data={"to": "pending"})
    await store.create_execution(execution("e1", idempotency_key="k"), audit=line)
    # Another execution with the key creates nothing, so appends nothing.
    other = AuditEntry("e2", "status_changed", 1.0, data={"to": "pending"})
    assert (await store.create_execution(execution("e2", idempotency_key="k"), audit=other)).id == (
        "e1"
    )
    await store.claim("w1", now=10.0, lease_until=20.0, limit=1)
    step = AuditEntry("e1", "step_completed", 11.0, step_id="s1", data={"duration_ms": 1.5})
    await store.record_step("w1", StepRecord("e1", "s1", 0, '"one"', 11.0), audit=step)
    end = AuditEntry("e1", "status_changed", 12.0, data={"to": "completed"})
    await store.release("e1", "w1", status="completed", now=12.0, result="1", audit=end)
    assert await store.list_audit_entries("e1") == [
        attrs.evolve(line, seq=1),
        attrs.evolve(step, seq=2),
        attrs.evolve(end, seq=3),
    ]
    assert await store.list_audit_entries("e2") == []


async def test_a_refused_fenced_write_appends_no_audit_line(store: Store) -> None:
    await claimed(store, "e1", worker="w1")
    line = AuditEntry("e1", "step_completed", 11.0, step_id="s1")
    with pytest.raises(LeaseLostError):
        await store.record_step("w2", StepRecord("e1", "s1", 0, "1", 11.0), audit=line)
    with pytest.raises(LeaseLostError):
        await store.release("e1", "w2", status="completed", now=12.0, audit=line)
    assert await store.list_audit_entries("e1") == []
    assert await store.list_step_results("e1") == []


# ---------------------------------------------------------------------- schedules


def schedule(schedule_id: str, **fields: Any) -> Schedule:
    fields.setdefault("next_run_at", 100.0)
    if "cron" not in fields:
        fields.setdefault("interval", 60.0)
    return Schedule(schedule_id, "wf", '{"s":1}', **fields)


async def test_put_get_list_delete_schedules(store: Store) -> None:
    made = schedule("b", interval=60.0, created_at=1.0, updated_at=1.0)
    assert await store.put_schedule(made) == made
    await store.put_schedule(schedule("c", cron="0 * * * *", paused=True))
    await store.put_schedule(schedule("a", last_execution_id="e0"))
    assert await store.get_schedule("b") == made
    assert await store.get_schedule("nope") is None
    assert [s.id for s in await store.list_schedules()] == ["a", "b", "c"]
    assert (await store.list_schedules())[2] == schedule("c", cron="0 * * * *", paused=True)
    assert await store.delete_schedule("b") is True
    assert await store.delete_schedule("b") is False
    assert await store.get_schedule("b") is None
    assert [s.id for s in await store.list_schedules()] == ["a", "c"]


async def test_put_schedule_replaces(store: Store) -> None:
    await store.put_schedule(schedule("a", interval=60.0))
    replaced = schedule("a", cron="*/5 * * * *", next_run_at=300.0, paused=True)
    assert await store.put_schedule(replaced) == replaced
    assert await store.get_schedule("a") == replaced
    assert await store.list_schedules() == [replaced]


async def test_fire_schedule_once_per_due(store: Store) -> None:
    await store.put_schedule(schedule("s", interval=60.0, next_run_at=100.0))
    tick = execution("run1", idempotency_key="schedule:s:100", created_at=100.5)
    assert await store.fire_schedule("s", due=100.0, next_run_at=160.0, execution=tick) is True
    assert await store.get_execution("run1") == tick
    fired = await store.get_schedule("s")
    assert fired is not None
    assert (fired.next_run_at, fired.last_execution_id) == (160.0, "run1")
    again = execution("run2", idempotency_key="schedule:s:100-b", created_at=100.5)
    assert await store.fire_schedule("s", due=100.0, next_run_at=160.0, execution=again) is False
    assert [e.id for e in await store.list_executions()] == ["run1"]
    assert await store.get_schedule("s") == fired


async def test_fire_schedule_paused_unknown_or_changed_is_false(store: Store) -> None:
    await store.put_schedule(schedule("p", paused=True, next_run_at=100.0))
    await store.put_schedule(schedule("s", next_run_at=100.0))
    tick = execution("run1")
    assert await store.fire_schedule("p", due=100.0, next_run_at=200.0, execution=tick) is False
    assert await store.fire_schedule("x", due=100.0, next_run_at=200.0, execution=tick) is False
    assert await store.fire_schedule("s", due=99.0, next_run_at=200.0, execution=tick) is False
    assert await store.list_executions() == []
    assert await store.get_schedule("p") == schedule("p", paused=True, next_run_at=100.0)
    assert await store.get_schedule("s") == schedule("s", next_run_at=100.0)


async def test_fire_schedule_honours_the_idempotency_key(store: Store) -> None:
    existing = await store.create_execution(execution("old", idempotency_key="schedule:s:100"))
    await store.put_schedule(schedule("s", next_run_at=100.0))
    tick = execution("new", idempotency_key="schedule:s:100", created_at=100.0)
    assert await store.fire_schedule("s", due=100.0, next_run_at=200.0, execution=tick) is True
    assert await store.list_executions() == [existing]
    fired = await store.get_schedule("s")
    assert fired is not None
    assert (fired.next_run_at, fired.last_execution_id) == (200.0, "old")


async def test_concurrent_fires_of_one_tick_fire_once(store: Store) -> None:
    await store.put_schedule(schedule("s", next_run_at=100.0))
    fired: list[bool] = []

    async def fire(n: int) -> None:
        tick = execution(f"run{n}", idempotency_key=f"schedule:s:100:{n}")
        fired.append(await store.fire_schedule("s", due=100.0, next_run_at=200.0, execution=tick))

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(fire, n)
    assert sorted(fired) == [False] * 4 + [True]
    assert len(await store.list_executions()) == 1


async def test_an_unreadable_signal_payload_fails_that_consume_and_writes_nothing(
    store: Store,
) -> None:
    await store.create_execution(execution("e1"))
    await store.claim("w1", now=1.0, lease_until=100.0, limit=1)
    assert await store.send_signal("e1", "go", "{not json", now=2.0)  # opaque to the store
    with pytest.raises(CorruptRecordError, match=r"signal 'go' .*of execution 'e1'"):
        await store.consume_signal("w1", "e1", "go", step_id="s", position=0, now=3.0)
    # Nothing was written: no step, and the signal is still buffered.
    assert await store.list_step_results("e1") == []
    await store.release("e1", "w1", status="waiting", now=4.0, waiting_for="go")
    assert [e.id for e in await store.claim("w2", now=5.0, lease_until=9.0, limit=1)] == ["e1"]


# ---------------------------------------------------------------------- unreadable rows
#
# Guarantee 6: a row holding what its record cannot (edited by hand, by a bad script, by a
# bad disk) fails alone. One case per column the engine reads, in a row that is otherwise
# sound, next to a sound runnable one; each store is made to hold what it can (`CANNOT`:
# PostgreSQL's column types refuse it).


@attrs.frozen
class Bad:
    """``column`` made to hold ``value`` (``postgres`` there) in a row of ``status``."""

    column: str
    value: Any
    postgres: Any = CANNOT
    status: Status = "pending"

    def held_by(self, kind: str) -> Any:
        return self.postgres if kind == "postgres" else self.value


def cases(table: Mapping[str, Bad]) -> list[Any]:
    """``(kind, case)`` for each case and each store that can hold it."""
    return [
        pytest.param(kind, case, id=f"{name}-{kind}")
        for name, case in table.items()
        for kind in KINDS
        if case.held_by(kind) is not CANNOT
    ]


EXECUTION_CASES = {
    "wake_at text, sleeping": Bad("wake_at", "abc", math.nan, "sleeping"),
    "wake_at infinite, waiting": Bad("wake_at", math.inf, math.inf, "waiting"),
    "lease_until text, running": Bad("lease_until", "abc", math.nan, "running"),
    "lease_until null, running": Bad("lease_until", None, None, "running"),
    "owner null, running": Bad("owner", None, None, "running"),
    "owner not text, running": Bad("owner", b"w0", status="running"),
    "attempt text": Bad("attempt", "abc"),
    "attempt negative": Bad("attempt", -1, -1, "sleeping"),
    "status unknown": Bad("status", "bogus", "bogus"),
    "created_at text, waiting": Bad("created_at", "abc", math.inf, "waiting"),
    "updated_at not a time": Bad("updated_at", b"\x00", -math.inf),
    "workflow not text": Bad("workflow", b"wf"),
    "input not text": Bad("input", b"{}", status="sleeping"),
    "result not text": Bad("result", b"1", status="running"),
    "error not text": Bad("error", b"boom"),
    "waiting_for not text, waiting": Bad("waiting_for", b"go", status="waiting"),
    "waiting_for null and no wake_at, waiting": Bad("waiting_for", None, None, "waiting"),
    "idempotency_key not text": Bad("idempotency_key", b"k"),
}

#: An otherwise sound row of each status, none of them runnable at now=10 but the pending one.
SOUND: dict[str, dict[str, Any]] = {
    "pending": {"updated_at": 1.0},
    "sleeping": {"status": "sleeping", "wake_at": 50.0},
    "waiting": {"status": "waiting", "waiting_for": "go"},
    "running": {"status": "running", "owner": "w0", "lease_until": 100.0},
}


@pytest.mark.parametrize(("kind", "case"), cases(EXECUTION_CASES))
async def test_an_unreadable_execution_fails_alone(
    kind: str, case: Bad, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with opened(kind, tmp_path, request) as store:
        await store.create_execution(execution("good", wake_at=5.0, created_at=2.0))
        await store.create_execution(execution("bad", **SOUND[case.status]))
        await corrupt(store, "executions", "bad", case.column, case.held_by(kind))

        # Reading it names the execution and the column; listing leaves it out.
        with pytest.raises(CorruptRecordError, match=f"execution 'bad' .*{case.column}") as caught:
            await store.get_execution("bad")
        assert (caught.value.execution_id, case.column in caught.value.columns) == ("bad", True)
        assert [e.id for e in await store.list_executions()] == ["good"]
        due = await store.next_due()  # not poisoned by the bad row
        assert type(due) is float, due
        assert due <= 5.0

        # A claim fails it where it stands (first, whatever its lease) and takes the good one.
        bad, good = await store.claim("w1", now=10.0, lease_until=20.0, limit=10)
        assert (bad.id, bad.status, good.id, good.status) == ("bad", "failed", "good", "running")
        assert bad.error is not None
        assert bad.error.startswith("CorruptRecordError: execution 'bad' cannot be read back: ")
        assert case.column in bad.error
        assert (bad.owner, bad.lease_until, bad.wake_at, bad.waiting_for) == (None,) * 4
        assert bad.updated_at == 10.0
        assert await store.get_execution("bad") == bad  # it reads back now
        assert await store.claim("w2", now=11.0, lease_until=21.0, limit=10) == []
        assert await store.next_due() == 20.0  # the good one's lease
        assert [e.id for e in await store.list_executions(statuses=["failed"])] == ["bad"]


RELEASE_CASES = {
    # A column the release writes: what it held does not matter.
    "lease_until text": Bad("lease_until", "abc", math.nan),
    # Columns it keeps: the release writes nothing, and the next claim fails the row.
    "created_at text": Bad("created_at", "abc", math.inf),
    "attempt negative": Bad("attempt", -3, -3),
}


@pytest.mark.parametrize(("kind", "case"), cases(RELEASE_CASES))
async def test_a_release_of_a_row_gone_bad_writes_what_reads_back_or_nothing(
    kind: str, case: Bad, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with opened(kind, tmp_path, request) as store:
        await claimed(store, "e1")  # by w1, lease until 20
        await corrupt(store, "executions", "e1", case.column, case.held_by(kind))
        if case.column == "lease_until":
            done = await store.release("e1", "w1", status="completed", now=12.0, result="1")
            assert (done.status, done.lease_until) == ("completed", None)
            assert await store.get_execution("e1") == done
            return
        with pytest.raises(CorruptRecordError, match=f"execution 'e1' .*{case.column}"):
            await store.release("e1", "w1", status="completed", now=12.0, result="1")
        # Nothing was written (not completed: still active, so claimed) and it fails now.
        [failed] = await store.claim("w2", now=13.0, lease_until=23.0, limit=10)
        assert (failed.id, failed.status, failed.result) == ("e1", "failed", None)
        assert failed.error is not None
        assert case.column in failed.error


STEP_CASES = {
    "step_id not text": Bad("step_id", b"s2"),
    "position text": Bad("position", "abc", -1),
    "result not text": Bad("result", b'"b"'),
    "completed_at text": Bad("completed_at", "abc", math.nan),
}


@pytest.mark.parametrize(("kind", "case"), cases(STEP_CASES))
async def test_an_unreadable_step_fails_the_listing_of_its_execution_only(
    kind: str, case: Bad, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with opened(kind, tmp_path, request) as store:
        for execution_id in ("e1", "e2"):
            await store.create_execution(execution(execution_id))
        await store.claim("w1", now=10.0, lease_until=20.0, limit=10)
        for position, step_id in enumerate(["s1", "s2"]):
            await store.record_step("w1", StepRecord("e1", step_id, position, '"a"', 11.0))
        await store.record_step("w1", StepRecord("e2", "s1", 0, '"x"', 11.0))
        await corrupt(store, "steps", ("e1", "s2"), case.column, case.held_by(kind))

        with pytest.raises(CorruptRecordError, match=f"step .*of execution 'e1'.*{case.column}"):
            await store.list_step_results("e1")
        assert [s.step_id for s in await store.list_step_results("e2")] == ["s1"]


@pytest.mark.parametrize(("kind", "case"), cases({"not text": Bad("payload", b"{}")}))
async def test_an_unreadable_signal_fails_its_consume_only(
    kind: str, case: Bad, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with opened(kind, tmp_path, request) as store:
        for execution_id in ("e1", "e2"):
            await store.create_execution(execution(execution_id))
            assert await store.send_signal(execution_id, "go", '{"ok":true}', now=1.0)
        await store.claim("w1", now=10.0, lease_until=20.0, limit=10)
        await corrupt(store, "signals", "e1", "payload", case.held_by(kind))

        with pytest.raises(CorruptRecordError, match=r"signal 'go' .*of execution 'e1'"):
            await store.consume_signal("w1", "e1", "go", step_id="s", position=0, now=11.0)
        taken = await store.consume_signal("w1", "e2", "go", step_id="s", position=0, now=11.0)
        assert taken is not None
        assert json.loads(taken) == {"kind": "signal", "payload": {"ok": True}}


@attrs.frozen
class BadSchedule(Bad):
    """``column`` made to hold ``value`` (``postgres`` there) in a schedule on ``cadence``."""

    cadence: dict[str, Any] = attrs.field(factory=lambda: {"interval": 60.0}, kw_only=True)


SCHEDULE_CASES = {
    "next_run_at text": BadSchedule("next_run_at", "abc", math.nan),
    "next_run_at infinite": BadSchedule("next_run_at", math.inf, math.inf),
    "cron not a cron line": BadSchedule(
        "cron", "at dawn", "at dawn", cadence={"cron": "0 * * * *"}
    ),
    "interval negative": BadSchedule("interval", -60.0, -60.0),
    "interval text": BadSchedule("interval", "abc", math.nan),
    "interval null, no cron": BadSchedule("interval", None, None),
    "paused not a flag": BadSchedule("paused", 5),
    "workflow not text": BadSchedule("workflow", b"wf"),
    "input not text": BadSchedule("input", b"{}"),
    "last_execution_id not text": BadSchedule("last_execution_id", b"e0"),
    "created_at text": BadSchedule("created_at", "abc", math.inf),
    "updated_at text": BadSchedule("updated_at", "abc", -math.inf),
}


@pytest.fixture
def durable_errors() -> Iterator[list[str]]:
    """The messages the stores log at ERROR (source ``kernel.durable``) during the test."""
    messages: list[str] = []
    sink = logger.add(
        lambda message: messages.append(message.record["message"]),
        level="ERROR",
        filter=lambda record: record["extra"].get("source") == "kernel.durable",
    )
    try:
        yield messages
    finally:
        logger.remove(sink)


@pytest.mark.parametrize(("kind", "case"), cases(SCHEDULE_CASES))
async def test_an_unreadable_schedule_is_paused_once_and_the_others_kept(
    kind: str,
    case: BadSchedule,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    durable_errors: list[str],
) -> None:
    async with opened(kind, tmp_path, request) as store:
        await store.put_schedule(schedule("a", next_run_at=100.0))
        await store.put_schedule(schedule("b", next_run_at=50.0, **case.cadence))
        await corrupt(store, "schedules", "b", case.column, case.held_by(kind))

        with pytest.raises(CorruptRecordError, match=f"schedule 'b' .*{case.column}"):
            await store.get_schedule("b")
        due = await store.next_due()
        assert type(due) is float, due
        assert due <= 100.0

        assert [s.id for s in await store.list_schedules()] == ["a"]
        [error] = durable_errors
        assert error.startswith("schedule 'b' cannot be read back: ")
        assert error.endswith("; the schedule is paused until it is replaced")
        assert await store.next_due() == 100.0  # paused: no longer due
        assert [s.id for s in await store.list_schedules() if not s.paused] == ["a"]
        assert len(durable_errors) == 1  # said once
