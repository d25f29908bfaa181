"""A throwaway PostgreSQL cluster for the PostgreSQL rows, shared by all of them in a run.

The cluster is the tests' own (``tests/kernel/durable/postgres_cluster.py``: Debian's
server binaries on a temporary directory and a free loopback port, ``fsync=off``), imported
only when a PostgreSQL row is set up. The first row that enters `postgres` starts it, the
last one to leave stops it. Without PostgreSQL's binaries, its ``postgres`` OS user (as
root), psycopg (the ``postgres`` extra) or pytest (the ``dev`` extra: the helper imports
it), the rows are `Unavailable`, with the reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager

import attrs
import trio

from bench._scenario import Unavailable

__all__ = ["SharedCluster", "postgres"]

Cluster = Callable[[], AbstractContextManager[str]]


def _needs(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise Unavailable(f"PostgreSQL rows need {module}: {why}")


def tests_cluster() -> Cluster:
    """The tests' ``cluster``, imported now (it needs pytest)."""
    _needs("psycopg", "pip install -e '.[postgres]'")
    _needs("pytest", "pip install -e '.[dev]' (the tests' cluster helper imports it)")
    try:
        from tests.kernel.durable.postgres_cluster import cluster
    except ImportError as exc:
        raise Unavailable(f"PostgreSQL rows need the tests' cluster helper: {exc}") from None
    return cluster


def _enter(manager: AbstractContextManager[str]) -> str:
    """Enter ``manager`` (in a worker thread); the helper's skip becomes `Unavailable`."""
    import pytest

    try:
        return manager.__enter__()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        # Without PostgreSQL the helper skips (or fails, with CI=true): not an error here.
        raise Unavailable(str(exc.msg)) from None


def server_version(dsn: str) -> str:
    """The server's version (``SHOW server_version``), asked over a connection of its own."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return "unknown" if row is None else str(row[0])


@attrs.define(eq=False)
class SharedCluster:
    """One cluster for every row that uses it at once. ``factory`` gives the cluster's
    context manager (the tests' by default); ``probe`` reads a running server's version."""

    factory: Callable[[], Cluster] = tests_cluster
    probe: Callable[[str], str] = server_version
    #: The running server's version ("" while none runs).
    version: str = attrs.field(default="", init=False)
    _lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _users: int = attrs.field(default=0, init=False)
    _manager: AbstractContextManager[str] | None = attrs.field(default=None, init=False)
    _dsn: str = attrs.field(default="", init=False)

    @property
    def running(self) -> bool:
        """Whether the cluster is up."""
        return self._manager is not None

    @asynccontextmanager
    async def use(self) -> AsyncIterator[str]:
        """Yield the cluster's DSN, starting it on first use; stop it after the last."""
        async with self._lock:
            if self._manager is None:
                manager = self.factory()()
                self._dsn = await trio.to_thread.run_sync(_enter, manager)
                self._manager = manager
                self.version = await trio.to_thread.run_sync(self.probe, self._dsn)
            self._users += 1
        try:
            yield self._dsn
        finally:
            with trio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0 and self._manager is not None:
                        manager, self._manager, self.version = self._manager, None, ""
                        await trio.to_thread.run_sync(manager.__exit__, None, None, None)


#: The cluster of this process's run.
CLUSTER = SharedCluster()


def postgres() -> AbstractAsyncContextManager[str]:
    """`SharedCluster.use` of the process's `CLUSTER`."""
    return CLUSTER.use()
