"""The DBOS Transact anchor: ``dbos_py/bench.py`` in a venv of its own, the same 3-step
workflow as the durable rows, on SQLite set up as ours.

DBOS is asyncio-only and pins its own dependencies, so it never enters the project's venv:
on first use ``python -m venv`` creates ``dbos_py/.venv`` (git-ignored) and pip installs
the pinned `VERSION` into it. When the venv cannot be made or the install fails (no
network, an incompatible Python) the anchor is skipped with the reason; when the script
fails it is reported as failed. The script prints raw per-call samples; the statistics
are computed here, by the same `summarize` as ours.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Collection
from pathlib import Path

import attrs

from bench._scenario import Scenario
from bench._timing import Settings
from bench.anchors.runner import AnchorReport, read_scenarios, run_command, tail_of
from bench.anchors.venv import install, venv_python

DBOS_DIR = Path(__file__).parent / "dbos_py"
PREFIX = "dbos."
#: The DBOS Transact release measured (``pip install dbos==VERSION``).
VERSION = "3.4.0"
SHAPES = ("latency_sqlite", "throughput_sqlite")


@attrs.frozen(kw_only=True)
class DbosReport(AnchorReport):
    """An `AnchorReport` with the version of DBOS the process ran."""

    dbos: str | None = None


def _anchor(key: str, label: str, note: str) -> Scenario:
    # The key is also the shape: the row sits beside ours of the same shape.
    return Scenario(
        id=PREFIX + key,
        label=f"dbos: {label}",
        group="durable",
        who="dbos",
        baseline=None,
        source="anchor",
        shape=key,
        note=note,
    )


SCENARIOS = (
    _anchor(
        "latency_sqlite",
        "3-step workflow, start to result (SQLite)",
        f"DBOS Transact {VERSION} under asyncio in its own process: `await wf(i)`, one at a "
        "time; its SQLite set to WAL, synchronous=NORMAL as ours (DBOS's default fsyncs "
        "every commit)",
    ),
    _anchor(
        "throughput_sqlite",
        "16 workflows at once, per workflow (SQLite)",
        "asyncio.gather of 16 (or more) `wf(i)` calls; per workflow = 1 / throughput",
    ),
)


def installed_version(directory: Path, timeout: float = 60.0) -> str | None:
    """The version of ``dbos`` in the anchor's venv, or None (no venv, not installed)."""
    python = venv_python(directory)
    if not python.exists():
        return None
    probe = "from importlib.metadata import version; print(version('dbos'))"
    try:
        done = run_command([str(python), "-c", probe], directory, timeout)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _install(directory: Path, timeout: float, log: Callable[[str], None]) -> str | None:
    """Create (or repair) the venv and install the pinned DBOS; why it failed, or None."""
    return install(directory, [f"dbos=={VERSION}"], label="dbos", timeout=timeout, log=log)


def parse_output(text: str) -> DbosReport:
    """Read the JSON printed by ``dbos_py/bench.py``; raise `ValueError` if it is malformed."""
    data, stats, errors = read_scenarios(text, "dbos anchor", PREFIX)
    return DbosReport(
        status="ok",
        stats=stats,
        errors=errors,
        dbos=None if data.get("dbos") is None else str(data["dbos"]),
    )


def run_anchor(
    settings: Settings,
    *,
    shapes: Collection[str] | None = None,
    directory: Path = DBOS_DIR,
    log: Callable[[str], None] = lambda _: None,
    timeout: float = 900.0,
) -> DbosReport:
    """Install the pinned DBOS in the anchor's venv if needed, run ``bench.py`` with
    ``settings`` for ``shapes`` (keys without the ``dbos.`` prefix; default all) and parse
    what it prints."""
    if installed_version(directory) != VERSION:
        failed = _install(directory, timeout, log)
        if failed is not None:
            return DbosReport(status="skipped", reason=failed)
    chosen = [key for key in SHAPES if shapes is None or key in shapes]
    log(f"anchor dbos: bench.py --shapes {','.join(chosen)}")
    command = [str(venv_python(directory)), "bench.py", "--shapes", ",".join(chosen)]
    command += ["--settings", json.dumps(attrs.asdict(settings))]
    try:
        done = run_command(command, directory, timeout)
    except subprocess.TimeoutExpired:
        return DbosReport(status="failed", reason=f"bench.py took longer than {timeout:g} s")
    if done.returncode != 0:
        return DbosReport(
            status="failed", reason=f"bench.py exited {done.returncode}: {tail_of(done.stderr)}"
        )
    try:
        return parse_output(done.stdout)
    except ValueError as exc:
        return DbosReport(status="failed", reason=str(exc))
