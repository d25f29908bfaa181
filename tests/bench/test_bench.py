"""``python -m bench``: the quick run end to end (no timing assertions; the PostgreSQL rows
left out), the anchor when Node is present, and the harness, registry, targets and report
in isolation. The durable rows' pieces and the DBOS anchor: ``test_durable_bench.py``."""

from __future__ import annotations

import gc
import json
import math
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as cli
from bench import pg
from bench._execute import Measurement, Results, execute, matches, select
from bench._scenario import BARE, GROUPS, Scenario, Unavailable
from bench._timing import (
    Loop,
    Settings,
    calibrate,
    calls_for,
    measure,
    measure_all,
    summarize,
    timed,
)
from bench.anchors import runner
from bench.chart import bars, draw
from bench.machine import cpu_model, package_versions
from bench.report import micros, render
from bench.scenarios import REGISTRY
from bench.targets import TARGETS, Target, evaluate, evaluate_all

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = Settings(reps=5, target_rep_ns=50_000, warmup_reps=1)
COMMITTED = cli.RESULTS_DIR / "latest.json"


def _stamp(path: Path) -> tuple[float, int] | None:
    return (path.stat().st_mtime, path.stat().st_size) if path.exists() else None


def _check_document(
    data: dict[str, Any], *, anchor_rows: str, unavailable: frozenset[str] = frozenset()
) -> None:
    assert data["schema"] == 1
    assert data["mode"] == "quick"
    assert data["method"]["reps"] >= 5
    machine = data["machine"]
    assert machine["cpu_model"]
    assert machine["cores"] >= 1
    assert machine["python"].startswith("3.")
    assert machine["platform"]
    for name in ("trio", "tenacity", "stamina", "pybreaker", "purgatory", "aiobreaker"):
        assert data["versions"][name]
    assert "cachetools" in data["versions"]
    assert "@bluelibs/runner" in data["versions"]
    assert "node" in data["versions"]

    by_id = {entry["id"]: entry for entry in data["scenarios"]}
    assert [e["id"] for e in data["scenarios"]] == [s.id for s in REGISTRY]
    for scenario in REGISTRY:
        entry = by_id[scenario.id]
        assert entry["label"] == scenario.label
        assert entry["baseline"] == scenario.baseline
        if entry["status"] == "ok":
            stats = entry["stats"]
            assert entry["median_ns"] > 0
            assert stats["min_ns"] > 0
            assert stats["reps"] >= 5
            assert stats["calls_per_rep"] >= 1
            assert len(stats["samples_ns"]) == stats["reps"]
            assert all(s > 0 for s in stats["samples_ns"])
            assert stats["q1_ns"] <= stats["median_ns"] <= stats["q3_ns"]
            if scenario.baseline is None:
                assert entry["overhead_ns"] is None
            else:
                assert math.isfinite(entry["overhead_ns"])
        else:
            assert entry["median_ns"] is None
            assert entry["stats"] is None
            assert entry["overhead_ns"] is None
            assert isinstance(entry["reason"], str)
            assert entry["reason"]
        if scenario.source == "python" and scenario.setup is not None:
            allowed = {"ok", "error"} if scenario.may_fail else {"ok"}
            if scenario.id in unavailable:
                allowed = {"unavailable"}
            assert entry["status"] in allowed, (scenario.id, entry["reason"])
        if scenario.setup is None and scenario.source == "python":
            assert entry == {**entry, "status": "unavailable", "reason": scenario.unavailable}
        if scenario.source == "anchor" and anchor_rows == "disabled":
            assert entry["status"] == "unavailable"
            assert "--no-anchor" in entry["reason"]

    targets = {t["label"]: t for t in data["targets"]}
    assert set(targets) == {t.label for t in TARGETS}
    for target in targets.values():
        assert target["passed"] in (True, False, None)
        if target["passed"] is None and target["value_ns"] is None:
            assert target["reason"]


POSTGRES_ROWS = frozenset({"durable.latency_postgres", "durable.throughput_postgres"})


def _no_postgres() -> pg.Cluster:
    raise Unavailable("PostgreSQL rows are left out of this test")


