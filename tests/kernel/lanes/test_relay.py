"""The bus's side of lanes: a relayed event runs no hook here; a delivery does, with
``emission.delivery`` set."""

from __future__ import annotations

from typing import Any

import pytest

from kernel import Delivery, Emission, EmitReport, Event, UnknownEventError
from kernel._bus import EventBus, HookBinding

A = Event("a")


def bus(seen: list[Any]) -> EventBus:
    async def call(emission: Emission) -> None:
        seen.append(emission.delivery)

    return EventBus([A], [HookBinding("h", 0, 0, None, call)])


async def test_a_relayed_event_runs_no_hook_and_a_delivery_does() -> None:
    seen: list[Any] = []
    relayed: list[Any] = []
    events = bus(seen)

    async def relay(event: Event, payload: Any, source: str | None) -> None:
        relayed.append((event.id, payload, source))

    events.relay("a", relay)
    report = await events.emit(A, 1, source="me", report=True)
    assert report == EmitReport("a", (), (), None)
    assert relayed == [("a", 1, "me")]
    assert seen == []
    await events.emit(A, 2, delivery=Delivery("1-0", 2))
    assert seen == [Delivery("1-0", 2)]
    events.relay("a", None)
    await events.emit(A, 3)
    assert seen == [Delivery("1-0", 2), None]


def test_relaying_an_unknown_or_taken_event_is_refused() -> None:
    events = bus([])

    async def relay(event: Event, payload: Any, source: str | None) -> None: ...

    async def other(event: Event, payload: Any, source: str | None) -> None: ...

    with pytest.raises(UnknownEventError, match="'b' is not registered"):
        events.relay("b", relay)
    events.relay("a", relay)
    events.relay("a", relay)  # the same relay again: fine
    with pytest.raises(ValueError, match="relayed already"):
        events.relay("a", other)
