"""Structured events from the primitives, delivered to listeners registered with `observe`.

A primitive reports an event with ``if _observe.listeners: _observe.emit(...)``: with no
listener registered, reporting costs one truth test and nothing is built.

Event kinds (``Event.kind``) and the keys of their ``data``:

- ``timeout.exceeded``: seconds
- ``retry.attempt``: attempt (the number of the attempt that failed), delay, error
- ``retry.gave_up``: attempts, error
- ``circuit.state_changed``: old, new (``CircuitState`` values as strings)
- ``circuit.rejected``: state, retry_after
- ``ratelimit.waited``: key, cost, delay
- ``ratelimit.rejected``: key, cost, retry_after
- ``bulkhead.rejected``: active, queued, reason (``"full"`` or ``"queue_timeout"``)
- ``cache.hit`` / ``cache.miss`` / ``cache.stale_hit`` / ``cache.evicted``: key
- ``cache.refresh_failed``: key, error
- ``fallback.used``: error
- ``hedge.attempt``: attempt (the number of the attempt started)
- ``store.unavailable``: error, mode (a ``resilience.redis.Store`` found Redis unreachable;
  once per outage) / ``store.recovered``: downtime (seconds)
- ``cache.invalid``: key, error (a ``resilience.redis.Cache`` dropped an unreadable value)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs
from loguru import logger

__all__ = ["Event", "Listener", "Subscription", "emit", "listeners", "observe"]


@attrs.frozen
class Event:
    """One thing a primitive did.

    ``kind`` is a dotted name such as ``"retry.attempt"``; ``source`` is the ``name=`` given
    to the primitive (``None`` when it has none); ``time`` is ``trio.current_time()`` when
    the event happened, or ``None`` outside a trio run; ``data`` holds the kind's fields.
    """

    kind: str
    source: str | None
    data: Mapping[str, Any]
    time: float | None = None


Listener = Callable[[Event], object]

#: The registered listeners. Primitives test it for truth before building an event.
listeners: Final[list[Listener]] = []


@attrs.define(eq=False)
class Subscription:
    """What `observe` returns: ``unsubscribe()``, or leaving ``with``, removes the listener."""

    listener: Listener

    def unsubscribe(self) -> None:
        """Remove the listener. Calling it again does nothing."""
        with contextlib.suppress(ValueError):
            listeners.remove(self.listener)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()


def observe(listener: Listener) -> Subscription:
    """Register ``listener``, a callable taking an `Event`, for the events of every primitive.

    Listeners run synchronously, in registration order, inside the call that caused the
    event, so they should be quick. An exception raised by a listener is logged (loguru,
    level ERROR) and never changes the outcome of the call being observed.
    """
    if not callable(listener):
        raise TypeError(f"observe: listener must be callable, got {listener!r}")
    listeners.append(listener)
    return Subscription(listener)


def _now() -> float | None:
    import trio

    try:
        return trio.current_time()
    except RuntimeError:
        return None


def emit(kind: str, source: str | None, **data: Any) -> None:
    """Deliver an event to every listener. Callers test `listeners` first."""
    event = Event(kind, source, MappingProxyType(data), _now())
    for listener in tuple(listeners):
        try:
            listener(event)
        except Exception:
            logger.opt(exception=True).error(
                "resilience listener {!r} failed on {}", listener, event.kind
            )