def test_quick_run_prints_the_table_and_writes_json_and_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _stamp(COMMITTED)
    monkeypatch.setattr(pg.CLUSTER, "factory", _no_postgres)

    assert cli.main(["--quick", "--no-anchor", "--out", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    for scenario in REGISTRY:
        assert scenario.label in out
    assert "kernel: run_task  " in out
    assert "retry success-path overhead <= 1/20 of tenacity's" in out
    assert "✓" in out or "✗" in out
    data = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    _check_document(data, anchor_rows="disabled", unavailable=POSTGRES_ROWS)
    assert data["anchor"] == {"status": "disabled", "reason": "--no-anchor"}
    assert data["dbos_anchor"] == {"status": "disabled", "reason": "--no-anchor"}
    kernel_rows = [e for e in data["scenarios"] if e["id"].startswith("kernel.")]
    assert len(kernel_rows) == 6
    assert {row["status"] for row in kernel_rows} == {"ok"}
    durable = {e["id"]: e for e in data["scenarios"] if e["id"].startswith("durable.")}
    assert set(durable) == POSTGRES_ROWS | {
        "durable.latency_sqlite",
        "durable.latency_sqlite_full",
        "durable.throughput_sqlite",
        "durable.throughput_sqlite_full",
        "durable.replay_step",
    }
    for row_id in POSTGRES_ROWS:
        assert durable[row_id]["reason"] == "PostgreSQL rows are left out of this test"
    assert "workflows/s (" in durable["durable.throughput_sqlite"]["details"]
    assert durable["durable.throughput_sqlite"]["stats"]["calls_per_rep"] >= 16
    assert "— (PostgreSQL rows are left out of this test)" in out
    runner_target = next(t for t in data["targets"] if t["reference"] == "runner_js.passthrough5")
    assert runner_target["passed"] is None
    assert "--no-anchor" in runner_target["reason"]
    assert (tmp_path / "latest.png").read_bytes().startswith(PNG_MAGIC)
    assert not list(tmp_path.glob("*.tmp"))
    assert _stamp(COMMITTED) == before


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm"
)
def test_quick_run_with_the_runner_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["--quick", "--only", "runner_js", "--out", str(tmp_path)])

    data = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    if data["anchor"]["status"] == "skipped":  # npm ci could not reach a registry
        pytest.skip(data["anchor"]["reason"])
    assert status == 0
    assert data["anchor"] == {"status": "ok", "reason": None}
    assert data["versions"]["@bluelibs/runner"] == "5.5.0"
    assert data["versions"]["node"].startswith("v")
    rows = {e["id"]: e for e in data["scenarios"]}
    assert set(rows) == {s.id for s in runner.SCENARIOS}
    for entry in rows.values():
        assert entry["status"] == "ok", entry
        assert entry["median_ns"] > 0
    assert "runner-js: 5 pass-through middleware" in capsys.readouterr().out
    assert (tmp_path / "latest.png").read_bytes().startswith(PNG_MAGIC)


def test_no_matching_scenario_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--only", "no-such-scenario", "--out", str(tmp_path)]) == 2
    assert "no scenario matches 'no-such-scenario'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- the harness


def test_summarize_computes_median_spread_and_quartiles() -> None:
    stats = summarize([5.0, 1.0, 4.0, 2.0, 3.0], calls_per_rep=10)
    assert stats.median_ns == 3.0
    assert (stats.min_ns, stats.max_ns) == (1.0, 5.0)
    assert (stats.q1_ns, stats.q3_ns, stats.iqr_ns) == (2.0, 4.0, 2.0)
    assert stats.stdev_ns == pytest.approx(math.sqrt(2.5))
    assert stats.reps == 5
    assert stats.calls_per_rep == 10
    assert stats.samples_ns == (5.0, 1.0, 4.0, 2.0, 3.0)


def test_summarize_an_even_count_and_a_single_sample() -> None:
    assert summarize([1, 2, 3, 10], 1).median_ns == 2.5
    one = summarize([7], 3)
    assert (one.median_ns, one.q1_ns, one.q3_ns, one.iqr_ns, one.stdev_ns) == (7, 7, 7, 0, 0)


def test_summarize_rejects_no_samples_and_no_calls() -> None:
    with pytest.raises(ValueError, match="samples_ns must not be empty"):
        summarize([], 1)
    with pytest.raises(ValueError, match="calls_per_rep must be >= 1, got 0"):
        summarize([1.0], 0)


