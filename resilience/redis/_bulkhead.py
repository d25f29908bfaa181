"""`Bulkhead`: at most ``max_concurrent`` callers inside, across every process that uses
the same name and store.

A permit is a lease in Redis (``lua/bulkhead.lua``): its holder's process renews every
permit it holds every ``lease / 3`` seconds (one round trip for all of them, in the store's
background), so a process that dies holding permits gives them back within ``lease``
seconds, when they expire. A caller that finds no permit waits in the fleet's queue (at
most ``max_queued`` waiters, served in arrival order across the fleet) if there is room,
else is rejected at once with `rs.BulkheadFull`; a waiter gives up after ``queue_timeout``
seconds. Waiters of a process are polled together, every `POLL_INTERVAL` seconds, and at
once when a permit of that process is released; a waiter that stops polling (its process
died) loses its place after `PLACE` seconds.

Entering costs one round trip; leaving none of its own: the permit goes back with the
process's next round trip (its next entry's script applies it before deciding, so a
process that leaves and enters again always finds its own permit back), or in a background
round trip started at once. A permit whose renewal cannot reach Redis for longer than
``lease`` may be given to another caller: the bound holds for permits whose holders can
reach Redis.

While the store is unavailable, ``on_unavailable="local"`` admits through an in-process
`rs.Bulkhead` of the same options (each process then allows ``max_concurrent`` on its
own); ``"raise"`` raises `rs.StoreUnavailable` (waiters in the queue too).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

import attrs
import trio
from loguru import logger

import resilience as rs
from resilience import _observe
from resilience._errors import BulkheadFull, StoreUnavailable
from resilience.redis._entries import Entries
from resilience.redis._keys import is_label
from resilience.redis._scripts import script
from resilience.redis._store import LOCAL, Store, StoreClosed, is_store
from resilience.validate import finite, positive_duration, to_seconds

__all__ = ["POLL_INTERVAL", "Bulkhead"]

P = ParamSpec("P")
T = TypeVar("T")

KIND: Final = "bulkhead"
_SCRIPT = script("bulkhead")
#: Seconds between two polls of a process's waiters.
POLL_INTERVAL: Final = 0.02
#: Seconds a waiter keeps its place in the queue without polling.
PLACE: Final = 2.0
_LOCAL: Final = "local"
GRANTED, QUEUED, REFUSED = 1, 2, 0
_current_time = trio.current_time


def _us(seconds: float) -> int:
    return max(1, round(seconds * 1_000_000))


@attrs.define(eq=False)
class _Waiter:
    id: str
    event: trio.Event = attrs.Factory(trio.Event)
    result: int = QUEUED
    error: StoreUnavailable | None = None


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Bulkhead:
    """At most ``max_concurrent`` holders across the fleet (see the module docstring).

    The options are those of `rs.Bulkhead`, checked the same way, plus ``lease`` (seconds,
    > 0): how soon a dead holder's permit comes back. ``async with bulkhead:``,
    ``await bulkhead.call(fn, ...)``, or ``permit = await bulkhead.acquire()`` then
    ``await bulkhead.release(permit)``. Events: ``bulkhead.rejected`` (``reason``
    ``"full"`` or ``"queue_timeout"``; ``active`` and ``queued`` are the fleet's).
    """

    store: Store = attrs.field(validator=is_store)
    name: str = attrs.field(kw_only=True, validator=is_label)
    max_concurrent: int = attrs.field(kw_only=True)
    max_queued: int = attrs.field(default=0, kw_only=True)
    queue_timeout: float | None = attrs.field(default=None, kw_only=True, converter=to_seconds)
    lease: float = attrs.field(
        default=10.0, kw_only=True, converter=to_seconds, validator=[positive_duration, finite]
    )

    _local: rs.Bulkhead = attrs.field(init=False, repr=False)
    _keys: list[str] = attrs.field(init=False, repr=False)
    _config: list[Any] = attrs.field(init=False, repr=False)
    _held: set[str] = attrs.field(init=False, factory=set, repr=False)
    _waiters: dict[str, _Waiter] = attrs.field(init=False, factory=dict, repr=False)
    _releases: list[str] = attrs.field(init=False, factory=list, repr=False)
    _giveups: list[str] = attrs.field(init=False, factory=list, repr=False)
    _entries: Entries[str] = attrs.field(init=False, factory=Entries, repr=False)
    _keeping: bool = attrs.field(init=False, default=False, repr=False)
    _wake: trio.Event = attrs.field(init=False, factory=trio.Event, repr=False)
    _rejected: int = attrs.field(init=False, default=0, repr=False)
    _warned: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._local = rs.Bulkhead(
            max_concurrent=self.max_concurrent,
            max_queued=self.max_queued,
            queue_timeout=self.queue_timeout,
            name=self.name,
        )
        store, name = self.store, self.name
        self._keys = [store.key(KIND, name, part) for part in ("holders", "queue", "waiting")]
        ttl = max(self.lease, PLACE) * 2
        self._config = [
            self.max_concurrent,
            self.max_queued,
            _us(self.lease),
            _us(PLACE),
            round(ttl * 1000),
        ]

    # ----------------------------------------------------------------- public API

    async def acquire(self) -> str:
        """Take a permit, waiting in the fleet's queue if there is room; the permit (give
        it to `release`). Raises `rs.BulkheadFull` when there is no permit and no room in
        the queue, or when the wait exceeded ``queue_timeout``; `rs.StoreUnavailable` when
        Redis cannot be reached and ``on_unavailable="raise"``.

        Always a checkpoint (a round trip). Cancellation while waiting takes no permit (one
        granted meanwhile is given back in the background).
        """
        permit = await self.store.shared(self._shared_acquire)
        if permit is not LOCAL:
            return permit  # type: ignore[return-value]
        await self._local.acquire()
        return _LOCAL

    async def release(self, permit: str) -> None:
        """Give ``permit`` back: with this process's next round trip (this process's next
        `acquire`, whose script applies it first, or one started now in the background).
        Not a checkpoint; never raises (a permit that cannot be given back expires within
        ``lease``)."""
        if permit == _LOCAL:
            self._local.release()
            return
        self._held.discard(permit)
        self._releases.append(permit)
        self._flush_soon()

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` holding a permit (see `acquire` and `release`)."""
        permit = await self.acquire()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._leave(permit, exc)
            raise
        await self.release(permit)
        return result

    async def __aenter__(self) -> Bulkhead:
        self._entries.push(await self.acquire())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._leave(self._entries.pop(), exc)

    async def statistics(self) -> rs.BulkheadStatistics:
        """The fleet's holders and waiters now (one round trip), and this process's
        rejections. While the store answers locally, the in-process bulkhead's figures."""
        counts = await self.store.shared(self._round_trip)
        if counts is LOCAL:
            return self._local.statistics()
        _, active, queued = counts  # type: ignore[misc]
        return rs.BulkheadStatistics(
            max_concurrent=self.max_concurrent,
            active=active,
            queued=queued,
            rejected=self._rejected,
        )

    # ------------------------------------------------------------------- acquire

    async def _shared_acquire(self) -> str:
        permit = self.store.ids.new()
        try:
            (result,), active, queued = await self._round_trip(
                candidates=[(permit, self.max_queued > 0)]
            )
        except BaseException:
            self._give_back(permit)  # it may have been granted or queued
            raise
        if result == GRANTED:
            self._hold(permit)
            return permit
        if result == REFUSED:
            raise self._reject("full", active, queued)
        return await self._wait(permit)

    async def _wait(self, permit: str) -> str:
        waiter = self._waiters[permit] = _Waiter(permit)
        self._start_keeper()
        timeout = math.inf if self.queue_timeout is None else self.queue_timeout
        try:
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        except BaseException:
            self._abandon(waiter)
            raise
        if waiter.error is not None:
            raise StoreUnavailable(str(waiter.error)) from waiter.error
        if waiter.result == GRANTED:
            return permit
        self._abandon(waiter)
        if waiter.result == REFUSED:  # it lost its place, and there was no room any more
            raise self._reject("full", None, None)
        raise self._reject("queue_timeout", None, None)

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter leaves: give back its place, or the permit granted meanwhile."""
        self._waiters.pop(waiter.id, None)
        if waiter.result == GRANTED:
            self._held.discard(waiter.id)
            self._releases.append(waiter.id)
        else:
            self._giveups.append(waiter.id)
        self._flush_soon()

    def _give_back(self, permit: str) -> None:
        self._releases.append(permit)
        self._giveups.append(permit)
        self._flush_soon()

    async def _leave(self, permit: str, exc: BaseException | None) -> None:
        await self.release(permit)  # no checkpoint: nothing delays an unwinding exception

    def _hold(self, permit: str) -> None:
        self._held.add(permit)
        self._start_keeper()

    def _reject(self, reason: str, active: int | None, queued: int | None) -> BulkheadFull:
        self._rejected += 1
        if _observe.active:
            _observe.emit(
                "bulkhead.rejected", self.name, active=active, queued=queued, reason=reason
            )
        if reason == "full":
            message = (
                f"bulkhead {self.name!r} full: {self.max_concurrent} permits held across the "
                f"fleet, {self.max_queued} waiting at most"
            )
        else:
            message = f"bulkhead {self.name!r}: queue wait exceeded {self.queue_timeout:g} s"
        return BulkheadFull(message)

    # ------------------------------------------------------------ the round trip

    async def _round_trip(
        self, *, renewals: Sequence[str] = (), candidates: Sequence[tuple[str, bool]] = ()
    ) -> tuple[list[int], int, int]:
        """One script call, carrying every pending release and give-up (applied before the
        candidates); (result per candidate, the fleet's holders, its waiters). If it fails,
        they stay pending: sending one twice is harmless (ids are never reused)."""
        releases, self._releases = self._releases, []
        giveups, self._giveups = self._giveups, []
        args: list[Any] = [*self._config]
        for ids in (releases, giveups, renewals):
            args += [len(ids), *ids]
        args.append(len(candidates))
        for permit, may_queue in candidates:
            args += [permit, int(may_queue)]
        try:
            reply = await self.store.run(_SCRIPT, self._keys, args)
        except BaseException:
            self._releases[:0] = releases
            self._giveups[:0] = giveups
            raise
        if int(reply[0]) and not self._warned:
            self._warned = True
            logger.warning("bulkhead {!r}: Redis held unreadable data; it was dropped", self.name)
        return [int(value) for value in reply[3:]], int(reply[1]), int(reply[2])

    def _flush_soon(self) -> None:
        """Send the pending give-backs: with the keeper's next poll, woken now."""
        self._wake.set()
        self._start_keeper()

    def _start_keeper(self) -> None:
        if not self._keeping:
            self._keeping = self.store.spawn(self._keep, cleanup=False)
            if not self._keeping and (self._releases or self._giveups):
                # The store is closed: what is pending expires with its lease or place.
                self._releases.clear()
                self._giveups.clear()

    def _busy(self) -> bool:
        return bool(self._waiters or self._releases or self._giveups)

    async def _keep(self) -> None:
        """Renew the permits held (every ``lease / 3``), poll the waiters (every
        `POLL_INTERVAL`), send the give-backs (at once); until there is nothing left to
        do. Never raises an Exception."""
        try:
            renewed = _current_time()
            while self._held or self._busy():
                if not self._busy():
                    # Only permits to renew: sleep until it is due, or until work arrives.
                    self._wake = trio.Event()
                    with trio.move_on_at(renewed + self.lease / 3):
                        await self._wake.wait()
                    if not self._busy() and _current_time() < renewed + self.lease / 3:
                        continue
                started = _current_time()
                self._wake = trio.Event()
                await self._poll()
                renewed = started
                if self._waiters:
                    with trio.move_on_at(started + POLL_INTERVAL):
                        await self._wake.wait()
        finally:
            self._keeping = False

    async def _poll(self) -> None:
        waiters = list(self._waiters.values())
        try:
            results, _, _ = await self._round_trip(
                renewals=sorted(self._held), candidates=[(waiter.id, True) for waiter in waiters]
            )
        except StoreUnavailable as exc:
            for waiter in waiters:
                self._settle(waiter, error=exc)
            await trio.sleep(POLL_INTERVAL)
            return
        except StoreClosed:
            await trio.sleep_forever()  # the store's nursery is being cancelled
        except Exception:
            logger.opt(exception=True).error("bulkhead {!r}: a poll failed", self.name)
            await trio.sleep(POLL_INTERVAL)
            return
        for waiter, result in zip(waiters, results, strict=True):
            if self._waiters.get(waiter.id) is not waiter:
                # It left while the poll was in flight: give back what it got.
                if result == GRANTED:
                    self._releases.append(waiter.id)
                elif result == QUEUED:
                    self._giveups.append(waiter.id)
            elif result != QUEUED:
                if result == GRANTED:
                    self._held.add(waiter.id)
                self._settle(waiter, result=result)

    def _settle(
        self, waiter: _Waiter, *, result: int = REFUSED, error: StoreUnavailable | None = None
    ) -> None:
        self._waiters.pop(waiter.id, None)
        waiter.result, waiter.error = result, error
        waiter.event.set()
