"""`Cache`: a TTL + LRU cache for the results of async calls, with single-flight and
stale-while-revalidate."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from typing import Any, ParamSpec, Self, TypeVar

import attrs
import trio
from trio import current_time

from resilience import _observe
from resilience.validate import (
    is_bool,
    non_negative_duration,
    optional_name,
    positive_duration,
    positive_int,
    to_seconds,
)

__all__ = ["Cache", "CacheStatistics"]

P = ParamSpec("P")
T = TypeVar("T")

#: (value, fresh until, stale until)
_Entry = tuple[Any, float, float]


@attrs.frozen
class CacheStatistics:
    """A snapshot of a `Cache`'s counters.

    ``hits``: fresh entries returned; ``misses``: calls that found no usable entry (each
    single-flight waiter counts once); ``stale_hits``: calls that found a stale entry;
    ``evictions``: entries dropped by the LRU rule (not by expiry, ``invalidate`` or
    ``clear``); ``size``: entries stored now, including expired ones not yet looked up.
    """

    hits: int
    misses: int
    stale_hits: int
    evictions: int
    size: int


@attrs.define(eq=False)
class _Flight:
    """The computations of one key started since the key was last invalidated.

    While registered in ``Cache._flights`` it is what later callers join: with single-flight
    they wait on ``done`` for its one computation; without, they compute alongside and only
    share ``stores``. ``invalidate``/``clear`` unregister it and set ``stores`` to False, so
    results that were started before are returned to their callers but never stored.
    """

    running: int = 0
    stores: bool = True
    done: trio.Event | None = None
    succeeded: bool = False
    value: Any = None
    error: Exception | None = None


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Cache:
    """Caches the results of ``await fn(*args, **kwargs)`` by key, for ``ttl`` seconds.

    ``ttl`` (float seconds or timedelta, > 0) is how long an entry is fresh, counted from
    the end of the computation that produced it at ``t`` (``trio.current_time()``)::

        t <= now < t + ttl                    fresh: returned, no checkpoint
        t + ttl <= now < t + ttl + stale_ttl  stale: returned while ONE refresh runs
        t + ttl + stale_ttl <= now            expired: dropped on lookup, the caller computes

    so an entry is no longer fresh at exactly ``t + ttl``. ``max_size`` entries at most are
    kept; the least recently used (looked up or stored) goes first. With ``stale_ttl > 0``
    a stale entry is served while one refresh runs (see `get_or_compute`). With
    ``single_flight`` concurrent misses on one key run ``fn`` once. With
    ``cache_none=False`` a ``None`` result is returned, not stored, and removes the key's
    older entry. ``name`` is the ``source`` of the events: ``cache.hit``, ``cache.miss``,
    ``cache.stale_hit``, ``cache.evicted`` (key) and ``cache.refresh_failed`` (key, error).

    Exceptions raised by ``fn`` are never cached, nor is ``trio.Cancelled`` or any other
    ``BaseException``. ``invalidate`` and ``clear`` also void the computations running for
    the keys they drop: their results still reach their callers but are not stored.

    ``async with cache:`` opens a nursery in which stale refreshes run in the background;
    leaving the block cancels the refreshes still running (their keys keep their stale
    entries) and waits for them to end. Without an open block a refresh runs inline, in the
    first caller that finds the entry stale. A cache has at most one block open at a time.

    The options are read on every call and are not validated again if changed later.
    """

    ttl: float = attrs.field(converter=to_seconds, validator=positive_duration, kw_only=True)
    max_size: int = attrs.field(default=1024, validator=positive_int, kw_only=True)
    stale_ttl: float = attrs.field(
        default=0.0, converter=to_seconds, validator=non_negative_duration, kw_only=True
    )
    single_flight: bool = attrs.field(default=True, validator=is_bool, kw_only=True)
    cache_none: bool = attrs.field(default=True, validator=is_bool, kw_only=True)
    name: str | None = attrs.field(default=None, validator=optional_name, kw_only=True)

    _entries: OrderedDict[Hashable, _Entry] = attrs.field(
        init=False, factory=OrderedDict, repr=False
    )
    _flights: dict[Hashable, _Flight] = attrs.field(init=False, factory=dict, repr=False)
    _hits: int = attrs.field(init=False, default=0, repr=False)
    _misses: int = attrs.field(init=False, default=0, repr=False)
    _stale_hits: int = attrs.field(init=False, default=0, repr=False)
    _evictions: int = attrs.field(init=False, default=0, repr=False)
    _nursery: trio.Nursery | None = attrs.field(init=False, default=None, repr=False)
    _nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = attrs.field(
        init=False, default=None, repr=False
    )

    async def get_or_compute(
        self,
        key: Hashable,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Return the value cached under ``key``, or ``await fn(*args, **kwargs)`` and cache it.

        A fresh entry is returned at once, without a checkpoint. A stale entry is returned
        at once too, and starts one refresh (``fn`` again) unless one is already running for
        the key: in the cache's nursery when an ``async with`` block is open; otherwise the
        caller runs the refresh itself and returns the fresh value, or the stale value if
        the refresh raises (stale-if-error). A failed refresh emits
        ``cache.refresh_failed`` and keeps the stale entry.

        On a miss the caller computes; with ``single_flight``, a caller that misses while a
        computation of the key runs waits for it and returns its value, or raises the very
        exception it raised. If that computation ends without an outcome (its caller was
        cancelled), one waiter takes over and computes, the others wait for that one.

        Checkpoints: none on a hit or a stale hit served without computing; otherwise
        those of ``fn`` or of waiting. Cancellation while computing or waiting propagates;
        nothing is stored and the waiters of a cancelled computation are not cancelled.
        """
        entries = self._entries
        entry = entries.get(key)
        now = current_time()
        if entry is not None and now < entry[1]:
            entries.move_to_end(key)
            self._hits += 1
            if _observe.active:
                _observe.emit("cache.hit", self.name, key=key)
            value: T = entry[0]
            return value
        computed: T = await self._not_fresh(key, entry, now, fn, args, kwargs)
        return computed

    def invalidate(self, key: Hashable) -> None:
        """Drop the entry of ``key``, if any; results of computations already running for
        ``key`` are returned to their callers but not stored."""
        self._entries.pop(key, None)
        flight = self._flights.pop(key, None)
        if flight is not None:
            flight.stores = False

    def clear(self) -> None:
        """Drop every entry and void every running computation (see `invalidate`).

        The statistics counters are kept."""
        self._entries.clear()
        for flight in self._flights.values():
            flight.stores = False
        self._flights.clear()

    def statistics(self) -> CacheStatistics:
        """Return a snapshot of the counters and the current size."""
        return CacheStatistics(
            hits=self._hits,
            misses=self._misses,
            stale_hits=self._stale_hits,
            evictions=self._evictions,
            size=len(self._entries),
        )

    async def __aenter__(self) -> Self:
        """Open the nursery in which stale refreshes run. Not a checkpoint."""
        if self._nursery_manager is not None:
            raise RuntimeError(f"{type(self).__name__}: its async with block is already open")
        manager = trio.open_nursery()
        self._nursery = await manager.__aenter__()
        self._nursery_manager = manager
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Cancel the refreshes still running and wait for them to end.

        An exception raised in the block propagates unchanged (not in an ExceptionGroup)."""
        manager, nursery = self._nursery_manager, self._nursery
        assert manager is not None
        assert nursery is not None
        self._nursery_manager = self._nursery = None
        nursery.cancel_scope.cancel()
        # The refreshes never raise an Exception, and the block's exception is none of the
        # nursery's business: handing it over would only wrap it in an ExceptionGroup.
        await manager.__aexit__(None, None, None)

    async def _not_fresh(
        self,
        key: Hashable,
        entry: _Entry | None,
        now: float,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if entry is not None:
            if now < entry[2]:
                return await self._stale_hit(key, entry[0], fn, args, kwargs)
            del self._entries[key]
        self._misses += 1
        if _observe.active:
            _observe.emit("cache.miss", self.name, key=key)
        flight = self._flights.get(key)
        if flight is not None and self.single_flight:
            return await self._wait(key, flight, fn, args, kwargs)
        return await self._compute(key, self._begin(key), fn, args, kwargs)

    async def _stale_hit(
        self,
        key: Hashable,
        value: Any,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        self._entries.move_to_end(key)
        self._stale_hits += 1
        if _observe.active:
            _observe.emit("cache.stale_hit", self.name, key=key)
        if key in self._flights:  # a refresh (or a computation) of this key is running
            return value
        flight = self._begin(key)
        if self._nursery is not None:
            # In the background (trio ignores the returned value); the caller gets the stale one.
            self._nursery.start_soon(self._refresh, key, flight, fn, args, kwargs, value)
            return value
        return await self._refresh(key, flight, fn, args, kwargs, value)

    async def _refresh(
        self,
        key: Hashable,
        flight: _Flight,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        stale: Any,
    ) -> Any:
        """The fresh value, or ``stale`` when the refresh fails (stale-if-error)."""
        try:
            return await self._compute(key, flight, fn, args, kwargs)
        except Exception as exc:
            if _observe.active:
                _observe.emit("cache.refresh_failed", self.name, key=key, error=exc)
            return stale

    def _begin(self, key: Hashable) -> _Flight:
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
        flight.running += 1
        return flight

    async def _compute(
        self,
        key: Hashable,
        flight: _Flight,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        try:
            value = await fn(*args, **kwargs)
        except Exception as exc:
            self._land(key, flight, error=exc)
            raise
        except BaseException:
            self._land(key, flight)
            raise
        self._land(key, flight, succeeded=True, value=value)
        return value

    def _land(
        self,
        key: Hashable,
        flight: _Flight,
        *,
        succeeded: bool = False,
        value: Any = None,
        error: Exception | None = None,
    ) -> None:
        flight.running -= 1
        if flight.running == 0 and self._flights.get(key) is flight:
            del self._flights[key]
        if succeeded and flight.stores:
            self._store(key, value)
        flight.succeeded, flight.value, flight.error = succeeded, value, error
        if flight.done is not None:
            flight.done.set()

    async def _wait(
        self,
        key: Hashable,
        flight: _Flight,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        while True:
            if flight.done is None:
                flight.done = trio.Event()
            await flight.done.wait()
            if flight.succeeded:
                return flight.value
            if flight.error is not None:
                raise flight.error
            # Its computation was cancelled: the first waiter to wake takes over, and the
            # others follow the new computation.
            successor = self._flights.get(key)
            if successor is None:
                return await self._compute(key, self._begin(key), fn, args, kwargs)
            flight = successor

    def _store(self, key: Hashable, value: Any) -> None:
        entries = self._entries
        if value is None and not self.cache_none:
            entries.pop(key, None)
            return
        fresh_until = current_time() + self.ttl
        entries[key] = (value, fresh_until, fresh_until + self.stale_ttl)
        entries.move_to_end(key)
        if len(entries) > self.max_size:
            evicted, _ = entries.popitem(last=False)
            self._evictions += 1
            if _observe.active:
                _observe.emit("cache.evicted", self.name, key=evicted)
