"""examples/flaky_upstream.py — the program behind `make run` — must run and exit cleanly."""

from __future__ import annotations

import re

import pytest

from tests.examples.conftest import run_program


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return int(match.group(1))


async def test_every_scene_reports_what_its_primitive_did(
    autojump_clock, capsys, load_example
) -> None:
    await load_example("flaky_upstream")["main"]()
    out = capsys.readouterr().out
    # 1. retries and timeouts happened, and most lookups succeeded in the end
    assert _number(r"(\d+) retries", out) > 0
    assert _number(r"(\d+) timeouts", out) > 0
    assert _number(r"(\d+) succeeded", out) >= 15
    # 2. the cache computed each of the 5 SKUs once
    assert "45 hits, 5 misses; the upstream saw 5 calls" in out
    # 3. the circuit opened during the outage, probed, and closed again
    assert re.search(r"circuit closed -> open at 0\.\d\d s", out)
    assert "circuit open -> half_open" in out
    assert "circuit half_open -> closed" in out
    assert _number(r"(\d+) calls rejected without touching", out) > 0
    # 4. the limiter kept the burst under the upstream's quota
    assert "the upstream throttled 0 calls" in out
    assert _number(r"(\d+) callers waited", out) == 10
    # 5. 3 running + 3 queued, 4 turned away
    assert "6 ran, 4 were turned away at once" in out
    # 6. hedging cut the slowest call
    plain, hedged = re.search(r"slowest call: ([\d.]+) s plain, ([\d.]+) s hedged", out).groups()
    assert float(hedged) < float(plain)


@pytest.mark.slow
def test_runs_as_a_program_in_real_time() -> None:
    done = run_program("flaky_upstream")
    assert done.returncode == 0, done.stderr
    assert "6. Hedge" in done.stdout
    assert done.stderr == ""
