from __future__ import annotations

from collections.abc import Iterator

import pytest

from middleware.observability import MetricsRegistry, default_registry
from resilience import Event, _observe


@pytest.fixture
def events() -> Iterator[list[Event]]:
    """Every event the primitives report during the test, in order."""
    seen: list[Event] = []
    with _observe.observe(seen.append):
        yield seen


@pytest.fixture
def registry() -> MetricsRegistry:
    """A fresh metrics registry."""
    return MetricsRegistry()


@pytest.fixture
def clean_default() -> Iterator[MetricsRegistry]:
    """The process-wide registry, emptied before and after the test."""
    default_registry.reset()
    yield default_registry
    default_registry.reset()
