"""Shared resilience for many processes: rate limiter, circuit breaker, bulkhead and cache
whose state lives in Redis, so that every process using the same ``name`` on the same
store shares it (the ``redis`` extra: coredis >= 6, which runs on trio).

    from resilience import redis as shared

    async with shared.Store.from_url("redis://localhost:6379/0") as store:
        payments = shared.RateLimiter(store, name="payments", rate=100, per=1.0)
        await payments.acquire()

Each atomic decision is one Lua script on the Redis server's clock. Importing this package
does not import coredis; building a `Store` does.
"""

from resilience._errors import StoreUnavailable
from resilience.faces import present as _present
from resilience.redis._bulkhead import Bulkhead
from resilience.redis._cache import Cache, CacheStatistics
from resilience.redis._circuit import CircuitBreaker
from resilience.redis._ratelimit import RateLimiter, RateLimiterStatistics
from resilience.redis._store import Store

__all__ = [
    "Bulkhead",
    "Cache",
    "CacheStatistics",
    "CircuitBreaker",
    "RateLimiter",
    "RateLimiterStatistics",
    "Store",
    "StoreUnavailable",
]

_present("resilience.redis", globals())
