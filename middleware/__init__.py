"""Composition: middleware pipelines around any ``async def``, and the resilience
primitives as middleware.

    import middleware as mw

    @mw.apply(mw.timeout(5.0), mw.retry(attempts=3), mw.circuit_breaker(failure_threshold=5))
    async def fetch(url: str) -> bytes: ...

The first middleware listed is the outermost. Pipelines are composed once, when a function
is wrapped, never per call. This package imports ``resilience`` and never ``kernel``.
"""

from middleware import observability
from middleware._adapter import Adapter
from middleware._adapters import (
    bulkhead,
    cache,
    circuit_breaker,
    fallback,
    hedge,
    rate_limit,
    retry,
    timeout,
)
from middleware._call import Call, Middleware, Next
from middleware._pipeline import Bound, Factory, Pipeline, apply
from middleware._registry import Registry, registry
from middleware.observability import (
    MetricsRegistry,
    MetricsSnapshot,
    PrimitiveSnapshot,
    TaskSnapshot,
    log,
    metrics,
    trace,
)
from resilience.faces import present as _present

__all__ = [
    "Adapter",
    "Bound",
    "Call",
    "Factory",
    "MetricsRegistry",
    "MetricsSnapshot",
    "Middleware",
    "Next",
    "Pipeline",
    "PrimitiveSnapshot",
    "Registry",
    "TaskSnapshot",
    "apply",
    "bulkhead",
    "cache",
    "circuit_breaker",
    "fallback",
    "hedge",
    "log",
    "metrics",
    "observability",
    "rate_limit",
    "registry",
    "retry",
    "timeout",
    "trace",
]

_present("middleware", globals())
