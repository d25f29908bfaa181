"""Fixtures of the shared primitives' tests: one throwaway Redis for the session, a fresh
key prefix per test, and servers of their own for the tests that kill them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from resilience import redis as shared
from tests.resilience.redis.server import RedisServer

_prefixes = itertools.count(1)


def new_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test{next(_prefixes)}"


@pytest.fixture
async def store(redis: RedisServer) -> AsyncIterator[shared.Store]:
    """An open store on the session's server, with a prefix of its own. Its op_timeout is
    generous (the machine is shared); tests of timeouts build stores of their own."""
    async with shared.Store.from_url(redis.url, prefix=new_prefix(), op_timeout=2.0) as opened:
        yield opened
