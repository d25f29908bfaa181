"""The resilience primitives as middleware: ``mw.timeout``, ``mw.retry``, … ``mw.hedge``.

Each takes the options of its primitive (see `resilience`), spelt out so that an editor
refuses a misspelt one, or an instance to share. An option left at its default is not
passed on: the primitive's own default applies (``None`` stands for "the primitive's
default" where the primitive has a required option or a computed default).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final

from tenacity import RetryCallState
from tenacity.retry import retry_base
from tenacity.stop import stop_base

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
Duration = float | timedelta
ExceptionTypes = type[Exception] | tuple[type[Exception], ...]
RetryOn = ExceptionTypes | Callable[[Exception], bool] | retry_base


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


#: ``mw.fallback(value=...)`` not given (``None`` is a value a fallback may answer with).
NO_VALUE: Final = _NoValue()


@functools.cache
def _defaults(adapter_fn: Callable[..., object]) -> dict[str, object]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(adapter_fn).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _chosen(adapter_fn: Callable[..., object], **values: object) -> dict[str, Any]:
    """The options given to ``adapter_fn``: those not left at its default."""
    defaults = _defaults(adapter_fn)
    return {name: value for name, value in values.items() if value is not defaults[name]}


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


def retry(
    policy: rs.Retry | None = None,
    /,
    *,
    attempts: int | None = 3,
    wait: Callable[[RetryCallState], float] | None = None,
    on: RetryOn = Exception,
    stop: stop_base | None = None,
    timeout: Duration | None = None,
    retry_after: Callable[[Exception], float | None] | None = None,
    name: str | None = None,
) -> Adapter[rs.Retry]:
    """Retry the rest of the pipeline (options of `rs.Retry`; ``wait=None``: its default
    backoff); ``call.state["attempt"]`` counts."""
    options = _chosen(
        retry,
        attempts=attempts,
        wait=wait,
        on=on,
        stop=stop,
        timeout=timeout,
        retry_after=retry_after,
        name=name,
    )
    return adapter("retry", rs.Retry, policy, options, _retrying)


def circuit_breaker(
    breaker: rs.CircuitBreaker | shared_rs.CircuitBreaker | None = None,
    /,
    *,
    failure_threshold: int = 5,
    reset_timeout: Duration | Callable[[int], Duration] = 30.0,
    half_open_max_calls: int = 1,
    success_threshold: int = 1,
    failure_ratio: float | None = None,
    window: rs.Window | None = None,
    minimum_calls: int = 10,
    slow_call_duration: Duration | None = None,
    slow_call_ratio: float | None = None,
    is_failure: Callable[[Exception], bool] | None = None,
    name: str | None = None,
) -> Adapter[Any]:
    """A circuit breaker per function (options of `rs.CircuitBreaker`), or a shared one:
    an `rs.CircuitBreaker`, or a ``resilience.redis.CircuitBreaker`` (one for the fleet).

    The wrapped function exposes it as ``.breaker``.
    """
    options = _chosen(
        circuit_breaker,
        failure_threshold=failure_threshold,
        reset_timeout=reset_timeout,
        half_open_max_calls=half_open_max_calls,
        success_threshold=success_threshold,
        failure_ratio=failure_ratio,
        window=window,
        minimum_calls=minimum_calls,
        slow_call_duration=slow_call_duration,
        slow_call_ratio=slow_call_ratio,
        is_failure=is_failure,
        name=name,
    )
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
    shared: rs.Bulkhead | shared_rs.Bulkhead | None = None,
    /,
    *,
    max_concurrent: int | None = None,
    max_queued: int = 0,
    queue_timeout: Duration | None = None,
    name: str | None = None,
) -> Adapter[Any]:
    """Bound concurrency (options of `rs.Bulkhead`; ``max_concurrent`` is required), or
    share an `rs.Bulkhead` or a ``resilience.redis.Bulkhead``; exposed as ``.bulkhead``."""
    options = _chosen(
        bulkhead,
        max_concurrent=max_concurrent,
        max_queued=max_queued,
        queue_timeout=queue_timeout,
        name=name,
    )
    return adapter(
        "bulkhead",
        rs.Bulkhead,
        shared,
        options,
        _Through,
        "bulkhead",
        fleet=shared_rs.Bulkhead,
    )


def hedge(
    shared: rs.Hedge | None = None,
    /,
    *,
    delay: Duration | None = None,
    max_attempts: int = 2,
    name: str | None = None,
) -> Adapter[rs.Hedge]:
    """Hedged attempts of the rest of the pipeline (options of `rs.Hedge`; ``delay`` is
    required)."""
    options = _chosen(hedge, delay=delay, max_attempts=max_attempts, name=name)
    return adapter("hedge", rs.Hedge, shared, options, _Through)


def rate_limit(
    limiter: rs.RateLimiter | shared_rs.RateLimiter | None = None,
    /,
    *,
    key: KeyFunction | None = None,
    rate: float | None = None,
    per: Duration = 1.0,
    burst: float | None = None,
    algorithm: str = "token_bucket",
    max_wait: Duration | None = None,
    max_keys: int = 10_000,
    name: str | None = None,
) -> Adapter[Any]:
    """Acquire a permit before the call (options of `rs.RateLimiter`; ``rate`` is
    required), or share an `rs.RateLimiter` or a ``resilience.redis.RateLimiter``; exposed
    as ``.limiter``.

    ``key(call)`` picks the per-key bucket (default: one bucket for the function; a shared
    limiter's keys are ``str``).
    """
    _check_key("rate_limit", key)
    options = _chosen(
        rate_limit,
        rate=rate,
        per=per,
        burst=burst,
        algorithm=algorithm,
        max_wait=max_wait,
        max_keys=max_keys,
        name=name,
    )

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
    ttl: Duration | None = None,
    max_size: int = 1024,
    stale_ttl: Duration = 0.0,
    single_flight: bool = True,
    cache_none: bool = True,
    name: str | None = None,
) -> Adapter[Any]:
    """Serve repeated calls from an `rs.Cache` (its options) or a shared one (an `rs.Cache`,
    or a ``resilience.redis.Cache``); exposed as ``.cache``.

    The default key is the function id plus the call's arguments, which must be hashable
    (else a `TypeError` names the argument); for a ``resilience.redis.Cache`` it is that,
    as JSON text (the arguments must be JSON data). ``key(call)`` overrides it.
    ``returns``: for a ``resilience.redis.Cache``, the type values are read back into (the
    wrapped function's return type; default: plain JSON data).
    ``call.state["cache_hit"]`` tells the middlewares outside whether the call was served.
    ``ttl`` is required unless a cache is shared.
    """
    _check_key("cache", key)
    options = _chosen(
        cache,
        ttl=ttl,
        max_size=max_size,
        stale_ttl=stale_ttl,
        single_flight=single_flight,
        cache_none=cache_none,
        name=name,
    )
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


def fallback(
    shared: rs.Fallback[Any] | None = None,
    /,
    *,
    value: Any = NO_VALUE,
    handler: Callable[..., Awaitable[Any]] | None = None,
    on: ExceptionTypes | Callable[[Exception], bool] = Exception,
    name: str | None = None,
) -> Adapter[Any]:
    """Answer with a value or a handler's result on failure (options of `rs.Fallback`).

    A handler receives ``(exc, *args, **kwargs)`` of the call.
    """
    options = _chosen(fallback, value=value, handler=handler, on=on, name=name)

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