def test_calls_for_scales_to_the_target_within_bounds() -> None:
    assert calls_for(target_ns=1000, calls=10, elapsed_ns=100, max_calls=10**6) == 100
    assert calls_for(target_ns=1000, calls=10, elapsed_ns=0, max_calls=50) == 50
    assert calls_for(target_ns=10, calls=1, elapsed_ns=10**6, max_calls=50) == 1


def test_settings_require_five_repetitions() -> None:
    with pytest.raises(ValueError, match="reps"):
        Settings(reps=4, target_rep_ns=1, warmup_reps=1)


def _counting_loop() -> tuple[Loop, list[int]]:
    runs: list[int] = []

    async def loop(n: int) -> None:
        total = 0
        for i in range(n):
            total += i
        runs.append(n)

    return loop, runs


async def test_timed_disables_gc_only_while_timing() -> None:
    seen: list[bool] = []

    async def loop(n: int) -> None:
        seen.append(gc.isenabled())

    assert await timed(loop, 1) >= 0
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        await timed(loop, 1)
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_calibrate_stops_at_max_calls() -> None:
    loop, runs = _counting_loop()
    settings = Settings(reps=5, target_rep_ns=10**12, warmup_reps=1, max_calls=64)
    assert await calibrate(loop, settings) == 64
    assert max(runs) == 64
    assert runs[:4] == [1, 4, 16, 64]


async def test_measure_warms_up_then_times_each_repetition() -> None:
    loop, runs = _counting_loop()
    stats = await measure(loop, TINY)
    assert stats.reps == 5
    assert len(stats.samples_ns) == 5
    # calibration runs, then one warm-up and five timed runs of the calibrated size
    assert runs[-6:] == [stats.calls_per_rep] * 6


async def test_measure_all_interleaves_rounds_and_keeps_failures_apart() -> None:
    order: list[str] = []
    timed_calls = 0

    def tagged(name: str) -> Loop:
        async def loop(n: int) -> None:
            order.append(name)

        return loop

    async def fails_in_round_two(n: int) -> None:
        nonlocal timed_calls
        order.append("late")
        timed_calls += 1
        if timed_calls > 6:  # calibration, warm-up, rounds 1 and 2, then it fails
            raise RuntimeError("late")

    async def never_calibrates(n: int) -> None:
        raise ValueError("early")

    warmed = 0

    async def fails_warming_up(n: int) -> None:
        nonlocal warmed
        warmed += 1
        if warmed > 3:  # after calibration
            raise LookupError("warm-up")

    loops = {
        "a": tagged("a"),
        "late": fails_in_round_two,
        "early": never_calibrates,
        "warm": fails_warming_up,
    }
    outcomes = await measure_all(loops, Settings(reps=5, target_rep_ns=1, warmup_reps=1))
    assert list(outcomes) == ["a", "late", "early", "warm"]
    assert isinstance(outcomes["warm"], LookupError)
    assert warmed == 4
    a = outcomes["a"]
    assert not isinstance(a, Exception)
    assert a.reps == 5
    assert isinstance(outcomes["late"], RuntimeError)
    assert isinstance(outcomes["early"], ValueError)
    # With a 1 ns target, calibration is 3 runs; then 1 warm-up; then the rounds.
    warm = ["a"] * 4 + ["late"] * 4
    rounds = ["a", "late", "a", "late", "a", "late", "a", "a"]
    assert order == warm + rounds


async def test_measure_raises_what_the_loop_raised() -> None:
    async def broken(n: int) -> None:
        raise KeyError("gone")

    with pytest.raises(KeyError, match="gone"):
        await measure(broken, TINY)


# ---------------------------------------------------------------- the registry


def test_registry_ids_are_unique_and_baselines_exist() -> None:
    ids = [s.id for s in REGISTRY]
    assert len(ids) == len(set(ids))
    for s in REGISTRY:
        assert s.baseline is None or s.baseline in ids, s.id
        if s.source == "anchor":
            assert s.baseline in (None, runner.BARE)


