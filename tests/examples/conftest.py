from __future__ import annotations

import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def load_example() -> Callable[[str], dict[str, Any]]:
    """The globals of ``examples/<name>.py``, loaded without running its ``__main__`` block."""

    def load(name: str) -> dict[str, Any]:
        return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=name)

    return load


def run_program(name: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>.py`` as a program, in real time; its output as text."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
