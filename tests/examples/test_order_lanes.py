"""examples/order_lanes.py: an order service emits order.placed on a lane, a separate billing
process consumes it; it starts its own redis-server, and must run and exit cleanly."""

from __future__ import annotations

import re

import pytest

from tests.examples.conftest import run_program
from tests.resilience.redis.server import server_binary


@pytest.mark.slow
def test_billing_charges_every_order_once_and_retries_the_declined_card() -> None:
    server_binary()  # skips (or fails under CI=true) without redis-server
    done = run_program("order_lanes")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "orders: placed 5 orders on the lane" in out
    charged = re.findall(r"billing: charged \d+ for (A-\d) \(message \S+, attempt (\d)\)", out)
    assert sorted(order for order, _ in charged) == ["A-1", "A-2", "A-3", "A-4", "A-5"]
    assert dict(charged)["A-3"] == "2"
    assert "card declined for A-3" in out
    assert "orders: nothing pending on the lane, 0 dead letters" in out
    assert "billing: 5 orders billed, shutting down" in out
    assert "billing exited with 0" in out
