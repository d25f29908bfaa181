"""Run a selection of scenarios: the Python ones in ONE ``trio.run``, their repetitions
interleaved (see `measure_all`), then the anchors (see `ANCHORS`).

`select` adds the baselines the chosen scenarios need; `execute` returns `Results`, which
knows each scenario's per-call median and its overhead over its baseline.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Literal

import attrs
import trio

from bench import outside
from bench._scenario import Scenario, Unavailable
from bench._timing import Loop, Settings, Stats, measure_all
from bench.anchors import dbos, redis_limiters, runner
from bench.anchors.runner import AnchorReport

Status = Literal["ok", "unavailable", "error"]
Measure = Literal["per_call", "overhead"]
Log = Callable[[str], None]


def _run_runner(settings: Settings, *, shapes: Collection[str], log: Log) -> AnchorReport:
    return runner.run_anchor(settings, shapes=shapes, log=log)


def _run_dbos(settings: Settings, *, shapes: Collection[str], log: Log) -> AnchorReport:
    return dbos.run_anchor(settings, shapes=shapes, log=log)


def _run_outside(settings: Settings, *, shapes: Collection[str], log: Log) -> AnchorReport:
    return outside.run_anchor(settings, shapes=shapes, log=log)


def _run_redis_limiters(settings: Settings, *, shapes: Collection[str], log: Log) -> AnchorReport:
    return redis_limiters.run_anchor(settings, shapes=shapes, log=log)


#: Each anchor by the id prefix of its rows: how to run it for some of its shapes.
ANCHORS: Mapping[str, Callable[..., AnchorReport]] = {
    runner.PREFIX: _run_runner,
    dbos.PREFIX: _run_dbos,
    redis_limiters.PREFIX: _run_redis_limiters,
    outside.PREFIX: _run_outside,
}


@attrs.frozen(kw_only=True)
class Measurement:
    """The outcome of one scenario: statistics, or why there are none.

    ``details``: figures the loop reports beyond the per-call time (a loop object with a
    ``details() -> str | None`` method, read after the timing: e.g. requests/s and latency
    percentiles of a load scenario); printed with the notes.
    """

    scenario: Scenario
    status: Status
    stats: Stats | None = None
    reason: str | None = None
    details: str | None = None


@attrs.frozen(kw_only=True)
class Results:
    """Every measurement of a run, in table order, and the report of each anchor that ran
    (by the id prefix of its rows)."""

    measurements: tuple[Measurement, ...]
    anchors: Mapping[str, AnchorReport] = attrs.field(factory=dict)

    @property
    def anchor(self) -> AnchorReport | None:
        """The BlueLibs Runner anchor's report, if it ran."""
        return self.anchors.get(runner.PREFIX)

    def get(self, scenario_id: str) -> Measurement | None:
        """The measurement of ``scenario_id``, or ``None`` if it was not selected."""
        for m in self.measurements:
            if m.scenario.id == scenario_id:
                return m
        return None

    def per_call(self, scenario_id: str) -> float | None:
        """Median ns per call, or ``None`` when not measured."""
        m = self.get(scenario_id)
        return None if m is None or m.stats is None else m.stats.median_ns

    def overhead(self, scenario_id: str) -> float | None:
        """Median minus its baseline's median (ns); ``None`` without both, or no baseline."""
        m = self.get(scenario_id)
        if m is None or m.scenario.baseline is None:
            return None
        value, base = self.per_call(scenario_id), self.per_call(m.scenario.baseline)
        return None if value is None or base is None else value - base

    def value(self, scenario_id: str, measure: Measure) -> float | None:
        """`per_call` or `overhead`, by name."""
        if measure == "per_call":
            return self.per_call(scenario_id)
        return self.overhead(scenario_id)

    def fatal(self) -> list[Measurement]:
        """Errors of scenarios that must work (everything not marked ``may_fail``)."""
        return [m for m in self.measurements if m.status == "error" and not m.scenario.may_fail]


def matches(scenario: Scenario, pattern: str) -> bool:
    """Whether ``pattern`` (a glob on the id, or a case-insensitive substring of the id or
    label) selects ``scenario``."""
    if fnmatch.fnmatchcase(scenario.id, pattern):
        return True
    needle = pattern.lower()
    return needle in scenario.id.lower() or needle in scenario.label.lower()


