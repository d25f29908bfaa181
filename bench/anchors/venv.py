"""The venv of a Python anchor: its own interpreter and pinned packages, never the
project's (DBOS pins its dependencies; ``limits`` pins coredis < 6)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.anchors.runner import run_command, tail_of

__all__ = ["install", "venv_python"]


def venv_python(directory: Path) -> Path:
    """The interpreter of the anchor's venv (``directory/.venv``)."""
    return directory / ".venv" / "bin" / "python"


def install(
    directory: Path,
    requirements: Sequence[str],
    *,
    label: str,
    timeout: float,
    log: Callable[[str], None],
) -> str | None:
    """Create (or repair) the venv and pip install ``requirements``; why it failed, or None."""
    python = venv_python(directory)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = (
        ("python -m venv", [sys.executable, "-m", "venv", str(python.parent.parent)]),
        ("pip install", [*pip, *requirements]),
    )
    for name, command in steps:
        log(f"anchor {label}: {name} in {directory} (first use)")
        try:
            done = run_command(command, directory, timeout)
        except subprocess.TimeoutExpired:
            return f"{name} took longer than {timeout:g} s"
        if done.returncode != 0:
            return f"{name} failed ({done.returncode}): {tail_of(done.stderr)}"
    return None
