"""The resilience primitives as middleware: ``mw.timeout``, ``mw.retry``, … ``mw.hedge``.

Each takes the options of its primitive (see `resilience`), or an instance to share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import resilience as rs
from middleware._adapter import Adapter, adapter
from middleware._cache_key import default_key, shared_key
from middleware._call import Call, Middleware, Next
from resilience import redis as shared_rs

__all__ = [
    "bulkhead",
    "cache",
    "circuit_breaker",
    "fallback",
    "hedge",
    "rate_limit",
    "retry",
    "timeout",
]

KeyFunction = Callable[[Call], Any]


class _Through:
    """Middleware for primitives with ``call(fn, *args)``: runs ``next(call)`` through it."""

    __slots__ = ("_call",)

    def __init__(
        self,
        primitive: rs.Timeout
        | rs.CircuitBreaker
        | rs.Bulkhead
        | rs.Hedge
        | shared_rs.CircuitBreaker
        | shared_rs.Bulkhead,
    ) -> None:
        self._call = primitive.call

    def __call__(self, call: Call, next: Next) -> Awaitable[Any]:
        return self._call(next, call)


def _attempt(next: Next, call: Call) -> Awaitable[Any]:
    call.state["attempt"] = call.state.get("attempt", 0) + 1
    return next(call)


def _retrying(retry_policy: rs.Retry) -> Middleware:
    run = retry_policy.call

    def middleware(call: Call, next: Next) -> Awaitable[Any]:
        return run(_attempt, next, call)

    return middleware


def timeout(seconds: float | timedelta | rs.Timeout, *, name: str | None = None) -> Adapter[Any]:
    """Bound the rest of the pipeline by ``seconds``; raises `rs.TimeoutExceeded`."""
    if isinstance(seconds, rs.Timeout):
        return adapter(
            "timeout", rs.Timeout, seconds, {} if name is None else {"name": name}, _Through
        )
    return adapter("timeout", rs.Timeout, None, {"seconds": seconds, "name": name}, _Through)


def retry(policy: rs.Retry | None = None, /, **options: Any) -> Adapter[rs.Retry]:
    """Retry the rest of the pipeline (options of `rs.Retry`); ``call.state["attempt"]`` counts."""
    return adapter("retry", rs.Retry, policy, options, _retrying)


def circuit_breaker(
    breaker: rs.CircuitBreaker | shared_rs.CircuitBreaker | None = None, /, **options: Any
) -> Adapter[Any]:
    """A circuit breaker per function (options of `rs.CircuitBreaker`), or a shared one:
    an `rs.CircuitBreaker`, or a ``resilience.redis.CircuitBreaker`` (one for the fleet).

    The wrapped function exposes it as ``.breaker``.
    """
    return adapter(
        "circuit_breaker",
        rs.CircuitBreaker,
        breaker,
        options,
        _Through,
        "breaker",
        fleet=shared_rs.CircuitBreaker,
    )


def bulkhead(
    shared: rs.Bulkhead | shared_rs.Bulkhead | None = None, /, **options: Any
) -> Adapter[Any]:
    """Bound concurrency (options of `rs.Bulkhead`), or share an `rs.Bulkhead` or a
    ``resilience.redis.Bulkhead``; exposed as ``.bulkhead``."""
    return adapter(
        "bulkhead",
        rs.Bulkhead,
        shared,
        options,
        _Through,
        "bulkhead",
        fleet=shared_rs.Bulkhead,
    )


def hedge(shared: rs.Hedge | None = None, /, **options: Any) -> Adapter[rs.Hedge]:
    """Hedged attempts of the rest of the pipeline (options of `rs.Hedge`)."""
    return adapter("hedge", rs.Hedge, shared, options, _Through)


def rate_limit(
    limiter: rs.RateLimiter | shared_rs.RateLimiter | None = None,
    /,
    *,
    key: KeyFunction | None = None,
    **options: Any,
) -> Adapter[Any]:
    """Acquire a permit before the call (options of `rs.RateLimiter`), or share an
    `rs.RateLimiter` or a ``resilience.redis.RateLimiter``; exposed as ``.limiter``.

    ``key(call)`` picks the per-key bucket (default: one bucket for the function; a shared
    limiter's keys are ``str``).
    """
    _check_key("rate_limit", key)

    def make(chosen: rs.RateLimiter | shared_rs.RateLimiter) -> Middleware:
        acquire = chosen.acquire
        if key is None:

            async def middleware(call: Call, next: Next) -> Any:
                await acquire()
                return await next(call)

        else:

            async def middleware(call: Call, next: Next) -> Any:
                await acquire(key(call))
                return await next(call)

        return middleware

    return adapter(
        "rate_limit",
        rs.RateLimiter,
        limiter,
        options,
        make,
        "limiter",
        fleet=shared_rs.RateLimiter,
    )


async def _compute(next: Next, call: Call) -> Any:
    call.state["cache_hit"] = False
    return await next(call)


def cache(
    shared: rs.Cache | shared_rs.Cache | None = None,
    /,
    *,
    key: KeyFunction | None = None,
    returns: Any = None,
    **options: Any,
) -> Adapter[Any]:
    """Serve repeated calls from an `rs.Cache` (its options) or a shared one (an `rs.Cache`,
    or a ``resilience.redis.Cache``); exposed as ``.cache``.

    The default key is the function id plus the call's arguments, which must be hashable
    (else a `TypeError` names the argument); for a ``resilience.redis.Cache`` it is that,
    as JSON text (the arguments must be JSON data). ``key(call)`` overrides it.
    ``returns``: for a ``resilience.redis.Cache``, the type values are read back into (the
    wrapped function's return type; default: plain JSON data).
    ``call.state["cache_hit"]`` tells the middlewares outside whether the call was served.
    """
    _check_key("cache", key)
    if returns is not None and not isinstance(shared, shared_rs.Cache):
        raise TypeError("mw.cache: returns= is for a resilience.redis.Cache")

    def make(chosen: rs.Cache | shared_rs.Cache) -> Middleware:
        if isinstance(chosen, shared_rs.Cache):
            fetch = chosen.get_or_compute_as
            fleet_key = shared_key if key is None else key

            def fleet_middleware(call: Call, next: Next) -> Awaitable[Any]:
                call.state["cache_hit"] = True
                return fetch(returns, fleet_key(call), _compute, next, call)

            return fleet_middleware
        get_or_compute = chosen.get_or_compute
        key_of = default_key if key is None else key

        def middleware(call: Call, next: Next) -> Awaitable[Any]:
            call.state["cache_hit"] = True
            return get_or_compute(key_of(call), _compute, next, call)

        return middleware

    return adapter(
        "cache",
        rs.Cache,
        shared,
        options,
        make,
        "cache",
        fleet=shared_rs.Cache,
    )


def fallback(shared: rs.Fallback[Any] | None = None, /, **options: Any) -> Adapter[Any]:
    """Answer with a value or a handler's result on failure (options of `rs.Fallback`).

    A handler receives ``(exc, *args, **kwargs)`` of the call.
    """

    def make(chosen: rs.Fallback[Any]) -> Middleware:
        recover = chosen.recover

        async def middleware(call: Call, next: Next) -> Any:
            try:
                return await next(call)
            except Exception as exc:
                return await recover(exc, *call.args, **call.kwargs)

        return middleware

    return adapter("fallback", rs.Fallback, shared, options, make)


def _check_key(kind: str, key: object) -> None:
    if key is not None and not callable(key):
        raise TypeError(f"mw.{kind}: key must be a callable (call) -> hashable, got {key!r}")
