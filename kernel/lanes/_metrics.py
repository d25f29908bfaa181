"""The lanes of this process in Prometheus form (the ``prometheus`` extra).

`kernel.metrics.prometheus_text` (and so an exposure's ``/metrics``) includes these families
while a lane runs in the process; `lane_families` gives them to any other collector.
``lane`` is the lane's resource id:

- ``trio_runner_lane_published_total{lane}``, ``..._delivered_total``, ``..._retried_total``,
  ``..._dead_lettered_total``, ``..._rejected_total`` counters (this process's)
- ``trio_runner_lane_in_flight{lane}`` gauge: deliveries running now
- ``trio_runner_lane_delivery_latency_seconds{lane,quantile}`` gauge: p50, p95, p99 of
  emitted-at to the start of the successful run
- ``trio_runner_lane_pending{lane}`` and ``trio_runner_lane_oldest_pending_age_seconds{lane}``
  gauges: the stream's, as of the lane's last ``status()`` (its health check calls it)
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernel.lanes._lane import Lane

__all__ = ["LIVE", "lane_families"]

#: The lanes running in this process.
LIVE: weakref.WeakSet[Lane] = weakref.WeakSet()

_COUNTERS = (
    ("published", "Lane entries written by this process."),
    ("delivered", "Lane entries whose hooks succeeded in this process."),
    ("retried", "Lane runs that failed and were retried."),
    ("dead_lettered", "Lane entries moved to the dead-letter stream by this process."),
    ("rejected", "Lane entries dead-lettered unrun: failed verification or decoding."),
)


def lane_families() -> Iterator[Any]:
    """The metric families of the running lanes (none while no lane runs)."""
    lanes = sorted(LIVE, key=lambda lane: lane.id)
    if not lanes:
        return
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    stats = [(lane, lane.stats()) for lane in lanes]
    for field, help_text in _COUNTERS:
        family = CounterMetricFamily(f"trio_runner_lane_{field}", help_text, labels=["lane"])
        for lane, snapshot in stats:
            family.add_metric([lane.id], getattr(snapshot, field))
        yield family
    in_flight = GaugeMetricFamily(
        "trio_runner_lane_in_flight", "Lane deliveries running now.", labels=["lane"]
    )
    latency = GaugeMetricFamily(
        "trio_runner_lane_delivery_latency_seconds",
        "Lane delivery latency, emitted-at to the start of the successful run.",
        labels=["lane", "quantile"],
    )
    pending = GaugeMetricFamily(
        "trio_runner_lane_pending",
        "Entries the lane's group has not acknowledged (at the last status).",
        labels=["lane"],
    )
    oldest = GaugeMetricFamily(
        "trio_runner_lane_oldest_pending_age_seconds",
        "Age of the lane's oldest unacknowledged entry (at the last status).",
        labels=["lane"],
    )
    for lane, snapshot in stats:
        in_flight.add_metric([lane.id], snapshot.in_flight)
        for quantile, value in (
            ("0.5", snapshot.latency_p50),
            ("0.95", snapshot.latency_p95),
            ("0.99", snapshot.latency_p99),
        ):
            if value is not None:
                latency.add_metric([lane.id, quantile], value)
        last = lane.last_status
        if last is not None and last.pending is not None:
            pending.add_metric([lane.id], last.pending)
            oldest.add_metric([lane.id], last.oldest_pending_age or 0.0)
    yield from (in_flight, latency, pending, oldest)
