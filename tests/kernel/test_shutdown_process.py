"""Graceful shutdown of a real process: SIGTERM within and past the drain budget, SIGINT twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVICE = Path(__file__).parent / "services" / "signalled.py"
ROOT = Path(__file__).resolve().parents[2]


def start(task_seconds: float, drain_seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(SERVICE), str(task_seconds), str(drain_seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


@pytest.mark.slow
def test_sigterm_lets_the_task_finish_within_budget_then_disposes_in_order() -> None:
    process = start(task_seconds=1.0, drain_seconds=10.0)
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert code == 0, err
    assert out.splitlines() == ["long task finished", "dispose server", "dispose db"]
    for phase in (
        "shutdown: SIGTERM received",
        "shutdown: intake stopped",
        "shutdown: draining 1 call(s) in flight for up to 10 s",
        "shutdown: nothing in flight",
        "shutdown: disposing resources",
    ):
        assert phase in err


@pytest.mark.slow
def test_sigterm_past_the_budget_cancels_the_task() -> None:
    process = start(task_seconds=60.0, drain_seconds=0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert code == 0, err
    assert time.monotonic() - started < 10
    assert out.splitlines() == ["dispose server", "dispose db"]
    assert "shutdown: cancelling calls still in flight: long x1" in err


@pytest.mark.slow
def test_a_second_sigint_skips_the_drain() -> None:
    process = start(task_seconds=60.0, drain_seconds=60.0)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process)
    assert code == 0, err
    assert time.monotonic() - started < 10
    assert out.splitlines() == ["dispose server", "dispose db"]
    assert "shutdown: SIGINT received again, skipping the drain" in err