def select(registry: Sequence[Scenario], pattern: str | None) -> list[Scenario]:
    """The scenarios ``pattern`` selects (all when ``None``), plus their baselines."""
    if pattern is None:
        return list(registry)
    chosen = {s.id for s in registry if matches(s, pattern)}
    if not chosen:
        return []
    chosen |= {s.baseline for s in registry if s.id in chosen and s.baseline is not None}
    return [s for s in registry if s.id in chosen]


def _error(scenario: Scenario, exc: Exception, log: Log) -> Measurement:
    reason = f"{type(exc).__name__}: {exc}"
    log(f"  {scenario.id} failed: {reason}")
    return Measurement(scenario=scenario, status="error", reason=reason)


def _teardown(
    scenario: Scenario,
    manager: AbstractAsyncContextManager[Loop],
    outcomes: dict[str, Measurement],
    log: Log,
) -> Callable[..., Awaitable[bool | None]]:
    async def exit_(*exc_info: Any) -> bool | None:
        try:
            return await manager.__aexit__(*exc_info)
        except Exception as exc:
            outcomes[scenario.id] = _error(scenario, exc, log)
            return False

    return exit_


async def _measure_python(
    scenarios: Sequence[Scenario], settings: Settings, log: Log
) -> list[Measurement]:
    """Enter every setup, measure all loops interleaved, then tear the setups down."""
    outcomes: dict[str, Measurement] = {}
    async with AsyncExitStack() as stack:
        loops: dict[str, Loop] = {}
        for s in scenarios:
            if s.setup is None:
                outcomes[s.id] = Measurement(scenario=s, status="unavailable", reason=s.unavailable)
                continue
            manager = s.setup()
            try:
                loops[s.id] = await manager.__aenter__()
            except Unavailable as exc:
                log(f"  {s.id} unavailable: {exc}")
                outcomes[s.id] = Measurement(scenario=s, status="unavailable", reason=str(exc))
                continue
            except Exception as exc:
                outcomes[s.id] = _error(s, exc, log)
                continue
            stack.push_async_exit(_teardown(s, manager, outcomes, log))
        by_id = {s.id: s for s in scenarios}
        for key, outcome in (await measure_all(loops, settings, log=log)).items():
            if isinstance(outcome, Exception):
                outcomes[key] = _error(by_id[key], outcome, log)
            else:
                details = getattr(loops[key], "details", None)
                outcomes[key] = Measurement(
                    scenario=by_id[key],
                    status="ok",
                    stats=outcome,
                    details=None if details is None else details(),
                )
    return [outcomes[s.id] for s in scenarios]


def _from_anchor(scenario: Scenario, report: AnchorReport | None, reason: str) -> Measurement:
    if report is None or report.status != "ok":
        why = reason if report is None else f"anchor {report.status}: {report.reason}"
        return Measurement(scenario=scenario, status="unavailable", reason=why)
    stats = report.stats.get(scenario.id)
    if stats is not None:
        return Measurement(
            scenario=scenario, status="ok", stats=stats, details=report.details.get(scenario.id)
        )
    error = report.errors.get(scenario.id, "missing from the anchor's output")
    return Measurement(scenario=scenario, status="error", reason=error)


def execute(
    scenarios: Iterable[Scenario],
    settings: Settings,
    *,
    anchor: bool,
    log: Log = lambda _: None,
) -> Results:
    """Measure ``scenarios``: Python ones in one ``trio.run``, anchored ones by their
    anchor (each run only when ``anchor`` is true and one of its rows is selected)."""
    chosen = list(scenarios)
    python = [s for s in chosen if s.source == "python"]
    measured = {m.scenario.id: m for m in trio.run(_measure_python, python, settings, log)}
    reports: dict[str, AnchorReport] = {}
    for prefix, run in ANCHORS.items():
        rows = [s for s in chosen if s.source == "anchor" and s.id.startswith(prefix)]
        if rows and anchor:
            shapes = [s.id.removeprefix(prefix) for s in rows]
            report = reports[prefix] = run(settings, shapes=shapes, log=log)
            if report.status != "ok":
                log(f"anchor {prefix.rstrip('.')} {report.status}: {report.reason}")
        for s in rows:
            measured[s.id] = _from_anchor(s, reports.get(prefix), "anchor disabled (--no-anchor)")
    return Results(measurements=tuple(measured[s.id] for s in chosen), anchors=reports)
