"""What a lane counts in this process, and the snapshots it hands out.

`Counters` is updated on the lane's paths (a few integer increments, one sketch insert per
delivery); `LaneStats` is its frozen snapshot, `LaneStatus` adds what only the stream knows
(pending count and oldest pending age, a round trip).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from ddsketch import DDSketch

__all__ = ["Counters", "DeadLetter", "LaneStats", "LaneStatus"]


@attrs.frozen
class DeadLetter:
    """One record of a lane's dead-letter stream.

    ``message_id`` is the original entry's id (what `Lane.replay` takes), ``event_id`` the
    event's id (``None`` when the entry was not even an envelope), ``payload`` the decoded
    JSON payload (the raw text when it did not decode), ``error`` why it was buried,
    ``attempts`` the runs it had (0: it failed verification or decoding), ``dead_at`` Unix
    seconds, ``emission_id`` the envelope's own id (``None`` when unknown)."""

    message_id: str
    event_id: str | None
    payload: Any
    error: str
    attempts: int
    dead_at: float
    emission_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return attrs.asdict(self)


@attrs.frozen
class LaneStats:
    """Counts of this process since the lane started: ``published`` entries written,
    ``delivered`` entries whose hooks succeeded here, ``retried`` runs that failed and were
    retried, ``dead_lettered`` entries buried here (``rejected`` of them failed verification
    or decoding), ``in_flight`` deliveries running now; delivery latency (emitted-at to the
    start of the successful run, wall clock, seconds) at p50/p95/p99, ``None`` before the
    first delivery."""

    lane: str
    published: int
    delivered: int
    retried: int
    dead_lettered: int
    rejected: int
    in_flight: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as JSON-ready data."""
        return attrs.asdict(self)


@attrs.frozen
class LaneStatus:
    """`LaneStats` with the stream's side: ``pending`` (entries the group has not
    acknowledged, delivered or not), ``oldest_pending_age`` (seconds, ``None`` when nothing
    is pending), and ``status``: ``"degraded"`` past the lane's ``max_pending`` or
    ``max_pending_age``, ``"unavailable"`` when the stream could not be read, else ``"ok"``;
    ``problem`` says why when it is not ``"ok"``."""

    stats: LaneStats
    pending: int | None
    oldest_pending_age: float | None
    status: Literal["ok", "degraded", "unavailable"]
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON-ready data."""
        return attrs.asdict(self)


@attrs.define(eq=False)
class Counters:
    """The mutable counts behind `LaneStats`."""

    lane: str
    published: int = 0
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    in_flight: int = 0
    latency: DDSketch = attrs.field(factory=lambda: DDSketch(0.01))

    def snapshot(self) -> LaneStats:
        def quantile(q: float) -> float | None:
            if not self.latency.count:
                return None
            value = self.latency.get_quantile_value(q)
            return None if value is None else max(0.0, float(value))

        return LaneStats(
            lane=self.lane,
            published=self.published,
            delivered=self.delivered,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            rejected=self.rejected,
            in_flight=self.in_flight,
            latency_p50=quantile(0.5),
            latency_p95=quantile(0.95),
            latency_p99=quantile(0.99),
        )
