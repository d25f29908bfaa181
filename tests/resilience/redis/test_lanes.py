"""`Lanes` with a fake round trip and trio's MockClock: arrival order kept per key, batches
of what queued meanwhile, and every way a caller can leave."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing

from resilience.redis._lanes import Lanes, Ticket

ROUND_TRIP = 1.0


class Boom(Exception):
    pass


@attrs.define
class FakeServer:
    """Decides ``request * 10`` for each ticket after ROUND_TRIP seconds, keeps a log."""

    batches: list[tuple[str, list[int]]] = attrs.Factory(list)
    lost: list[list[int]] = attrs.Factory(list)
    abandoned: list[int] = attrs.Factory(list)
    fail_next: bool = False
    in_flight: dict[str, int] = attrs.Factory(dict)
    most_in_flight: dict[str, int] = attrs.Factory(dict)

    async def run(self, key: str, tickets: Sequence[Ticket[int, int]]) -> list[int]:
        requests = [ticket.request for ticket in tickets]
        for ticket in tickets:
            ticket.attempt = ticket.request
        self.batches.append((key, requests))
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.most_in_flight[key] = max(self.most_in_flight.get(key, 0), self.in_flight[key])
        try:
            await trio.sleep(ROUND_TRIP)
        finally:
            self.in_flight[key] -= 1
        if self.fail_next:
            self.fail_next = False
            raise Boom("the round trip failed")
        return [request * 10 for request in requests]

    def lanes(self) -> Lanes[str, int, int]:
        return Lanes(
            self.run,
            lambda key, tickets: self.lost.append([t.attempt for t in tickets]),
            lambda key, ticket, decision: self.abandoned.append(decision),
        )


async def test_an_idle_lane_sends_at_once_and_queued_callers_go_together_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    lanes = server.lanes()
    results: list[tuple[int, int]] = []

    async def caller(request: int) -> None:
        results.append((request, await lanes.submit("k", request)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, 1)
        await trio.sleep(0.1)
        for request in (2, 3, 4):
            nursery.start_soon(caller, request)
            await trio.sleep(0.1)
    assert server.batches == [("k", [1]), ("k", [2, 3, 4])]
    assert sorted(results) == [(1, 10), (2, 20), (3, 30), (4, 40)]
    assert trio.current_time() == pytest.approx(2 * ROUND_TRIP)
    assert len(lanes) == 0  # idle lanes are dropped


async def test_keys_do_not_wait_for_each_other(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer()
    lanes = server.lanes()
    async with trio.open_nursery() as nursery:
        for key in ("a", "b", "c", "a"):
            nursery.start_soon(lanes.submit, key, 1)
    assert trio.current_time() == pytest.approx(2 * ROUND_TRIP)  # a's second waits
    assert server.most_in_flight == {"a": 1, "b": 1, "c": 1}


async def test_batches_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer()
    lanes = Lanes(server.run, lambda *_: None, lambda *_: None, max_batch=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lanes.submit, "k", 0)
        await trio.sleep(0.1)
        for request in (1, 2, 3):
            nursery.start_soon(lanes.submit, "k", request)
            await trio.lowlevel.checkpoint()
    assert [requests for _, requests in server.batches] == [[0], [1, 2], [3]]


async def test_a_failed_round_trip_fails_its_whole_batch_and_the_lane_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    lanes = server.lanes()
    outcomes: dict[int, object] = {}

    async def caller(request: int) -> None:
        try:
            outcomes[request] = await lanes.submit("k", request)
        except Boom as exc:
            outcomes[request] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, 1)
        await trio.sleep(0.1)
        nursery.start_soon(caller, 2)
        nursery.start_soon(caller, 3)
        await trio.sleep(ROUND_TRIP)  # the second batch is in flight now
        server.fail_next = True
        nursery.start_soon(caller, 4)
    assert outcomes[1] == 10
    assert isinstance(outcomes[2], Boom)
    assert outcomes[2] is outcomes[3]
    assert outcomes[4] == 40
    assert server.lost == [[2, 3] if server.batches[1][1] == [2, 3] else [3, 2]]


async def test_a_caller_cancelled_in_the_queue_leaves_it_unsent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    lanes = server.lanes()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lanes.submit, "k", 1)
        await trio.sleep(0.1)
        with trio.move_on_after(0.1):
            await lanes.submit("k", 2)
        nursery.start_soon(lanes.submit, "k", 3)
    assert server.batches == [("k", [1]), ("k", [3])]
    assert server.abandoned == []


async def test_a_caller_cancelled_while_its_batch_is_in_flight_is_given_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    lanes = server.lanes()
    got: list[int] = []

    async def keep(request: int) -> None:
        got.append(await lanes.submit("k", request))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lanes.submit, "k", 1)
        await trio.sleep(0.1)
        nursery.start_soon(keep, 2)  # queues first: it leads [2, 3] when 1 returns (t = 1.0)
        await trio.sleep(0.02)
        with trio.move_on_after(ROUND_TRIP):  # t = 1.12: 3 is a member of [2, 3] in flight
            await lanes.submit("k", 3)
    assert server.batches[-1] == ("k", [2, 3])
    assert server.abandoned == [30]
    assert got == [20]


async def test_a_leader_cancelled_mid_trip_loses_its_batch_and_the_others_are_sent_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    lanes = server.lanes()
    got: dict[int, int] = {}

    async def keep(request: int, delay: float = 0.0) -> None:
        await trio.sleep(delay)
        got[request] = await lanes.submit("k", request)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep, 1)
        await trio.sleep(0.1)
        with trio.move_on_after(ROUND_TRIP):
            # 5 queues behind 1, then 6 and 7; 5 leads [5, 6, 7] when 1 returns (t = 1.0),
            # and is cancelled half way through that round trip (t = 1.1).
            nursery.start_soon(keep, 6, 0.01)
            nursery.start_soon(keep, 7, 0.02)
            await lanes.submit("k", 5)
    assert server.lost == [[5, 6, 7]]
    # The others went again, in their order, without the cancelled leader.
    assert server.batches[-1] == ("k", [6, 7])
    assert got == {1: 10, 6: 60, 7: 70}


async def test_a_caller_cancelled_just_after_its_decision_arrived_still_gets_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    lanes = server.lanes()
    scope = trio.CancelScope()
    got: list[int] = []

    async def lead_then_cancel() -> None:
        await lanes.submit("k", 4)
        # No checkpoint since the batch [4, 2] landed: 2 is decided but has not resumed.
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lanes.submit, "k", 1)
        await trio.sleep(0.1)
        nursery.start_soon(lead_then_cancel)
        await trio.sleep(0.1)
        with scope:
            got.append(await lanes.submit("k", 2))
            await trio.lowlevel.checkpoint()  # where the cancellation lands
    assert scope.cancelled_caught
    assert server.batches[-1] == ("k", [4, 2])
    assert got == [20]
    assert server.abandoned == []  # the caller has its decision: nothing to give back
