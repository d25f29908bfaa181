"""What a scenario is: an id, a row label, a comparison group, who made the measured code,
and how to get its timing loop.

A Python scenario's ``setup()`` is an async context manager yielding the `Loop`; state it
needs (a breaker, a kernel runtime) lives inside it and is torn down after the timing.
An anchor scenario is measured by another process (see ``bench.anchors``). A slot without a
setup yet (the kernel rows) is reported as unavailable with ``unavailable`` as the reason;
so is a row whose setup raises `Unavailable` (what it needs is missing on this machine).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Literal

import attrs

from bench._timing import Loop

Setup = Callable[[], AbstractAsyncContextManager[Loop]]
Source = Literal["python", "anchor"]

#: The bare ``await f(x)`` of this process: the baseline of every async Python scenario.
BARE = "floor.bare"
#: The bare sync call ``g(x)``: the baseline of sync-only peers (pybreaker).
SYNC_BARE = "floor.sync_bare"

#: Table and chart order of the groups; a scenario's group must be one of these.
GROUPS = (
    "floor",
    "retry",
    "circuit breaker",
    "cache",
    "rate limit",
    "bulkhead",
    "timeout",
    "middleware",
    "failure path",
    "kernel",
    "http",
    "durable",
    "redis",
)


class Unavailable(Exception):
    """Raised by a setup when what its row needs is missing here (a server, an extra):
    the row is reported unavailable with this message as the reason, not as an error."""


def _check_group(instance: Scenario, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in GROUPS:
        raise ValueError(f"Scenario {instance.id}: group must be one of {GROUPS}, got {value!r}")


@attrs.frozen(kw_only=True)
class Scenario:
    """One row of the table.

    ``baseline`` is the id of the scenario whose median is subtracted to give the
    overhead (``None``: an absolute figure such as a start-up, or the baseline itself).
    ``may_fail`` marks a peer that might not run under trio: its error is reported as a
    row without figures instead of failing the run. Rows of one group that share a
    ``shape`` (the same thing measured by different code) are listed together, ours first.
    ``note`` is printed under the table: what a reader must know to read the row.
    """

    id: str
    label: str
    group: str = attrs.field(validator=_check_group)
    who: str
    setup: Setup | None = None
    baseline: str | None = BARE
    source: Source = "python"
    unavailable: str | None = None
    may_fail: bool = False
    shape: str | None = None
    note: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.source == "python" and self.setup is None and self.unavailable is None:
            raise ValueError(f"Scenario {self.id}: a Python scenario needs setup or unavailable")
