"""Fixtures for the durable engine's tests: a fresh store of each kind.

``store`` is parametrized over the three implementations; tests using it run once per
store (the conformance suite). The PostgreSQL cluster is started once per session by
`postgres_dsn` (see ``postgres_cluster.py``); each test gets a schema of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from kernel.durable import MemoryStore, Store

_schemas = itertools.count(1)
#: The store kinds, as `make_store` knows them.
KINDS = ("memory", "sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the session (skipped where there is no
    PostgreSQL, except with CI=true, where that is a failure)."""
    from tests.kernel.durable.postgres_cluster import cluster

    with cluster() as dsn:
        yield dsn


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """A fresh, unopened store of ``kind``."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        from kernel.durable import SqliteStore

        return SqliteStore(tmp_path / "durable.sqlite3")
    from kernel.durable import PostgresStore

    dsn = request.getfixturevalue("postgres_dsn")
    return PostgresStore(dsn, schema=f"test_{next(_schemas)}")


@asynccontextmanager
async def opened(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh store of ``kind``, open inside the block."""
    made = make_store(kind, tmp_path, request)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, empty store of each kind; closed after the test."""
    async with opened(request.param, tmp_path, request) as made:
        yield made
