"""Helpers for testing code that uses `resilience`.

``with rs.testing.fast():`` makes every `Retry` wait 0 s between attempts, while circuit
breakers, rate limiters and the rest keep their logic, so that a user's own test suite does
not sleep through backoffs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from resilience._retry import fast_mode

__all__ = ["fast"]


@contextmanager
def fast() -> Iterator[None]:
    """Within the block, every `Retry` waits 0 s between attempts (nesting is allowed)."""
    fast_mode.depth += 1
    try:
        yield
    finally:
        fast_mode.depth -= 1
