"""Starting later and on a cadence: `Engine.schedule` (one start at a time) and the recurring
schedules (``ensure_schedule`` and friends), including guarantee 4: each tick starts exactly
one execution, whatever the number of engines sharing the store.

Engine clocks read ``T0 + trio.current_time()`` with ``T0`` a UTC midnight, so interval and
cron ticks fall on exact times.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import kernel
from kernel.durable import (
    CorruptRecordError,
    Engine,
    Execution,
    MemoryStore,
    Schedule,
    SqliteStore,
    Store,
    UnknownWorkflowError,
    _engine,
)
from tests.kernel.durable.corruption import corrupt
from tests.kernel.durable.helpers import running_engine, workflow

#: The engines' epoch: Monday 2024-01-01T00:00:00Z.
T0 = 1_704_067_200.0


@pytest.fixture(autouse=True)
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines read the wall clock as ``T0 + trio.current_time()`` (one clock for all)."""
    monkeypatch.setattr(_engine, "time", SimpleNamespace(time=lambda: T0 + trio.current_time()))


@attrs.define
class Run:
    """One run of the `ticker` workflow: when (MockClock time), with what, which execution."""

    at: float
    value: Any
    execution_id: str


class Runs(list[Run]):
    """The runs so far; `reach` waits for more."""

    def __init__(self) -> None:
        super().__init__()
        self._grew = trio.Event()

    def append(self, run: Run) -> None:
        super().append(run)
        self._grew.set()
        self._grew = trio.Event()

    async def reach(self, count: int) -> None:
        """Wait until there are ``count`` runs."""
        while len(self) < count:
            await self._grew.wait()


def ticker() -> tuple[kernel.Task, Runs]:
    """A fresh workflow ``tick`` that records its runs."""
    runs = Runs()

    @workflow("tick")
    async def tick(value: Any, *, durable: Engine) -> Any:
        runs.append(Run(trio.current_time(), value, durable.context().execution_id))
        return value

    return tick, runs


@attrs.frozen
class Report:
    region: str


@workflow("report", input=Report)
async def report(value: Report, *, durable: Engine) -> str:
    return value.region


def key(schedule_id: str, offset: float) -> str:
    """The idempotency key of the execution started by the tick at ``T0 + offset``."""
    return f"schedule:{schedule_id}:{T0 + offset!r}"


async def executions(e: Engine) -> list[Execution]:
    return await e.store.list_executions()


# ---------------------------------------------------------------------- one-off starts


async def test_schedule_at_an_aware_datetime_starts_exactly_then(
    autojump_clock: trio.abc.Clock,
) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        utc = await e.schedule(tick, "utc", at=datetime(2024, 1, 1, 0, 5, tzinfo=UTC))
        paris = timezone(timedelta(hours=1))
        local = await e.schedule(tick, "paris", at=datetime(2024, 1, 1, 1, 10, tzinfo=paris))
        pending = await e.get_execution(utc)
        assert (pending.status, pending.wake_at) == ("pending", T0 + 300)
        assert await e.wait(utc) == "utc"
        assert await e.wait(local) == "paris"
        assert [(run.at, run.value) for run in runs] == [(300.0, "utc"), (600.0, "paris")]


async def test_schedule_at_epoch_seconds_or_after_a_delay(autojump_clock: trio.abc.Clock) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        ids = [
            await e.schedule(tick, "epoch", at=T0 + 50),
            await e.schedule("tick", "delay", delay=30),
            await e.schedule(tick, "timedelta", delay=timedelta(minutes=2)),
            await e.schedule(tick, "past", at=T0 - 100),
        ]
        for xid in ids:
            await e.wait(xid)
        assert [(run.at, run.value) for run in runs] == [
            (0.0, "past"),
            (30.0, "delay"),
            (50.0, "epoch"),
            (120.0, "timedelta"),
        ]
        again = await e.schedule(tick, "again", delay=5, idempotency_key="k")
        assert await e.schedule(tick, "again", delay=9, idempotency_key="k") == again


@pytest.mark.parametrize(
    ("when", "message", "error"),
    [
        ({"at": datetime(2024, 1, 1, 0, 5)}, "at must be an aware datetime", ValueError),
        ({"at": T0, "delay": 5}, "exactly one of at= and delay=", ValueError),
        ({}, "exactly one of at= and delay=", ValueError),
        ({"delay": -1}, "delay must be >= 0", ValueError),
        ({"delay": timedelta(seconds=-1)}, "delay must be >= 0", ValueError),
        ({"delay": "5"}, "delay must be a number of seconds", TypeError),
        ({"delay": True}, "delay must be a number of seconds", TypeError),
        ({"at": "tomorrow"}, "at must be a datetime or epoch seconds", ValueError),
        ({"at": True}, "at must be a datetime or epoch seconds", ValueError),
    ],
)
async def test_schedule_refuses_a_bad_time(
    when: dict[str, Any], message: str, error: type[Exception]
) -> None:
    tick, _ = ticker()
    async with running_engine(tick) as (_, e):
        with pytest.raises(error, match=message):
            await e.schedule(tick, None, **when)
        assert await executions(e) == []