def test_registry_is_grouped_with_shapes_side_by_side() -> None:
    groups = [GROUPS.index(s.group) for s in REGISTRY]
    assert groups == sorted(groups)
    ids = [s.id for s in REGISTRY]
    for ours, theirs in [
        ("middleware.passthrough5", "runner_js.passthrough5"),
        ("middleware.timeout_retry", "runner_js.timeout_retry"),
        ("kernel.run_task", "runner_js.run_task"),
        ("kernel.chain_10", "runner_js.chain_10"),
        ("limits.bulkhead", "floor.capacity_limiter"),
        ("limits.timeout", "floor.move_on_after"),
        ("durable.latency_sqlite", "dbos.latency_sqlite"),
        ("durable.throughput_sqlite", "dbos.throughput_sqlite"),
    ]:
        assert ids.index(theirs) == ids.index(ours) + 1


def test_kernel_rows_are_measured_beside_runner_shapes() -> None:
    ours = {s.label: s for s in REGISTRY if s.group == "kernel" and s.who == "ours"}
    assert set(ours) == {
        "kernel: run_task",
        "kernel: run_task + 5 middleware",
        "kernel: emit to one hook",
        "kernel: run+dispose 100 resources",
        "kernel: chain of 10 resources (run+dispose)",
        "kernel: run_task, metrics on (over metrics off)",
    }
    runner_shapes = {s.shape for s in REGISTRY if s.who == "runner-js"}
    for scenario in ours.values():
        assert scenario.setup is not None
        assert scenario.unavailable is None
    # Every Runner shape has our row beside it; metrics on/off is ours alone.
    assert runner_shapes - {"bare", "timeout_retry", "circuit_breaker"} <= {
        s.shape for s in ours.values()
    }


def test_targets_name_registered_scenarios() -> None:
    ids = {s.id for s in REGISTRY}
    for t in TARGETS:
        assert t.subject in ids
        assert t.reference is None or t.reference in ids


def test_scenario_validates_group_and_setup() -> None:
    with pytest.raises(ValueError, match="group must be one of"):
        Scenario(id="x", label="x", group="nope", who="ours", unavailable="n/a")
    with pytest.raises(ValueError, match="needs setup or unavailable"):
        Scenario(id="x", label="x", group="floor", who="ours")


def test_select_adds_baselines_and_matches_ids_or_labels() -> None:
    chosen = [s.id for s in select(REGISTRY, "circuit.py*")]
    assert chosen == ["floor.sync_bare", "circuit.pybreaker"]
    assert [s.id for s in select(REGISTRY, "Tenacity: @retry")] == [
        "floor.bare",
        "retry.tenacity",
        "failure.retry_tenacity",
    ]
    assert select(REGISTRY, None) == list(REGISTRY)
    assert select(REGISTRY, "zzz") == []
    assert matches(REGISTRY[0], "floor.*")


# ---------------------------------------------------------------- execution


@asynccontextmanager
async def _fast_loop() -> AsyncIterator[Loop]:
    loop, _ = _counting_loop()
    yield loop


async def _missing_peer() -> None:
    raise RuntimeError("no such peer")


@asynccontextmanager
async def _broken_setup() -> AsyncIterator[Loop]:
    await _missing_peer()
    yield _counting_loop()[0]


async def _no_server() -> None:
    raise Unavailable("no server here")


@asynccontextmanager
async def _unavailable_setup() -> AsyncIterator[Loop]:
    await _no_server()
    yield _counting_loop()[0]


@asynccontextmanager
async def _broken_teardown() -> AsyncIterator[Loop]:
    yield _counting_loop()[0]
    await _missing_peer()


async def _explodes(n: int) -> None:
    raise OSError("mid-run")


@asynccontextmanager
async def _broken_loop() -> AsyncIterator[Loop]:
    yield _explodes


