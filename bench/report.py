"""The printed table and the JSON document of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from bench._execute import Measurement, Results
from bench._timing import Settings
from bench.anchors import dbos, runner
from bench.anchors.runner import AnchorReport
from bench.targets import Verdict

SCHEMA_VERSION = 1
DASH = "—"


def micros(ns: float | None, *, signed: bool = False) -> str:
    """``ns`` as microseconds with 3 decimals (``—`` for ``None``)."""
    if ns is None:
        return DASH
    return f"{ns / 1000:+,.3f} µs" if signed else f"{ns / 1000:,.3f} µs"


def _row(m: Measurement, results: Results) -> list[str]:
    s = m.scenario
    if m.stats is None:
        why = m.reason if m.status == "unavailable" else f"error: {m.reason}"
        return [s.group, s.label, f"{DASH} ({why})", "", "", ""]
    overhead = results.overhead(s.id)
    return [
        s.group,
        s.label,
        micros(m.stats.median_ns),
        micros(m.stats.min_ns),
        micros(m.stats.iqr_ns),
        DASH if overhead is None else micros(overhead, signed=True),
    ]


def _limit(v: Verdict) -> str:
    parts = []
    if v.target.max_ratio is not None:
        parts.append(f"≤ {v.target.max_ratio:.3g}x")
    if v.target.max_ns is not None:
        parts.append(f"≤ {micros(v.target.max_ns)}")
    return " and ".join(parts) or "info"


def _mark(v: Verdict) -> str:
    if v.passed is None:
        return f"{DASH} ({v.reason})" if v.reason else ""
    return "✓" if v.passed else "✗"


def _verdict_row(v: Verdict) -> list[str]:
    ratio = DASH if v.ratio is None else f"{v.ratio:#.3g}x"
    return [
        v.target.label,
        f"{v.target.measure.replace('_', ' ')}",
        micros(v.value_ns),
        micros(v.reference_ns) if v.target.reference is not None else "",
        ratio if v.target.reference is not None else "",
        _limit(v),
        _mark(v),
    ]


def _align(rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    # A cell that starts with the dash spans the remaining columns: it is not measured.
    widths = [0] * max(len(r) for r in rows)
    for r in rows:
        for i, cell in enumerate(r):
            if not (cell.startswith(DASH + " (") and i < len(r) - 1):
                widths[i] = max(widths[i], len(cell))
    lines = []
    for r in rows:
        cells = []
        for i, cell in enumerate(r):
            if cell.startswith(DASH + " ("):
                cells.append(cell)
                break
            cells.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    return lines


def render(results: Results, verdicts: Sequence[Verdict], settings: Settings, *, title: str) -> str:
    """The table of figures, then the table of targets, as printed by ``python -m bench``."""
    head = ["group", "scenario", "median/call", "min", "IQR", "overhead"]
    rows = [head, *(_row(m, results) for m in results.measurements)]
    lines = [title, ""]
    lines += _align(rows, right={2, 3, 4, 5})
    lines += [
        "",
        "overhead = median - the baseline's median in the same run: bare `await f(x)` for",
        "Python rows, bare sync `g(x)` for pybreaker, Node's bare `await f(x)` for runner-js.",
        f"median of {settings.reps} repetitions of ~{settings.target_rep_ns / 1e6:g} ms after "
        "warm-up, GC off while timing.",
    ]
    notes = [
        f"- {m.scenario.label}: {text}"
        for m in results.measurements
        for text in (m.scenario.note, m.details)
        if text is not None
    ]
    if notes:
        lines += ["", "notes:", *notes]
    if verdicts:
        vhead = ["target", "measure", "value", "reference", "ratio", "limit", "ok"]
        lines += ["", *_align([vhead, *(_verdict_row(v) for v in verdicts)], right={2, 3, 4})]
    return "\n".join(lines)


def _scenario_entry(m: Measurement, results: Results) -> dict[str, Any]:
    s = m.scenario
    return {
        "id": s.id,
        "label": s.label,
        "group": s.group,
        "who": s.who,
        "source": s.source,
        "baseline": s.baseline,
        "status": m.status,
        "reason": m.reason,
        "note": s.note,
        "details": m.details,
        "median_ns": None if m.stats is None else m.stats.median_ns,
        "overhead_ns": results.overhead(s.id),
        "stats": None if m.stats is None else attrs.asdict(m.stats),
    }


def _verdict_entry(v: Verdict) -> dict[str, Any]:
    return {
        **attrs.asdict(v.target),
        "value_ns": v.value_ns,
        "reference_ns": v.reference_ns,
        "ratio": v.ratio,
        "passed": v.passed,
        "reason": v.reason,
    }


def _anchor_entry(
    results: Results, prefix: str, anchor_enabled: bool
) -> tuple[dict[str, Any], AnchorReport | None]:
    """The status of the anchor whose rows start with ``prefix``, and its report."""
    report = results.anchors.get(prefix)
    if report is not None:
        return {"status": report.status, "reason": report.reason}, report
    if not any(m.scenario.id.startswith(prefix) for m in results.measurements):
        return {"status": "not selected", "reason": None}, None
    return {"status": "disabled", "reason": None if anchor_enabled else "--no-anchor"}, None


def document(
    results: Results,
    verdicts: Sequence[Verdict],
    settings: Settings,
    *,
    mode: str,
    anchor_enabled: bool,
    machine: dict[str, object],
    versions: dict[str, str | None],
    created: str,
) -> dict[str, Any]:
    """The JSON document written to ``latest.json``: ``anchor`` is BlueLibs Runner's
    status, ``dbos_anchor`` DBOS Transact's."""
    anchor, report = _anchor_entry(results, runner.PREFIX, anchor_enabled)
    dbos_anchor, dbos_report = _anchor_entry(results, dbos.PREFIX, anchor_enabled)
    return {
        "schema": SCHEMA_VERSION,
        "created": created,
        "mode": mode,
        "method": {
            **attrs.asdict(settings),
            "statistic": "median of the per-call ns of each repetition",
            "overhead": "median minus the baseline scenario's median, same run",
            "clock": "time.perf_counter_ns (Node: process.hrtime.bigint)",
            "gc": "disabled while timing (Node: gc() before each repetition)",
            "python_scenarios": "one process, one trio.run",
        },
        "machine": machine,
        "versions": {
            **versions,
            "node": None if report is None else report.node,
            "@bluelibs/runner": None if report is None else report.runner,
            "dbos": getattr(dbos_report, "dbos", None),
        },
        "anchor": anchor,
        "dbos_anchor": dbos_anchor,
        "scenarios": [_scenario_entry(m, results) for m in results.measurements],
        "targets": [_verdict_entry(v) for v in verdicts],
    }
