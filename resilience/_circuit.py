"""`CircuitBreaker`: stop calling a service that keeps failing, probe it again later.

States and transitions::

    CLOSED --(failures: consecutive, or ratio over the window; or slow-call ratio)--> OPEN
    OPEN --(reset_timeout elapsed; noticed lazily on `state` reads and calls)--> HALF_OPEN
    HALF_OPEN --(success_threshold successful probes)--> CLOSED
    HALF_OPEN --(one failed probe, or a slow one when slow_call_ratio is set)--> OPEN
    any --isolate()--> OPEN (until reset())        any --reset()--> CLOSED

Rules for recording outcomes:

- A call ending with an ``Exception`` is a failure if ``is_failure(exc)`` is true (default:
  always), else a success; the exception propagates either way. A call ending with any
  other ``BaseException`` (``trio.Cancelled``, ``KeyboardInterrupt``...) is neither: it is
  counted as a cancellation and only gives back its half-open probe slot.
- In the closed state, outcomes are recorded in completion order, whenever the call was
  admitted. A call finishing while the circuit is open, or in half-open when it is not a
  probe of the current half-open period, only updates the lifetime statistics.
- With ``slow_call_duration`` set, a call lasting at least that long (failed or not) is
  slow. A slow call that succeeded is still a success for failure counting. The slow-call
  ratio is evaluated over the window (``Window.count(100)`` unless ``window`` is given),
  also in consecutive mode. With ``slow_call_ratio`` set, a slow probe re-opens the circuit;
  without it, slow calls are only counted.
- Ratios are evaluated after every outcome recorded in the closed state, once the window
  holds ``minimum_calls`` calls (for ``Window.count(n)``: ``min(minimum_calls, n)``); the
  circuit opens when ``failures / calls >= failure_ratio`` or
  ``slow_calls / calls >= slow_call_ratio``. In ratio mode ``failure_threshold`` is unused.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar

import attrs
import trio

from resilience import _observe
from resilience._circuit_window import CountTracker, TimeTracker, Window, new_tracker
from resilience._errors import CircuitOpen
from resilience.validate import (
    fail,
    non_negative_duration,
    optional_callable,
    optional_name,
    optional_positive_duration,
    positive_int,
    to_seconds,
)

__all__ = ["CircuitBreaker", "CircuitState", "CircuitStatistics", "Window"]

P = ParamSpec("P")
T = TypeVar("T")

#: ``reset_timeout`` once converted: seconds, or ``(consecutive_opens) -> seconds or timedelta``.
ResetTimeout = float | Callable[[int], float | timedelta]


class CircuitState(enum.Enum):
    """The state of a `CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN


@attrs.frozen
class CircuitStatistics:
    """A snapshot of a `CircuitBreaker`, from `CircuitBreaker.statistics`.

    Lifetime totals (never cleared, not even by ``reset()``): ``calls`` (admitted calls that
    have finished: ``successes + failures + cancellations``), ``successes``, ``failures``,
    ``cancellations``, ``slow_calls`` and ``rejections`` (calls refused with `CircuitOpen`).

    Current state: ``state``; ``isolated`` (forced open by ``isolate()``);
    ``consecutive_failures`` (recorded in the closed state; cleared when the circuit closes);
    ``consecutive_opens`` (openings since the circuit was last closed); ``opened_at`` (the
    ``trio.current_time()`` of the last opening, ``None`` while closed); ``open_until`` (when
    the open state ends, ``None`` unless open and not isolated); ``probes_in_flight`` (running
    half-open probes); ``window_calls``, ``window_failures``, ``window_slow_calls`` (what the
    ratio window holds now; zeros without a window).
    """

    name: str | None
    state: CircuitState
    calls: int
    successes: int
    failures: int
    cancellations: int
    slow_calls: int
    rejections: int
    isolated: bool
    consecutive_failures: int
    consecutive_opens: int
    opened_at: float | None
    open_until: float | None
    probes_in_flight: int
    window_calls: int
    window_failures: int
    window_slow_calls: int


def _optional_ratio(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(
            instance,
            attribute.alias or attribute.name,
            f"must be a number in (0, 1], got {value!r}",
            TypeError,
        )
    if not 0 < value <= 1:
        fail(instance, attribute.alias or attribute.name, f"must be in (0, 1], got {value!r}")


def _reset_timeout(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not callable(value):
        non_negative_duration(instance, attribute, value)


def _optional_window(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, Window):
        fail(
            instance,
            attribute.alias or attribute.name,
            f"must be Window.count(n), Window.time(seconds) or None, got {value!r}",
            TypeError,
        )


# on_setattr=NO_OP: attrs' setattr hooks would cost ~0.5 us per attribute write on the hot path.
@attrs.define(eq=False, kw_only=True, on_setattr=attrs.setters.NO_OP)
class CircuitBreaker:
    """Fail fast while a service is failing; let a few probe calls through after a pause.

    Consecutive mode (default): ``failure_threshold`` consecutive failures open the circuit
    and a success resets the count. Ratio mode (``failure_ratio`` set): the circuit opens
    when the failure ratio over ``window`` (default ``Window.count(100)``) reaches
    ``failure_ratio``, once the window holds ``minimum_calls`` calls. With
    ``slow_call_duration`` and ``slow_call_ratio``, too many slow calls open it too.

    An open circuit rejects calls with `CircuitOpen` (``retry_after`` = seconds until it
    becomes half-open) for ``reset_timeout`` seconds, or ``reset_timeout(consecutive_opens)``
    seconds when it is a callable (``consecutive_opens`` is 1 at the first opening, grows by
    one each time a probe fails, and restarts when the circuit closes). Then the circuit is
    half-open: it admits ``half_open_max_calls`` concurrent probes and rejects the others;
    ``success_threshold`` successful probes close it and one failed probe re-opens it.

    ``is_failure(exc) -> bool`` decides which exceptions are failures (default: every
    ``Exception``); the others count as successes. Cancellation is neither. ``isolate()``
    forces the circuit open until ``reset()``. There is no background task: the move from
    open to half-open is noticed when ``state`` is read or a call arrives. The options must
    not be changed after construction. Not thread-safe: use a breaker from one thread (it holds
    no trio objects, so successive ``trio.run`` calls may share it). See the module
    docstring for the exact recording rules.
    """

    failure_threshold: int = attrs.field(default=5, validator=positive_int)
    reset_timeout: ResetTimeout = attrs.field(
        default=30.0, converter=to_seconds, validator=_reset_timeout
    )
    half_open_max_calls: int = attrs.field(default=1, validator=positive_int)
    success_threshold: int = attrs.field(default=1, validator=positive_int)
    failure_ratio: float | None = attrs.field(default=None, validator=_optional_ratio)
    window: Window | None = attrs.field(default=None, validator=_optional_window)
    minimum_calls: int = attrs.field(default=10, validator=positive_int)
    slow_call_duration: float | None = attrs.field(
        default=None, converter=to_seconds, validator=optional_positive_duration
    )
    slow_call_ratio: float | None = attrs.field(default=None, validator=_optional_ratio)
    is_failure: Callable[[Exception], bool] | None = attrs.field(
        default=None, validator=optional_callable()
    )
    name: str | None = attrs.field(default=None, validator=optional_name)

    # True exactly when closed, in consecutive mode, without slow-call detection: `call`
    # then runs its allocation-free path.
    _fast: bool = attrs.field(init=False, default=True, repr=False)
    _simple: bool = attrs.field(init=False, default=True, repr=False)
    _state: CircuitState = attrs.field(init=False, default=CLOSED, repr=False)
    # Bumped on every transition: a half-open probe remembers it to know whether its
    # outcome still belongs to the current half-open period.
    _epoch: int = attrs.field(init=False, default=0, repr=False)
    _isolated: bool = attrs.field(init=False, default=False, repr=False)
    _opened_at: float | None = attrs.field(init=False, default=None, repr=False)
    _half_open_at: float = attrs.field(init=False, default=0.0, repr=False)
    _consecutive_failures: int = attrs.field(init=False, default=0, repr=False)
    _consecutive_opens: int = attrs.field(init=False, default=0, repr=False)
    _probes: int = attrs.field(init=False, default=0, repr=False)
    _probe_successes: int = attrs.field(init=False, default=0, repr=False)
    _tracker: CountTracker | TimeTracker | None = attrs.field(init=False, default=None, repr=False)
    _minimum: int = attrs.field(init=False, default=0, repr=False)
    _successes: int = attrs.field(init=False, default=0, repr=False)
    _failures: int = attrs.field(init=False, default=0, repr=False)
    _cancellations: int = attrs.field(init=False, default=0, repr=False)
    _slow_calls: int = attrs.field(init=False, default=0, repr=False)
    _rejections: int = attrs.field(init=False, default=0, repr=False)
    # Per task, the (probe epoch, start time) of its open `async with` blocks; see __aenter__.
    _entries: dict[trio.lowlevel.Task, list[tuple[int | None, float | None]]] = attrs.field(
        init=False, factory=dict, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.slow_call_ratio is not None and self.slow_call_duration is None:
            fail(self, "slow_call_ratio", "needs slow_call_duration to be set")
        windowed = self.failure_ratio is not None or self.slow_call_ratio is not None
        if self.window is not None and not windowed:
            fail(self, "window", "is only used with failure_ratio or slow_call_ratio")
        if windowed:
            window = self.window if self.window is not None else Window.count(100)
            self._tracker = new_tracker(window)
            minimum = self.minimum_calls
            if window.kind == "count":
                minimum = min(minimum, int(window.size))
            self._minimum = minimum
        self._simple = self.failure_ratio is None and self.slow_call_duration is None
        self._fast = self._simple

    # ----------------------------------------------------------------- public API

    @property
    def state(self) -> CircuitState:
        """The current state; reading it notices (and reports) the move to half-open."""
        if self._state is OPEN and not self._isolated and trio.current_time() >= self._half_open_at:
            self._set_state(HALF_OPEN)
        return self._state

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through the breaker and return its result.

        Raises `CircuitOpen` at once, without running ``fn``, when the circuit is open or all
        half-open probe slots are taken. Otherwise ``fn``'s result is returned and its
        exception propagates unchanged, after the outcome is recorded.

        Checkpoint: only through ``fn``; a rejection raises without a checkpoint.
        Cancellation: a cancelled ``fn`` counts as neither success nor failure; its half-open
        probe slot is given back and ``trio.Cancelled`` propagates.
        """
        if self._fast:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                self._on_exception(None, None, exc)
                raise
            except BaseException:
                self._cancellations += 1
                raise
            self._consecutive_failures = 0
            self._successes += 1
            return result
        token = self._admit()
        start = None if self.slow_call_duration is None else trio.current_time()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._on_exception(token, start, exc)
            raise
        except BaseException:
            self._on_cancelled(token)
            raise
        self._record(token, start, failed=False)
        return result

    async def __aenter__(self) -> CircuitBreaker:
        """Admit the block as one call, or raise `CircuitOpen`.

        Not a checkpoint. The block's exception (if any) is recorded on exit by the same rules
        as `call` and always propagates: ``__aexit__`` never suppresses.
        """
        if self._fast and not self._entries:
            # Nothing to remember: __aexit__ finds no entry and records a closed-state call.
            return self
        token = self._admit()
        start = None if self.slow_call_duration is None else trio.current_time()
        self._entries.setdefault(trio.lowlevel.current_task(), []).append((token, start))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the block's outcome; not a checkpoint; never suppresses the exception."""
        if exc is None and self._fast and not self._entries:
            self._consecutive_failures = 0
            self._successes += 1
            return
        token: int | None = None
        start: float | None = None
        if self._entries:
            task = trio.lowlevel.current_task()
            stack = self._entries.get(task)
            if stack:
                token, start = stack.pop()
                if not stack:
                    del self._entries[task]
        if exc is None:
            self._record(token, start, failed=False)
        elif isinstance(exc, Exception):
            self._on_exception(token, start, exc)
        else:
            self._on_cancelled(token)

    def isolate(self) -> None:
        """Force the circuit open until `reset`; calls are rejected with ``retry_after=None``."""
        self._isolated = True
        if self._state is not OPEN:
            self._opened_at = trio.current_time()
            self._set_state(OPEN)

    def reset(self) -> None:
        """Close the circuit and clear its counters and window (lifetime totals are kept)."""
        self._isolated = False
        if self._state is not CLOSED:
            self._set_state(CLOSED)
        else:
            self._clear_closed_counters()

    def statistics(self) -> CircuitStatistics:
        """A snapshot of the breaker's counters and state (see `CircuitStatistics`)."""
        state = self.state
        tracker = self._tracker
        if tracker is not None:
            tracker.expire(trio.current_time())
        open_until = self._half_open_at if state is OPEN and not self._isolated else None
        return CircuitStatistics(
            name=self.name,
            state=state,
            calls=self._successes + self._failures + self._cancellations,
            successes=self._successes,
            failures=self._failures,
            cancellations=self._cancellations,
            slow_calls=self._slow_calls,
            rejections=self._rejections,
            isolated=self._isolated,
            consecutive_failures=self._consecutive_failures,
            consecutive_opens=self._consecutive_opens,
            opened_at=self._opened_at,
            open_until=open_until,
            probes_in_flight=self._probes,
            window_calls=0 if tracker is None else tracker.calls,
            window_failures=0 if tracker is None else tracker.failures,
            window_slow_calls=0 if tracker is None else tracker.slow_calls,
        )

    # ------------------------------------------------------------------ admission

    def _admit(self) -> int | None:
        """Admit a call: ``None`` for a closed-state call, the epoch for a probe; or raise."""
        state = self._state
        if state is CLOSED:
            return None
        if state is OPEN:
            if self._isolated:
                self._reject(OPEN, None, "is isolated")
            now = trio.current_time()
            if now < self._half_open_at:
                retry_after = self._half_open_at - now
                self._reject(OPEN, retry_after, f"is open (retry after {retry_after:.6g} s)")
            self._set_state(HALF_OPEN)
        if self._probes >= self.half_open_max_calls:
            self._reject(
                HALF_OPEN,
                None,
                f"is half-open and its {self.half_open_max_calls} probe slot(s) are taken",
            )
        self._probes += 1
        return self._epoch

    def _reject(self, state: CircuitState, retry_after: float | None, why: str) -> NoReturn:
        self._rejections += 1
        if _observe.active:
            _observe.emit("circuit.rejected", self.name, state=state.value, retry_after=retry_after)
        label = "circuit" if self.name is None else f"circuit {self.name!r}"
        raise CircuitOpen(f"{label} {why}", retry_after=retry_after)

    # ------------------------------------------------------------------ recording

    def _on_exception(self, token: int | None, start: float | None, exc: Exception) -> None:
        failed = True
        try:
            if self.is_failure is not None:
                failed = bool(self.is_failure(exc))
        finally:
            # If is_failure itself raises, the call counts as a failure and its error
            # propagates (chained to the call's exception).
            self._record(token, start, failed)

    def _on_cancelled(self, token: int | None) -> None:
        self._cancellations += 1
        if token is not None and token == self._epoch:
            self._probes -= 1

    def _record(self, token: int | None, start: float | None, failed: bool) -> None:
        now: float | None = None
        slow = False
        if start is not None:
            now = trio.current_time()
            assert self.slow_call_duration is not None
            slow = now - start >= self.slow_call_duration
            self._slow_calls += slow
        if failed:
            self._failures += 1
        else:
            self._successes += 1
        if token is None:
            if self._state is CLOSED:
                self._record_closed(now, failed, slow)
        elif token == self._epoch:
            self._record_probe(failed, slow)

    def _record_closed(self, now: float | None, failed: bool, slow: bool) -> None:
        if failed:
            self._consecutive_failures += 1
        else:
            self._consecutive_failures = 0
        tracker = self._tracker
        if tracker is not None:
            if now is None and isinstance(tracker, TimeTracker):
                now = trio.current_time()
            tracker.add(0.0 if now is None else now, failed, slow)  # a count window ignores now
        if self._threshold_reached():
            self._trip()

    def _threshold_reached(self) -> bool:
        if self.failure_ratio is None and self._consecutive_failures >= self.failure_threshold:
            return True
        tracker = self._tracker
        if tracker is None or tracker.calls < self._minimum:
            return False
        calls = tracker.calls
        if self.failure_ratio is not None and tracker.failures / calls >= self.failure_ratio:
            return True
        return (
            self.slow_call_ratio is not None and tracker.slow_calls / calls >= self.slow_call_ratio
        )

    def _record_probe(self, failed: bool, slow: bool) -> None:
        self._probes -= 1
        if failed or (slow and self.slow_call_ratio is not None):
            self._trip()
            return
        self._probe_successes += 1
        if self._probe_successes >= self.success_threshold:
            self._set_state(CLOSED)

    # ---------------------------------------------------------------- transitions

    def _open_duration(self, opens: int) -> float:
        reset_timeout = self.reset_timeout
        if not callable(reset_timeout):
            return reset_timeout
        value = to_seconds(reset_timeout(opens))
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(self, f"reset_timeout({opens})", f"must return seconds, got {value!r}", TypeError)
        if math.isnan(value) or value < 0:
            fail(self, f"reset_timeout({opens})", f"must return seconds >= 0, got {value!r}")
        return float(value)

    def _trip(self) -> None:
        """Open the circuit (from closed or half-open) for the next break duration."""
        opens = self._consecutive_opens + 1
        duration = self._open_duration(opens)  # may raise: nothing has changed yet
        now = trio.current_time()
        self._consecutive_opens = opens
        self._opened_at = now
        self._half_open_at = now + duration
        self._set_state(OPEN)

    def _clear_closed_counters(self) -> None:
        self._consecutive_failures = 0
        self._consecutive_opens = 0
        self._opened_at = None
        if self._tracker is not None:
            self._tracker.clear()

    def _set_state(self, new: CircuitState) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._probes = 0
        self._probe_successes = 0
        self._fast = new is CLOSED and self._simple
        if new is CLOSED:
            self._clear_closed_counters()
        if _observe.active:
            _observe.emit("circuit.state_changed", self.name, old=old.value, new=new.value)
