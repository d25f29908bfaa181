"""The registry: every scenario of every group, in table order.

One module per group (``floor``, ``retry``, ``circuit``, ``cache``, ``limits``,
``pipeline``, ``failure``, ``kernel``, ``http``, ``durable``, ``redis``), each exporting
``SCENARIOS``; the ``served`` rows (servers in their own processes, driven by ``wrk``) come
from ``bench.outside``; the BlueLibs Runner rows come from ``bench.anchors.runner``, the DBOS
Transact rows from ``bench.anchors.dbos``. Adding a scenario means adding it to its module.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench import outside
from bench._scenario import GROUPS, Scenario
from bench.anchors import dbos, redis_limiters, runner
from bench.scenarios import (
    cache,
    circuit,
    durable,
    failure,
    floor,
    http,
    kernel,
    lanes,
    limits,
    pipeline,
    redis,
    retry,
)


def _in_table_order(scenarios: Iterable[Scenario]) -> tuple[Scenario, ...]:
    """By group; within a group, rows of one shape together where its first row is, ours
    first; otherwise in the order given."""
    given = list(scenarios)
    first: dict[tuple[str, str], int] = {}
    for position, s in enumerate(given):
        if s.shape is not None:
            first.setdefault((s.group, s.shape), position)

    def key(item: tuple[int, Scenario]) -> tuple[int, int, bool, int]:
        position, s = item
        anchor = position if s.shape is None else first[s.group, s.shape]
        return (GROUPS.index(s.group), anchor, s.who != "ours", position)

    ordered = tuple(s for _, s in sorted(enumerate(given), key=key))
    ids = [s.id for s in ordered]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"scenario ids must be unique, repeated: {duplicates}")
    return ordered


REGISTRY: tuple[Scenario, ...] = _in_table_order(
    (
        *floor.SCENARIOS,
        *retry.SCENARIOS,
        *circuit.SCENARIOS,
        *cache.SCENARIOS,
        *limits.SCENARIOS,
        *pipeline.SCENARIOS,
        *failure.SCENARIOS,
        *kernel.SCENARIOS,
        *http.SCENARIOS,
        *outside.SCENARIOS,
        *durable.SCENARIOS,
        *redis.SCENARIOS,
        *lanes.SCENARIOS,
        *runner.SCENARIOS,
        *dbos.SCENARIOS,
        *redis_limiters.SCENARIOS,
    )
)

__all__ = ["REGISTRY"]
