"""`Bulkhead`: at most N calls inside at once, a bounded FIFO queue, rejection past it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import attrs
import trio

from resilience import _observe
from resilience._errors import BulkheadFull
from resilience.validate import (
    fail,
    optional_name,
    optional_non_negative_duration,
    positive_int,
    to_seconds,
)

__all__ = ["Bulkhead", "BulkheadStatistics"]

P = ParamSpec("P")
T = TypeVar("T")


def _non_negative_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(instance, attribute.name, f"must be an int, got {value!r}", TypeError)
    if value < 0:
        fail(instance, attribute.name, f"must be >= 0, got {value!r}")


@attrs.frozen
class BulkheadStatistics:
    """A snapshot: calls inside, calls queued, and rejections since creation."""

    max_concurrent: int
    active: int
    queued: int
    rejected: int


# on_setattr=NO_OP: attrs' validate-on-assignment hook costs ~0.7 µs per attribute write,
# and the hot path writes state on every call. Options are validated at construction only.
@attrs.define(eq=False, kw_only=True, on_setattr=attrs.setters.NO_OP)
class Bulkhead:
    """Limit concurrency: ``max_concurrent`` calls inside, ``max_queued`` waiting (FIFO).

    A caller finding no slot and no room in the queue is rejected at once with
    `BulkheadFull`; a queued caller gives up with `BulkheadFull` after ``queue_timeout``
    seconds (``None``: waits as long as needed). A freed slot is handed to the first queued
    caller directly, so nobody overtakes the queue.
    """

    max_concurrent: int = attrs.field(validator=positive_int)
    max_queued: int = attrs.field(default=0, validator=_non_negative_int)
    queue_timeout: float | None = attrs.field(
        default=None, converter=to_seconds, validator=optional_non_negative_duration
    )
    name: str | None = attrs.field(default=None, validator=optional_name)

    _active: int = attrs.field(default=0, init=False)
    _rejected: int = attrs.field(default=0, init=False)
    _queue: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot, init=False)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` inside the bulkhead; see `acquire` for waiting."""
        if self._active < self.max_concurrent and not self._queue:
            self._active += 1
        else:
            await self._wait_for_slot()
        try:
            return await fn(*args, **kwargs)
        finally:
            self.release()

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room; else raise `BulkheadFull`.

        Not a checkpoint when a slot is free (the fast path); a checkpoint when it queues.
        Cancellation while queued leaves the queue and takes no slot.
        """
        if self._active < self.max_concurrent and not self._queue:
            self._active += 1
        else:
            await self._wait_for_slot()

    def release(self) -> None:
        """Give a slot back: to the first queued caller if any, else to the pool."""
        if self._queue:
            self._queue.unpark()
        else:
            self._active -= 1

    async def __aenter__(self) -> Bulkhead:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def statistics(self) -> BulkheadStatistics:
        """The current counts."""
        return BulkheadStatistics(
            max_concurrent=self.max_concurrent,
            active=self._active,
            queued=len(self._queue),
            rejected=self._rejected,
        )

    async def _wait_for_slot(self) -> None:
        if len(self._queue) >= self.max_queued:
            self._reject("full")
        if self.queue_timeout is None:
            # A slot is handed over by release(): when park() returns, it is ours.
            await self._queue.park()
            return
        with trio.move_on_after(self.queue_timeout):
            await self._queue.park()
            return
        self._reject("queue_timeout")

    def _reject(self, reason: str) -> None:
        self._rejected += 1
        if _observe.active:
            _observe.emit(
                "bulkhead.rejected",
                self.name,
                active=self._active,
                queued=len(self._queue),
                reason=reason,
            )
        if reason == "full":
            message = (
                f"bulkhead full: {self._active} running (max {self.max_concurrent}), "
                f"{len(self._queue)} queued (max {self.max_queued})"
            )
        else:
            message = f"bulkhead queue wait exceeded {self.queue_timeout:g} s"
        raise BulkheadFull(message)
