"""`Hedge`: start another attempt when the running ones are slow; the first success wins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar

import attrs
import trio

from resilience import _observe
from resilience.validate import non_negative_duration, optional_name, positive_int, to_seconds

__all__ = ["Hedge"]

P = ParamSpec("P")
T = TypeVar("T")


@attrs.define(eq=False)
class _Race(Generic[T]):
    """The shared state of one hedged call."""

    won: bool = False
    result: T | None = None
    last_error: Exception | None = None
    failed: trio.Event = attrs.Factory(trio.Event)


@attrs.define(eq=False, kw_only=True)
class Hedge:
    """Hedged requests: up to ``max_attempts`` concurrent attempts of the same call.

    The first attempt starts at once; another starts whenever ``delay`` seconds pass with no
    attempt finished, or as soon as an attempt fails. The first success wins and the other
    attempts are cancelled; if every attempt fails, the last error propagates. Only hedge
    idempotent calls.
    """

    delay: float = attrs.field(converter=to_seconds, validator=non_negative_duration)
    max_attempts: int = attrs.field(default=2, validator=positive_int)
    name: str | None = attrs.field(default=None, validator=optional_name)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run hedged attempts of ``fn(*args, **kwargs)`` and return the first success.

        Always a checkpoint (attempts run in a nursery owned by this call). Cancellation
        cancels every attempt and propagates.
        """
        race: _Race[T] = _Race()
        async with trio.open_nursery() as nursery:
            for attempt in range(1, self.max_attempts + 1):
                if attempt > 1 and _observe.active:
                    _observe.emit("hedge.attempt", self.name, attempt=attempt)
                nursery.start_soon(self._attempt, race, nursery.cancel_scope, fn, args, kwargs)
                if attempt < self.max_attempts:
                    with trio.move_on_after(self.delay):
                        await race.failed.wait()  # wakes early when an attempt fails
                    race.failed = trio.Event()
        if race.won:
            return race.result  # type: ignore[return-value]
        assert race.last_error is not None
        raise race.last_error

    @staticmethod
    async def _attempt(
        race: _Race[T],
        scope: trio.CancelScope,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            race.last_error = exc
            race.failed.set()
        else:
            race.won = True
            race.result = result
            scope.cancel()
