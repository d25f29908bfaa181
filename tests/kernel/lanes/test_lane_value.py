"""The lane's value beyond the conformance suite: context across the lane, failure modes,
the operators' reads and their refusals, a store opened by the caller, the memory stream's
cap."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import kernel
from kernel.exposure import request_id
from kernel.lanes import Lane, MemoryBroker
from resilience import StoreUnavailable
from resilience import redis as shared
from tests.kernel.lanes.conftest import Kit, Placed, placed
from tests.kernel.lanes.test_conformance import eventually
from tests.resilience.redis.server import RedisServer


async def test_the_request_id_and_the_trace_continue_across_the_lane(
    kit: Kit, clock: object
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    seen: list[tuple[Any, ...]] = []

    @kernel.hook("look", on=placed)
    async def look(emission: kernel.Emission) -> None:
        context = trace.get_current_span().get_span_context()
        seen.append((request_id.get(), context.trace_id))

    lane = kit.lane()
    async with kernel.run(kit.app(lane, look)) as rt:
        token = request_id.set("req-42")
        try:
            with tracer.start_as_current_span("emit") as span:
                await rt.emit(placed, Placed("A", 1))
                trace_id = span.get_span_context().trace_id
        finally:
            request_id.reset(token)
        await eventually(lambda: len(seen) == 1)
    assert seen == [("req-42", trace_id)]


async def test_aggregate_failures_are_dead_lettered_with_every_error(
    kit: Kit, clock: object
) -> None:
    @kernel.hook("one", on=placed)
    async def one(emission: kernel.Emission) -> None:
        raise ValueError("one broke")

    @kernel.hook("two", on=placed, order=1)
    async def two(emission: kernel.Emission) -> None:
        raise KeyError("two broke")

    lane = kit.lane(max_attempts=1, failure_mode="aggregate")
    async with kernel.run(kit.app(lane, one, two)) as rt:
        await rt.emit(placed, Placed("A", 1))
        await eventually(lambda: rt.resource(lane).stats().dead_lettered == 1)
        [letter] = await rt.resource(lane).dead_letters()
    assert "ValueError: one broke" in letter.error
    assert "KeyError: 'two broke'" in letter.error
    assert letter.to_dict()["attempts"] == 1


async def test_an_event_the_lane_does_not_carry_is_rejected(kit: Kit, clock: object) -> None:
    other = kernel.event("other")
    lane = kit.lane()
    async with kernel.run(kit.app(lane, other)) as rt:
        value: Lane = rt.resource(lane)
        await value.broker.add(value.envelope(other, None, None))
        await eventually(lambda: value.stats().rejected == 1)
        [letter] = await value.dead_letters()
    assert "is not carried by lane" in letter.error


class Broken:
    """A stream that cannot be reached and keeps unreadable dead letters."""

    async def pending(self) -> int:
        raise StoreUnavailable("redis store 'x': gone")

    async def dead_letters(self, limit: int) -> list[dict[str, str]]:
        return [{"error": "no id"}, {"message_id": "1-0", "attempts": "2"}]


async def test_the_operators_reads_and_their_refusals(kit: Kit, clock: object) -> None:
    lane = kit.lane(consume=False, max_pending_age=0.5)
    async with kernel.run(kit.app(lane)) as rt:
        value: Lane = rt.resource(lane)
        assert (await value.status()).status == "ok"
        assert (await value.status()).oldest_pending_age is None
        await rt.emit(placed, Placed("A", 1))
        await trio.sleep(1.0)
        status = await value.status()
        assert status.status == "degraded", status
        assert status.oldest_pending_age is not None
        assert 0.9 <= status.oldest_pending_age < 30
        assert "max_pending_age=0.5" in (status.problem or "")
        assert status.to_dict()["stats"]["published"] == 1
        with pytest.raises(RuntimeError, match="degraded"):
            await value.check()
        with pytest.raises(TypeError, match="limit must be an int"):
            await value.dead_letters("10")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit must be >= 1"):
            await value.dead_letters(0)
        with pytest.raises(TypeError, match="message_id must be a str"):
            await value.replay(7)  # type: ignore[arg-type]
        assert value.stats().to_dict()["latency_p50"] is None

        value.broker = Broken()  # type: ignore[assignment]
        status = await value.status()
        assert (status.status, status.pending) == ("unavailable", None)
        [letter] = await value.dead_letters()
        assert (letter.message_id, letter.attempts, letter.event_id) == ("1-0", 2, None)


async def test_a_stopped_lane_refuses_to_publish(kit: Kit, clock: object) -> None:
    lane = kit.lane(consume=False)
    async with kernel.run(kit.app(lane)) as rt:
        value: Lane = rt.resource(lane)
    with pytest.raises(kernel.lanes.LaneUnavailable, match="is stopped"):
        await value.publish(placed, Placed("A", 1), None)


async def test_a_lane_on_a_store_its_caller_opened(redis: RedisServer) -> None:
    seen: list[Any] = []

    @kernel.hook("seen", on=placed)
    async def record(emission: kernel.Emission) -> None:
        seen.append(emission.payload)

    store = shared.Store.from_url(redis.url, prefix="opened", op_timeout=2.0)
    async with store:
        lane = kernel.lanes.redis("lane", store=store, events=placed, group="g", maxlen=None)
        async with kernel.run(kernel.App("app", register=[placed, lane, record])) as rt:
            await rt.emit(placed, Placed("A", 1))
            await eventually(lambda: seen == [Placed("A", 1)])


async def test_the_memory_stream_is_capped_and_trimmed_entries_are_gone() -> None:
    broker = MemoryBroker(maxlen=2)
    ids = [await broker.add({"n": str(n)}) for n in range(3)]
    [first] = await broker.read("c", 1, 0.0)
    assert first.id == ids[1]  # the oldest was trimmed
    await broker.add({"n": "3"})  # trims the entry "c" holds
    assert not await broker.claim("c", first.id, 0.0)
    assert await broker.reclaim("c", 0.0, 10) == []
    assert await broker.replay("9-0") is None
    assert not await broker.bury("9-0", {})


async def test_running_lanes_show_in_the_prometheus_text(kit: Kit, clock: object) -> None:
    @kernel.hook("ok", on=placed)
    async def ok(emission: kernel.Emission) -> None:
        pass

    lane = kit.lane("metrics.lane")
    async with kernel.run(kit.app(lane, ok)) as rt:
        await rt.emit(placed, Placed("A", 1))
        await eventually(lambda: rt.resource(lane).stats().delivered == 1)
        await rt.resource(lane).status()
        text = kernel.metrics.prometheus_text()
    assert 'trio_runner_lane_published_total{lane="metrics.lane"} 1.0' in text
    assert 'trio_runner_lane_delivered_total{lane="metrics.lane"} 1.0' in text
    assert 'trio_runner_lane_pending{lane="metrics.lane"} 0.0' in text
    assert 'trio_runner_lane_delivery_latency_seconds{lane="metrics.lane",quantile="0.99"}' in text
    assert "trio_runner_lane_" not in kernel.metrics.prometheus_text()  # stopped: forgotten


async def test_the_lanes_of_an_app_are_found_by_their_tag(kit: Kit, clock: object) -> None:
    lane = kit.lane(consume=False)
    async with kernel.run(kit.app(lane)) as rt:
        [(definition, options)] = rt.find(kernel.lanes.lane_tag)
        assert definition is lane
        assert options.id == "orders.lane"
        assert rt.resource(definition).options is options


async def test_a_stream_key_of_another_type_does_not_crash_the_consumer(
    redis: RedisServer,
) -> None:
    seen: list[Any] = []

    @kernel.hook("seen", on=placed)
    async def record(emission: kernel.Emission) -> None:
        seen.append(emission.payload)

    store = shared.Store.from_url(redis.url, prefix="wrongtype", op_timeout=2.0)
    async with store:
        key = store.key("lane", "lane", "stream")
        await store.client.set(key, "not a stream")
        lane = kernel.lanes.redis("lane", store=store, events=placed, group="g")
        async with kernel.run(kernel.App("app", register=[placed, lane, record])) as rt:
            with pytest.raises(Exception, match="wrong kind of value"):
                await rt.emit(placed, Placed("A", 1))
            await trio.sleep(0.3)  # the consumer keeps failing, and keeps going
            await store.client.delete([key])
            await rt.emit(placed, Placed("B", 2))
            await eventually(lambda: seen == [Placed("B", 2)])
