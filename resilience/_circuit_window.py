"""The sliding windows over which a `CircuitBreaker` computes its failure and slow-call ratios.

`Window` is the value users pass (``Window.count(n)`` or ``Window.time(seconds)``); each
breaker turns it into a private tracker that keeps running totals, so adding an outcome and
reading the totals cost O(1) (amortised) and memory stays bounded:

- a count window keeps the outcomes of the last ``n`` recorded calls in a ring;
- a time window splits ``seconds`` into `TIME_SLICES` equal slices aligned on multiples of the
  slice width (``seconds / TIME_SLICES``) and keeps one counter per slice. At time ``now``
  it holds the calls recorded in the current slice and the ``TIME_SLICES - 1`` before it, so
  a call leaves the window when it is between ``seconds * (1 - 1/TIME_SLICES)`` and
  ``seconds`` old: "the last ``seconds``" to a resolution of 1 %.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import timedelta
from typing import Literal

import attrs

from resilience.validate import count, seconds, to_seconds

__all__ = ["TIME_SLICES", "CountTracker", "TimeTracker", "Window", "new_tracker"]

#: How many slices a time window is cut into (its resolution is ``seconds / TIME_SLICES``).
TIME_SLICES = 100


@attrs.frozen
class Window:
    """Which recent calls a ratio-mode `CircuitBreaker` looks at.

    Build one with `Window.count` (the last ``n`` calls) or `Window.time` (the calls
    recorded in the last ``seconds``).
    """

    kind: Literal["count", "time"]
    size: float = attrs.field(converter=to_seconds)

    def __attrs_post_init__(self) -> None:
        size = self.size
        if self.kind == "count":
            count(size, owner="Window.count", name="n")
        elif self.kind == "time":
            seconds(size, owner="Window.time", name="seconds", finite=True)
        else:
            raise ValueError(f"Window: kind must be 'count' or 'time', got {self.kind!r}")

    @classmethod
    def count(cls, n: int) -> Window:
        """The last ``n`` recorded calls (``n >= 1``)."""
        return cls("count", n)

    @classmethod
    def time(cls, seconds: float | timedelta) -> Window:
        """The calls recorded in the last ``seconds`` (``> 0``), to a resolution of 1 %."""
        return cls("time", seconds)


def new_tracker(window: Window) -> CountTracker | TimeTracker:
    """A fresh, empty tracker for ``window``."""
    if window.kind == "count":
        return CountTracker(int(window.size))
    return TimeTracker(window.size)


class CountTracker:
    """Running totals over the outcomes of the last ``n`` recorded calls."""

    __slots__ = ("_failed", "_next", "_slow", "calls", "failures", "slow_calls")

    def __init__(self, n: int) -> None:
        self._failed = [False] * n
        self._slow = [False] * n
        self._next = 0
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Record one outcome, dropping the oldest when the window is full."""
        i = self._next
        if self.calls == len(self._failed):
            self.failures -= self._failed[i]
            self.slow_calls -= self._slow[i]
        else:
            self.calls += 1
        self._failed[i] = failed
        self._slow[i] = slow
        self.failures += failed
        self.slow_calls += slow
        self._next = (i + 1) % len(self._failed)

    def expire(self, now: float) -> None:
        """Nothing ages out of a count window."""

    def clear(self) -> None:
        """Forget every outcome."""
        self._next = self.calls = self.failures = self.slow_calls = 0


class TimeTracker:
    """Running totals over the calls recorded in the last ``seconds`` (see the module doc)."""

    __slots__ = ("_scale", "_slices", "calls", "failures", "slow_calls")

    def __init__(self, seconds: float) -> None:
        self._scale = TIME_SLICES / seconds
        # One [slice index, calls, failures, slow calls] per non-empty slice, oldest first.
        self._slices: deque[list[int]] = deque()
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Record one outcome at ``now`` (which never goes backwards), after expiring."""
        self.expire(now)
        index = math.floor(now * self._scale)
        slices = self._slices
        if slices and slices[-1][0] == index:
            last = slices[-1]
            last[1] += 1
            last[2] += failed
            last[3] += slow
        else:
            slices.append([index, 1, int(failed), int(slow)])
        self.calls += 1
        self.failures += failed
        self.slow_calls += slow

    def expire(self, now: float) -> None:
        """Drop the slices that are no longer in the window at ``now``."""
        oldest_kept = math.floor(now * self._scale) - TIME_SLICES + 1
        slices = self._slices
        while slices and slices[0][0] < oldest_kept:
            _, calls, failures, slow_calls = slices.popleft()
            self.calls -= calls
            self.failures -= failures
            self.slow_calls -= slow_calls

    def clear(self) -> None:
        """Forget every outcome."""
        self._slices.clear()
        self.calls = self.failures = self.slow_calls = 0
