"""The lane rows: registered beside the redis rows, their targets, and the hand-off loop's
figures. (The rows themselves run in the quick run of ``test_bench.py``.)"""

from __future__ import annotations

import pytest
import trio

from bench.scenarios import REGISTRY
from bench.scenarios import lanes as rows
from bench.targets import TARGETS


def test_the_rows_sit_with_the_redis_rows_and_have_targets() -> None:
    ids = [s.id for s in REGISTRY if s.group == "redis"]
    assert {s.id for s in rows.SCENARIOS} <= set(ids)
    handoff = ids.index("lanes.handoff")
    assert ids[handoff + 1] == "lanes.handoff_streaq"  # one shape, side by side
    subjects = {(t.subject, t.reference, t.max_ratio) for t in TARGETS}
    assert ("lanes.publish", "lanes.xadd", 1.3) in subjects
    assert ("lanes.handoff", "lanes.handoff_streaq", 1.0) in subjects


async def test_the_hand_off_loop_counts_deliveries_and_reports_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []

    async def send() -> None:
        sent.append(1)

    loop = rows.HandOff(send, [])
    assert loop.details() is None
    reports = iter([{"count": 3, "latencies": [0.001, 0.002, 0.003]}])

    async def fake_report(process: object) -> dict[str, object]:
        return next(reports)

    loop.processes = [object()]  # type: ignore[list-item]
    monkeypatch.setattr(rows, "_report", fake_report)
    with trio.fail_after(5):
        await loop(3)
    assert len(sent) == 3
    details = loop.details()
    assert details is not None
    assert "events/s, delivery latency p50 2.00 ms, p99 3.00 ms" in details
    assert rows._quantile([3.0, 1.0, 2.0], 0.5) == 2.0
