from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel import ConfigError, Emission, EmissionCycleError, EmitReport, Event, UnknownEventError
from kernel._bus import EventBus, HookBinding, _chain

Action = Callable[[Emission], Awaitable[Any]]


@attrs.frozen
class Point:
    x: int
    y: int = 0


A = Event("a")
B = Event("b")
C = Event("c")
TYPED = Event("typed", Point)


class Stop(BaseException):
    """A non-Exception error, like KeyboardInterrupt, that must never be collected."""


class Recorder:
    """Builds fake hook bindings that log (hook id, event id, payload) when they run."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, Any]] = []
        self.emissions: list[Emission] = []
        self._index = 0

    def hook(
        self,
        id: str,
        on: Iterable[Event] | None = (A,),
        *,
        order: int = 0,
        index: int | None = None,
        then: Action | None = None,
    ) -> HookBinding:
        async def call(emission: Emission) -> None:
            self.log.append((id, emission.event.id, emission.payload))
            self.emissions.append(emission)
            if then is not None:
                await then(emission)

        if index is None:
            index = self._index
        self._index += 1
        listens = None if on is None else frozenset(event.id for event in on)
        return HookBinding(id, order, index, listens, call)

    @property
    def ran(self) -> list[str]:
        return [hook_id for hook_id, _, _ in self.log]


def raising(exc: BaseException) -> Action:
    async def action(emission: Emission) -> None:
        raise exc

    return action


async def stop(emission: Emission) -> None:
    emission.stop_propagation()


# ---------------------------------------------------------------- construction


def test_hook_on_unregistered_event_is_refused_at_construction() -> None:
    rec = Recorder()
    with pytest.raises(UnknownEventError) as info:
        EventBus([A], [rec.hook("h1", (A,)), rec.hook("h2", (A, B))])
    assert (info.value.dependent, info.value.event) == ("h2", "b")
    assert str(info.value) == "'h2' listens to event 'b', which is not registered"


def test_two_events_with_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match=r"EventBus: two different events share the id 'a'"):
        EventBus([A, Event("a")], [])


def test_the_same_event_listed_twice_is_fine() -> None:
    EventBus([A, A], [])


@pytest.mark.parametrize(
    ("max_depth", "error", "message"),
    [
        (0, ValueError, r"EventBus: max_depth must be >= 1, got 0"),
        (-3, ValueError, r"EventBus: max_depth must be >= 1, got -3"),
        ("3", TypeError, r"EventBus: max_depth must be an int, got '3'"),
        (True, TypeError, r"EventBus: max_depth must be an int, got True"),
    ],
)
def test_max_depth_is_validated(max_depth: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        EventBus([A], [], max_depth=max_depth)


def test_emission_fields_match_the_inline_construction_in_emit() -> None:
    # emit builds Emission without calling __init__; a new field must be set there too.
    assert [field.name for field in attrs.fields(Emission)] == [
        "event",
        "payload",
        "source",
        "propagation_stopped",
        "delivery",
    ]
    emission = Emission(A, 1, "me")
    assert not emission.propagation_stopped
    emission.stop_propagation()
    assert emission.propagation_stopped


# ---------------------------------------------------------------- ordering


async def test_hooks_run_by_order_then_registration_with_wildcards_interleaved() -> None:
    rec = Recorder()
    hooks = [
        rec.hook("late", order=10),
        rec.hook("wild-first", None, order=-5),
        rec.hook("first-a", order=0),
        rec.hook("only-b", (B,), order=1),
        rec.hook("wild-mid", None, order=5),
        rec.hook("second-a", order=0),
        rec.hook("a-and-b", (A, B), order=5),
    ]
    bus = EventBus([A, B], reversed(hooks))
    assert await bus.emit(A) is None
    assert rec.ran == ["wild-first", "first-a", "second-a", "wild-mid", "a-and-b", "late"]
    rec.log.clear()
    await bus.emit(B)
    assert rec.ran == ["wild-first", "only-b", "wild-mid", "a-and-b"]


async def test_registration_index_breaks_ties_not_the_iteration_order() -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("two", index=2), rec.hook("one", index=1)])
    await bus.emit(A)
    assert rec.ran == ["one", "two"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-3, 3), st.one_of(st.none(), st.sets(st.sampled_from(["a", "b", "c"])))
        ),
        max_size=12,
    ),
    st.sampled_from([A, B, C]),
)
def test_run_order_is_listeners_sorted_by_order_and_index(
    specs: list[tuple[int, set[str] | None]], event: Event
) -> None:
    rec = Recorder()
    by_id = {"a": A, "b": B, "c": C}
    hooks = [
        rec.hook(f"h{i}", None if on is None else [by_id[e] for e in on], order=order)
        for i, (order, on) in enumerate(specs)
    ]
    bus = EventBus([A, B, C], hooks)
    trio.run(bus.emit, event)
    expected = sorted(
        (order, i) for i, (order, on) in enumerate(specs) if on is None or event.id in on
    )
    assert rec.ran == [f"h{i}" for _, i in expected]


# ---------------------------------------------------------------- emission contents


async def test_hooks_receive_the_event_payload_and_source() -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("h")])
    payload = object()
    await bus.emit(A, payload, source="task:x")
    (emission,) = rec.emissions
    assert emission.event is A
    assert emission.payload is payload
    assert emission.source == "task:x"
    assert not emission.propagation_stopped


async def test_each_emit_makes_a_new_emission_with_no_source_by_default() -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("h")])
    await bus.emit(A)
    await bus.emit(A)
    first, second = rec.emissions
    assert first is not second
    assert first.source is None
    assert first.payload is None


async def test_hooks_receive_the_registered_event_for_an_equal_id() -> None:
    # An override registers another Event object under the same id: its payload type rules.
    registered = Event("typed", Point)
    rec = Recorder()
    bus = EventBus([registered], [rec.hook("h", (registered,))])
    await bus.emit(Event("typed"), {"x": 1})
    (emission,) = rec.emissions
    assert emission.event is registered
    assert emission.payload == Point(1)


# ---------------------------------------------------------------- payloads


async def test_a_payload_instance_passes_as_is() -> None:
    rec = Recorder()
    bus = EventBus([TYPED], [rec.hook("h", (TYPED,))])
    point = Point(1, 2)
    await bus.emit(TYPED, point)
    assert rec.emissions[0].payload is point


async def test_a_dict_payload_is_structured() -> None:
    rec = Recorder()
    bus = EventBus([TYPED], [rec.hook("h", (TYPED,))])
    await bus.emit(TYPED, {"x": 3, "y": 4})
    assert rec.emissions[0].payload == Point(3, 4)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"x": "nope"}, "event 'typed': payload.x: expected int, got str"),
        ({"x": "3"}, "event 'typed': payload.x: expected int, got str"),
        ({"x": 2.9}, "event 'typed': payload.x: expected int, got float"),
        ({}, "event 'typed': payload.x: required field missing"),
        (None, "event 'typed': payload: expected a mapping of Point's fields, got None"),
        ("text", "event 'typed': payload: expected a mapping of Point's fields, got str"),
    ],
)
async def test_a_bad_payload_raises_config_error_before_any_hook(
    payload: Any, message: str
) -> None:
    rec = Recorder()
    bus = EventBus([TYPED], [rec.hook("h", (TYPED,))])
    with pytest.raises(ConfigError) as info:
        await bus.emit(TYPED, payload)
    assert str(info.value) == message
    assert info.value.owner == "event 'typed'"
    assert rec.log == []


async def test_the_payload_type_is_checked_even_without_hooks() -> None:
    bus = EventBus([TYPED], [])
    with pytest.raises(ConfigError):
        await bus.emit(TYPED, None)


async def test_without_a_payload_type_anything_passes_unchanged() -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("h")])
    payload = {"whatever": [1, 2]}
    await bus.emit(A, payload)
    assert rec.emissions[0].payload is payload


# ---------------------------------------------------------------- unknown events, arguments


async def test_emitting_an_unregistered_event_raises() -> None:
    bus = EventBus([A], [])
    with pytest.raises(UnknownEventError) as info:
        await bus.emit(B)
    assert str(info.value) == "event 'b' is not registered in this app"
    assert (info.value.dependent, info.value.event) == ("emit", "b")


async def test_emitting_an_unregistered_event_names_the_source() -> None:
    bus = EventBus([A], [])
    with pytest.raises(UnknownEventError) as info:
        await bus.emit(B, source="task:x")
    assert str(info.value) == "event 'b' is not registered in this app (emitted by 'task:x')"
    assert info.value.dependent == "task:x"


@pytest.mark.parametrize("report", [False, True])
async def test_failure_mode_is_validated(report: bool) -> None:
    rec = Recorder()
    bus = EventBus([A, B], [rec.hook("h")])
    for event in (A, B):  # with and without hooks
        with pytest.raises(ValueError, match=r"failure_mode must be one of .*got 'ignore'"):
            await bus.emit(event, failure_mode="ignore", report=report)  # type: ignore[arg-type]
    assert rec.log == []


async def test_an_event_without_hooks_is_a_no_op() -> None:
    bus = EventBus([A, B], [Recorder().hook("h", (B,))])
    with trio.testing.assert_no_checkpoints():
        assert await bus.emit(A, 1) is None
        assert await bus.emit(A, failure_mode="aggregate") is None
        assert await bus.emit(A, report=True) == EmitReport("a", (), (), None)


# ---------------------------------------------------------------- stop propagation


@pytest.mark.parametrize(
    ("failure_mode", "report"),
    [("fail_fast", False), ("fail_fast", True), ("aggregate", False), ("aggregate", True)],
)
async def test_stop_propagation_skips_later_hooks(failure_mode: Any, report: bool) -> None:
    rec = Recorder()
    bus = EventBus(
        [A],
        [rec.hook("one"), rec.hook("stopper", then=stop), rec.hook("never"), rec.hook("nor")],
    )
    result = await bus.emit(A, failure_mode=failure_mode, report=report)
    assert rec.ran == ["one", "stopper"]
    assert rec.emissions[1].propagation_stopped
    if report:
        assert result == EmitReport("a", ("one", "stopper"), (), "stopper")
    else:
        assert result is None


async def test_stop_propagation_in_the_last_hook_is_reported() -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("one"), rec.hook("last", then=stop)])
    assert await bus.emit(A, report=True) == EmitReport("a", ("one", "last"), (), "last")


# ---------------------------------------------------------------- failures


async def test_fail_fast_propagates_the_original_exception_and_skips_later_hooks() -> None:
    rec = Recorder()
    boom = RuntimeError("boom")
    bus = EventBus([A], [rec.hook("one"), rec.hook("bad", then=raising(boom)), rec.hook("never")])
    with pytest.raises(RuntimeError) as info:
        await bus.emit(A)
    assert info.value is boom
    assert rec.ran == ["one", "bad"]


async def test_fail_fast_with_report_raises_on_failure() -> None:
    rec = Recorder()
    boom = RuntimeError("boom")
    bus = EventBus([A], [rec.hook("bad", then=raising(boom)), rec.hook("never")])
    with pytest.raises(RuntimeError) as info:
        await bus.emit(A, report=True)
    assert info.value is boom
    assert rec.ran == ["bad"]


async def test_fail_fast_with_report_returns_who_ran() -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("two", order=2), rec.hook("one", order=1)])
    assert await bus.emit(A, report=True) == EmitReport("a", ("one", "two"), (), None)


async def test_aggregate_runs_every_hook_and_raises_a_group_of_all_failures() -> None:
    rec = Recorder()
    first, second = RuntimeError("first"), KeyError("second")
    bus = EventBus(
        [A],
        [
            rec.hook("bad1", then=raising(first)),
            rec.hook("ok"),
            rec.hook("bad2", then=raising(second)),
            rec.hook("last"),
        ],
    )
    with pytest.raises(ExceptionGroup) as info:
        await bus.emit(A, failure_mode="aggregate")
    assert rec.ran == ["bad1", "ok", "bad2", "last"]
    assert str(info.value) == "2 hook(s) failed on event 'a' (2 sub-exceptions)"
    assert info.value.message == "2 hook(s) failed on event 'a'"
    assert list(info.value.exceptions) == [first, second]


async def test_aggregate_without_failures_returns_none() -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("one"), rec.hook("two")])
    assert await bus.emit(A, failure_mode="aggregate") is None
    assert rec.ran == ["one", "two"]


async def test_aggregate_with_report_returns_the_failures_instead_of_raising() -> None:
    rec = Recorder()
    boom = RuntimeError("boom")
    bus = EventBus([A], [rec.hook("bad", then=raising(boom)), rec.hook("ok")])
    result = await bus.emit(A, failure_mode="aggregate", report=True)
    assert result == EmitReport("a", ("bad", "ok"), (("bad", boom),), None)


async def test_aggregate_a_failing_hook_can_still_stop_propagation() -> None:
    rec = Recorder()
    boom = RuntimeError("boom")

    async def stop_then_fail(emission: Emission) -> None:
        emission.stop_propagation()
        raise boom

    bus = EventBus([A], [rec.hook("bad", then=stop_then_fail), rec.hook("never")])
    result = await bus.emit(A, failure_mode="aggregate", report=True)
    assert result == EmitReport("a", ("bad",), (("bad", boom),), "bad")


@pytest.mark.parametrize(
    ("failure_mode", "report"),
    [("fail_fast", False), ("fail_fast", True), ("aggregate", False), ("aggregate", True)],
)
async def test_a_base_exception_propagates_at_once_and_is_never_collected(
    failure_mode: Any, report: bool
) -> None:
    rec = Recorder()
    # In aggregate mode a failure is collected before the BaseException arrives.
    first = raising(RuntimeError()) if failure_mode == "aggregate" else None
    bus = EventBus(
        [A],
        [rec.hook("first", then=first), rec.hook("stop", then=raising(Stop())), rec.hook("never")],
    )
    with pytest.raises(Stop):
        await bus.emit(A, failure_mode=failure_mode, report=report)
    assert rec.ran == ["first", "stop"]
    assert _chain.get() == ()


@pytest.mark.parametrize(
    ("failure_mode", "report"),
    [("fail_fast", False), ("fail_fast", True), ("aggregate", False), ("aggregate", True)],
)
async def test_cancellation_during_a_hook_propagates_and_is_not_collected(
    autojump_clock: trio.testing.MockClock, failure_mode: Any, report: bool
) -> None:
    rec = Recorder()

    async def sleep(emission: Emission) -> None:
        await trio.sleep(10)

    # In aggregate mode a failure is collected before the cancellation arrives.
    first = raising(RuntimeError()) if failure_mode == "aggregate" else None
    bus = EventBus(
        [A], [rec.hook("first", then=first), rec.hook("slow", then=sleep), rec.hook("never")]
    )
    with trio.move_on_after(1) as scope:
        await bus.emit(A, failure_mode=failure_mode, report=report)
    assert scope.cancelled_caught
    assert trio.current_time() == 1
    assert rec.ran == ["first", "slow"]
    assert _chain.get() == ()


async def test_emit_checkpoints_only_through_its_hooks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    bus = EventBus([A], [rec.hook("h")])
    with trio.testing.assert_no_checkpoints():
        await bus.emit(A)
        await bus.emit(A, failure_mode="aggregate", report=True)
    with trio.CancelScope() as scope:
        scope.cancel()
        await bus.emit(A)  # nothing here checkpoints, so nothing is cancelled
    assert not scope.cancelled_caught
    assert rec.ran == ["h", "h", "h"]


# ---------------------------------------------------------------- nesting


async def test_a_hook_can_emit_another_event() -> None:
    rec = Recorder()
    chains: list[tuple[str, ...]] = []
    holder: list[EventBus] = []

    async def emit_b(emission: Emission) -> None:
        await holder[0].emit(B, "from a", source="on-a")

    async def record_chain(emission: Emission) -> None:
        chains.append(_chain.get())

    bus = EventBus(
        [A, B],
        [
            rec.hook("on-a", (A,), then=emit_b),
            rec.hook("on-b", (B,), then=record_chain),
            rec.hook("after", (A,), order=1, then=record_chain),
        ],
    )
    holder.append(bus)
    await bus.emit(A)
    assert rec.log == [("on-a", "a", None), ("on-b", "b", "from a"), ("after", "a", None)]
    assert rec.emissions[1].source == "on-a"
    assert chains == [("a", "b"), ("a",)]
    assert _chain.get() == ()


async def test_nesting_up_to_max_depth_is_allowed() -> None:
    events = [Event(f"e{i}") for i in range(4)]
    holder: list[EventBus] = []
    reached: list[tuple[str, ...]] = []

    def forward(i: int) -> Action:
        async def action(emission: Emission) -> None:
            if i + 1 < len(events):
                await holder[0].emit(events[i + 1])
            else:
                reached.append(_chain.get())

        return action

    rec = Recorder()
    bus = EventBus(
        events,
        [rec.hook(f"h{i}", (e,), then=forward(i)) for i, e in enumerate(events)],
        max_depth=4,
    )
    holder.append(bus)
    await bus.emit(events[0])
    assert reached == [("e0", "e1", "e2", "e3")]


@pytest.mark.parametrize("failure_mode", ["fail_fast", "aggregate"])
async def test_an_emission_cycle_raises_before_running_hooks_past_the_limit(
    failure_mode: Any,
) -> None:
    holder: list[EventBus] = []

    def emit(event: Event) -> Action:
        async def action(emission: Emission) -> None:
            await holder[0].emit(event)

        return action

    rec = Recorder()
    bus = EventBus(
        [A, B],
        [rec.hook("on-a", (A,), then=emit(B)), rec.hook("on-b", (B,), then=emit(A))],
        max_depth=3,
    )
    holder.append(bus)
    error: BaseException
    if failure_mode == "fail_fast":
        with pytest.raises(EmissionCycleError) as info:
            await bus.emit(A)
        error = info.value
    else:  # the inner emissions fail fast; the outer one collects the error
        with pytest.raises(ExceptionGroup) as group:
            await bus.emit(A, failure_mode="aggregate")
        (error,) = group.value.exceptions
    assert isinstance(error, EmissionCycleError)
    assert error.chain == ["a", "b", "a", "b"]
    assert str(error) == (
        "event emission nested deeper than 3: a -> b -> a -> b; "
        "hooks are emitting events in a cycle"
    )
    assert rec.ran == ["on-a", "on-b", "on-a"]
    assert _chain.get() == ()


async def test_an_emit_from_a_task_spawned_by_a_hook_counts_as_nested() -> None:
    chains: list[tuple[str, ...]] = []
    holder: list[EventBus] = []

    async def child() -> None:
        await holder[0].emit(B)

    async def spawn(emission: Emission) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    async def record(emission: Emission) -> None:
        chains.append(_chain.get())

    rec = Recorder()
    bus = EventBus(
        [A, B], [rec.hook("on-a", (A,), then=spawn), rec.hook("on-b", (B,), then=record)]
    )
    holder.append(bus)
    await bus.emit(A)
    assert chains == [("a", "b")]


async def test_concurrent_emissions_keep_separate_chains() -> None:
    chains: dict[str, tuple[str, ...]] = {}

    async def record(emission: Emission) -> None:
        await trio.lowlevel.checkpoint()
        chains[emission.event.id] = _chain.get()

    rec = Recorder()
    bus = EventBus([A, B], [rec.hook("h", (A, B), then=record)])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bus.emit, A)
        nursery.start_soon(bus.emit, B)
    assert chains == {"a": ("a",), "b": ("b",)}


async def test_rebind_replaces_calls_by_hook_id_and_keeps_order() -> None:
    ping = Event("ping")
    heard: list[str] = []

    def hook(label: str) -> Callable[[Emission], Awaitable[None]]:
        async def call(emission: Emission) -> None:
            heard.append(label)

        return call

    bus = EventBus(
        [ping],
        [
            HookBinding(id="a", order=0, index=0, listens=frozenset({"ping"}), call=hook("a")),
            HookBinding(id="b", order=1, index=1, listens=None, call=hook("b")),
        ],
    )
    bus.rebind({"b": hook("b2")})
    await bus.emit(ping)
    assert heard == ["a", "b2"]
