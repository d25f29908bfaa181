"""The error family of ``resilience``.

::

    Exception
     └── ResilienceError                 every error raised by a primitive itself
          ├── TimeoutExceeded            (also a trio.TooSlowError) a Timeout's deadline passed
          ├── CircuitOpen                a CircuitBreaker refused the call
          ├── RateLimited                a RateLimiter refused the call
          ├── BulkheadFull               a Bulkhead had no room, or the queue wait ran out
          └── StoreUnavailable           a shared primitive could not reach its store (Redis)

Errors raised by the wrapped function are never wrapped: they propagate unchanged.
``retry_after`` is the number of seconds after which a new call may succeed, where a
primitive knows it, else ``None``.
"""

from __future__ import annotations

import trio

__all__ = [
    "BulkheadFull",
    "CircuitOpen",
    "RateLimited",
    "ResilienceError",
    "StoreUnavailable",
    "TimeoutExceeded",
]


class ResilienceError(Exception):
    """Base class of every error raised by a resilience primitive itself."""

    retry_after: float | None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TimeoutExceeded(ResilienceError, trio.TooSlowError):
    """The deadline of a ``Timeout`` passed before the call finished; the call was cancelled."""


class CircuitOpen(ResilienceError):
    """The circuit breaker is open (or its half-open probes are all taken)."""


class RateLimited(ResilienceError):
    """The rate limiter would have made the caller wait longer than ``max_wait``."""


class BulkheadFull(ResilienceError):
    """The bulkhead had no free slot and no room in its queue, or the queue wait timed out."""


class StoreUnavailable(ResilienceError):
    """A shared primitive (``resilience.redis``) could not reach its store in time.

    Raised when Redis refused the connection, dropped it, or did not answer within the
    store's ``op_timeout``; chained from the cause (``__cause__``). Only stores with
    ``on_unavailable="raise"`` raise it from a primitive's methods; ``Store.ping`` always does.
    """
