"""The BlueLibs Runner anchor: ``runner_js/bench.js`` under Node, the same shapes as ours.

On first use ``npm ci`` installs the pinned ``@bluelibs/runner`` from the committed lock
into ``runner_js/node_modules``. When ``node`` or ``npm`` is missing or ``npm ci`` fails
the anchor is skipped with the reason; when the script fails it is reported as failed.
The script prints raw per-op samples; the statistics are computed here, by the same
`summarize` as ours. Overheads are taken over Node's own bare ``await f(x)``, measured in
the same Node process as the per-call shapes (see `PROCESSES`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from bench._scenario import Scenario
from bench._timing import Settings, Stats, summarize

RUNNER_DIR = Path(__file__).parent / "runner_js"
PACKAGE = "@bluelibs/runner"
BARE = "runner_js.bare"
PREFIX = "runner_js."

Status = Literal["ok", "skipped", "failed"]

#: Shapes measured together in one Node process. Each run()+dispose() of Runner 5.5.0
#: makes every later ``await`` of the process slower (see `LEAKS`), so each shape that
#: starts runtimes gets a fresh process of its own.
PROCESSES: tuple[tuple[str, ...], ...] = (
    ("bare", "run_task", "passthrough5", "timeout_retry", "circuit_breaker", "emit_one_hook"),
    ("run_dispose_100",),
    ("chain_10",),
)


LEAKS = (
    "with Runner 5.5.0 every run()+dispose() makes later awaits of the process slower "
    "(a bare await: ~0.2 us before, several us after ~100 cycles), so later repetitions "
    "are slower: compare min and median"
)


def _anchor(
    key: str, label: str, group: str, baseline: str | None = BARE, note: str | None = None
) -> Scenario:
    # The key is also the shape: the row sits beside ours of the same shape.
    return Scenario(
        id=PREFIX + key,
        label=f"runner-js: {label}",
        group=group,
        who="runner-js",
        baseline=baseline,
        source="anchor",
        shape=key,
        note=note,
    )


SCENARIOS = (
    _anchor("bare", "bare await f(x)", "floor", baseline=None),
    _anchor("passthrough5", "5 pass-through middleware", "middleware"),
    _anchor("timeout_retry", "timeout + retry", "middleware"),
    _anchor("circuit_breaker", "circuit breaker", "middleware"),
    _anchor("run_task", "runTask", "kernel"),
    _anchor("emit_one_hook", "emit to one hook", "kernel"),
    _anchor("run_dispose_100", "run+dispose 100 resources", "kernel", None, LEAKS),
    _anchor("chain_10", "chain of 10 resources (run+dispose)", "kernel", None, LEAKS),
)


@attrs.frozen(kw_only=True)
class AnchorReport:
    """What the anchor run gave: per scenario id, statistics or the error it reported."""

    status: Status
    reason: str | None = None
    node: str | None = None
    runner: str | None = None
    stats: Mapping[str, Stats] = attrs.field(factory=dict)
    errors: Mapping[str, str] = attrs.field(factory=dict)
    #: Figures beyond the per-call time, by scenario id (printed with the notes).
    details: Mapping[str, str] = attrs.field(factory=dict)


def read_scenarios(
    text: str, label: str, prefix: str
) -> tuple[dict[str, Any], dict[str, Stats], dict[str, str]]:
    """Read the JSON an anchor program prints (``{"scenarios": {key: {samples_ns,
    calls_per_rep} | {error}}, ...}``): the whole object, the stats and the errors by
    scenario id (``prefix`` + key). ``label`` names the anchor in the `ValueError` raised
    for bad output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{label} output is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        raise ValueError(f"{label} output has no 'scenarios' object")
    stats: dict[str, Stats] = {}
    errors: dict[str, str] = {}
    for key, entry in data["scenarios"].items():
        scenario_id = prefix + str(key)
        if isinstance(entry, dict) and "error" in entry:
            errors[scenario_id] = str(entry["error"])
        else:
            stats[scenario_id] = _stats(f"{label} output for {scenario_id}", entry)
    return data, stats, errors


