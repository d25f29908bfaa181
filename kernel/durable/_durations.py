"""`StepDurations`: how long the steps a process runs take, per workflow (for
`kernel.durable.metrics`)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from typing import cast

import attrs

from kernel.observability._metrics import DEFAULT_BUCKETS

__all__ = ["StepDurations"]


@attrs.define(eq=False)
class _Histogram:
    counts: list[int]
    total: float = 0.0


@attrs.define(eq=False)
class StepDurations:
    """Step durations per workflow, counted into the bounds of `DEFAULT_BUCKETS`."""

    bounds: tuple[float, ...] = DEFAULT_BUCKETS
    _by_workflow: dict[str, _Histogram] = attrs.field(factory=dict, init=False)

    def observe(self, workflow: str, seconds: float) -> None:
        """Count one step of ``workflow`` that took ``seconds``."""
        histogram = self._by_workflow.get(workflow)
        if histogram is None:
            histogram = self._by_workflow[workflow] = _Histogram([0] * (len(self.bounds) + 1))
        histogram.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        histogram.total += seconds

    def items(self) -> Iterator[tuple[str, list[tuple[str, int]], float]]:
        """``(workflow, cumulative buckets as (le, count), sum)`` per workflow, by id."""
        from prometheus_client.utils import floatToGoString

        go_format = cast("Callable[[float], str]", floatToGoString)  # untyped upstream

        for workflow in sorted(self._by_workflow):
            histogram = self._by_workflow[workflow]
            running = 0
            buckets = []
            for bound, count in zip((*self.bounds, math.inf), histogram.counts, strict=True):
                running += count
                buckets.append((go_format(bound), running))
            yield workflow, buckets, histogram.total
