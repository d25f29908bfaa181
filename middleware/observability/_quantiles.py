"""`LogHistogram`: durations counted in logarithmic buckets, quantiles read from them.

The buckets are those of DDSketch (the ``ddsketch`` package, DataDog): with relative
accuracy ``a`` and ``gamma = (1 + a) / (1 - a)``, a value ``v > 0`` falls in bucket
``k = ceil(log(v) / log(gamma))``, which covers ``(gamma**(k-1), gamma**k]`` and is read back
as ``2 * gamma**k / (1 + gamma)`` — within ``a`` of every value in it. A sample costs a
logarithm and a dict increment (``ddsketch``'s own ``add`` costs several times that here);
quantiles are read from the bucket counts with DDSketch's rank rule.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import attrs
from ddsketch.mapping import LogarithmicMapping

from resilience.validate import fail, positive_int

__all__ = ["LogHistogram", "accuracy", "quantiles_of"]


def accuracy(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a ``relative_accuracy`` in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(instance, attribute.name, f"must be a number in (0, 1), got {value!r}", TypeError)
    if not 0 < value < 1:
        fail(instance, attribute.name, f"must be in (0, 1), got {value!r}")


@attrs.define(eq=False)
class LogHistogram:
    """Positive durations in logarithmic buckets, with a bounded number of buckets.

    Accuracy: each quantile read from it is within ``relative_accuracy`` (default 1 %) of
    the true sample of that rank, as long as the buckets have not been collapsed.
    Memory: at most ``max_buckets`` buckets (default 2048, which at 1 % spans a ratio of
    about 6e17 between the smallest and the largest sample: 1 ns to 20 years). A new
    bucket beyond that merges the lowest two, so only the lowest quantiles lose accuracy.
    Zero is counted apart and read back as ``0.0``.

    ``counts`` (bucket key to count) is updated in place and never replaced, so a hot path
    may hold it and increment ``counts[ceil(log(v) * inverse_log_gamma)]`` directly, calling
    `add` only when that raises ``KeyError`` (a new bucket) or ``ValueError`` (zero).
    """

    relative_accuracy: float = attrs.field(default=0.01, validator=accuracy, kw_only=True)
    max_buckets: int = attrs.field(default=2048, validator=positive_int, kw_only=True)
    counts: dict[int, int] = attrs.field(init=False, factory=dict, repr=False)
    zeros: int = attrs.field(init=False, default=0, repr=False)
    inverse_log_gamma: float = attrs.field(init=False, repr=False)
    _mapping: LogarithmicMapping = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._mapping = LogarithmicMapping(self.relative_accuracy)
        self.inverse_log_gamma = 1.0 / math.log(self._mapping.gamma)

    @property
    def count(self) -> int:
        """The number of samples."""
        return self.zeros + sum(self.counts.copy().values())

    def add(self, value: float) -> None:
        """Count one sample (a duration in seconds, ``>= 0``)."""
        if not value > 0:  # zero (the hot path's ValueError), or a clock gone mad
            self.zeros += 1
            return
        key = math.ceil(math.log(value) * self.inverse_log_gamma)
        counts = self.counts
        if key in counts:
            counts[key] += 1
            return
        counts[key] = 1
        if len(counts) > self.max_buckets:
            lowest = min(counts)
            merged = counts.pop(lowest)
            counts[min(counts)] += merged

    def clear(self) -> None:
        """Forget every sample (in place)."""
        self.counts.clear()
        self.zeros = 0

    def buckets(self) -> tuple[tuple[float, int], ...]:
        """The non-empty buckets as ``(value, count)``, ascending; zero first if counted.

        Each ``value`` is within ``relative_accuracy`` of every sample in its bucket.
        """
        value, counts = self._mapping.value, self.counts.copy()
        found = [(value(key), counts[key]) for key in sorted(counts)]
        zeros = self.zeros
        return ((0.0, zeros), *found) if zeros else tuple(found)

    def quantiles(self, qs: Sequence[float]) -> tuple[float | None, ...]:
        """The value at each quantile in ``qs``; see `quantiles_of`."""
        return quantiles_of(self.buckets(), qs)


def quantiles_of(
    buckets: Sequence[tuple[float, int]], qs: Sequence[float]
) -> tuple[float | None, ...]:
    """The value at each quantile ``q`` in ``qs`` of ascending ``(value, count)`` buckets
    (``None`` each if there is no sample).

    As DDSketch's ``get_quantile_value``: the value of the bucket holding the sample of
    0-based rank ``floor(q * (n - 1))`` among the ``n`` sorted samples.
    """
    cumulative = list(accumulate(count for _, count in buckets))
    if not cumulative or not cumulative[-1]:
        return tuple(None for _ in qs)
    last = cumulative[-1] - 1
    # The first bucket whose cumulative count exceeds the rank holds that sample.
    return tuple(buckets[bisect_right(cumulative, q * last)][0] for q in qs)