async def test_schedule_refuses_what_is_not_a_workflow() -> None:
    tick, _ = ticker()
    async with running_engine(tick) as (_, e):
        with pytest.raises(UnknownWorkflowError):
            await e.schedule("nope", delay=1)
        with pytest.raises(UnknownWorkflowError):
            await e.ensure_schedule("nope", id="s", interval=60)


# ---------------------------------------------------------------------- recurring


async def test_an_interval_schedule_starts_one_execution_per_tick(
    autojump_clock: trio.abc.Clock,
) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        schedule = await e.ensure_schedule(tick, {"n": 1}, id="every-minute", interval=60)
        assert schedule == Schedule(
            id="every-minute",
            workflow="tick",
            input='{"n":1}',
            next_run_at=T0 + 60,
            interval=60,
            created_at=T0,
            updated_at=T0,
        )
        await trio.sleep(190)
        assert [(run.at, run.value) for run in runs] == [(t, {"n": 1}) for t in (60, 120, 180)]
        started = await executions(e)
        assert [x.idempotency_key for x in started] == [
            key("every-minute", t) for t in (60, 120, 180)
        ]
        assert [x.status for x in started] == ["completed"] * 3
        now = await e.get_schedule("every-minute")
        assert now is not None
        assert (now.next_run_at, now.last_execution_id) == (T0 + 240, started[-1].id)


async def test_a_cron_schedule_ticks_in_utc(autojump_clock: trio.abc.Clock) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        five = await e.ensure_schedule(tick, "five", id="five", cron="*/5 * * * *")
        nine = await e.ensure_schedule(tick, "nine", id="nine", cron="0 9 * * *")
        assert (five.next_run_at, nine.next_run_at) == (T0 + 300, T0 + 9 * 3600)
        await e.remove_schedule("five")
        await trio.sleep(2 * 86400)
        assert [(run.at, run.value) for run in runs] == [(32400.0, "nine"), (118800.0, "nine")]
        await e.pause_schedule("nine")
        await e.ensure_schedule(tick, "five", id="five", cron="*/5 * * * *")
        await trio.sleep(1000)
        assert [run.at for run in runs[2:]] == [172800.0 + 300 * k for k in (1, 2, 3)]


async def test_ensure_schedule_again_is_a_no_op_and_a_change_updates_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        first = await e.ensure_schedule(tick, "a", id="s", interval=60)
        await trio.sleep(30)
        assert await e.ensure_schedule(tick, "a", id="s", interval=60.0) == first
        assert await e.ensure_schedule(tick, "a", id="s", interval=timedelta(minutes=1)) == first
        await trio.sleep(40)  # the tick at 60 ran
        paused = await e.pause_schedule("s")
        changed = await e.ensure_schedule(tick, "b", id="s", interval=120)
        assert (changed.input, changed.interval, changed.next_run_at) == ('"b"', 120, T0 + 190)
        assert (changed.created_at, changed.updated_at) == (T0, T0 + 70)
        assert changed.paused  # a change keeps the pause
        assert changed.last_execution_id == paused.last_execution_id is not None
        as_cron = await e.ensure_schedule(tick, "b", id="s", cron="0 * * * *")
        assert (as_cron.cron, as_cron.interval, as_cron.next_run_at) == (
            "0 * * * *",
            None,
            T0 + 3600,
        )
        assert [run.value for run in runs] == ["a"]


async def test_pause_stops_the_ticks_and_resume_skips_the_missed_ones(
    autojump_clock: trio.abc.Clock,
) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        await e.ensure_schedule(tick, None, id="s", interval=60)
        await trio.sleep(70)
        assert (await e.pause_schedule("s")).paused
        await trio.sleep(180)  # the ticks at 120, 180 and 240 are missed
        assert [run.at for run in runs] == [60.0]
        resumed = await e.resume_schedule("s")
        assert (resumed.paused, resumed.next_run_at) == (False, T0 + 300)  # on the grid
        await trio.sleep(100)
        assert [run.at for run in runs] == [60.0, 300.0]  # no burst of catch-up runs
        # Paused and resumed before its tick: the tick stands.
        await e.pause_schedule("s")
        assert (await e.resume_schedule("s")).next_run_at == T0 + 360
        await trio.sleep(11)
        assert [run.at for run in runs] == [60.0, 300.0, 360.0]


