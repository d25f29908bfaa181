"""Schedule arithmetic: when the next tick of a cron line or an interval falls."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from croniter import croniter

from resilience import validate

__all__ = ["check_cadence", "next_tick"]


def check_cadence(cron: str | None, interval: float | timedelta | None) -> float | None:
    """Exactly one of ``cron`` (a valid 5- or 6-field line) and ``interval`` (seconds or a
    timedelta, > 0); returns the interval in seconds."""
    if (cron is None) == (interval is None):
        raise ValueError("ensure_schedule: give exactly one of cron= and interval=")
    if cron is not None and (not isinstance(cron, str) or not croniter.is_valid(cron)):
        raise ValueError(f"ensure_schedule: cron must be a valid cron line, got {cron!r}")
    return validate.optional_seconds(interval, owner="ensure_schedule", name="interval")


def next_tick(cron: str | None, interval: float | None, *, due: float, now: float) -> float:
    """The first tick after ``due`` that is strictly later than ``now`` (epoch seconds;
    cron lines read in UTC).

    Interval ticks stay on the grid ``due + k * interval`` (no drift). Ticks missed while
    no worker ran are not caught up: one execution starts, then the grid resumes.
    """
    if interval is not None:
        return due + (math.floor((now - due) / interval) + 1) * interval if now >= due else due
    assert cron is not None
    start = datetime.fromtimestamp(max(due, now), tz=UTC)
    return float(croniter(cron, start).get_next(float))