def test_execute_records_errors_and_slots_without_stopping() -> None:
    scenarios = [
        Scenario(
            id=BARE, label="bare", group="floor", who="python", setup=_fast_loop, baseline=None
        ),
        Scenario(id="a", label="a", group="retry", who="ours", setup=_fast_loop),
        Scenario(id="b", label="b", group="retry", who="peer", setup=_broken_setup, may_fail=True),
        Scenario(id="c", label="c", group="retry", who="ours", setup=_broken_setup),
        Scenario(id="d", label="d", group="kernel", who="ours", unavailable="later"),
        Scenario(id="u", label="u", group="durable", who="ours", setup=_unavailable_setup),
        Scenario(id="e", label="e", group="retry", who="ours", setup=_broken_teardown),
        Scenario(id="f", label="f", group="retry", who="ours", setup=_broken_loop),
        *runner.SCENARIOS[:1],
    ]
    results = execute(scenarios, TINY, anchor=False)
    status = {m.scenario.id: (m.status, m.reason) for m in results.measurements}
    assert status["a"] == ("ok", None)
    assert status["b"] == ("error", "RuntimeError: no such peer")
    assert status["d"] == ("unavailable", "later")
    assert status["u"] == ("unavailable", "no server here")
    assert status[runner.BARE] == ("unavailable", "anchor disabled (--no-anchor)")
    assert status["e"] == ("error", "RuntimeError: no such peer")
    assert status["f"] == ("error", "OSError: mid-run")
    assert [m.scenario.id for m in results.fatal()] == ["c", "e", "f"]
    assert results.overhead("a") is not None
    assert results.overhead("b") is None
    assert results.overhead(BARE) is None
    assert results.value("zzz", "per_call") is None


# ---------------------------------------------------------------- targets


def _results(**medians: float | None) -> Results:
    """Results with a bare baseline of 100 ns and the given per-call medians."""
    measurements = [_measurement(BARE, 100.0, baseline=None)]
    measurements += [_measurement(name, value) for name, value in medians.items()]
    return Results(measurements=tuple(measurements))


def _measurement(name: str, median: float | None, *, baseline: str | None = BARE) -> Measurement:
    scenario = Scenario(
        id=name, label=name, group="retry", who="ours", baseline=baseline, unavailable="n/a"
    )
    if median is None:
        return Measurement(scenario=scenario, status="unavailable", reason="n/a")
    return Measurement(scenario=scenario, status="ok", stats=summarize([median] * 5, 1))


def test_a_ratio_target_passes_or_fails_on_overheads() -> None:
    target = Target(label="t", subject="ours", reference="peer", max_ratio=0.5)
    passing = evaluate(target, _results(ours=150.0, peer=300.0))
    assert (passing.value_ns, passing.reference_ns, passing.ratio) == (50.0, 200.0, 0.25)
    assert passing.passed is True
    failing = evaluate(target, _results(ours=250.0, peer=300.0))
    assert failing.ratio == 0.75
    assert failing.passed is False


def test_a_per_call_target_compares_whole_calls() -> None:
    target = Target(label="t", subject="ours", measure="per_call", reference="peer", max_ratio=1.15)
    verdict = evaluate(target, _results(ours=110.0, peer=100.0))
    assert verdict.ratio == pytest.approx(1.1)
    assert verdict.passed is True


def test_an_absolute_target_and_an_informational_one() -> None:
    absolute = Target(label="t", subject="ours", max_ns=600.0)
    assert evaluate(absolute, _results(ours=700.0)).passed is True
    assert evaluate(absolute, _results(ours=701.0)).passed is False
    info = evaluate(
        Target(label="i", subject="ours", reference="peer"), _results(ours=102, peer=104)
    )
    assert (info.ratio, info.passed, info.reason) == (0.5, None, None)


def test_a_target_without_figures_is_not_judged() -> None:
    target = Target(label="t", subject="ours", reference="peer", max_ratio=1.0)
    missing = evaluate(target, _results(ours=None, peer=300.0))
    assert (missing.passed, missing.reason) == (None, "ours: n/a")
    no_reference = evaluate(target, _results(ours=200.0, peer=None))
    assert (no_reference.value_ns, no_reference.passed) == (100.0, None)
    assert no_reference.reason == "peer: n/a"
    not_selected = evaluate(target, _results(ours=200.0))
    assert not_selected.reason == "peer not selected"
    not_positive = evaluate(target, _results(ours=200.0, peer=90.0))
    assert not_positive.passed is None
    assert not_positive.reason == "peer: overhead is not positive (-10.0 ns)"
    no_baseline = Results(measurements=(_measurement("ours", 5.0),))
    assert evaluate(target, no_baseline).reason == "ours: no overhead"