async def test_ticks_missed_while_no_engine_ran_start_one_execution(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = MemoryStore()
    tick, runs = ticker()
    async with running_engine(tick, store=store) as (_, e):
        await e.ensure_schedule(tick, None, id="s", interval=60)
        await trio.sleep(70)
    await trio.sleep(330)  # down from 70 to 400: the ticks 120 ... 360 are missed
    async with running_engine(tick, store=store) as (_, e):
        await trio.sleep(50)
        assert [run.at for run in runs] == [60.0, 400.0, 420.0]
        assert [x.idempotency_key for x in await executions(e)] == [
            key("s", 60),
            key("s", 120),  # the overdue tick, run once at 400
            key("s", 420),  # then the grid again
        ]


async def test_update_schedule_changes_the_input_and_the_cadence(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with running_engine(report) as (_, e):
        await e.ensure_schedule(report, {"region": "eu"}, id="r", interval=60)
        await trio.sleep(70)
        updated = await e.update_schedule("r", input=Report("us"))
        assert (updated.input, updated.next_run_at) == ('{"region":"us"}', T0 + 120)
        with pytest.raises(kernel.ConfigError, match=r"input\.region"):
            await e.update_schedule("r", input={"zone": "x"})
        await trio.sleep(60)
        faster = await e.update_schedule("r", interval=15)
        assert (faster.interval, faster.cron, faster.next_run_at) == (15, None, T0 + 145)
        await trio.sleep(40)
        results = [e.result_of(x) for x in await executions(e)]
        assert results == ["eu", "us", "us", "us"]  # at 60, 120, 145, 160
        untouched = await e.update_schedule("r")
        assert (untouched.input, untouched.interval) == (faster.input, 15)
        assert untouched.updated_at == T0 + 170
        daily = await e.update_schedule("r", cron="30 6 * * *")
        assert (daily.cron, daily.interval, daily.next_run_at) == (
            "30 6 * * *",
            None,
            T0 + 6.5 * 3600,
        )
        with pytest.raises(ValueError, match="exactly one of cron= and interval="):
            await e.update_schedule("r", cron="* * * * *", interval=5)


async def test_remove_get_and_list_schedules(autojump_clock: trio.abc.Clock) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        b = await e.ensure_schedule(tick, "b", id="b", interval=60)
        a = await e.ensure_schedule(tick, "a", id="a", cron="* * * * *")
        assert await e.list_schedules() == [a, b]
        assert await e.get_schedule("b") == b
        assert await e.get_schedule("nope") is None
        await trio.sleep(70)
        assert await e.remove_schedule("a") is True
        assert await e.remove_schedule("a") is False
        assert await e.list_schedules() == [await e.get_schedule("b")]
        await trio.sleep(60)
        assert sorted(run.value for run in runs) == ["a", "b", "b"]
        # The executions a removed schedule started stay.
        assert [x.status for x in await executions(e)] == ["completed"] * 3


@pytest.mark.parametrize(
    ("cadence", "message", "error"),
    [
        ({"cron": "every day"}, "cron must be a valid cron line", ValueError),
        ({"cron": "61 * * * *"}, "cron must be a valid cron line", ValueError),
        ({"cron": 5}, "cron must be a valid cron line", ValueError),
        ({"interval": 0}, "interval must be > 0", ValueError),
        ({"interval": -60}, "interval must be > 0", ValueError),
        ({"interval": True}, "interval must be a number of seconds", TypeError),
        ({"interval": "60"}, "interval must be a number of seconds", TypeError),
        ({"interval": timedelta(0)}, "interval must be > 0", ValueError),
        ({"cron": "* * * * *", "interval": 60}, "exactly one of cron= and interval=", ValueError),
        ({}, "exactly one of cron= and interval=", ValueError),
    ],
)
async def test_ensure_schedule_refuses_a_bad_cadence(
    cadence: dict[str, Any], message: str, error: type[Exception]
) -> None:
    tick, _ = ticker()
    async with running_engine(tick) as (_, e):
        with pytest.raises(error, match=message):
            await e.ensure_schedule(tick, id="s", **cadence)
        with pytest.raises(ValueError, match="id must be a non-empty str"):
            await e.ensure_schedule(tick, id="", interval=60)
        assert await e.list_schedules() == []


async def test_an_unknown_schedule_id_is_a_key_error() -> None:
    tick, _ = ticker()
    async with running_engine(tick) as (_, e):
        with pytest.raises(KeyError, match="no schedule has id 'nope'"):
            await e.pause_schedule("nope")
        with pytest.raises(KeyError, match="no schedule has id 'nope'"):
            await e.resume_schedule("nope")
        with pytest.raises(KeyError, match="no schedule has id 'nope'"):
            await e.update_schedule("nope", interval=5)


async def test_a_corrupt_schedule_is_paused_the_others_tick_and_ensure_replaces_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        await e.ensure_schedule(tick, "good", id="good", interval=60)
        await e.ensure_schedule(tick, "bad", id="bad", interval=60)
        await corrupt(e.store, "schedules", "bad", "next_run_at", "abc")
        await trio.sleep(130)
        assert [(run.at, run.value) for run in runs] == [(60.0, "good"), (120.0, "good")]
        with pytest.raises(CorruptRecordError, match=r"schedule 'bad' .*next_run_at holds 'abc'"):
            await e.get_schedule("bad")
        assert [s.id for s in await e.list_schedules()] == ["good"]
        replaced = await e.ensure_schedule(tick, "bad", id="bad", interval=60)  # at every start
        assert (replaced.next_run_at, replaced.paused) == (T0 + 190, False)
        await trio.sleep(61)
        assert [(run.at, run.value) for run in runs[2:]] == [(180.0, "good"), (190.0, "bad")]


async def test_a_schedule_that_cannot_tick_any_more_is_paused_and_the_others_tick(
    autojump_clock: trio.abc.Clock,
) -> None:
    tick, runs = ticker()
    async with running_engine(tick) as (_, e):
        await e.ensure_schedule(tick, "good", id="good", interval=60)
        await e.ensure_schedule(tick, "never", id="never", cron="0 * * * *")
        # A valid cron line that no date matches (February 31st), edited into the store.
        await corrupt(e.store, "schedules", "never", "cron", "0 0 31 2 *")
        await trio.sleep(3601)
        assert {run.value for run in runs} == {"good"}
        never = await e.get_schedule("never")
        assert never is not None
        assert never.paused


# ---------------------------------------------------------------------- guarantee 4


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock:
    """Autojump at once for the in-memory store; after 10 ms of real idleness for SQLite
    (its calls run in threads, which the clock must not overtake)."""
    return trio.testing.MockClock(autojump_threshold=0 if kind == "memory" else 0.01)


@pytest.fixture
def stores(kind: str, tmp_path: Path) -> Callable[[], Store]:
    """A store per engine, all on the same data (one dict, or one SQLite file)."""
    shared = MemoryStore()
    path = tmp_path / "durable.sqlite3"
    return lambda: shared if kind == "memory" else SqliteStore(path)


async def test_two_engines_on_one_store_start_one_execution_per_tick(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    tick, runs = ticker()
    options: dict[str, Any] = {"polling_interval": 3600}
    async with running_engine(tick, store=stores(), **options) as (_, a):
        await a.ensure_schedule(tick, "x", id="s", interval=60)
        async with running_engine(tick, store=stores(), **options) as (_, b):
            # Both workers sleep until each tick, wake together and race to fire it.
            await trio.sleep(5 * 60 + 30)
            with trio.fail_after(60):
                await runs.reach(5)
            started = await executions(b)
    assert [x.idempotency_key for x in started] == [key("s", 60 * k) for k in range(1, 6)]
    assert [x.status for x in started] == ["completed"] * 5
    assert len(runs) == 5
    assert {run.execution_id for run in runs} == {x.id for x in started}


async def test_concurrent_fires_of_one_tick_start_one_execution(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    # Engines without workers, fired by hand: every engine fires every tick, at once.
    tick, _ = ticker()
    async with (
        running_engine(tick, store=stores(), worker=False) as (_, a),
        running_engine(tick, store=stores(), worker=False) as (_, b),
        running_engine(tick, store=stores(), worker=False) as (_, c),
    ):
        await a.ensure_schedule(tick, None, id="s", interval=60)
        for k in range(1, 4):
            await trio.sleep_until(60 * k)
            async with trio.open_nursery() as nursery:
                for engine in (a, b, c, a):
                    nursery.start_soon(engine.fire_due_schedules)
        started = await executions(c)
        schedule = await c.get_schedule("s")
    assert [x.idempotency_key for x in started] == [key("s", 60 * k) for k in (1, 2, 3)]
    assert [x.status for x in started] == ["pending"] * 3
    assert schedule is not None
    assert (schedule.next_run_at, schedule.last_execution_id) == (T0 + 240, started[-1].id)
