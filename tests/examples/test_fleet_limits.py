"""examples/fleet_limits.py: two worker processes, one shared limit and breaker, a flaky
upstream; it starts its own redis-server, and must run and exit cleanly."""

from __future__ import annotations

import re

import pytest

from tests.examples.conftest import run_program
from tests.resilience.redis.server import server_binary


@pytest.mark.slow
def test_two_workers_share_one_limit_and_one_breaker() -> None:
    server_binary()  # skips (or fails under CI=true) without redis-server
    done = run_program("fleet_limits")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "REDIS_URL is not set: starting a throwaway redis-server" in out
    workers = re.findall(r"worker \d: (\d+) answered, (\d+) failed, (\d+) refused", out)
    assert len(workers) == 2
    # Each worker saw the upstream answer and saw the outage (as a failure of its own, or as
    # the circuit the fleet opened); the outage failed calls and the open circuit refused some.
    assert all(int(answered) > 0 for answered, _, _ in workers)
    assert all(int(failed) + int(refused) > 0 for _, failed, refused in workers)
    assert sum(int(failed) for _, failed, _ in workers) > 0
    assert sum(int(refused) for _, _, refused in workers) > 0
    calls, seconds = map(float, re.search(r"(\d+) calls in ([\d.]+) s", out).groups())
    assert calls <= 10 * (seconds + 1)  # the shared limit: 10 in any second, for both
    assert done.stderr == ""
