"""The Redis rate limiter anchors: ``redis_py/bench.py`` in a venv of its own, measuring
``limits`` (moving window, asyncio, on the coredis it supports: < 6) and
``pyrate-limiter``'s Redis bucket (``redis.asyncio``), per acquire, on a throwaway
``redis-server`` of the same build as the redis rows'.

They pin coredis < 6 (the project needs coredis >= 6), so they never enter the project's
venv: on first use ``python -m venv`` creates ``redis_py/.venv`` (git-ignored) and pip
installs the pinned `REQUIREMENTS` into it. When the venv cannot be made, the install fails
or there is no ``redis-server``, the anchor is skipped with the reason; when the script
fails it is reported as failed. Statistics are computed here, by the same `summarize` as
ours.
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

DIRECTORY = Path(__file__).parent / "redis_py"
PREFIX = "redis_anchor."
#: What the anchor's venv holds (``pip install`` of each, pinned).
REQUIREMENTS = ("limits[async-redis]==5.8.0", "pyrate-limiter==4.5.1", "redis==8.1.0")
SHAPES = ("limits_moving_window", "pyrate_redis")


@attrs.frozen(kw_only=True)
class LimitersReport(AnchorReport):
    """An `AnchorReport` with the versions the process ran."""

    versions: dict[str, str] = attrs.Factory(dict)


def _anchor(key: str, label: str, note: str) -> Scenario:
    # Beside ours of the same shape: a shared limiter's acquire.
    return Scenario(
        id=PREFIX + key,
        label=label,
        group="redis",
        who=key.split("_")[0],
        baseline=None,
        source="anchor",
        shape="limiter",
        note=note,
    )


SCENARIOS = (
    _anchor(
        "limits_moving_window",
        "limits: MovingWindowRateLimiter.hit (asyncio)",
        "limits 5.8 under asyncio in its own process and venv, on coredis 5 (it pins < 6); "
        "its exact moving window, one round trip per hit",
    ),
    _anchor(
        "pyrate_redis",
        "pyrate-limiter: RedisBucket try_acquire_async (asyncio)",
        "pyrate-limiter 4.5 under asyncio in the same venv, on redis.asyncio",
    ),
)


def _installed(directory: Path, timeout: float) -> bool:
    python = venv_python(directory)
    if not python.exists():
        return False
    names = [requirement.split("[")[0].split("==")[0] for requirement in REQUIREMENTS]
    wanted = [requirement.split("==")[1] for requirement in REQUIREMENTS]
    probe = f"from importlib.metadata import version; print([version(n) for n in {names!r}])"
    try:
        done = run_command([str(python), "-c", probe], directory, timeout)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and done.stdout.strip() == repr(wanted)


def parse_output(text: str) -> LimitersReport:
    """Read the JSON printed by ``redis_py/bench.py``; `ValueError` if it is malformed."""
    data, stats, errors = read_scenarios(text, "redis limiters anchor", PREFIX)
    versions = data.get("versions")
    return LimitersReport(
        status="ok",
        stats=stats,
        errors=errors,
        versions={str(k): str(v) for k, v in versions.items()}
        if isinstance(versions, dict)
        else {},
    )


def run_anchor(
    settings: Settings,
    *,
    shapes: Collection[str] | None = None,
    directory: Path = DIRECTORY,
    log: Callable[[str], None] = lambda _: None,
    timeout: float = 900.0,
) -> LimitersReport:
    """Install the pinned limiters in the anchor's venv if needed, start a throwaway
    ``redis-server``, run ``bench.py`` with ``settings`` for ``shapes`` and parse it."""
    if not _installed(directory, timeout):
        failed = install(directory, REQUIREMENTS, label="redis limiters", timeout=timeout, log=log)
        if failed is not None:
            return LimitersReport(status="skipped", reason=failed)
    try:
        import pytest

        from tests.resilience.redis.server import redis_server
    except ImportError as exc:
        return LimitersReport(status="skipped", reason=f"needs the tests' server helper: {exc}")
    chosen = [key for key in SHAPES if shapes is None or key in shapes]
    try:
        with redis_server() as server:
            log(f"anchor redis limiters: bench.py --shapes {','.join(chosen)}")
            command = [str(venv_python(directory)), "bench.py", "--url", server.url]
            command += [
                "--shapes",
                ",".join(chosen),
                "--settings",
                json.dumps(attrs.asdict(settings)),
            ]
            try:
                done = run_command(command, directory, timeout)
            except subprocess.TimeoutExpired:
                return LimitersReport(
                    status="failed", reason=f"bench.py took longer than {timeout:g} s"
                )
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        return LimitersReport(status="skipped", reason=str(exc.msg))
    if done.returncode != 0:
        return LimitersReport(
            status="failed", reason=f"bench.py exited {done.returncode}: {tail_of(done.stderr)}"
        )
    try:
        return parse_output(done.stdout)
    except ValueError as exc:
        return LimitersReport(status="failed", reason=str(exc))
