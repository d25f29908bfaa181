"""`Cache`: the results of async calls cached in Redis, shared by every process that uses
the same name and store.

Values are JSON (``_codec``: cattrs and `json`, never pickle), read back into the return
annotation of the function that computes them (plain JSON data without one); the value a
computing caller gets back has made the same round trip, so every caller sees the same
type. A value read from Redis is untrusted: one that does not parse or does not fit the
type is a miss, dropped and recomputed (logged once per cache, counted as ``invalid``,
event ``cache.invalid``).

Freshness is on the Redis server's clock (``lua/cache.lua``): an entry stored at ``t`` is
fresh until ``t + ttl``, then stale until ``t + ttl + stale_ttl``, then gone.

Single flight, across the fleet: within a process, concurrent callers of one key share one
computation (its value or its exception); across processes, the one that finds the key
missing takes a lock (a lease of ``lock_lease`` seconds, renewed while it computes) and
computes; the others poll every `POLL_INTERVAL` seconds for the value. A holder that dies
or is cancelled gives the lock up (by expiry, or at once), and one waiter takes over. A
failing computation is never cached: its process's callers get its exception, the
processes waiting elsewhere take over (one at a time).

Stale-while-revalidate: a stale entry is returned at once, and the one caller (fleet-wide)
that takes the lock refreshes it in the background (the store's nursery); a failed refresh
keeps the stale entry (event ``cache.refresh_failed``).

``invalidate(key)`` and ``clear()`` delete entries and locks: computations running then
are returned to their callers but not stored (with ``single_flight``; without it they are).
While the store is unavailable, ``on_unavailable="local"`` answers from an in-process
`rs.Cache` of the same options; ``"raise"`` raises `rs.StoreUnavailable`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

import attrs
import trio
from loguru import logger

import resilience as rs
from resilience import _observe
from resilience._errors import StoreUnavailable
from resilience.redis._codec import dumps, loads, return_type
from resilience.redis._keys import check_user_key, is_label
from resilience.redis._scripts import script
from resilience.redis._store import LOCAL, Store, StoreClosed, is_store
from resilience.validate import (
    finite,
    is_bool,
    non_negative_duration,
    positive_duration,
    to_seconds,
)

__all__ = ["POLL_INTERVAL", "Cache", "CacheStatistics"]

P = ParamSpec("P")
T = TypeVar("T")

KIND: Final = "cache"
_SCRIPT = script("cache")
#: Seconds between two looks of a waiting process at a key another process computes.
POLL_INTERVAL: Final = 0.025
FRESH, STALE_REFRESH, STALE, COMPUTE, WAIT = 1, 2, 3, 4, 5
_SCAN_BATCH: Final = 500


@attrs.frozen
class CacheStatistics:
    """This process's counts: ``hits`` (fresh values returned), ``misses`` (calls that
    found no usable value; each single-flight waiter counts once), ``stale_hits``,
    ``invalid`` (unreadable values dropped), ``local`` (calls answered by the in-process
    cache while Redis was unreachable)."""

    hits: int
    misses: int
    stale_hits: int
    invalid: int
    local: int


@attrs.define(eq=False)
class _Flight:
    """One computation of a key in this process, which its other callers wait for (the
    Event is made by the first of them: most lookups are waited for by nobody)."""

    done: trio.Event | None = None
    succeeded: bool = False
    value: Any = None
    error: Exception | None = None
    status: int = COMPUTE  # how the lookup went: FRESH, STALE or COMPUTE (a miss)


@attrs.define(eq=False)
class _Renewal:
    """Keeps a lock while a computation runs: renews it every third of its lease."""

    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)

    def stop(self) -> None:
        self.scope.cancel()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Cache:
    """A shared cache (see the module docstring). The options are those of `rs.Cache`
    (``max_size`` and ``cache_none`` aside: Redis holds the entries, each until its stale
    period ends), plus ``lock_lease`` (seconds, > 0): how soon a dead computing process's
    key is computed by another. Keys are ``str``.

    Events (``source`` is ``name``): ``cache.hit``, ``cache.miss``, ``cache.stale_hit``,
    ``cache.invalid`` (key, error), ``cache.refresh_failed`` (key, error).
    """

    store: Store = attrs.field(validator=is_store)
    name: str = attrs.field(kw_only=True, validator=is_label)
    ttl: float = attrs.field(
        kw_only=True, converter=to_seconds, validator=[positive_duration, finite]
    )
    stale_ttl: float = attrs.field(
        default=0.0, kw_only=True, converter=to_seconds, validator=[non_negative_duration, finite]
    )
    single_flight: bool = attrs.field(default=True, kw_only=True, validator=is_bool)
    lock_lease: float = attrs.field(
        default=10.0, kw_only=True, converter=to_seconds, validator=[positive_duration, finite]
    )

    _local: rs.Cache = attrs.field(init=False, repr=False)
    _flights: dict[str, _Flight] = attrs.field(init=False, factory=dict, repr=False)
    _hits: int = attrs.field(init=False, default=0, repr=False)
    _misses: int = attrs.field(init=False, default=0, repr=False)
    _stale_hits: int = attrs.field(init=False, default=0, repr=False)
    _invalid: int = attrs.field(init=False, default=0, repr=False)
    _local_calls: int = attrs.field(init=False, default=0, repr=False)
    _warned: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._local = rs.Cache(
            ttl=self.ttl, stale_ttl=self.stale_ttl, single_flight=self.single_flight, name=self.name
        )

    # ----------------------------------------------------------------- public API

    async def get_or_compute(
        self, key: str, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """The value cached under ``key``, or ``await fn(*args, **kwargs)``, cached.

        The value is read back into ``fn``'s return annotation. Raises `TypeError` when the
        value cannot be written as JSON, `rs.StoreUnavailable` when Redis cannot be reached
        and ``on_unavailable="raise"``; ``fn``'s exceptions propagate (never cached).

        Always a checkpoint (a round trip). Cancellation while computing gives the lock up
        (a waiter takes over); while waiting, it only stops waiting.
        """
        return await self._get(key, fn, return_type(fn), args, kwargs)  # type: ignore[no-any-return]

    async def get_or_compute_as(
        self,
        returns: Any,
        key: str,
        fn: Callable[P, Awaitable[Any]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        """`get_or_compute`, reading values back into ``returns`` (a type, or ``None`` for
        plain JSON data) instead of ``fn``'s annotation (``mw.cache`` passes the wrapped
        function's)."""
        return await self._get(key, fn, returns, args, kwargs)

    async def invalidate(self, key: str) -> None:
        """Delete ``key``'s entry and lock (one round trip); see the module docstring."""
        check_user_key(type(self).__name__, key, optional=False)
        self._local.invalidate(key)
        await self.store.shared(lambda: self._run("invalidate", key))

    async def clear(self) -> None:
        """Delete every entry and lock of this cache (``SCAN`` + ``UNLINK``, a round trip
        per 500 keys)."""
        self._local.clear()
        await self.store.shared(self._clear)

    async def statistics(self) -> CacheStatistics:
        """This process's counts (see `CacheStatistics`). No round trip."""
        return CacheStatistics(
            hits=self._hits,
            misses=self._misses,
            stale_hits=self._stale_hits,
            invalid=self._invalid,
            local=self._local_calls,
        )

    # ------------------------------------------------------------------- lookups

    async def _get(
        self,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        returns: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        check_user_key(type(self).__name__, key, optional=False)
        lookup = self._in_flight if self.single_flight else self._fetch
        value = await self.store.shared(lambda: lookup(key, fn, returns, args, kwargs))
        if value is not LOCAL:
            return value
        self._local_calls += 1
        return await self._local.get_or_compute(key, self._compute, fn, returns, args, kwargs, key)

    async def _in_flight(
        self,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        returns: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Share one lookup per key among this process's callers."""
        while (flight := self._flights.get(key)) is not None:
            if flight.done is None:
                flight.done = trio.Event()
            await flight.done.wait()
            if flight.succeeded:
                self._count(key, flight.status)
                return flight.value
            if flight.error is not None:
                raise flight.error
            # Its caller was cancelled: the first to wake takes over.
        flight = self._flights[key] = _Flight()
        try:
            value = await self._fetch(key, fn, returns, args, kwargs, flight)
        except Exception as exc:
            flight.error = exc
            raise
        else:
            flight.succeeded, flight.value = True, value
            return value
        finally:
            del self._flights[key]
            if flight.done is not None:
                flight.done.set()

    async def _fetch(
        self,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        returns: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flight: _Flight | None = None,
    ) -> Any:
        """The fleet's lookup: a hit, a stale hit (maybe refreshing), a computation under
        the lock, or a wait for another process's. ``flight`` learns which."""
        token = self.store.ids.new()
        drop = False
        missed = False
        while True:
            reply = await self._run(
                "get",
                key,
                token,
                self._lease_ms(),
                int(self.single_flight),
                int(drop),
                self._us(self.stale_ttl),
            )
            status = int(reply[1])
            drop = False
            if status in (FRESH, STALE_REFRESH, STALE):
                try:
                    value = loads(reply[2], returns)
                except ValueError as exc:
                    self._bad_value(key, exc)
                    if status == STALE_REFRESH:
                        await self._release(key, token)
                    drop = True
                    continue
                if flight is not None:
                    flight.status = FRESH if status == FRESH else STALE
                self._count(key, FRESH if status == FRESH else STALE)
                if status == FRESH:
                    return value
                if status == STALE_REFRESH:
                    self.store.spawn(
                        self._refresh, key, token, fn, returns, args, kwargs, cleanup=False
                    )
                return value
            if not missed:
                missed = True
                self._count(key, COMPUTE)
            if status == COMPUTE:
                return await self._compute_locked(key, token, fn, returns, args, kwargs)
            # Another process computes: look again soon (and take over if it gives up).
            pause = POLL_INTERVAL
            if int(reply[2]) > 0:
                pause = min(pause, int(reply[2]) / 1000)
            await trio.sleep(pause)

    # --------------------------------------------------------------- computing

    async def _compute_locked(
        self,
        key: str,
        token: str,
        fn: Callable[..., Awaitable[Any]],
        returns: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Compute holding the lock (renewed meanwhile), store, give the lock up."""
        renewal = _Renewal()
        locked = self.single_flight
        if locked:
            self.store.spawn(self._renew, key, token, renewal, cleanup=False)
        try:
            value = await fn(*args, **kwargs)
            text = dumps(value, what=f"cache {self.name!r}: the value of key {key!r}")
        except BaseException:
            renewal.stop()
            if locked:
                self.store.spawn(self._release, key, token, cleanup=True)
            raise
        renewal.stop()
        await self._run(
            "set", key, token, text, self._us(self.ttl), self._us(self.stale_ttl), int(locked)
        )
        return loads(text, returns)

    async def _compute(
        self,
        fn: Callable[..., Awaitable[Any]],
        returns: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str,
    ) -> Any:
        """For the in-process cache: compute, and round-trip the value as Redis would."""
        value = await fn(*args, **kwargs)
        return loads(dumps(value, what=f"cache {self.name!r}: the value of key {key!r}"), returns)

    async def _refresh(
        self,
        key: str,
        token: str,
        fn: Callable[..., Awaitable[Any]],
        returns: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """A background refresh of a stale entry; never raises an Exception."""
        try:
            await self._compute_locked(key, token, fn, returns, args, kwargs)
        except StoreClosed:
            pass
        except Exception as exc:
            if _observe.active:
                _observe.emit("cache.refresh_failed", self.name, key=key, error=exc)

    async def _renew(self, key: str, token: str, renewal: _Renewal) -> None:
        with renewal.scope:
            while True:
                await trio.sleep(self.lock_lease / 3)
                try:
                    reply = await self._run("renew", key, token, self._lease_ms())
                except StoreUnavailable:
                    continue  # the store probes; the lease may run out meanwhile
                except StoreClosed:
                    return
                except Exception:
                    logger.opt(exception=True).error(
                        "cache {!r}: renewing the lock of key {!r} failed", self.name, key
                    )
                    return
                if not int(reply[1]):
                    return  # invalidated, or taken over: nothing to keep

    async def _release(self, key: str, token: str) -> None:
        try:
            await self._run("release", key, token)
        except (StoreUnavailable, StoreClosed):
            pass  # the lock expires with its lease
        except Exception:
            logger.opt(exception=True).error(
                "cache {!r}: giving up the lock of key {!r} failed", self.name, key
            )

    # ----------------------------------------------------------------- plumbing

    def _lease_ms(self) -> int:
        return max(1, round(self.lock_lease * 1000))

    @staticmethod
    def _us(seconds: float) -> int:
        return round(seconds * 1_000_000)

    async def _run(self, op: str, key: str, *args: Any) -> Any:
        store = self.store
        keys = [store.key(KIND, self.name, "entry", key), store.key(KIND, self.name, "lock", key)]
        reply = await store.run(_SCRIPT, keys, [op, *args])
        if int(reply[0]) and not self._warned:
            self._warned = True
            logger.warning(
                "cache {!r}: Redis held unreadable data for key {!r}; it was dropped",
                self.name,
                key,
            )
        return reply

    def _count(self, key: str, status: int) -> None:
        if status == FRESH:
            self._hits += 1
            if _observe.active:
                _observe.emit("cache.hit", self.name, key=key)
        elif status == STALE:
            self._stale_hits += 1
            if _observe.active:
                _observe.emit("cache.stale_hit", self.name, key=key)
        else:
            self._misses += 1
            if _observe.active:
                _observe.emit("cache.miss", self.name, key=key)

    def _bad_value(self, key: str, error: ValueError) -> None:
        self._invalid += 1
        if not self._warned:
            self._warned = True
            logger.warning(
                "cache {!r}: the value of key {!r} in Redis is unreadable ({}); it is dropped "
                "and computed again (further ones are counted, not logged)",
                self.name,
                key,
                error,
            )
        if _observe.active:
            _observe.emit("cache.invalid", self.name, key=key, error=error)

    async def _clear(self) -> None:
        store = self.store
        client = store.client
        # Every key of this cache is `{prefix}:cache:{name}:<part>:<key>`.
        pattern = _glob_escape(f"{store.prefix}:{KIND}:{{{self.name}}}:") + "*"
        cursor = 0
        while True:
            scan = functools.partial(client.scan, cursor, match=pattern, count=_SCAN_BATCH)
            cursor, found = await store.command("SCAN", scan)
            if found:
                await store.command("UNLINK", functools.partial(client.unlink, found))
            if int(cursor) == 0:
                return


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (``SCAN MATCH``)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
