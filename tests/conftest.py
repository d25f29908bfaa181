from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilience import _observe
from resilience._observe import Event


@pytest.fixture
def events() -> Iterator[list[Event]]:
    """Every event the primitives report during the test, in order."""
    seen: list[Event] = []
    with _observe.observe(seen.append):
        yield seen
