"""`StepDurations`: how long the steps a process runs take, per workflow (for
`kernel.durable.metrics`)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from typing import Final, cast

import attrs

__all__ = ["STEP_BUCKETS", "StepDurations"]

#: Upper bounds (seconds) of the step duration histogram's buckets, ``+Inf`` implied: a
#: step is a call to the outside world, from a millisecond to minutes (a task call's
#: buckets start at 0.1 ms).
STEP_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


@attrs.define(eq=False)
class _Histogram:
    counts: list[int]
    total: float = 0.0


@attrs.define(eq=False)
class StepDurations:
    """Step durations per workflow, counted into the bounds of `STEP_BUCKETS`."""

    bounds: tuple[float, ...] = STEP_BUCKETS
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
