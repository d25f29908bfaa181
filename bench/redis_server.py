"""A throwaway ``redis-server`` for the redis rows, shared by all of them in a run.

The server is the tests' own (``tests/resilience/redis/server.py``: Debian's
``redis-server`` on a free loopback port, no persistence), run through `bench.pg`'s
`SharedCluster`: the first row that enters `redis` starts it, the last one to leave stops
it. Without ``redis-server`` or pytest (the helper imports it) the rows are `Unavailable`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager

from bench._scenario import Unavailable
from bench.pg import Cluster, SharedCluster

__all__ = ["SERVER", "redis"]


def tests_server() -> Cluster:
    """A factory of the tests' server, as a context manager yielding its URL."""
    if importlib.util.find_spec("pytest") is None:
        raise Unavailable("the redis rows need pytest (the tests' server helper imports it)")
    from tests.resilience.redis.server import redis_server

    @contextlib.contextmanager
    def url() -> Iterator[str]:
        with redis_server() as server:
            yield server.url

    return url


def server_version(url: str) -> str:
    """The version of ``redis-server`` (the binary the helper starts)."""
    done = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    )
    words = [w for w in done.stdout.split() if w.startswith("v=")]
    return words[0][2:] if words else "unknown"


#: The server of this process's run.
SERVER = SharedCluster(factory=tests_server, probe=server_version)


def redis() -> AbstractAsyncContextManager[str]:
    """`SharedCluster.use` of the process's `SERVER`: yields a ``redis://`` URL."""
    return SERVER.use()