def test_evaluate_all_skips_targets_whose_subject_was_not_selected() -> None:
    targets = [Target(label="x", subject="ours"), Target(label="y", subject="other")]
    assert [v.target.label for v in evaluate_all(targets, _results(ours=1.0))] == ["x"]


def test_a_ratio_target_needs_a_reference() -> None:
    with pytest.raises(ValueError, match="max_ratio needs a reference"):
        Target(label="t", subject="ours", max_ratio=1.0)


# ---------------------------------------------------------------- report and chart


def test_micros_formats_microseconds() -> None:
    assert micros(None) == "—"
    assert micros(1234.5) == "1.234 µs"
    assert micros(-50.0, signed=True) == "-0.050 µs"
    assert micros(2_500_000.0) == "2,500.000 µs"


def test_render_spans_unmeasured_rows_and_marks_targets() -> None:
    results = _results(ours=150.0, peer=None)
    verdicts = [
        evaluate(Target(label="fast", subject="ours", max_ns=100.0), results),
        evaluate(Target(label="vs", subject="ours", reference="peer", max_ratio=1.0), results),
    ]
    text = render(results, verdicts, TINY, title="T")
    lines = text.splitlines()
    assert lines[0] == "T"
    assert any(line.startswith("retry") and line.endswith("— (n/a)") for line in lines)
    assert any("fast" in line and line.endswith("✓") for line in lines)
    assert any("vs" in line and line.endswith("— (peer: n/a)") for line in lines)


def test_chart_with_and_without_bars(tmp_path: Path) -> None:
    results = _results(ours=150.0, peer=50.0)
    assert [(label, who, value) for _, label, who, value in bars(results)] == [
        ("ours", "ours", 50.0),
        ("peer", "ours", -50.0),
    ]
    draw(results, tmp_path / "a.png", title="bars")
    draw(Results(measurements=()), tmp_path / "b.png", title="empty")
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)


# ---------------------------------------------------------------- machine and anchor


def test_cpu_model_reads_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n", encoding="utf-8")
    assert cpu_model(info) == "Test CPU 9000"
    assert cpu_model(tmp_path / "missing")


def test_package_versions_reports_missing_packages() -> None:
    versions = package_versions(("trio", "no-such-distribution-xyz"))
    assert versions["trio"]
    assert versions["no-such-distribution-xyz"] is None


