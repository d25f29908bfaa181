"""`Store`: the Redis connection the shared primitives decide through.

A store wraps one coredis client (``coredis.Redis`` or ``coredis.RedisCluster``) and owns
it: ``async with store:`` enters the client (coredis 6 clients work only while entered),
opens the nursery where the primitives' background work runs (breaker syncs, bulkhead
lease renewals, cache refreshes, the give-backs of cancelled callers, the probe of an
unreachable Redis), and on exit stops that work, then closes the client.

Every round trip is bounded by ``op_timeout``; one decision (a script call that may have to
send the script again after ``NOSCRIPT``) by ``2 * op_timeout``. A server that refuses
connections, drops them, or accepts them and never answers, is *unavailable*: the store
reports ``store.unavailable`` once, probes Redis every `PROBE_INTERVAL` seconds until it
answers, then reports ``store.recovered``. What a primitive does meanwhile is
``on_unavailable``'s choice: ``"raise"`` raises `rs.StoreUnavailable` (chained from the
cause) from every call that needs Redis; ``"local"`` answers from an in-process primitive of
the same options, without trying Redis, until the probe sees it back.

coredis is imported when a store is built, never by importing this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeVar, TypeVarTuple

import attrs
import trio
from loguru import logger

from resilience import _observe
from resilience._errors import StoreUnavailable
from resilience.redis._keys import IdSource, is_label, key_of
from resilience.redis._scripts import Script
from resilience.validate import fail, finite, positive_duration, to_seconds

if TYPE_CHECKING:
    import coredis

__all__ = ["LOCAL", "PROBE_INTERVAL", "REDIS_EXTRA", "Store", "StoreClosed", "is_store"]

#: Seconds between two probes of an unreachable Redis (the contract: at least once a second).
PROBE_INTERVAL: Final = 0.5

#: How to get coredis, for the ImportError raised when it is missing.
REDIS_EXTRA: Final = "install the `redis` extra: pip install 'trio-runner[redis]'"

PosArgsT = TypeVarTuple("PosArgsT")
T = TypeVar("T")
Reply = Any
OnUnavailable = Literal["raise", "local"]


class _Local:
    """`Store.shared`'s answer when the primitive must answer in-process."""

    def __repr__(self) -> str:
        return "LOCAL"


#: See `Store.shared`.
LOCAL: Final = _Local()


class StoreClosed(RuntimeError):
    """The store is not open (the `RuntimeError` its users see); background work of the
    primitives that meets it while the store closes stops quietly."""


def _coredis() -> Any:
    try:
        import coredis
    except ImportError as exc:
        raise ImportError(f"resilience.redis needs coredis >= 6: {REDIS_EXTRA}") from exc
    return coredis


