"""A lane's options: a wrong type raises TypeError, a value out of range ValueError, each
naming the option; durations take a timedelta."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import kernel
from kernel.lanes._options import LaneOptions
from tests.kernel.lanes.conftest import placed

GOOD: dict[str, Any] = {"id": "lane", "events": [placed], "group": "g"}


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("events", [], ValueError, "events must name at least one event"),
        ("events", ["order.placed"], TypeError, "events must be kernel.event"),
        ("events", [placed, placed], ValueError, "events names an event twice"),
        ("group", "", ValueError, "group must be non-empty"),
        ("group", 3, TypeError, "group must be a str"),
        ("consume", "yes", TypeError, "consume must be a bool"),
        ("max_attempts", 0, ValueError, "max_attempts must be >= 1"),
        ("max_attempts", 2.5, TypeError, "max_attempts must be an int"),
        ("retry_delay", -1, ValueError, "retry_delay must be >= 0"),
        ("retry_delay", "1s", TypeError, "retry_delay must be a number"),
        ("retry_backoff", 0, ValueError, "retry_backoff must be > 0"),
        ("claim_idle", 0, ValueError, "claim_idle must be > 0"),
        ("claim_idle", float("nan"), ValueError, "claim_idle must not be NaN"),
        ("claim_idle", float("inf"), ValueError, "claim_idle must be finite"),
        ("secret", "text", TypeError, "secret must be bytes"),
        ("secret", b"short", ValueError, "secret must be at least 16 bytes"),
        ("batch", 0, ValueError, "batch must be >= 1"),
        ("maxlen", True, TypeError, "maxlen must be an int"),
        ("emit_wait", -0.5, ValueError, "emit_wait must be >= 0"),
        ("failure_mode", "loud", ValueError, "failure_mode must be 'fail_fast'"),
        ("max_pending", -1, ValueError, "max_pending must be >= 0"),
        ("max_pending_age", 0, ValueError, "max_pending_age must be > 0"),
        ("stream", "a b", ValueError, "stream must be non-empty, without spaces"),
    ],
)
def test_bad_options_name_themselves(
    option: str, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        LaneOptions(**{**GOOD, option: value})


def test_durations_take_timedeltas_and_the_retry_wait_grows_to_its_cap() -> None:
    options = LaneOptions(
        **GOOD,
        retry_delay=timedelta(milliseconds=100),
        retry_backoff=2.0,
        max_retry_delay=timedelta(seconds=0.3),
        claim_idle=timedelta(seconds=5),
    )
    assert options.claim_idle == 5.0
    assert [options.retry_wait(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    assert LaneOptions(**{**GOOD, "events": placed}).events == (placed,)
    assert options.event("order.placed") is placed
    assert options.event("other") is None


def test_the_factories_check_their_store_and_broker() -> None:
    with pytest.raises(kernel.DefinitionError, match=r"store must be a kernel\.redis\.resource"):
        kernel.lanes.redis("lane", store="redis://", events=[placed], group="g")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="broker must be a MemoryBroker"):
        kernel.lanes.memory("lane", events=[placed], broker=object())  # type: ignore[arg-type]
