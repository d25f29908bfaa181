"""`CircuitBreaker`: one circuit for every process that uses the same name and store.

The circuit lives in Redis (``lua/circuit.lua``: every transition is one script, a
compare-and-set on the circuit's epoch). Each process keeps a *view* of it and counts its
own outcomes; a background sync (in the store's nursery) flushes the counts and refreshes
the view every ``sync_interval``, so a closed-state call costs no round trip of its own.

What a process sees between flushes
    Its view is at most ``sync_interval`` old: a call is admitted on a closed view only
    while that view is younger than ``sync_interval`` (an older one is refreshed first, in
    the caller). Its outcomes reach the fleet's counts at its next flush, at most
    ``sync_interval`` later; the flush that crosses the threshold opens the circuit for
    everyone at once, and every process, refreshing at least every ``sync_interval``,
    rejects from its next refresh on: within ``2 * sync_interval`` of the call that crossed
    the threshold. Outcomes counted under one circuit epoch are dropped if it changed
    meanwhile (a closed-state success from before an opening never closes anything).

How the fleet counts
    Consecutive mode: the failures since the fleet's latest success, by the time each
    outcome happened (a flush carries their ages), so failures of several processes add
    up and any process's success resets them. Ratio mode: the fleet's window (a count
    window to the granularity of one flush; a time window in 100 slices, as in-process).

Why one bad process cannot keep the fleet's circuit open forever
    Polly's maintainers warn that a shared breaker lets one faulty instance (its own
    network, its own bug) break the circuit for all. Here:

    - a process's failures do not open the circuit while the service answers others: in
      consecutive mode a success of another process after this process's failures began
      (within the last break duration, at least ``10 * sync_interval``) vetoes the trip; in
      ratio mode the others' share of the window, when it has ``minimum_calls``, must be
      over the threshold too (a process that is the only caller still trips it alone);
    - an open circuit ends by the clock: its deadline is in Redis, and nothing but a failed
      probe extends it;
    - probes belong to the fleet: any process may take one of the ``half_open_max_calls``
      leases, and the process whose probe failed last waits ``sync_interval`` into the next
      half-open period before it may probe again, so the healthy processes get the first
      try; ``success_threshold`` successful probes close the circuit for everyone and the
      break duration starts over.

    Such a process still fails its own calls; put an in-process `rs.CircuitBreaker`
    inside the shared one to stop it hammering the service on its own.

Probe leases are renewed by the sync while the probe runs and expire after
``max(1, 5 * sync_interval)`` seconds, so a process that dies mid-probe frees its slot.
While the store is unavailable, ``on_unavailable="local"`` admits and records with an
in-process `rs.CircuitBreaker` of the same options; ``"raise"`` raises
`rs.StoreUnavailable` from every call that needs a fresh view.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

import attrs
import trio
from loguru import logger

import resilience as rs
from resilience import _observe
from resilience._circuit import CircuitState, ResetTimeout
from resilience._circuit_window import TimeTracker, Window
from resilience._errors import CircuitOpen, StoreUnavailable
from resilience.redis._circuit_view import UNKNOWN, View, parse_view
from resilience.redis._entries import Entries
from resilience.redis._keys import is_label
from resilience.redis._scripts import script
from resilience.redis._store import LOCAL, Store, StoreClosed, is_store
from resilience.validate import finite, positive_duration, to_seconds

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")

KIND: Final = "circuit"
_SCRIPT = script("circuit")
#: Syncs with nothing to flush after which the background sync stops (calls restart it).
IDLE_SYNCS: Final = 10
#: Seconds every key of a circuit outlives its last use (plus what is left of an opening).
STATE_TTL: Final = 3600.0
#: Seconds after its latest flush a process's failure run and window share are forgotten
#: (at least; twice the veto and the time window when longer): it died or went away.
FORGET: Final = 60.0
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
_current_time = trio.current_time


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


@attrs.frozen
class _Admission:
    """How a call was let in: ``kind`` closed / probe / local, and what its exit needs."""

    kind: str
    start: float = 0.0
    lease: str = ""
    epoch: int = 0
    opens: int = 0


_LOCAL = _Admission("local")


# on_setattr=NO_OP: the counters are written on every call; options are checked at creation.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class CircuitBreaker:
    """One circuit for the fleet (see the module docstring for the sharing rules).

    The options are those of `rs.CircuitBreaker`, checked the same way; ``sync_interval``
    (seconds, > 0) is how often a process in use flushes its counts and refreshes its view.
    `call` and ``async with`` as in-process; ``state`` is this process's view (at most
    ``sync_interval`` old while in use); `statistics`, `isolate` and `reset` act on the
    shared circuit (a round trip). Events (``source`` is ``name``): ``circuit.state_changed``
    when this process's view changes, ``circuit.rejected`` for each call it refuses.
    """

    store: Store = attrs.field(validator=is_store)
    name: str = attrs.field(kw_only=True, validator=is_label)
    sync_interval: float = attrs.field(
        default=0.1, kw_only=True, converter=to_seconds, validator=[positive_duration, finite]
    )
    failure_threshold: int = attrs.field(default=5, kw_only=True)
    reset_timeout: ResetTimeout = attrs.field(default=30.0, kw_only=True, converter=to_seconds)
    half_open_max_calls: int = attrs.field(default=1, kw_only=True)
    success_threshold: int = attrs.field(default=1, kw_only=True)
    failure_ratio: float | None = attrs.field(default=None, kw_only=True)
    window: Window | None = attrs.field(default=None, kw_only=True)
    minimum_calls: int = attrs.field(default=10, kw_only=True)
    slow_call_duration: float | None = attrs.field(default=None, kw_only=True, converter=to_seconds)
    slow_call_ratio: float | None = attrs.field(default=None, kw_only=True)
    is_failure: Callable[[Exception], bool] | None = attrs.field(default=None, kw_only=True)

    _local: rs.CircuitBreaker = attrs.field(init=False, repr=False)
    _keys: list[str] = attrs.field(init=False, repr=False)
    _config: list[Any] = attrs.field(init=False, repr=False)
    _fast: bool = attrs.field(init=False, repr=False)
    _tracker: TimeTracker | None = attrs.field(init=False, default=None, repr=False)
    _view: View = attrs.field(init=False, default=UNKNOWN, repr=False)
    # A closed-state call goes without a round trip while trio's clock is below this.
    _closed_until: float = attrs.field(init=False, default=-math.inf, repr=False)
    _probes_full_until: float = attrs.field(init=False, default=-math.inf, repr=False)
    _leases: set[str] = attrs.field(init=False, factory=set, repr=False)
    _entries: Entries[_Admission] = attrs.field(init=False, factory=Entries, repr=False)
    # Counts since the last flush: lifetime (every outcome) and window (closed state).
    _n_success: int = attrs.field(init=False, default=0, repr=False)
    _n_failure: int = attrs.field(init=False, default=0, repr=False)
    _n_cancel: int = attrs.field(init=False, default=0, repr=False)
    _n_slow: int = attrs.field(init=False, default=0, repr=False)
    _n_reject: int = attrs.field(init=False, default=0, repr=False)
    # Minus the successes counted before this epoch (see `_flush_args`).
    _w_calls: int = attrs.field(init=False, default=0, repr=False)
    _w_failures: int = attrs.field(init=False, default=0, repr=False)
    _w_slow: int = attrs.field(init=False, default=0, repr=False)
    # Consecutive mode: failures since this process's latest success (their local times),
    # that success, and when this process's current run of failures began.
    _fail_times: deque[float] = attrs.field(init=False, repr=False)
    _last_success: float | None = attrs.field(init=False, default=None, repr=False)
    _run_start: float | None = attrs.field(init=False, default=None, repr=False)
    # The sync: one in flight at a time (others wait for it), and the background loop.
    _sync_done: trio.Event | None = attrs.field(init=False, default=None, repr=False)
    _sync_error: StoreUnavailable | None = attrs.field(init=False, default=None, repr=False)
    _syncs: int = attrs.field(init=False, default=0, repr=False)
    _rtt: float = attrs.field(init=False, default=0.0, repr=False)
    _looping: bool = attrs.field(init=False, default=False, repr=False)
    _warned: bool = attrs.field(init=False, default=False, repr=False)
    _forget_us: int = attrs.field(init=False, default=0, repr=False)

    def __attrs_post_init__(self) -> None:
        # The in-process twin checks every option exactly as the in-process breaker does.
        self._local = rs.CircuitBreaker(
            failure_threshold=self.failure_threshold,
            reset_timeout=self.reset_timeout,
            half_open_max_calls=self.half_open_max_calls,
            success_threshold=self.success_threshold,
            failure_ratio=self.failure_ratio,
            window=self.window,
            minimum_calls=self.minimum_calls,
            slow_call_duration=self.slow_call_duration,
            slow_call_ratio=self.slow_call_ratio,
            is_failure=self.is_failure,
            name=self.name,
        )
        windowed = self.failure_ratio is not None or self.slow_call_ratio is not None
        window = self.window if self.window is not None else Window.count(100)
        kind, size = ("", 0) if not windowed else (window.kind, window.size)
        minimum = self.minimum_calls
        if kind == "count":
            minimum = min(minimum, int(size))
        if kind == "time":
            self._tracker = TimeTracker(size)
        self._fast = self.failure_ratio is None and self.slow_call_duration is None
        self._fail_times = deque(maxlen=self.failure_threshold)
        store, name = self.store, self.name
        parts = ("state", "failures", "window", "probes", "runs", "seen", "own")
        self._keys = [store.key(KIND, name, part) for part in parts]
        self._forget_us = _us(max(FORGET, 2 * size / 1_000_000 if kind == "time" else 0.0))
        self._config = [
            0 if self.failure_ratio is not None else self.failure_threshold,
            "" if self.failure_ratio is None else repr(float(self.failure_ratio)),
            "" if self.slow_call_ratio is None else repr(float(self.slow_call_ratio)),
            kind,
            _us(size) if kind == "time" else int(size),
            minimum,
            self.success_threshold,
            self.half_open_max_calls,
            _us(max(1.0, 5 * self.sync_interval)),
            _us(self.sync_interval),
            0,  # the veto: set at the first sync (reset_timeout may be a callable)
            round(STATE_TTL * 1000),
        ]

    # ----------------------------------------------------------------- public API

    @property
    def state(self) -> CircuitState:
        """This process's view of the circuit (see the module docstring); while the store
        answers locally, the in-process breaker's state."""
        if self.store.use_local:
            return self._local.state
        view = self._view
        if (
            view.state is OPEN
            and view.open_until is not None
            and _current_time() >= view.open_until
        ):
            return HALF_OPEN
        return view.state

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through the fleet's circuit.

        Raises `rs.CircuitOpen` without running ``fn`` when the circuit is open or the
        half-open probe leases are all taken; `rs.StoreUnavailable` when a view must be
        refreshed and Redis cannot be reached (``on_unavailable="raise"``). ``fn``'s result
        is returned and its exception propagates unchanged.

        Checkpoints: ``fn``'s, and a round trip when the view is stale or the call is a
        half-open probe (its outcome is reported before it returns). Cancellation is neither
        a success nor a failure; a cancelled probe gives its lease back.
        """
        now = _current_time()
        if now < self._closed_until:
            if self._fast:
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    self._closed_exception(now, exc)
                    raise
                except BaseException:
                    self._n_cancel += 1
                    raise
                # The whole bookkeeping of a closed-state success (see `_flush_args`).
                self._n_success += 1
                self._last_success = now
                self._run_start = None
                if not self._looping:
                    self._start_loop()
                return result
            admission = _Admission("closed", now)
        else:
            admission = await self._enter()
            if admission is _LOCAL:
                return await self._local.call(fn, *args, **kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._exit(admission, exc)
            raise
        await self._exit(admission, None)
        return result

    async def __aenter__(self) -> CircuitBreaker:
        """Admit the block as one call (see `call`), or raise `rs.CircuitOpen`."""
        now = _current_time()
        if now < self._closed_until:
            admission = _Admission("closed", now)
        else:
            admission = await self._enter()
            if admission is _LOCAL:
                await self._local.__aenter__()
        self._entries.push(admission)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the block's outcome (a probe's with a round trip); never suppresses."""
        admission = self._entries.pop()
        if admission is _LOCAL:
            await self._local.__aexit__(exc_type, exc, tb)
        else:
            await self._exit(admission, exc)

    async def statistics(self) -> rs.CircuitStatistics:
        """The fleet's circuit after flushing this process's counts (one round trip): the
        lifetime totals are the fleet's as flushed so far; times are this process's trio
        time. While the store answers locally, the in-process breaker's statistics."""
        view = await self._shared_or_local(self._sync)
        if view is None:
            return self._local.statistics()
        successes, failures, cancellations, slow, rejections = view.lifetime
        return rs.CircuitStatistics(
            name=self.name,
            state=self.state,
            calls=successes + failures + cancellations,
            successes=successes,
            failures=failures,
            cancellations=cancellations,
            slow_calls=slow,
            rejections=rejections,
            isolated=view.isolated,
            consecutive_failures=view.streak,
            consecutive_opens=view.opens,
            opened_at=view.opened_at,
            open_until=view.open_until,
            probes_in_flight=view.probes,
            window_calls=view.window[0],
            window_failures=view.window[1],
            window_slow_calls=view.window[2],
        )

    async def isolate(self) -> None:
        """Force the fleet's circuit open until `reset` (one round trip); calls everywhere
        are rejected with ``retry_after=None`` from each process's next refresh."""
        self._local.isolate()
        await self._shared_or_local(lambda: self._admin("isolate"))

    async def reset(self) -> None:
        """Close the fleet's circuit and clear its counts (one round trip)."""
        self._local.reset()
        await self._shared_or_local(lambda: self._admin("reset"))

    # ------------------------------------------------------------------ admission

    async def _shared_or_local(self, operation: Callable[[], Awaitable[View]]) -> View | None:
        """``await operation()``, or ``None`` when the store answers locally."""
        view = await self.store.shared(operation)
        return None if view is LOCAL else view  # type: ignore[return-value]

    async def _enter(self) -> _Admission:
        admission = await self.store.shared(self._shared_enter)
        return _LOCAL if admission is LOCAL else admission  # type: ignore[return-value]

    async def _shared_enter(self) -> _Admission:
        view = self._view
        now = _current_time()
        if now >= view.valid_until:
            view = await self._sync()
            now = _current_time()
        if view.state is CLOSED:
            return _Admission("closed", now)
        if view.state is OPEN and view.isolated:
            raise self._reject(OPEN, None, "is isolated")
        if view.open_until is not None and now < view.open_until:
            retry_after = view.open_until - now
            raise self._reject(OPEN, retry_after, f"is open (retry after {retry_after:.6g} s)")
        if now < self._probes_full_until:
            raise self._full()
        return await self._probe()

    async def _probe(self) -> _Admission:
        """Ask for a half-open probe lease (the script also moves open to half-open)."""
        lease = self.store.ids.new()
        sent = _current_time()
        try:
            reply = await self.store.run(_SCRIPT, self._keys, ["probe", *self._head(), lease])
        except BaseException:
            # The lease may have been granted: give it back, in the background.
            self.store.spawn(self._done, lease, -1, "c", 0, 0, cleanup=True)
            raise
        view = self._apply(reply, sent)
        if view.result == 2:
            return _Admission("closed", _current_time())
        if view.result == 1:
            self._leases.add(lease)
            if not self._looping:
                self._start_loop()
            return _Admission("probe", _current_time(), lease, view.epoch, view.opens)
        if view.open_until is not None:
            retry_after = max(0.0, view.open_until - _current_time())
            raise self._reject(OPEN, retry_after, f"is open (retry after {retry_after:.6g} s)")
        if view.state is OPEN:
            raise self._reject(OPEN, None, "is isolated")
        if view.result == 3:
            raise self._reject(
                HALF_OPEN,
                None,
                "is half-open and this process's last probe failed: the others probe first",
            )
        self._probes_full_until = view.valid_until
        raise self._full()

    def _full(self) -> CircuitOpen:
        return self._reject(
            HALF_OPEN,
            None,
            f"is half-open and its {self.half_open_max_calls} probe slot(s) are taken "
            "across the fleet",
        )

    def _reject(self, state: CircuitState, retry_after: float | None, why: str) -> CircuitOpen:
        """Count and report a rejection; the error to raise."""
        self._n_reject += 1
        if not self._looping:
            self._start_loop()
        if _observe.active:
            _observe.emit("circuit.rejected", self.name, state=state.value, retry_after=retry_after)
        return CircuitOpen(f"circuit {self.name!r} {why}", retry_after=retry_after)

    # ------------------------------------------------------------------ outcomes

    async def _exit(self, admission: _Admission, exc: BaseException | None) -> None:
        """Record the outcome of a call let in by ``admission`` (``exc``: how it ended)."""
        failed = False
        try:
            if isinstance(exc, Exception):
                failed = True if self.is_failure is None else bool(self.is_failure(exc))
        finally:
            # If is_failure itself raises, the call counts as a failure and its error
            # propagates (chained to the call's exception), as in-process.
            if exc is not None and not isinstance(exc, Exception):
                self._cancelled(admission)
            elif admission.kind == "closed":
                self._closed_outcome(admission.start, failed)
            else:
                await self._probe_outcome(admission, "f" if failed else "s")

    def _closed_exception(self, start: float, exc: Exception) -> None:
        failed = True
        try:
            if self.is_failure is not None:
                failed = bool(self.is_failure(exc))
        finally:
            self._closed_outcome(start, failed)

    def _closed_outcome(self, start: float, failed: bool) -> None:
        end = _current_time()
        slow = self.slow_call_duration is not None and end - start >= self.slow_call_duration
        if slow:
            self._n_slow += 1
            self._w_slow += 1
        if failed:
            self._n_failure += 1
            self._w_failures += 1
            self._fail_times.append(end)
            if self._run_start is None:
                self._run_start = end
        else:
            self._n_success += 1
            self._last_success = start
            self._run_start = None
        if self._tracker is not None:
            self._tracker.add(end, failed, slow)
        if not self._looping:
            self._start_loop()

    def _cancelled(self, admission: _Admission) -> None:
        if admission.kind == "probe":
            self._leases.discard(admission.lease)
            self.store.spawn(self._done, admission.lease, admission.epoch, "c", 0, 0, cleanup=True)
        else:
            self._n_cancel += 1
            if not self._looping:
                self._start_loop()

    async def _probe_outcome(self, admission: _Admission, outcome: str) -> None:
        self._leases.discard(admission.lease)
        if outcome == "s":
            self._run_start = None
        elif self._run_start is None:
            self._run_start = _current_time()
        duration = _current_time() - admission.start
        slow = int(self.slow_call_duration is not None and duration >= self.slow_call_duration)
        reopen = (
            _us(self._local._open_duration(admission.opens + 1)) if outcome == "f" or slow else 0
        )
        await self._done(admission.lease, admission.epoch, outcome, slow, reopen)

    async def _done(self, lease: str, epoch: int, outcome: str, slow: int, reopen: int) -> None:
        """Report a probe's outcome; never raises an Exception (the lease expires if the
        report cannot be made)."""
        try:
            sent = _current_time()
            args = ["done", *self._head(), lease, epoch, outcome, slow, reopen]
            self._apply(await self.store.run(_SCRIPT, self._keys, args), sent)
        except (StoreUnavailable, StoreClosed):
            pass  # the outage is reported already (or the store closes); the lease expires
        except Exception:
            logger.opt(exception=True).error(
                "circuit {!r}: reporting a probe's outcome failed", self.name
            )

    # ------------------------------------------------------------------ syncing

    def _head(self) -> list[Any]:
        return [self.store.ids.token, *self._config]

    async def _admin(self, op: str) -> View:
        sent = _current_time()
        return self._apply(await self.store.run(_SCRIPT, self._keys, [op, *self._head()]), sent)

    async def _sync(self) -> View:
        """Flush the counts and refresh the view: one round trip, shared by every caller
        that needs it while it is in flight."""
        while (pending := self._sync_done) is not None:
            before = self._syncs
            await pending.wait()
            if self._sync_error is not None:
                raise StoreUnavailable(str(self._sync_error)) from self._sync_error
            if self._syncs != before:
                return self._view
            # That sync was cancelled before it answered: make one.
        done = self._sync_done = trio.Event()
        self._sync_error = None
        try:
            sent = _current_time()
            args = self._flush_args(sent)
            reply = await self.store.run(_SCRIPT, self._keys, args)
            self._rtt = _current_time() - sent
            self._syncs += 1
            return self._apply(reply, sent)
        except StoreUnavailable as exc:
            self._sync_error = exc
            raise
        finally:
            self._sync_done = None
            done.set()

    def _flush_args(self, now: float) -> list[Any]:
        """The ``sync`` arguments, taking (and zeroing) the counts since the last flush.
        A flush that fails loses them rather than counting them twice."""
        if not self._config[10]:
            trip = self._local._open_duration(1)
            self._config[10] = _us(max(trip, 10 * self.sync_interval))
            self._forget_us = max(self._forget_us, 2 * self._config[10])
        lifetime = [self._n_success, self._n_failure, self._n_cancel, self._n_slow, self._n_reject]
        # The closed-state calls of this epoch: its successes (those counted before the
        # epoch began are `_w_calls`'s negative base) and its failures.
        calls = self._n_success + self._w_calls + self._w_failures
        window = [calls, self._w_failures, self._w_slow]
        self._n_success = self._n_failure = self._n_cancel = self._n_slow = self._n_reject = 0
        self._w_calls = self._w_failures = self._w_slow = 0
        last_success, run_start = self._last_success, self._run_start
        self._last_success = None
        # Failures since this process's latest success (successes do not clear the list:
        # the hot path stays three writes).
        ages = [_us(now - t) for t in self._fail_times if last_success is None or t > last_success]
        self._fail_times.clear()
        own = [0, 0, 0]
        tracker = self._tracker
        if tracker is not None:
            tracker.expire(now)
            own = [tracker.calls, tracker.failures, tracker.slow_calls]
        return [
            "sync",
            *self._head(),
            self._view.epoch,
            _us(self._local._open_duration(1)),
            self._forget_us,
            *lifetime,
            *window,
            -1 if last_success is None else _us(now - last_success),
            -1 if run_start is None else _us(now - run_start),
            *own,
            self.store.ids.new(),
            len(ages),
            *ages,
            len(self._leases),
            *self._leases,
        ]

    def _apply(self, reply: Any, sent: float) -> View:
        """Take the view in ``reply`` as this process's; report a change of state."""
        view = parse_view(reply, sent=sent, received=_current_time(), interval=self.sync_interval)
        if view.repaired and not self._warned:
            self._warned = True
            logger.warning(
                "circuit {!r}: Redis held unreadable data for it; it was dropped", self.name
            )
        old = self._view
        if view.epoch != old.epoch:
            # Counts of the previous circuit epoch would be dropped by Redis anyway. (The
            # run of failures goes on: it is this process's, whatever the circuit did.)
            self._w_calls = -self._n_success  # the successes so far are the old epoch's
            self._w_failures = self._w_slow = 0
            self._fail_times.clear()
            self._probes_full_until = -math.inf
            if self._tracker is not None:
                self._tracker.clear()
        self._view = view
        self._closed_until = view.valid_until if view.state is CLOSED else -math.inf
        if old.state is not view.state and _observe.active:
            _observe.emit(
                "circuit.state_changed", self.name, old=old.state.value, new=view.state.value
            )
        return view

    def _start_loop(self) -> None:
        self._looping = self.store.spawn(self._loop, cleanup=False)

    def _has_counts(self) -> bool:
        return bool(
            self._n_success
            or self._n_failure
            or self._n_cancel
            or self._n_reject
            or self._w_calls
            or self._leases
        )

    async def _loop(self) -> None:
        """Sync every ``sync_interval`` (a little earlier, so that the view stays fresh)
        while the breaker is in use; stop after `IDLE_SYNCS` syncs with nothing to do, or
        when Redis cannot be reached (calls start it again)."""
        idle = 0
        interval = self.sync_interval
        try:
            while idle < IDLE_SYNCS:
                started = _current_time()
                idle = 0 if self._has_counts() else idle + 1
                try:
                    await self._sync()
                except (StoreUnavailable, StoreClosed):
                    return
                except Exception:
                    logger.opt(exception=True).error("circuit {!r}: sync failed", self.name)
                    return
                period = max(interval / 2, interval - 3 * self._rtt - 0.002)
                await trio.sleep_until(started + period)
        finally:
            self._looping = False
