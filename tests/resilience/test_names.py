"""Every primitive takes ``name=`` (a str or None) to label its events, and says so."""

from __future__ import annotations

from typing import Any

import pytest

import resilience as rs

MINIMAL: dict[type[Any], dict[str, Any]] = {
    rs.Timeout: {"seconds": 1.0},
    rs.Retry: {},
    rs.CircuitBreaker: {},
    rs.RateLimiter: {"rate": 1},
    rs.Bulkhead: {"max_concurrent": 1},
    rs.Cache: {"ttl": 1.0},
    rs.Fallback: {"value": None},
    rs.Hedge: {"delay": 1.0},
}


@pytest.mark.parametrize("cls", MINIMAL, ids=lambda cls: cls.__name__)
def test_name_is_a_str_or_none(cls: type[Any]) -> None:
    assert cls(**MINIMAL[cls], name="orders").name == "orders"
    assert cls(**MINIMAL[cls]).name is None
    with pytest.raises(TypeError, match=rf"^{cls.__name__}: name must be a str or None, got 3$"):
        cls(**MINIMAL[cls], name=3)
