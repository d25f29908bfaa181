"""One behaviour for both lanes: every test runs on a memory lane and on a Redis lane."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import kernel
from kernel.lanes import Lane
from tests.kernel.lanes.conftest import Kit, Placed, placed, untyped

SECRET = b"0123456789abcdef-lanes"


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float = 10.0
) -> None:
    """Poll ``check`` until it holds (real time on Redis; the MockClock jumps on memory)."""
    for _ in range(math.ceil(within / 0.01)):
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await trio.sleep(0.01)
    raise AssertionError(f"not true within {within:g} s")


def recorder(seen: list[tuple[Any, ...]], *, fail: int = 0, on: Any = placed) -> kernel.Hook:
    """A hook recording (payload, message id, attempt, source); failing its first ``fail`` runs."""
    runs = [0]

    @kernel.hook("record", on=on)
    async def record(emission: kernel.Emission) -> None:
        runs[0] += 1
        delivery = emission.delivery
        assert delivery is not None
        seen.append((emission.payload, delivery.message_id, delivery.attempt, emission.source))
        if runs[0] <= fail:
            raise RuntimeError(f"run {runs[0]} fails")

    return record


async def test_an_emit_is_delivered_once_with_its_message_id(kit: Kit, clock: object) -> None:
    seen: list[tuple[Any, ...]] = []
    lane = kit.lane(source="orders-service")
    async with kernel.run(kit.app(lane, recorder(seen))) as rt:
        await rt.emit(placed, {"order": "A-1", "amount": 30})
        await eventually(lambda: len(seen) == 1)
        value: Lane = rt.resource(lane)
        await eventually(lambda: value.stats().delivered == 1)
        assert await value.pending() == 0
        stats = value.stats()
    payload, message_id, attempt, source = seen[0]
    assert payload == Placed("A-1", 30)
    assert attempt == 1
    assert isinstance(message_id, str)
    assert message_id
    assert source == "orders-service"
    assert stats.published == 1
    assert stats.latency_p50 is not None


async def test_hooks_run_in_order_and_stop_propagation_holds(kit: Kit, clock: object) -> None:
    ran: list[str] = []

    @kernel.hook("second", on=placed, order=2)
    async def second(emission: kernel.Emission) -> None:
        ran.append("second")

    @kernel.hook("first", on=placed, order=1)
    async def first(emission: kernel.Emission) -> None:
        ran.append("first")
        if emission.payload.amount < 0:
            emission.stop_propagation()

    lane = kit.lane()
    async with kernel.run(kit.app(lane, second, first)) as rt:
        await rt.emit(placed, Placed("A", 1))
        await rt.emit(placed, Placed("B", -1))
        await eventually(lambda: rt.resource(lane).stats().delivered == 2)
    assert sorted(ran) == ["first", "first", "second"]
    assert ran.count("second") == 1


async def test_a_bad_payload_is_refused_and_nothing_is_written(kit: Kit, clock: object) -> None:
    lane = kit.lane(consume=False)
    async with kernel.run(kit.app(lane)) as rt:
        with pytest.raises(kernel.ConfigError, match=r"payload\.amount"):
            await rt.emit(placed, {"order": "A", "amount": "lots"})
        with pytest.raises(TypeError, match="not JSON data"):
            await rt.emit(untyped, object())
        assert await rt.resource(lane).pending() == 0


async def test_a_local_emit_has_no_delivery(kit: Kit, clock: object) -> None:
    other = kernel.event("local")
    seen: list[Any] = []

    @kernel.hook("local.hook", on=other)
    async def local(emission: kernel.Emission) -> None:
        seen.append(emission.delivery)

    async with kernel.run(kit.app(kit.lane(), other, local)) as rt:
        await rt.emit(other)
    assert seen == [None]


async def test_failing_twice_then_succeeding_is_delivered_at_attempt_3(
    kit: Kit, clock: object
) -> None:
    seen: list[tuple[Any, ...]] = []
    lane = kit.lane(retry_delay=0.05, retry_backoff=2.0, max_attempts=5)
    async with kernel.run(kit.app(lane, recorder(seen, fail=2))) as rt:
        await rt.emit(placed, Placed("A", 1))
        await eventually(lambda: rt.resource(lane).stats().delivered == 1)
        stats = rt.resource(lane).stats()
        assert await rt.resource(lane).pending() == 0
    assert [attempt for _, _, attempt, _ in seen] == [1, 2, 3]
    assert len({message_id for _, message_id, _, _ in seen}) == 1
    assert stats.retried == 2


async def test_failing_always_is_dead_lettered_then_replayed_once(kit: Kit, clock: object) -> None:
    seen: list[tuple[Any, ...]] = []
    lane = kit.lane(retry_delay=0.02, max_attempts=3)
    async with kernel.run(kit.app(lane, recorder(seen, fail=3))) as rt:
        value: Lane = rt.resource(lane)
        await rt.emit(placed, Placed("A", 1))
        await eventually(lambda: value.stats().dead_lettered == 1)
        [letter] = await value.dead_letters()
        assert letter.attempts == 3
        assert letter.event_id == "order.placed"
        assert letter.payload == {"order": "A", "amount": 1}
        assert "RuntimeError: run 3 fails" in letter.error
        assert letter.message_id == seen[0][1]
        assert await value.pending() == 0
        # replay: back once (the hook now succeeds), and the dead letter is gone
        new_id = await value.replay(letter.message_id)
        assert new_id != letter.message_id
        with pytest.raises(LookupError, match="no dead letter"):
            await value.replay(letter.message_id)
        await eventually(lambda: value.stats().delivered == 1)
        assert await value.dead_letters() == []
    assert [attempt for _, _, attempt, _ in seen] == [1, 2, 3, 1]
    assert seen[-1][1] == new_id


@pytest.mark.parametrize(
    ("name", "tamper"),
    [
        ("tampered", lambda f: {**f, "payload": '{"order":"A","amount":1000000}'}),
        ("unsigned", lambda f: {k: v for k, v in f.items() if k != "sig"}),
        ("undecodable", lambda f: {**f, "payload": "{not json"}),
        ("not an envelope", lambda f: {"hello": "world"}),
        ("wrong type", lambda f: {**f, "payload": '{"order":"A"}'}),
    ],
)
async def test_bad_entries_are_dead_lettered_and_never_run(
    kit: Kit, clock: object, name: str, tamper: Callable[[dict[str, str]], dict[str, str]]
) -> None:
    seen: list[tuple[Any, ...]] = []
    lane = kit.lane(secret=SECRET)
    async with kernel.run(kit.app(lane, recorder(seen))) as rt:
        value: Lane = rt.resource(lane)
        fields = value.envelope(placed, Placed("A", 1), None)
        if name == "wrong type":  # validly signed, yet not a Placed
            fields = value.envelope(placed, {"order": "A"}, None)
        else:
            fields = tamper(fields)
        bad_id = await value.broker.add(fields)
        await rt.emit(placed, Placed("B", 2))  # the consumer keeps going
        await eventually(lambda: value.stats().delivered == 1)
        await eventually(lambda: value.stats().dead_lettered == 1)
        [letter] = await value.dead_letters()
    assert [payload for payload, *_ in seen] == [Placed("B", 2)]
    assert letter.message_id == bad_id
    assert letter.attempts == 0
    assert letter.error.startswith("rejected: ")
    assert value.stats().rejected == 1


async def test_a_dead_consumers_entries_are_reclaimed(kit: Kit, clock: object) -> None:
    seen: list[tuple[Any, ...]] = []
    producer_lane = kit.lane(consume=False)
    async with kernel.run(kit.app(producer_lane)) as producer:
        value: Lane = producer.resource(producer_lane)
        await producer.emit(placed, Placed("A", 1))
        await value.broker.prepare()
        # a consumer that took the entry and died before acknowledging it
        [taken] = await value.broker.read("ghost", 10, 0.1)
    lane = kit.lane(claim_idle=0.3)
    async with kernel.run(kit.app(lane, recorder(seen))) as rt:
        await eventually(lambda: rt.resource(lane).stats().delivered == 1)
        assert await rt.resource(lane).pending() == 0
    [(payload, message_id, attempt, _)] = seen
    assert payload == Placed("A", 1)
    assert message_id == taken.id
    assert attempt == 2


async def test_an_entry_whose_consumers_keep_dying_is_dead_lettered(
    kit: Kit, clock: object
) -> None:
    seen: list[tuple[Any, ...]] = []
    producer_lane = kit.lane(consume=False, claim_idle=0.1)
    async with kernel.run(kit.app(producer_lane)) as producer:
        value: Lane = producer.resource(producer_lane)
        await producer.emit(placed, Placed("A", 1))
        await value.broker.prepare()
        await value.broker.read("ghost", 10, 0.1)
        for _ in range(2):  # two more consumers took it and died
            await trio.sleep(0.15)
            assert len(await value.broker.reclaim("ghost", 0.1, 10)) == 1
    lane = kit.lane(claim_idle=0.1, max_attempts=3)
    async with kernel.run(kit.app(lane, recorder(seen))) as rt:
        await eventually(lambda: rt.resource(lane).stats().dead_lettered == 1)
        [letter] = await rt.resource(lane).dead_letters()
    assert seen == []
    assert letter.attempts == 3
    assert "without an outcome" in letter.error


async def test_pending_counts_undelivered_entries_and_health_degrades(
    kit: Kit, clock: object
) -> None:
    lane = kit.lane(consume=False, max_pending=2)
    async with kernel.run(kit.app(lane)) as rt:
        value: Lane = rt.resource(lane)
        for n in range(3):
            await rt.emit(placed, Placed(f"A{n}", n))
        assert await value.pending() == 3
        status = await value.status()
        assert status.status == "degraded"
        assert status.oldest_pending_age is not None
        assert "max_pending=2" in (status.problem or "")
        report = await rt.health()
        assert report.status == "degraded"
        assert value.stats().published == 3


async def test_shutdown_during_a_batch_leaves_the_unfinished_for_another_consumer(
    kit: Kit, clock: object
) -> None:
    started: list[str] = []
    finished: list[str] = []
    release = trio.Event()

    @kernel.hook("slow", on=placed)
    async def slow(emission: kernel.Emission) -> None:
        started.append(emission.payload.order)
        if emission.payload.amount == 0:  # quick: finishes within the drain
            await trio.sleep(0.05)
        else:  # stuck until after the drain deadline: cancelled
            await release.wait()
        finished.append(emission.payload.order)

    first = kit.lane(claim_idle=0.3, batch=2)
    async with kernel.run(kit.app(first, slow), drain_timeout=0.3) as rt:
        await rt.emit(placed, Placed("quick", 0))
        await rt.emit(placed, Placed("stuck", 1))
        for n in range(3):
            await rt.emit(placed, Placed(f"later{n}", 0))
        await eventually(lambda: len(started) == 2)
        rt.shutdown()
        await trio.sleep_forever()  # the shutdown cancels the body after the drain
    assert sorted(started) == ["quick", "stuck"]
    assert finished == ["quick"]
    release.set()
    seen: list[str] = []

    @kernel.hook("later", on=placed)
    async def later(emission: kernel.Emission) -> None:
        assert emission.delivery is not None
        seen.append(f"{emission.payload.order}@{emission.delivery.attempt}")

    second = kit.lane(claim_idle=0.3)
    async with kernel.run(kit.app(second, later)) as rt:
        await eventually(lambda: len(seen) == 4)
        assert await rt.resource(second).pending() == 0
    # "stuck" was delivered once before; a "later" one may have been read (not run) too
    assert sorted(item.split("@")[0] for item in seen) == ["later0", "later1", "later2", "stuck"]
    assert "stuck@2" in seen


async def test_a_long_run_of_a_live_consumer_is_not_reclaimed(kit: Kit, clock: object) -> None:
    runs: list[int] = []

    @kernel.hook("long", on=placed)
    async def long(emission: kernel.Emission) -> None:
        assert emission.delivery is not None
        runs.append(emission.delivery.attempt)
        await trio.sleep(1.2)  # four times claim_idle

    first, second = kit.lane(claim_idle=0.3), kit.lane(claim_idle=0.3)
    async with (
        kernel.run(kit.app(first, long)) as rt,
        kernel.run(kit.app(second, long)) as other,
    ):
        await rt.emit(placed, Placed("A", 1))
        await eventually(
            lambda: (
                rt.resource(first).stats().delivered + other.resource(second).stats().delivered == 1
            )
        )
        await trio.sleep(0.5)  # time for a wrong reclaim to show
        assert await rt.resource(first).pending() == 0
    assert runs == [1]