def _check_client(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    coredis = _coredis()
    if not isinstance(value, coredis.Redis | coredis.RedisCluster):
        fail(
            instance,
            attribute.name,
            f"must be a coredis.Redis or coredis.RedisCluster, got {value!r}",
            TypeError,
        )


def _check_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        is_label(instance, attribute, value)


def _check_mode(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("raise", "local"):
        fail(instance, attribute.name, f"must be 'raise' or 'local', got {value!r}")


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis cannot be reached now" (not a bug, not bad data)."""
    exceptions = _coredis().exceptions
    return (
        exceptions.ConnectionError,  # refused, dropped, protocol broken, still loading
        exceptions.ReadOnlyError,  # a replica answering during a failover
        exceptions.ClusterDownError,
        exceptions.ClusterError,
        exceptions.ClusterRoutingError,
        exceptions.TryAgainError,
        TimeoutError,
        OSError,
    )


# on_setattr=NO_OP: the availability flags are written on the hot path of every primitive.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Store:
    """Shared state in Redis for the primitives of `resilience.redis`.

    ``client`` is a ``coredis.Redis`` or ``coredis.RedisCluster`` (not entered yet: the
    store enters it). ``prefix`` starts every key (``{prefix}:{kind}:{{name}}:...``), so
    that several applications can share one Redis. ``op_timeout`` (seconds, > 0) bounds
    every round trip. ``on_unavailable``: ``"raise"`` or ``"local"`` (see the module doc).
    ``name`` is the ``source`` of the store's events (default: the prefix).

    Use it inside ``async with store:`` (or ``kernel.redis.resource``); a closed store
    raises `RuntimeError`. Keys: every key the primitives write has a TTL.
    """

    client: coredis.Redis[Any] | coredis.RedisCluster[Any] = attrs.field(
        validator=_check_client, repr=False
    )
    prefix: str = attrs.field(default="trio-runner", kw_only=True, validator=is_label)
    op_timeout: float = attrs.field(
        default=0.25, kw_only=True, converter=to_seconds, validator=[positive_duration, finite]
    )
    on_unavailable: OnUnavailable = attrs.field(
        default="raise", kw_only=True, validator=_check_mode
    )
    name: str | None = attrs.field(default=None, kw_only=True, validator=_check_name)

    #: Unique ids of this store's writes (``ids.token`` tells this process's writes apart).
    ids: IdSource = attrs.field(init=False, factory=IdSource, repr=False)
    #: False from the moment a round trip found Redis unreachable until one succeeds again.
    available: bool = attrs.field(init=False, default=True)
    _open: bool = attrs.field(init=False, default=False, repr=False)
    _closing: bool = attrs.field(init=False, default=False, repr=False)
    _stack: AsyncExitStack | None = attrs.field(init=False, default=None, repr=False)
    _nursery: trio.Nursery | None = attrs.field(init=False, default=None, repr=False)
    _errors: tuple[type[BaseException], ...] = attrs.field(init=False, default=(), repr=False)
    _no_script: type[BaseException] = attrs.field(init=False, default=Exception, repr=False)
    _down_since: float | None = attrs.field(init=False, default=None, repr=False)
    _probing: bool = attrs.field(init=False, default=False, repr=False)
    _cleanups: int = attrs.field(init=False, default=0, repr=False)
    _cleaned: trio.Event | None = attrs.field(init=False, default=None, repr=False)
    # Tests of the scripts' decisions set a fake server clock here (microseconds).
    _clock: Callable[[], int] | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self._errors = _unavailable_errors()
        self._no_script = _coredis().exceptions.NoScriptError

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "trio-runner",
        op_timeout: float | timedelta = 0.25,
        on_unavailable: OnUnavailable = "raise",
        name: str | None = None,
    ) -> Store:
        """A store over ``coredis.Redis.from_url(url)`` (``redis://``, ``rediss://`` or
        ``unix://``); coredis connects on first use. Build the client yourself for other
        client options (a cluster, TLS settings, a pool size) and pass it to `Store`."""
        if not isinstance(url, str):
            raise TypeError(f"Store.from_url: url must be a str, got {url!r}")
        client = _coredis().Redis.from_url(url)
        return cls(
            client, prefix=prefix, op_timeout=op_timeout, on_unavailable=on_unavailable, name=name
        )

    # ------------------------------------------------------------------ lifetime

    @property
    def is_open(self) -> bool:
        """Whether the store is inside its ``async with`` block (or resource)."""
        return self._open

    async def __aenter__(self) -> Self:
        """Enter the client and open the store's nursery. Does not contact Redis."""
        if self._stack is not None:
            raise RuntimeError("Store: it is already open (a store is entered once)")
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(self.client)
            self._nursery = await stack.enter_async_context(trio.open_nursery())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._open, self._closing = True, False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the background work (give-backs still running get up to ``op_timeout`` to
        finish), then close the client. The block's exception propagates unchanged."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close the store (see ``__aexit__``); closing a closed store does nothing.

        Call it from the task that opened the store: the store's nursery is that task's.
        """
        stack, nursery = self._stack, self._nursery
        if stack is None or nursery is None:
            return
        self._closing = True  # no new background work; give-backs still running may finish
        if self._cleanups:
            self._cleaned = trio.Event()
            with trio.CancelScope(shield=True), trio.move_on_after(self.op_timeout):
                await self._cleaned.wait()
        self._open = False
        nursery.cancel_scope.cancel()
        self._stack = self._nursery = None
        # The nursery and the client exit in the scope they were entered in (a shield
        # around them would corrupt trio's cancel scope stack); cancellation is fine here.
        await stack.aclose()

    def _check_open(self) -> None:
        if not self._open:
            raise StoreClosed(
                "resilience.redis.Store: the store is not open; use `async with store:` "
                "(or register kernel.redis.resource(id, store) in your app) around its use"
            )

    def spawn(
        self, fn: Callable[[*PosArgsT], Awaitable[object]], *args: *PosArgsT, cleanup: bool
    ) -> bool:
        """Run ``fn(*args)`` in the store's nursery; say whether it was started (not when
        the store is closed). ``cleanup``: a one-shot giving something back (a permit, a
        reservation), which closing the store waits for (up to ``op_timeout``); otherwise a
        loop, which closing cancels. ``fn`` must not raise (the nursery would crash)."""
        nursery = self._nursery
        if nursery is None or not self._open or self._closing:
            return False
        if cleanup:
            self._cleanups += 1
            nursery.start_soon(self._cleanup, fn, args)
        else:
            nursery.start_soon(fn, *args)
        return True

    async def _cleanup(self, fn: Callable[..., Awaitable[object]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self._cleanups -= 1
            if not self._cleanups and self._cleaned is not None:
                self._cleaned.set()

    # ------------------------------------------------------------------ round trips

    def key(self, kind: str, name: str, part: str, user_key: str | None = None) -> str:
        """The Redis key of ``part`` of the primitive ``kind``/``name`` (see ``_keys``)."""
        return key_of(self.prefix, kind, name, part, user_key)

    @property
    def use_local(self) -> bool:
        """True while primitives answer from their in-process twin: ``on_unavailable`` is
        ``"local"`` and Redis was unreachable at the last try."""
        return not self.available and self.on_unavailable == "local"

    async def shared(self, operation: Callable[[], Awaitable[T]]) -> T | _Local:
        """``await operation()`` (the shared way), or `LOCAL` when the caller must answer
        from its in-process twin: the store answers locally (`use_local`), or Redis just
        proved unreachable and ``on_unavailable`` is ``"local"``. With ``"raise"`` the
        `StoreUnavailable` propagates."""
        if self.use_local:
            return LOCAL
        try:
            return await operation()
        except StoreUnavailable:
            if self.on_unavailable != "local":
                raise
            return LOCAL

    def clock_arg(self) -> str:
        """``ARGV[1]`` of every script: ``""`` (the server's clock) outside tests."""
        clock = self._clock
        return "" if clock is None else str(int(clock()))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Reply:
        """Run ``script`` (``EVALSHA``, then ``EVAL`` on ``NOSCRIPT``) with ``keys`` and
        ``ARGV = [clock, *args]``; its reply.

        Each round trip is bounded by ``op_timeout``, so the whole by ``2 * op_timeout``.
        Raises `StoreUnavailable` (whatever ``on_unavailable`` says: the primitive decides)
        when Redis cannot be reached, `RuntimeError` when the store is not open; other
        Redis errors (a refused command, a script error) propagate unchanged.
        A checkpoint. Cancellation abandons the call: the script may or may not have run.
        """
        self._check_open()
        argv = [self.clock_arg(), *args]
        client = self.client
        try:
            with trio.move_on_after(self.op_timeout) as first:
                try:
                    reply = await client.evalsha(script.sha, keys, argv)
                except self._no_script:
                    reply = None
                else:
                    self._up()
                    return reply
            if not first.cancelled_caught:
                with trio.move_on_after(self.op_timeout):
                    reply = await client.eval(script.source, keys, argv)
                    self._up()
                    return reply
        except self._errors as exc:
            raise self._down(f"script {script.name!r}", exc) from exc
        error = TimeoutError(f"Redis did not answer within op_timeout={self.op_timeout:g} s")
        raise self._down(f"script {script.name!r}", error) from error

    async def command(self, what: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """One plain command ``await fn()`` (e.g. ``lambda: client.get(k)``) under the same
        rules as `run`: bounded by ``op_timeout``, `StoreUnavailable` when unreachable."""
        self._check_open()
        try:
            with trio.move_on_after(self.op_timeout):
                result = await fn()
                self._up()
                return result
        except self._errors as exc:
            raise self._down(what, exc) from exc
        error = TimeoutError(f"Redis did not answer within op_timeout={self.op_timeout:g} s")
        raise self._down(what, error) from error

    async def ping(self) -> float:
        """One ``PING`` round trip; its duration in seconds.

        Raises `StoreUnavailable` when Redis cannot be reached within ``op_timeout``
        (whatever ``on_unavailable`` says), `RuntimeError` when the store is not open.
        A checkpoint.
        """
        client = self.client
        start = trio.current_time()
        await self.command("PING", lambda: client.ping())
        return trio.current_time() - start

    # --------------------------------------------------------------- availability

    def _up(self) -> None:
        if self.available:
            return
        self.available = True
        down_since, self._down_since = self._down_since, None
        downtime = 0.0 if down_since is None else trio.current_time() - down_since
        logger.info("redis store {!r} answers again after {:.3g} s", self.source, downtime)
        if _observe.active:
            _observe.emit("store.recovered", self.source, downtime=downtime)

    def _down(self, what: str, cause: BaseException) -> StoreUnavailable:
        """The error for ``what`` failing with ``cause``; the first one of an outage marks
        the store unavailable, reports it and starts the probe."""
        error = StoreUnavailable(
            f"redis store {self.source!r}: {what} failed: {type(cause).__name__}: {cause}"
        )
        if self.available:
            self.available = False
            self._down_since = trio.current_time()
            logger.warning(
                "redis store {!r} is unreachable ({}: {}); on_unavailable={!r}",
                self.source,
                type(cause).__name__,
                cause,
                self.on_unavailable,
            )
            if _observe.active:
                _observe.emit(
                    "store.unavailable", self.source, error=cause, mode=self.on_unavailable
                )
            if not self._probing and self.spawn(self._probe, cleanup=False):
                self._probing = True
        return error

    async def _probe(self) -> None:
        """``PING`` every `PROBE_INTERVAL` seconds until Redis answers (then `_up` ran)."""
        try:
            while not self.available and not self._closing:
                started = trio.current_time()
                try:
                    await self.ping()
                except StoreUnavailable:
                    await trio.sleep_until(started + PROBE_INTERVAL)
        finally:
            self._probing = False

    @property
    def source(self) -> str:
        """The ``source`` of this store's events: ``name``, or the prefix."""
        return self.prefix if self.name is None else self.name


def is_store(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator of a shared primitive's ``store``."""
    if not isinstance(value, Store):
        fail(
            instance, attribute.name, f"must be a resilience.redis.Store, got {value!r}", TypeError
        )