def test_parse_output_reads_samples_and_errors() -> None:
    text = json.dumps(
        {
            "node": "v20.0.0",
            "runner": "5.5.0",
            "scenarios": {
                "bare": {"calls_per_rep": 10, "samples_ns": [1.0, 2.0, 3.0, 4.0, 5.0]},
                "run_task": {"error": "TypeError: boom"},
            },
        }
    )
    report = runner.parse_output(text)
    assert (report.status, report.node, report.runner) == ("ok", "v20.0.0", "5.5.0")
    assert report.stats[runner.BARE].median_ns == 3.0
    assert report.errors == {"runner_js.run_task": "TypeError: boom"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "no 'scenarios' object"),
        ('{"scenarios": {"bare": {"samples_ns": []}}}', "runner_js.bare needs samples_ns"),
        ('{"scenarios": {"bare": {"samples_ns": [1], "calls_per_rep": 1.5}}}', "calls_per_rep"),
        ('{"scenarios": {"bare": [1]}}', "runner_js.bare needs"),
    ],
)
def test_parse_output_rejects_malformed_output(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runner.parse_output(text)


def test_anchor_package_pins_runner_exactly_with_a_portable_lock() -> None:
    assert runner.pinned_version(runner.RUNNER_DIR) == "5.5.0"
    lock = json.loads((runner.RUNNER_DIR / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/@bluelibs/runner"]["version"] == "5.5.0"
    for entry in lock["packages"].values():
        resolved = entry.get("resolved", "https://registry.npmjs.org/")
        assert resolved.startswith("https://registry.npmjs.org/"), resolved


def test_anchor_is_skipped_without_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.anchors.runner.shutil.which", lambda name: None)
    report = runner.run_anchor(TINY)
    assert (report.status, report.reason) == ("skipped", "node and npm are needed on PATH")


def _fake_tools(monkeypatch: pytest.MonkeyPatch, *results: tuple[int, str, str]) -> list[Any]:
    calls: list[Any] = []
    outcomes = list(results)

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        code, out, err = outcomes.pop(0)
        return subprocess.CompletedProcess(cmd, code, out, err)

    monkeypatch.setattr("bench.anchors.runner.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr("bench.anchors.runner.subprocess.run", fake_run)
    return calls


def _anchor_dir(tmp_path: Path) -> Path:
    (tmp_path / "package.json").write_text(
        json.dumps({"dependencies": {runner.PACKAGE: "5.5.0"}}), encoding="utf-8"
    )
    return tmp_path


def test_anchor_is_skipped_when_npm_ci_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_tools(monkeypatch, (1, "", "npm ERR! network\nnpm ERR! offline"))
    report = runner.run_anchor(TINY, directory=_anchor_dir(tmp_path))
    assert report.status == "skipped"
    assert report.reason == "npm ci failed (1): npm ERR! network | npm ERR! offline"
    assert calls == [["/usr/bin/npm", "ci", "--no-audit", "--no-fund"]]


def test_anchor_reports_a_failing_or_garbled_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _anchor_dir(tmp_path)
    _fake_tools(monkeypatch, (0, "", ""), (3, "", "Error: boom"))
    failed = runner.run_anchor(TINY, directory=directory)
    assert (failed.status, failed.reason) == ("failed", "bench.js exited 3: Error: boom")
    _fake_tools(monkeypatch, (0, "", ""), (0, "garbage", ""))
    garbled = runner.run_anchor(TINY, directory=directory)
    assert garbled.status == "failed"
    assert garbled.reason is not None
    assert garbled.reason.startswith("anchor output is not JSON")


def _installed(directory: Path) -> Path:
    installed = directory / "node_modules" / runner.PACKAGE
    installed.mkdir(parents=True)
    (installed / "package.json").write_text('{"version": "5.5.0"}', encoding="utf-8")
    return directory


def _output(*keys: str) -> tuple[int, str, str]:
    sample = {"calls_per_rep": 2, "samples_ns": [10.0, 20.0, 30.0, 40.0, 50.0]}
    data = {"node": "v20", "runner": "5.5.0", "scenarios": dict.fromkeys(keys, sample)}
    return (0, json.dumps(data), "")


def test_anchor_runs_one_node_process_per_group_and_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _installed(_anchor_dir(tmp_path))
    calls = _fake_tools(monkeypatch, *(_output(*group) for group in runner.PROCESSES))
    report = runner.run_anchor(TINY, directory=directory)
    assert (report.status, report.node, report.runner) == ("ok", "v20", "5.5.0")
    assert set(report.stats) == {s.id for s in runner.SCENARIOS}
    assert [c[:5] for c in calls] == [
        ["/usr/bin/node", "--expose-gc", "bench.js", "--shapes", ",".join(group)]
        for group in runner.PROCESSES
    ]
    assert json.loads(calls[0][-1])["reps"] == TINY.reps


def test_anchor_runs_only_the_processes_of_the_chosen_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _installed(_anchor_dir(tmp_path))
    calls = _fake_tools(monkeypatch, _output("bare", "run_task"))
    report = runner.run_anchor(TINY, shapes=["run_task", "bare"], directory=directory)
    assert set(report.stats) == {"runner_js.bare", "runner_js.run_task"}
    assert [c[4] for c in calls] == ["bare,run_task"]


def test_every_anchor_shape_runs_in_exactly_one_process() -> None:
    keys = [key for group in runner.PROCESSES for key in group]
    assert sorted(keys) == sorted(s.id.removeprefix(runner.PREFIX) for s in runner.SCENARIOS)
    assert len(keys) == len(set(keys))
    script = (runner.RUNNER_DIR / "bench.js").read_text(encoding="utf-8")
    for key in keys:
        assert f"{key}:" in script


def test_anchor_reports_timeouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = _anchor_dir(tmp_path)

    def too_slow(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr("bench.anchors.runner.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr("bench.anchors.runner.subprocess.run", too_slow)
    install = runner.run_anchor(TINY, directory=directory, timeout=5)
    assert (install.status, install.reason) == ("skipped", "npm ci took longer than 5 s")
    script = runner.run_anchor(TINY, directory=_installed(directory), timeout=5)
    assert (script.status, script.reason) == ("failed", "bench.js took longer than 5 s")