def parse_output(text: str) -> AnchorReport:
    """Read the JSON printed by ``bench.js``; raise `ValueError` if it is malformed."""
    data, stats, errors = read_scenarios(text, "anchor", PREFIX)
    return AnchorReport(
        status="ok",
        node=_optional_str(data.get("node")),
        runner=_optional_str(data.get("runner")),
        stats=stats,
        errors=errors,
    )


def _stats(scenario_id: str, entry: Any) -> Stats:
    samples = entry.get("samples_ns") if isinstance(entry, dict) else None
    calls = entry.get("calls_per_rep") if isinstance(entry, dict) else None
    if (
        not isinstance(samples, list)
        or not samples
        or not all(isinstance(s, int | float) and s > 0 for s in samples)
        or not isinstance(calls, int)
    ):
        raise ValueError(f"{scenario_id} needs samples_ns and calls_per_rep")
    return summarize(samples, calls)


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def installed_version(directory: Path) -> str | None:
    """The version of ``@bluelibs/runner`` in ``directory/node_modules``, if installed."""
    manifest = directory / "node_modules" / PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def pinned_version(directory: Path) -> str:
    """The exact version ``package.json`` pins."""
    manifest = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    return str(manifest["dependencies"][PACKAGE])


def tail_of(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def run_command(
    command: list[str], directory: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=timeout, check=False
    )


def merge(reports: Sequence[AnchorReport]) -> AnchorReport:
    """One report from the reports of several Node processes (all ``ok``)."""
    return AnchorReport(
        status="ok",
        node=next((r.node for r in reports if r.node), None),
        runner=next((r.runner for r in reports if r.runner), None),
        stats={k: v for r in reports for k, v in r.stats.items()},
        errors={k: v for r in reports for k, v in r.errors.items()},
    )


def run_anchor(
    settings: Settings,
    *,
    shapes: Collection[str] | None = None,
    directory: Path = RUNNER_DIR,
    log: Callable[[str], None] = lambda _: None,
    timeout: float = 900.0,
) -> AnchorReport:
    """Install the pinned Runner if needed, run ``bench.js`` with ``settings`` for
    ``shapes`` (keys without the ``runner_js.`` prefix; default all), one process per
    entry of `PROCESSES`, and parse what they print."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return AnchorReport(status="skipped", reason="node and npm are needed on PATH")
    if installed_version(directory) != pinned_version(directory):
        log(f"anchor: npm ci in {directory} (first use)")
        try:
            install = run_command([npm, "ci", "--no-audit", "--no-fund"], directory, timeout)
        except subprocess.TimeoutExpired:
            return AnchorReport(status="skipped", reason=f"npm ci took longer than {timeout:g} s")
        if install.returncode != 0:
            return AnchorReport(
                status="skipped",
                reason=f"npm ci failed ({install.returncode}): {tail_of(install.stderr)}",
            )
    options = json.dumps(attrs.asdict(settings))
    reports = []
    for process in PROCESSES:
        chosen = [key for key in process if shapes is None or key in shapes]
        if not chosen:
            continue
        log(f"anchor: node bench.js --shapes {','.join(chosen)}")
        command = [node, "--expose-gc", "bench.js", "--shapes", ",".join(chosen)]
        try:
            done = run_command([*command, "--settings", options], directory, timeout)
        except subprocess.TimeoutExpired:
            return AnchorReport(status="failed", reason=f"bench.js took longer than {timeout:g} s")
        if done.returncode != 0:
            return AnchorReport(
                status="failed", reason=f"bench.js exited {done.returncode}: {tail_of(done.stderr)}"
            )
        try:
            reports.append(parse_output(done.stdout))
        except ValueError as exc:
            return AnchorReport(status="failed", reason=str(exc))
    return merge(reports)
