"""What the console shows of a running app, as JSON-ready data: the app, its graph, the
resilience primitives of its tasks, per-task figures with a short history.

Everything is read through the runtime's `Host` protocol (``graph``, ``ready``, ``closing``,
``metrics``, ``task_state``) and the primitives' ``statistics()``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

import resilience as rs
from kernel._definitions import Task
from kernel._errors import KernelError
from kernel._graph import KERNEL_PLACE, Graph, Node
from resilience import redis as shared

if TYPE_CHECKING:
    from kernel._host import Host

__all__ = [
    "History",
    "app_view",
    "graph_view",
    "plain",
    "primitives_view",
    "started_values",
    "tasks_view",
]

#: Seconds between two samples of a task's history, and how many are kept (10 minutes).
SAMPLE_EVERY: Final = 3.0
SAMPLES: Final = 200
_SHOWN: Final = frozenset({"resource", "task", "event", "hook"})


def plain(value: Any) -> Any:
    """``value`` if JSON can hold it, else its repr (data read back from a store is
    untrusted: one odd value must not fail the page)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def user_nodes(graph: Graph) -> list[Node]:
    """The app's own resources, tasks, events and hooks (not the kernel's built-ins)."""
    return [
        node for node in graph.nodes.values() if node.place != KERNEL_PLACE and node.kind in _SHOWN
    ]


def started_values(runtime: Host) -> dict[str, Any]:
    """The values of the app's started resources by id (one still starting, with
    ``parallel_init``, or already disposed is left out)."""
    values: dict[str, Any] = {}
    for node in runtime.graph.resources():
        try:
            values[node.id] = runtime.resource(node.definition)  # type: ignore[arg-type]
        except KernelError:
            continue
    return values


def app_view(runtime: Host, started: float) -> dict[str, Any]:
    """The app's id, how long it has served, and its state in a word."""
    state = "ready" if runtime.ready else "shutting down" if runtime.closing else "starting"
    return {
        "id": runtime.graph.root.id,
        "uptime_s": round(trio.current_time() - started, 3),
        "state": state,
        "ready": runtime.ready,
        "shutting_down": runtime.closing,
        "pid": os.getpid(),
        # Set by a multi-worker service for each of its processes; absent otherwise.
        "worker": os.environ.get("TRIO_RUNNER_WORKER"),
    }


def graph_view(graph: Graph) -> dict[str, Any]:
    """Nodes (id, kind) and edges: ``dep`` from a dependent to what it depends on, ``on``
    from a hook to the event it listens to (``on_all`` hooks listen to every event)."""
    nodes = user_nodes(graph)
    shown = {node.id for node in nodes}
    edges: list[dict[str, str]] = []
    for node in nodes:
        targets = [(dep, "dep") for dep in node.deps.values() if dep is not None]
        targets += [(event, "on") for event in node.on]
        edges.extend(
            {"from": node.id, "to": target.id, "kind": kind}
            for target, kind in targets
            if target.id in shown
        )
    return {
        "nodes": [
            {
                "id": node.id,
                "kind": node.kind,
                "on_all": node.kind == "hook" and not node.on,
            }
            for node in nodes
        ],
        "edges": edges,
    }


def _tasks(graph: Graph) -> list[Task]:
    return [node.definition for node in user_nodes(graph) if isinstance(node.definition, Task)]


async def _statistics(primitive: Any) -> dict[str, Any]:
    """The primitive's ``statistics()`` as a dict (a shared one's costs a round trip)."""
    stats = primitive.statistics()
    if inspect.isawaitable(stats):
        stats = await stats
    figures = attrs.asdict(stats) if attrs.has(type(stats)) else {}
    return {key: plain(getattr(value, "value", value)) for key, value in figures.items()}


async def _row(primitive: Any, tasks: list[str], now: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": getattr(primitive, "name", None) or tasks[0],
        "tasks": tasks,
        "scope": "shared" if type(primitive).__module__.startswith("resilience.redis") else "local",
    }
    try:
        figures = await _statistics(primitive)
    except Exception as exc:  # a shared store that does not answer: this row says so
        row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return row
    row.update(figures)
    until = figures.get("open_until")
    if isinstance(until, int | float) and math.isfinite(until):
        # When the breaker will next admit a probe, from now.
        row["probe_in_s"] = round(max(0.0, until - now), 3)
    return row


_KINDS: Final = (
    ("circuits", "breaker", (rs.CircuitBreaker, shared.CircuitBreaker)),
    ("limiters", "limiter", (rs.RateLimiter, shared.RateLimiter)),
    ("bulkheads", "bulkhead", (rs.Bulkhead, shared.Bulkhead)),
)


async def primitives_view(runtime: Host) -> dict[str, Any]:
    """Every circuit breaker, rate limiter and bulkhead the app's task pipelines use (each
    once, with the tasks sharing it), with its statistics now."""
    found: dict[str, dict[int, tuple[Any, list[str]]]] = {kind: {} for kind, _, _ in _KINDS}
    for task in _tasks(runtime.graph):
        state = runtime.task_state(task)
        for kind, attribute, types in _KINDS:
            primitive = state.get(attribute)
            if isinstance(primitive, types):
                entry = found[kind].setdefault(id(primitive), (primitive, []))
                entry[1].append(task.id)
    now = trio.current_time()
    view: dict[str, Any] = {}
    for kind, entries in found.items():
        view[kind] = [await _row(primitive, tasks, now) for primitive, tasks in entries.values()]
    return view


@attrs.define
class History:
    """Each task's ``(time, calls, errors)`` sampled when the console asks, at most every
    `SAMPLE_EVERY` seconds, the last `SAMPLES` kept: the data of its chart. Sampling on
    request needs no background task."""

    samples: dict[str, deque[tuple[float, int, int]]] = attrs.Factory(dict)

    def record(self, task_id: str, now: float, calls: int, errors: int) -> list[list[float]]:
        """Add a sample (unless the last is recent); return ``[age_s, calls, errors]``s."""
        kept = self.samples.setdefault(task_id, deque(maxlen=SAMPLES))
        if not kept or now - kept[-1][0] >= SAMPLE_EVERY or calls < kept[-1][1]:
            kept.append((now, calls, errors))
        return [[round(now - at, 3), n, e] for at, n, e in kept]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def tasks_view(runtime: Host, allowed: frozenset[str], history: History) -> dict[str, Any]:
    """Per task: calls, errors, in flight, p50/p95/p99 (ms), rate and history; whether
    HTTP callers may run it. ``metrics`` is false when the runtime counts nothing."""
    registry = runtime.metrics
    snapshot = registry.snapshot() if registry is not None else None
    now = trio.current_time()
    rows = []
    for task in _tasks(runtime.graph):
        row: dict[str, Any] = {"id": task.id, "allowed": task.id in allowed}
        figures = snapshot.tasks.get(task.id) if snapshot is not None else None
        if figures is not None:  # (every task is counted from the runtime's start)
            row.update(
                calls=figures.calls,
                errors=figures.errors,
                in_flight=figures.in_flight,
                rate_per_second=round(figures.rate_per_second, 3),
                p50_ms=_ms(figures.p50),
                p95_ms=_ms(figures.p95),
                p99_ms=_ms(figures.p99),
                history=history.record(task.id, now, figures.calls, figures.errors),
            )
        rows.append(row)
    return {"metrics": registry is not None, "tasks": rows}
