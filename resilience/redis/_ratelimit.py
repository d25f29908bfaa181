"""`RateLimiter`: a rate limit shared by every process that uses the same name and store.

Each decision is one Lua script on the Redis server's clock (``lua/ratelimit_*.lua``), so
the bound holds for the whole fleet together:

- ``algorithm="sliding_window"``: a sliding log in a sorted set per key. In ANY interval
  ``(t - per, t]``, at most ``rate`` cost is admitted across all processes. Memory per key:
  one sorted-set entry per admission of the last ``per`` seconds (at most ``rate`` of them,
  each about 60-100 bytes of Redis memory: a member of ~30 bytes, its score, the skiplist
  and dict overhead), plus a small hash holding their total.
- ``algorithm="token_bucket"``: GCRA, one string per key (the theoretical arrival time):
  over any interval of length ``d`` at most ``burst + rate * d / per`` is admitted.

A caller that must wait gets a *reservation*: the script records its admission at the
earliest time the limit allows and answers how long to wait; the caller sleeps that long
and proceeds, with no second round trip. ``max_wait`` is checked by the script, against
every reservation of the fleet. Within a process, callers of one key are decided in arrival
order (FIFO, see ``_lanes``): a later caller never gets an earlier reservation. Across
processes the order is the order in which their scripts reach Redis.

A caller cancelled while it waits gives its reservation back (in the store's background,
so cancellation is immediate): as if it had never been made. Reservations whose fate a
round trip left unknown (the caller was cancelled mid-call, or Redis stopped answering)
are given back by id for the sliding window; for the token bucket they cannot be told
apart and are left: at most their cost of capacity is lost, until the bucket refills.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import trio
from loguru import logger

import resilience as rs
from resilience import _observe
from resilience._errors import RateLimited, StoreUnavailable
from resilience.redis._keys import check_user_key, is_label
from resilience.redis._lanes import Lanes, Ticket
from resilience.redis._scripts import Script, script
from resilience.redis._store import LOCAL, Store, StoreClosed, is_store
from resilience.validate import fail, to_seconds

__all__ = ["Decision", "RateLimiter", "RateLimiterStatistics"]

KIND = "ratelimit"
_WINDOW = script("ratelimit_window")
_WINDOW_GIVEBACK = script("ratelimit_window_giveback")
_BUCKET = script("ratelimit_bucket")
_BUCKET_GIVEBACK = script("ratelimit_bucket_giveback")


@attrs.frozen
class RateLimiterStatistics:
    """This process's counts since creation: acquisitions admitted, rejected (``acquire``
    raising `rs.RateLimited`, ``try_acquire`` answering ``False``), admitted after a wait,
    and those answered by the in-process limiter while Redis was unreachable (``local``)."""

    admitted: int
    rejected: int
    waited: int
    local: int


@attrs.frozen
class Decision:
    """A script's answer for one request: admitted or not; the wait in seconds (for a
    rejection: the wait ``max_wait`` refused); ``at``: the server time (seconds since the
    epoch) from which the admission counts; ``member``: the log entry (sliding window)."""

    admitted: bool
    wait: float
    at: float
    member: str | None = None


@attrs.frozen
class _Request:
    cost: int
    max_wait_us: int  # -1: no bound


# on_setattr=NO_OP: the counters are written on every call; options are checked at creation.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class RateLimiter:
    """Admit at most ``rate`` cost per ``per`` seconds per key, across every process using
    ``name`` on ``store`` (see the module docstring for the two algorithms).

    The options are those of `rs.RateLimiter` (checked the same way) except ``max_keys``:
    per-key state lives in Redis, where every key expires once it no longer matters.
    Keys are ``str`` (``None`` is the limiter's one default key). While the store is
    unavailable, ``on_unavailable="local"`` answers from an `rs.RateLimiter` of the same
    options in this process (the fleet-wide bound does not hold meanwhile: each process
    admits up to the limit on its own); ``"raise"`` raises `rs.StoreUnavailable`.

    Events (``source`` is ``name``): ``ratelimit.waited`` and ``ratelimit.rejected``, as
    for the in-process limiter.
    """

    store: Store = attrs.field(validator=is_store)
    name: str = attrs.field(kw_only=True, validator=is_label)
    rate: float = attrs.field(kw_only=True)
    per: float = attrs.field(default=1.0, kw_only=True, converter=to_seconds)
    burst: float | None = attrs.field(default=None, kw_only=True)
    algorithm: Literal["token_bucket", "sliding_window"] = attrs.field(
        default="token_bucket", kw_only=True
    )
    max_wait: float | None = attrs.field(default=None, kw_only=True, converter=to_seconds)

    _local: rs.RateLimiter = attrs.field(init=False, repr=False)
    _lanes: Lanes[str | None, _Request, Decision] = attrs.field(init=False, repr=False)
    _window: bool = attrs.field(init=False, repr=False)
    _max_cost: int = attrs.field(init=False, repr=False)
    _capacity: float = attrs.field(init=False, repr=False)
    _per_us: int = attrs.field(init=False, repr=False)
    _interval_us: float = attrs.field(init=False, repr=False)
    _max_wait_us: int = attrs.field(init=False, repr=False)
    _admitted: int = attrs.field(init=False, default=0, repr=False)
    _rejected: int = attrs.field(init=False, default=0, repr=False)
    _waited: int = attrs.field(init=False, default=0, repr=False)
    _local_calls: int = attrs.field(init=False, default=0, repr=False)
    _warned: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # The in-process twin checks every option exactly as the in-process limiter does.
        self._local = rs.RateLimiter(
            rate=self.rate,
            per=self.per,
            burst=self.burst,
            algorithm=self.algorithm,
            max_wait=self.max_wait,
            name=self.name,
        )
        self._window = self.algorithm == "sliding_window"
        self._capacity = (
            float(self.rate)
            if self._window
            else (max(self.rate, 1.0) if self.burst is None else float(self.burst))
        )
        self._max_cost = math.floor(self._capacity)
        self._per_us = max(1, round(self.per * 1_000_000))
        self._interval_us = self.per * 1_000_000 / self.rate
        self._max_wait_us = -1 if self.max_wait is None else round(self.max_wait * 1_000_000)
        self._lanes = Lanes(self._decide, self._lost, self._abandoned)

    # ----------------------------------------------------------------- public API

    async def acquire(self, key: str | None = None, cost: int = 1) -> None:
        """Wait until ``cost`` may be admitted for ``key`` across the fleet, then admit it.

        Raises `rs.RateLimited` (``retry_after``: the wait that would have been needed) at
        once when the wait would exceed ``max_wait``; `rs.StoreUnavailable` when Redis
        cannot be reached and ``on_unavailable="raise"``. ``cost``: an int in
        ``[1, capacity]`` (capacity: ``burst`` for the token bucket, ``rate`` for the
        sliding window), else `ValueError` (`TypeError` for a non-int).

        Always a checkpoint (a round trip). Cancellation while waiting admits nothing: the
        reservation is given back.
        """
        await self._acquire(key, cost)

    async def try_acquire(self, key: str | None = None, cost: int = 1) -> bool:
        """Admit ``cost`` for ``key`` if the fleet's limit allows it now; say whether.

        Never waits for capacity (one round trip). Errors as for `acquire`.
        """
        key, cost = self._check(key, cost)
        decision = await self.store.shared(lambda: self._lanes.submit(key, _Request(cost, 0)))
        if decision is LOCAL:
            return self._local_try(key, cost)
        assert isinstance(decision, Decision)
        if decision.admitted:
            self._admitted += 1
            return True
        self._rejected += 1
        if _observe.active:
            _observe.emit(
                "ratelimit.rejected", self.name, key=key, cost=cost, retry_after=decision.wait
            )
        return False

    async def statistics(self) -> RateLimiterStatistics:
        """This process's counts (see `RateLimiterStatistics`). No round trip."""
        return RateLimiterStatistics(
            admitted=self._admitted,
            rejected=self._rejected,
            waited=self._waited,
            local=self._local_calls,
        )

    # ------------------------------------------------------------------- acquire

    async def _acquire(self, key: str | None, cost: int) -> Decision | None:
        """`acquire`; the decision it acted on (``None`` when answered locally): the
        fleet tests read the server time of each admission from it."""
        key, cost = self._check(key, cost)
        request = _Request(cost, self._max_wait_us)
        decision = await self.store.shared(lambda: self._lanes.submit(key, request))
        if decision is LOCAL:
            await self._local_acquire(key, cost)
            return None
        assert isinstance(decision, Decision)
        if not decision.admitted:
            self._reject(key, cost, decision.wait)
        if decision.wait > 0:
            try:
                await trio.sleep(decision.wait)
            except BaseException:
                self._give_back(key, [(cost, decision.member)], known=True)
                raise
            self._waited += 1
            if _observe.active:
                _observe.emit(
                    "ratelimit.waited", self.name, key=key, cost=cost, delay=decision.wait
                )
        self._admitted += 1
        return decision

    def _check(self, key: object, cost: object) -> tuple[str | None, int]:
        if type(cost) is not int:
            fail(self, "cost", f"must be an int, got {cost!r}", TypeError)
        if not 1 <= cost <= self._max_cost:
            which = "rate" if self._window else "burst"
            fail(self, "cost", f"must be >= 1 and <= {which} ({self._capacity:g}), got {cost!r}")
        return check_user_key(type(self).__name__, key, optional=True), cost

    def _reject(self, key: str | None, cost: int, retry_after: float) -> None:
        self._rejected += 1
        if _observe.active:
            _observe.emit(
                "ratelimit.rejected", self.name, key=key, cost=cost, retry_after=retry_after
            )
        assert self.max_wait is not None  # a rejection needs a bound
        raise RateLimited(
            f"rate limiter {self.name!r}: key {key!r} would wait {retry_after:g} s for cost "
            f"{cost}, more than max_wait={self.max_wait:g} s",
            retry_after=retry_after,
        )

    async def _local_acquire(self, key: str | None, cost: int) -> None:
        self._local_calls += 1
        await self._local.acquire(key, cost)
        self._admitted += 1

    def _local_try(self, key: str | None, cost: int) -> bool:
        self._local_calls += 1
        if self._local.try_acquire(key, cost):
            self._admitted += 1
            return True
        self._rejected += 1
        return False

    # --------------------------------------------------------------- round trips

    def _keys(self, key: str | None) -> list[str]:
        store = self.store
        if self._window:
            return [
                store.key(KIND, self.name, "log", key),
                store.key(KIND, self.name, "meta", key),
            ]
        return [store.key(KIND, self.name, "tat", key)]

    async def _decide(
        self, key: str | None, tickets: Sequence[Ticket[_Request, Decision]]
    ) -> list[Decision]:
        """One script call deciding ``tickets`` in order."""
        args: list[Any]
        if self._window:
            args = [repr(self._capacity), self._per_us]
            for ticket in tickets:
                request = ticket.request
                id_ = self.store.ids.new()
                ticket.attempt = f"{id_}|{request.cost}"
                args += [id_, request.cost, request.max_wait_us]
            script_ = _WINDOW
        else:
            args = [repr(self._interval_us), repr(self._capacity)]
            for ticket in tickets:
                args += [ticket.request.cost, ticket.request.max_wait_us]
            script_ = _BUCKET
        reply = await self.store.run(script_, self._keys(key), args)
        if int(reply[0]) and not self._warned:
            self._warned = True
            logger.warning(
                "rate limiter {!r}: key {!r} held unreadable data in Redis; it was dropped "
                "and the key started afresh",
                self.name,
                key,
            )
        now_us = int(reply[1])
        decisions = []
        for index, ticket in enumerate(tickets):
            admitted, wait_us = bool(int(reply[2 + 2 * index])), int(reply[3 + 2 * index])
            decisions.append(
                Decision(
                    admitted=admitted,
                    wait=wait_us / 1_000_000,
                    at=(now_us + wait_us) / 1_000_000,
                    member=ticket.attempt if admitted else None,
                )
            )
        return decisions

    def _lost(self, key: str | None, tickets: Sequence[Ticket[_Request, Decision]]) -> None:
        if self._window:
            self._give_back(key, [(t.request.cost, t.attempt) for t in tickets], known=False)

    def _abandoned(
        self, key: str | None, ticket: Ticket[_Request, Decision], decision: Decision
    ) -> None:
        if decision.admitted:
            self._give_back(key, [(ticket.request.cost, decision.member)], known=True)

    def _give_back(
        self, key: str | None, reservations: list[tuple[int, str | None]], *, known: bool
    ) -> None:
        """Take back ``reservations`` (cost, sliding-window member) in the background.

        ``known``: they were certainly made (token-bucket tokens are only given back then).
        """
        if self._window:
            members = [member for _, member in reservations if member is not None]
            if members:
                self.store.spawn(self._run_give_back, _WINDOW_GIVEBACK, key, members, cleanup=True)
        elif known:
            total = sum(cost for cost, _ in reservations)
            self.store.spawn(
                self._run_give_back,
                _BUCKET_GIVEBACK,
                key,
                [repr(self._interval_us), total],
                cleanup=True,
            )

    async def _run_give_back(self, script_: Script, key: str | None, args: list[Any]) -> None:
        try:
            await self.store.run(script_, self._keys(key), args)
        except (StoreUnavailable, StoreClosed):
            pass  # the reservation expires with its key; the outage is reported already
        except Exception:
            logger.opt(exception=True).error(
                "rate limiter {!r}: giving back a reservation of key {!r} failed", self.name, key
            )
