"""Structured events from the primitives, delivered to listeners registered with `observe`.

A primitive reports an event with ``if _observe.active: _observe.emit(...)``: with no
listener registered anywhere, reporting costs one truth test and nothing is built.
Listeners are process-wide (`observe`) or belong to a `Listeners` registry, which sees
only the events reported in its context (one per `kernel.run`).

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
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final

import attrs
from loguru import logger

__all__ = [
    "Event",
    "Listener",
    "Listeners",
    "Subscription",
    "active",
    "emit",
    "listeners",
    "observe",
]


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

#: The process-wide listeners (`observe`): they see the events of every primitive.
listeners: Final[list[Listener]] = []

#: How many listeners are registered anywhere, process-wide or in a `Listeners` registry.
#: Primitives test ``_observe.active`` for truth before building an event.
active = 0

_current: ContextVar[Listeners | None] = ContextVar("resilience_listeners", default=None)


def _added() -> None:
    global active
    active += 1


def _removed() -> None:
    global active
    active -= 1


@attrs.define(eq=False)
class Subscription:
    """What `observe` returns: ``unsubscribe()``, or leaving ``with``, removes the listener."""

    listener: Listener
    _owner: list[Listener] = attrs.field(factory=lambda: listeners, repr=False, alias="owner")

    def unsubscribe(self) -> None:
        """Remove the listener. Calling it again does nothing."""
        for index, registered in enumerate(self._owner):
            if registered is self.listener:
                del self._owner[index]
                _removed()
                return

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()


def _check(listener: object) -> None:
    if not callable(listener):
        raise TypeError(f"observe: listener must be callable, got {listener!r}")


def observe(listener: Listener) -> Subscription:
    """Register ``listener``, a callable taking an `Event`, for the events of every primitive.

    Listeners run synchronously, in registration order, inside the call that caused the
    event, so they should be quick. An exception raised by a listener is logged (loguru,
    level ERROR) and never changes the outcome of the call being observed.
    """
    _check(listener)
    listeners.append(listener)
    _added()
    return Subscription(listener)


@attrs.define(eq=False)
class Listeners:
    """A registry of listeners that see only the events reported in its context.

    ``with registry.applied():`` makes it the registry of the current trio task (and of the
    tasks it starts from then on: trio copies the context into each new task); an event a
    primitive reports there goes to the process-wide listeners (`observe`) and then to this
    registry's. One `kernel.run` holds one, so two runtimes in one process each see only
    the events of their own calls, whichever primitive instance reports them. Registries do
    not nest: inside another registry's ``applied()``, only the innermost one listens.
    """

    _listeners: list[Listener] = attrs.field(factory=list, init=False)

    def observe(self, listener: Listener) -> Subscription:
        """Register ``listener`` in this registry; returns its unsubscribe handle."""
        _check(listener)
        self._listeners.append(listener)
        _added()
        return Subscription(listener, owner=self._listeners)

    @contextlib.contextmanager
    def applied(self) -> Iterator[Listeners]:
        """Make this the registry of the current context until the block ends."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


def _now() -> float | None:
    import trio

    try:
        return trio.current_time()
    except RuntimeError:
        return None


def emit(kind: str, source: str | None, **data: Any) -> None:
    """Deliver an event to the process-wide listeners, then to the current context's
    `Listeners`. Callers test `active` first."""
    event = Event(kind, source, MappingProxyType(data), _now())
    scoped = _current.get()
    targets = tuple(listeners) if scoped is None else (*listeners, *scoped._listeners)
    for listener in targets:
        try:
            listener(event)
        except Exception:
            logger.opt(exception=True).error(
                "resilience listener {!r} failed on {}", listener, event.kind
            )
