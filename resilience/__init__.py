"""trio-native resilience primitives: timeout, retry, circuit breaker, rate limiter,
bulkhead, cache, fallback and hedging. No framework; each is useful alone.

    import resilience as rs

    retry = rs.Retry(attempts=4, wait=rs.backoff.exponential(initial=0.2, maximum=5.0))
    answer = await retry.call(fetch, "https://example.org")
"""

from resilience import backoff, redis, testing, validate
from resilience._bulkhead import Bulkhead, BulkheadStatistics
from resilience._cache import Cache, CacheStatistics
from resilience._circuit import CircuitBreaker, CircuitState, CircuitStatistics, Window
from resilience._errors import (
    BulkheadFull,
    CircuitOpen,
    RateLimited,
    ResilienceError,
    StoreUnavailable,
    TimeoutExceeded,
)
from resilience._fallback import Fallback
from resilience._hedge import Hedge
from resilience._observe import Event, Listeners, Subscription, observe
from resilience._ratelimit import RateLimiter, RateLimiterStatistics
from resilience._retry import Retry
from resilience._timeout import Timeout
from resilience.faces import present as _present

__all__ = [
    "Bulkhead",
    "BulkheadFull",
    "BulkheadStatistics",
    "Cache",
    "CacheStatistics",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "CircuitStatistics",
    "Event",
    "Fallback",
    "Hedge",
    "Listeners",
    "RateLimited",
    "RateLimiter",
    "RateLimiterStatistics",
    "ResilienceError",
    "Retry",
    "StoreUnavailable",
    "Subscription",
    "Timeout",
    "TimeoutExceeded",
    "Window",
    "backoff",
    "faces",
    "observe",
    "redis",
    "testing",
    "validate",
]

_present("resilience", globals())
# The shared primitives' annotations name the in-process ones: resolvable only now.
_present("resilience.redis", vars(redis))
