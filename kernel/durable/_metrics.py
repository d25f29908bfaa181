"""``kernel.durable.metrics(engine)``: an engine's own metrics, for Prometheus.

A resource depending on the engine resource; its value is a `DurableCollector`, a
``prometheus_client`` collector. While the resource runs, `kernel.metrics.prometheus_text`
(and so an exposure's ``/metrics``) includes its families, as it does the lanes' (see
`durable_families`); ``prometheus_client.REGISTRY.register(collector)`` or
``prometheus_client.generate_latest(collector)`` serve it elsewhere.
Every ``interval`` seconds it asks the store for its counts (`Store.stats`, in the store's
thread on SQLite: it reads every row's status); step durations are measured in this
process, from the moment the resource starts.

Families (``engine`` is the engine resource's id):

- ``trio_runner_durable_executions{engine,status}`` gauge: executions per status
- ``trio_runner_durable_backlog{engine}`` gauge: executions runnable now and not running
  (what a worker's next claim would take, crashed workers' expired leases included)
- ``trio_runner_durable_oldest_due_age_seconds{engine}`` gauge: how long the
  longest-waiting of those has been runnable (0 when none is)
- ``trio_runner_durable_step_duration_seconds{engine,workflow}`` histogram: the first run
  of each step in this process, from its call to its record (replays are not steps run)
- ``trio_runner_durable_stats_age_seconds{engine}`` gauge: since the store last answered
  (a sample that failed leaves the figures as they were, and this grows)

``prometheus-client`` is imported only when collected (the ``prometheus`` extra).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Final

import attrs
import trio

from kernel._definitions import Resource, resource
from kernel._scope import Scope
from kernel.durable._durations import StepDurations
from kernel.durable._engine import Engine
from kernel.durable._errors import DurableError
from kernel.durable._records import STATUSES, StoreStats
from kernel.observability import kernel_logger
from resilience import validate

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["LIVE", "DurableCollector", "durable_families", "metrics"]

_MISSING: Final = (
    "kernel.durable.metrics needs prometheus-client, part of the 'prometheus' extra: "
    "pip install 'trio-runner[prometheus]'"
)


@attrs.define(eq=False)
class DurableCollector:
    """The figures of one engine for ``prometheus_client`` (see the module docstring)."""

    engine: str
    steps: StepDurations
    #: The store's last answer, the engine's clock (epoch seconds) when it came, and
    #: trio's clock then.
    stats: StoreStats | None = None
    stats_now: float = 0.0
    sampled_at: float | None = None

    def describe(self) -> list[Metric]:
        """Nothing up front (``prometheus_client`` then calls `collect` when registering)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families, from the last sample and the step durations so far."""
        try:
            from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
        except ImportError as exc:
            raise ImportError(_MISSING) from exc
        labels = [self.engine]
        executions = GaugeMetricFamily(
            "trio_runner_durable_executions",
            "Durable executions in the store, per status.",
            labels=["engine", "status"],
        )
        backlog = GaugeMetricFamily(
            "trio_runner_durable_backlog",
            "Durable executions runnable now and not running.",
            labels=["engine"],
        )
        oldest = GaugeMetricFamily(
            "trio_runner_durable_oldest_due_age_seconds",
            "How long the longest-waiting runnable execution has been runnable.",
            labels=["engine"],
        )
        freshness = GaugeMetricFamily(
            "trio_runner_durable_stats_age_seconds",
            "Seconds since the store last answered for these figures.",
            labels=["engine"],
        )
        stats = self.stats
        if stats is not None and self.sampled_at is not None:
            elapsed = max(_trio_now(self.sampled_at) - self.sampled_at, 0.0)
            for status in STATUSES:
                executions.add_metric([self.engine, status], stats.by_status.get(status, 0))
            backlog.add_metric(labels, stats.due)
            age = 0.0
            if stats.oldest_due is not None:  # (as of the sample, plus the time since)
                age = max(self.stats_now - stats.oldest_due, 0.0) + elapsed
            oldest.add_metric(labels, age)
            freshness.add_metric(labels, elapsed)
        yield executions
        yield backlog
        yield oldest
        yield freshness
        durations = HistogramMetricFamily(
            "trio_runner_durable_step_duration_seconds",
            "Durable steps run in this process, from their call to their record.",
            labels=["engine", "workflow"],
        )
        for workflow, buckets, total in self.steps.items():
            durations.add_metric([self.engine, workflow], buckets, total)
        yield durations


#: The collectors of the metrics resources running in this process.
LIVE: weakref.WeakSet[DurableCollector] = weakref.WeakSet()


def durable_families() -> Iterator[Metric]:
    """The families of every running ``kernel.durable.metrics`` resource, one family per
    name whatever the number of engines (none while no such resource runs)."""
    families: dict[str, Metric] = {}
    for collector in sorted(LIVE, key=lambda collector: collector.engine):
        for family in collector.collect():
            first = families.setdefault(family.name, family)
            if first is not family:
                first.samples.extend(family.samples)
    yield from families.values()


def _trio_now(otherwise: float) -> float:
    """trio's clock when collected in the trio thread; ``otherwise`` when not (a scrape
    from another thread cannot read it: the figures are then as of the last sample)."""
    try:
        return trio.current_time()
    except RuntimeError:
        return otherwise


def metrics(engine: Resource, *, id: str | None = None, interval: float = 15.0) -> Resource:
    """Declare the metrics resource of ``engine`` (a ``kernel.durable.engine(...)``
    resource); its value is a `DurableCollector`. ``interval``: seconds between two looks
    at the store's counts (the first at start). ``id`` defaults to ``<engine id>.metrics``.
    """
    if not isinstance(engine, Resource):
        raise TypeError(
            f"kernel.durable.metrics: engine must be a kernel.durable.engine(...) resource, "
            f"got {engine!r}"
        )
    seconds = validate.seconds(
        interval, owner="kernel.durable.metrics", name="interval", finite=True
    )

    async def durable_metrics(scope: Scope, durable: Engine) -> AsyncIterator[DurableCollector]:
        collector = DurableCollector(durable.id, durable.measure_steps())
        log = kernel_logger(scope.id)

        async def sample() -> None:
            failing = False
            while True:
                now = durable.now()
                try:
                    stats = await durable.store.stats(now=now)
                except DurableError as exc:  # the figures stay; stats_age grows
                    if not failing:
                        log.warning("durable metrics: the store did not answer ({})", exc)
                    failing = True
                else:
                    collector.stats, collector.stats_now = stats, now
                    collector.sampled_at = trio.current_time() - (durable.now() - now)
                    failing = False
                await trio.sleep(seconds)

        scope.nursery.start_soon(sample, name=f"{scope.id}.sample")
        LIVE.add(collector)
        try:
            yield collector
        finally:
            LIVE.discard(collector)

    return resource(id or f"{engine.id}.metrics", deps={"durable": engine})(durable_metrics)
