"""The redis rows and their anchors' pieces: registration, the anchor's own venv, its
output, and the throughput loop's figures. (The rows themselves run in the quick run of
``test_bench.py``.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._timing import Settings
from bench.anchors import redis_limiters
from bench.scenarios import REGISTRY
from bench.scenarios import redis as rows

TINY = Settings(reps=5, target_rep_ns=50_000, warmup_reps=1)


def test_the_rows_and_anchors_sit_together() -> None:
    ids = [s.id for s in REGISTRY if s.group == "redis"]
    assert ids[:2] == ["redis.ping", "redis.get"]
    limiter = ids.index("redis.limiter")
    assert ids[limiter + 1 : limiter + 3] == [
        "redis_anchor.limits_moving_window",
        "redis_anchor.pyrate_redis",
    ]
    assert {s.id for s in rows.SCENARIOS} <= set(ids)


def _fake_runs(monkeypatch: pytest.MonkeyPatch, *outcomes: tuple[int, str, str]) -> list[list[str]]:
    calls: list[list[str]] = []
    left = list(outcomes)

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        code, out, err = left.pop(0)
        return subprocess.CompletedProcess(cmd, code, out, err)

    monkeypatch.setattr("bench.anchors.runner.subprocess.run", fake_run)
    return calls


def _output(*keys: str) -> str:
    return json.dumps(
        {
            "versions": {"limits": "5.8.0", "coredis": "5.7.0"},
            "scenarios": {key: {"calls_per_rep": 3, "samples_ns": [1, 2, 3, 4, 5]} for key in keys},
        }
    )


def test_the_anchor_installs_its_own_venv_and_runs_on_a_throwaway_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_runs(
        monkeypatch, (0, "", ""), (0, "", ""), (0, _output(*redis_limiters.SHAPES), "")
    )
    logged: list[str] = []
    report = redis_limiters.run_anchor(TINY, directory=tmp_path, log=logged.append)
    assert report.status == "ok", report.reason
    assert report.versions["coredis"] == "5.7.0"
    assert set(report.stats) == {redis_limiters.PREFIX + key for key in redis_limiters.SHAPES}
    python = str(tmp_path / ".venv" / "bin" / "python")
    assert calls[0] == [sys.executable, "-m", "venv", str(tmp_path / ".venv")]
    assert calls[1][0] == python
    assert calls[1][-3:] == list(redis_limiters.REQUIREMENTS)
    assert calls[2][:3] == [python, "bench.py", "--url"]
    assert calls[2][3].startswith("redis://127.0.0.1:")
    assert logged[0].startswith("anchor redis limiters: python -m venv")


def test_the_anchor_is_skipped_when_the_install_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runs(monkeypatch, (0, "", ""), (1, "", "no network\n"))
    report = redis_limiters.run_anchor(TINY, directory=tmp_path)
    assert report.status == "skipped"
    assert report.reason == "pip install failed (1): no network"


def test_the_anchor_reports_a_failing_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    wanted = repr([r.split("==")[1] for r in redis_limiters.REQUIREMENTS])
    _fake_runs(monkeypatch, (0, wanted + "\n", ""), (1, "", "Traceback: boom\n"))
    report = redis_limiters.run_anchor(TINY, shapes=["pyrate_redis"], directory=tmp_path)
    assert (report.status, report.reason) == ("failed", "bench.py exited 1: Traceback: boom")


def test_parse_output_reads_samples_errors_and_versions() -> None:
    text = json.dumps(
        {
            "versions": {"limits": "5.8.0"},
            "scenarios": {
                "limits_moving_window": {"calls_per_rep": 2, "samples_ns": [1.0, 2, 3, 4, 5]},
                "pyrate_redis": {"error": "ConnectionError: refused"},
            },
        }
    )
    report = redis_limiters.parse_output(text)
    assert report.stats["redis_anchor.limits_moving_window"].median_ns == 3.0
    assert report.errors == {"redis_anchor.pyrate_redis": "ConnectionError: refused"}
    assert report.versions == {"limits": "5.8.0"}
    with pytest.raises(ValueError, match="not JSON"):
        redis_limiters.parse_output("garbage")


def test_the_fleet_loop_reports_nothing_before_it_ran() -> None:
    assert rows.Fleet([]).details() is None
    assert rows.Fleet([]).min_calls == rows.WORKERS * 50
