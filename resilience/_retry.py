"""`Retry`: run an async callable again when it fails, waiting a backoff between attempts.

Built on tenacity's strategy objects: any tenacity ``wait_*``, ``stop_*`` or ``retry_*``
object plugs in, and our `resilience.backoff` strategies are tenacity waits. The loop itself is
ours, so that time comes from ``trio.current_time()``, sleeping is ``trio.sleep`` and the
success path is one ``try`` around the ``await``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

import attrs
import tenacity
import trio
from tenacity import RetryCallState
from tenacity.retry import retry_base
from tenacity.stop import stop_base

from resilience import _observe
from resilience._failures import check_on, matcher
from resilience.backoff import exponential
from resilience.validate import (
    fail,
    optional_callable,
    optional_name,
    optional_non_negative_duration,
    to_seconds,
)

__all__ = ["Retry", "fast_mode"]

P = ParamSpec("P")
T = TypeVar("T")

WaitStrategy = Callable[[RetryCallState], float]
RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool] | retry_base


@attrs.define(eq=False)
class _FastMode:
    """While ``depth > 0`` (see `resilience.testing.fast`), every Retry waits 0 s."""

    depth: int = 0


fast_mode: Final = _FastMode()


def _check_attempts(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        fail(instance, "attempts", f"must be an int or None, got {value!r}", TypeError)
    if value < 1:
        fail(instance, "attempts", f"must be >= 1, got {value!r}")


def _check_wait(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not callable(value):
        fail(
            instance,
            "wait",
            f"must be a backoff from rs.backoff or a tenacity wait, got {value!r}",
            TypeError,
        )


def _check_on(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_on(instance, attribute, value, other=" or a tenacity retry_* object")


@attrs.define(eq=False, kw_only=True)
class Retry:
    """Retry an async callable on failure.

    - ``attempts``: the most attempts in all (``None``: no limit of its own);
    - ``wait``: the delay before each retry: a `resilience.backoff` strategy or any tenacity
      ``wait_*`` object (default ``rs.backoff.exponential()``);
    - ``on``: which failures are retried: exception types, a predicate ``(exc) -> bool``, or
      any tenacity ``retry_*`` object (default: every `Exception`);
    - ``stop``: any tenacity ``stop_*`` object, checked in addition to ``attempts``;
    - ``timeout``: a total budget in seconds, counted from the start of the first attempt:
      no retry is started whose backoff would end past it (a running attempt is not
      cancelled; put a `Timeout` inside the retry for that);
    - ``retry_after``: ``(exc) -> seconds | None``; a number overrides the backoff delay
      (honour a server's ``Retry-After``).

    When it gives up, the last exception propagates unchanged. ``trio.Cancelled`` and other
    `BaseException`\\ s are never retried.
    """

    attempts: int | None = attrs.field(default=3, validator=_check_attempts)
    wait: WaitStrategy = attrs.field(factory=exponential, validator=_check_wait)
    on: RetryOn = attrs.field(default=Exception, validator=_check_on)
    stop: stop_base | None = attrs.field(
        default=None, validator=optional_callable("a tenacity stop_* object")
    )
    timeout: float | None = attrs.field(
        default=None, converter=to_seconds, validator=optional_non_negative_duration
    )
    retry_after: Callable[[Exception], float | None] | None = attrs.field(
        default=None, validator=optional_callable("a callable (exc) -> seconds | None")
    )
    name: str | None = attrs.field(default=None, validator=optional_name)

    _timed: bool = attrs.field(init=False)
    _matches: Callable[[Exception], bool] | None = attrs.field(init=False)
    _tenacity: tenacity.AsyncRetrying = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        on = self.on
        self._matches = None if isinstance(on, retry_base) else matcher(on)
        self._timed = self.timeout is not None or self.stop is not None
        # A tenacity object describing the same policy: strategies receive it as
        # ``retry_state.retry_object``, exactly as they would under tenacity.
        self._tenacity = tenacity.AsyncRetrying(
            wait=self.wait, stop=self.stop or tenacity.stop_never, reraise=True
        )

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``, retrying it per the policy; return its result.

        A checkpoint whenever ``fn`` is one, and at every backoff sleep. Cancellation
        (also during a backoff sleep) propagates at once; it is never retried.
        """
        start = trio.current_time() if self._timed else 0.0
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            failure = exc
        return await self._retry(failure, start, fn, args, kwargs)

    def _should_retry(self, exc: Exception, state: RetryCallState) -> bool:
        if self._matches is not None:
            return self._matches(exc)
        assert isinstance(self.on, retry_base)
        return self.on(state)

    def _delay(self, exc: Exception, state: RetryCallState) -> float:
        if self.retry_after is not None:
            hinted = self.retry_after(exc)
            if hinted is not None:
                return max(0.0, float(hinted))
        return max(0.0, float(self.wait(state)))

    async def _retry(
        self,
        failure: Exception,
        start: float,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        state = RetryCallState(self._tenacity, fn, args, kwargs)
        state.start_time = start if self._timed else trio.current_time()
        while True:
            now = trio.current_time()
            state.set_exception((type(failure), failure, failure.__traceback__))
            state.outcome_timestamp = now
            if not self._should_retry(failure, state):
                raise failure
            if self._gives_up(failure, state, now):
                if _observe.active:
                    _observe.emit(
                        "retry.gave_up", self.name, attempts=state.attempt_number, error=failure
                    )
                raise failure
            delay = self._delay(failure, state)
            if self.timeout is not None and now - state.start_time + delay > self.timeout:
                if _observe.active:
                    _observe.emit(
                        "retry.gave_up", self.name, attempts=state.attempt_number, error=failure
                    )
                raise failure
            if _observe.active:
                _observe.emit(
                    "retry.attempt",
                    self.name,
                    attempt=state.attempt_number,
                    delay=delay,
                    error=failure,
                )
            state.upcoming_sleep = delay
            state.idle_for += delay
            await trio.sleep(0.0 if fast_mode.depth else delay)
            state.prepare_for_next_attempt()
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                failure = exc

    def _gives_up(self, failure: Exception, state: RetryCallState, now: float) -> bool:
        if self.attempts is not None and state.attempt_number >= self.attempts:
            return True
        return self.stop is not None and bool(self.stop(state))
