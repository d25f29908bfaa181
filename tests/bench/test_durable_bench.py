"""The durable rows of ``python -m bench``: their loops, the shared PostgreSQL cluster, and
the DBOS anchor (its venv, its script, its output), without PostgreSQL or a network."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import kernel
from bench import pg
from bench._execute import ANCHORS, execute
from bench._scenario import Unavailable
from bench._timing import Settings
from bench.anchors import dbos
from bench.report import document
from bench.scenarios import REGISTRY, durable
from kernel.durable import MemoryStore, StepRecord

TINY = Settings(reps=5, target_rep_ns=50_000, warmup_reps=1)


# ---------------------------------------------------------------- the loops


async def test_latency_runs_workflows_one_at_a_time() -> None:
    engine, task, app = durable.workflow_app(MemoryStore(), "t")
    async with kernel.run(app) as rt:
        e = rt.resource(engine)
        loop = durable.Latency(e, task)
        await loop(3)
        executions = await e.store.list_executions()
        assert [x.status for x in executions] == ["completed"] * 3
        assert [e.result_of(x)["three"] for x in executions] == [{"three": i} for i in range(3)]
        steps = await e.store.list_step_results(executions[0].id)
        assert [s.step_id for s in steps] == ["one", "two", "three"]
        assert loop.details() is None
        assert durable.Latency(e, task, about="PostgreSQL 15").details() == "PostgreSQL 15"


async def test_batch_counts_workflows_per_second_over_calls_of_one_size() -> None:
    engine, task, app = durable.workflow_app(MemoryStore(), "t")
    async with kernel.run(app) as rt:
        e = rt.resource(engine)
        batch = durable.Batch(e, task, about="on memory")
        assert batch.min_calls == durable.BATCH == 16
        assert batch.details() is None
        await batch(4)
        await batch(20)
        await batch(20)
        details = batch.details()
        assert details is not None
        assert "workflows/s (40 workflows in batches of 20, the engine running 16 at once)" in (
            details
        )
        assert details.endswith("; on memory")
        completed = await e.store.list_executions(statuses=["completed"])
        assert len(completed) == 44


def test_a_wrong_workflow_result_fails_the_loop() -> None:
    durable._check({"one": {"one": 1}, "two": {"two": 1}, "three": {"three": 1}}, 1)
    with pytest.raises(RuntimeError, match="wrong result for 2"):
        durable._check({"one": {"one": 1}}, 2)


async def test_replay_returns_recorded_results_without_running_bodies() -> None:
    replay = durable.Replay()
    assert len(replay.records) == durable.REPLAYED == 100
    await replay(250)  # two whole contexts and half of a third
    assert await durable.one(1) == {"one": 1}
    assert await durable.two(2) == {"two": 2}
    assert await durable.three(3) == {"three": 3}


async def test_replay_checks_what_it_replays() -> None:
    wrong = durable.Replay()
    wrong.records = tuple(
        StepRecord(r.execution_id, r.step_id, r.position, '{"k": -1}', r.completed_at)
        for r in wrong.records
    )
    with pytest.raises(RuntimeError, match="step step-0 replayed a wrong result"):
        await wrong(1)
    unrecorded = durable.Replay()
    unrecorded.records = ()
    with pytest.raises(AssertionError, match="a replayed step ran its body"):
        await unrecorded(1)


async def test_replay_env_never_emits() -> None:
    env = durable.Replay().env
    assert await env.emit(object(), None) is None  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="checked an event"):
        env.check_event(object(), None)  # type: ignore[arg-type]


async def test_sqlite_store_lives_in_a_temporary_directory() -> None:
    async with durable.sqlite_store() as store:
        path = Path(store.path)  # type: ignore[attr-defined]
        await store.open()
        await store.close()
        assert await trio.Path(path).exists()
    assert not await trio.Path(path.parent).exists()


# ---------------------------------------------------------------- the PostgreSQL cluster


def _fake_cluster(log: list[str]) -> pg.Cluster:
    @contextlib.contextmanager
    def cluster() -> Iterator[str]:
        log.append("start")
        try:
            yield "postgresql://fake"
        finally:
            log.append("stop")

    return cluster


async def test_one_cluster_serves_every_row_until_the_last_leaves() -> None:
    log: list[str] = []
    shared = pg.SharedCluster(factory=lambda: _fake_cluster(log), probe=lambda dsn: "15.0")
    async with shared.use() as first:
        assert (shared.running, shared.version) == (True, "15.0")
        async with shared.use() as second:
            assert first == second == "postgresql://fake"
        assert log == ["start"]
    assert log == ["start", "stop"]
    assert (shared.running, shared.version) == (False, "")
    async with shared.use():
        pass
    assert log == ["start", "stop", "start", "stop"]


class _NoPostgres:
    """What the tests' helper does without PostgreSQL: skip when entered."""

    def __enter__(self) -> str:
        pytest.skip("PostgreSQL is not installed: no initdb")

    def __exit__(self, *exc_info: object) -> None:
        raise AssertionError("never entered")


def _skipping_cluster() -> pg.Cluster:
    return _NoPostgres


async def test_a_missing_postgresql_makes_the_rows_unavailable() -> None:
    shared = pg.SharedCluster(factory=_skipping_cluster)
    with pytest.raises(Unavailable, match=r"^PostgreSQL is not installed: no initdb$"):
        async with shared.use():
            pass
    assert not shared.running


def test_the_cluster_helper_needs_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pg.tests_cluster().__name__ == "cluster"
    monkeypatch.setattr("bench.pg.importlib.util.find_spec", lambda name: None)
    with pytest.raises(Unavailable, match=r"need psycopg: pip install -e '\.\[postgres\]'"):
        pg.tests_cluster()


def test_the_cluster_helper_must_be_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tests.kernel.durable.postgres_cluster", None)
    with pytest.raises(Unavailable, match="need the tests' cluster helper"):
        pg.tests_cluster()


def test_postgres_rows_are_unavailable_without_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> pg.Cluster:
        raise Unavailable("no PostgreSQL here")

    monkeypatch.setattr(pg.CLUSTER, "factory", unavailable)
    rows = [s for s in durable.SCENARIOS if s.id.endswith("_postgres")]
    assert len(rows) == 2
    results = execute(rows, TINY, anchor=False)
    assert {(m.status, m.reason) for m in results.measurements} == {
        ("unavailable", "no PostgreSQL here")
    }
    assert results.fatal() == []


async def test_postgres_store_uses_a_schema_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    monkeypatch.setattr(pg, "CLUSTER", pg.SharedCluster(lambda: _fake_cluster(log), lambda d: ""))
    async with durable.postgres_store("bench_x") as store:
        assert store.schema == "bench_x"  # type: ignore[attr-defined]
        assert log == ["start"]
    assert log == ["start", "stop"]


# ---------------------------------------------------------------- the DBOS anchor


def test_dbos_rows_sit_beside_ours_and_run_in_their_anchor() -> None:
    ids = [s.id for s in REGISTRY]
    for shape in dbos.SHAPES:
        assert ids.index(f"dbos.{shape}") == ids.index(f"durable.{shape}") + 1
    assert {s.id.removeprefix(dbos.PREFIX) for s in dbos.SCENARIOS} == set(dbos.SHAPES)
    for s in REGISTRY:
        if s.source == "anchor":
            assert any(s.id.startswith(prefix) for prefix in ANCHORS), s.id
    script = (dbos.DBOS_DIR / "bench.py").read_text(encoding="utf-8")
    for shape in dbos.SHAPES:
        assert f'"{shape}"' in script
    assert f"BATCH = {durable.BATCH}\n" in script
    assert f"{durable.BATCH} workflows at once" in dbos.SCENARIOS[1].label


def _fake_dbos(directory: Path) -> Path:
    """A stand-in ``dbos`` package (decorators that change nothing) with its metadata."""
    package = directory / "dbos"
    package.mkdir()
    (package / "__init__.py").write_text(
        "class DBOS:\n"
        "    config = None\n"
        "    def __init__(self, config):\n"
        "        DBOS.config = config\n"
        "    @staticmethod\n"
        "    def step():\n"
        "        return lambda fn: fn\n"
        "    workflow = step\n"
        "    @staticmethod\n"
        "    def launch():\n"
        "        pass\n"
        "    destroy = launch\n",
        encoding="utf-8",
    )
    info = directory / "dbos-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dbos\nVersion: 0.0.1\n")
    return directory


def _script(*args: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(dbos.DBOS_DIR / "bench.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(path)},
    )


@pytest.mark.slow
def test_the_dbos_script_measures_its_shapes_with_our_method(tmp_path: Path) -> None:
    settings = json.dumps({"reps": 5, "target_rep_ns": 200_000, "warmup_reps": 1})
    done = _script("--settings", settings, path=_fake_dbos(tmp_path))

    assert done.returncode == 0, done.stderr
    report = dbos.parse_output(done.stdout)
    assert (report.status, report.dbos, report.errors) == ("ok", "0.0.1", {})
    assert set(report.stats) == {"dbos.latency_sqlite", "dbos.throughput_sqlite"}
    assert report.stats["dbos.throughput_sqlite"].calls_per_rep >= 16
    for stats in report.stats.values():
        assert stats.reps == 5
        assert stats.median_ns > 0
    assert json.loads(done.stdout)["settings"]["max_calls"] == 10_000_000
    unknown = _script("--shapes", "nope", path=tmp_path)
    assert (unknown.returncode, unknown.stderr.strip()) == (2, "unknown shapes: nope")


def test_dbos_parse_output_reads_samples_and_errors() -> None:
    text = json.dumps(
        {
            "dbos": "3.4.0",
            "scenarios": {
                "latency_sqlite": {"calls_per_rep": 2, "samples_ns": [1.0, 2, 3, 4, 5]},
                "throughput_sqlite": {"error": "DBOSException: boom"},
            },
        }
    )
    report = dbos.parse_output(text)
    assert (report.status, report.dbos) == ("ok", "3.4.0")
    assert report.stats["dbos.latency_sqlite"].median_ns == 3.0
    assert report.errors == {"dbos.throughput_sqlite": "DBOSException: boom"}
    assert dbos.parse_output('{"scenarios": {}}').dbos is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "no 'scenarios' object"),
        ('{"scenarios": {"latency_sqlite": {"samples_ns": []}}}', "dbos.latency_sqlite needs"),
        ('{"scenarios": {"latency_sqlite": [1]}}', "dbos.latency_sqlite needs"),
    ],
)
def test_dbos_parse_output_rejects_malformed_output(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dbos.parse_output(text)


def _fake_runs(
    monkeypatch: pytest.MonkeyPatch, *outcomes: tuple[int, str, str] | Exception
) -> list[list[str]]:
    calls: list[list[str]] = []
    left = list(outcomes)

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        outcome = left.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        code, out, err = outcome
        return subprocess.CompletedProcess(cmd, code, out, err)

    monkeypatch.setattr("bench.anchors.dbos.subprocess.run", fake_run)
    return calls


def _with_venv(directory: Path) -> Path:
    python = dbos.venv_python(directory)
    python.parent.mkdir(parents=True)
    python.touch()
    return directory


def _samples(*keys: str) -> tuple[int, str, str]:
    sample = {"calls_per_rep": 16, "samples_ns": [10.0, 20.0, 30.0, 40.0, 50.0]}
    return (0, json.dumps({"dbos": "3.4.0", "scenarios": dict.fromkeys(keys, sample)}), "")


def test_dbos_anchor_installs_in_its_own_venv_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_runs(monkeypatch, (0, "", ""), (0, "", ""), _samples("latency_sqlite"))
    logged: list[str] = []
    report = dbos.run_anchor(TINY, shapes=["latency_sqlite"], directory=tmp_path, log=logged.append)
    assert (report.status, report.dbos) == ("ok", "3.4.0")
    assert set(report.stats) == {"dbos.latency_sqlite"}
    python = str(tmp_path / ".venv" / "bin" / "python")
    assert calls[0] == [sys.executable, "-m", "venv", str(tmp_path / ".venv")]
    assert calls[1][0] == python  # pip of the anchor's venv, never the project's
    assert calls[1][-1] == f"dbos=={dbos.VERSION}"
    assert calls[2][:4] == [python, "bench.py", "--shapes", "latency_sqlite"]
    assert json.loads(calls[2][-1])["reps"] == TINY.reps
    assert logged[0].startswith("anchor dbos: python -m venv")


def test_dbos_anchor_reuses_an_installed_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _with_venv(tmp_path)
    calls = _fake_runs(monkeypatch, (0, "3.4.0\n", ""), _samples(*dbos.SHAPES))
    report = dbos.run_anchor(TINY, directory=directory)
    assert set(report.stats) == {"dbos.latency_sqlite", "dbos.throughput_sqlite"}
    assert calls[0][1] == "-c"
    assert calls[1][3] == "latency_sqlite,throughput_sqlite"


def test_dbos_anchor_is_skipped_when_the_install_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runs(monkeypatch, (1, "", "Error: no module named venv"))
    venv = dbos.run_anchor(TINY, directory=tmp_path)
    assert (venv.status, venv.reason) == (
        "skipped",
        "python -m venv failed (1): Error: no module named venv",
    )
    directory = _with_venv(tmp_path)
    _fake_runs(monkeypatch, (1, "", "No module named dbos"), (0, "", ""), (1, "", "ERROR: offline"))
    pip = dbos.run_anchor(TINY, directory=directory)
    assert (pip.status, pip.reason) == ("skipped", "pip install failed (1): ERROR: offline")
    slow = subprocess.TimeoutExpired("pip", 5)
    _fake_runs(monkeypatch, slow, (0, "", ""), slow)
    late = dbos.run_anchor(TINY, directory=directory, timeout=5)
    assert (late.status, late.reason) == ("skipped", "pip install took longer than 5 s")


def test_dbos_anchor_reports_a_failing_slow_or_garbled_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _with_venv(tmp_path)
    installed = (0, "3.4.0", "")
    _fake_runs(monkeypatch, installed, (1, "", "Traceback\nDBOSException: boom"))
    failed = dbos.run_anchor(TINY, directory=directory)
    assert (failed.status, failed.reason) == (
        "failed",
        "bench.py exited 1: Traceback | DBOSException: boom",
    )
    _fake_runs(monkeypatch, installed, subprocess.TimeoutExpired("bench.py", 9))
    slow = dbos.run_anchor(TINY, directory=directory, timeout=9)
    assert (slow.status, slow.reason) == ("failed", "bench.py took longer than 9 s")
    _fake_runs(monkeypatch, installed, (0, "garbage", ""))
    garbled = dbos.run_anchor(TINY, directory=directory)
    assert garbled.status == "failed"
    assert garbled.reason is not None
    assert garbled.reason.startswith("dbos anchor output is not JSON")


def test_a_skipped_dbos_anchor_leaves_its_rows_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skipped = dbos.DbosReport(status="skipped", reason="pip install failed (1): offline")
    monkeypatch.setattr("bench.anchors.dbos.run_anchor", lambda *a, **k: skipped)
    results = execute(dbos.SCENARIOS, TINY, anchor=True)
    assert {(m.status, m.reason) for m in results.measurements} == {
        ("unavailable", "anchor skipped: pip install failed (1): offline")
    }
    assert results.fatal() == []
    data = _document(results)
    assert data["dbos_anchor"] == {"status": "skipped", "reason": skipped.reason}
    assert data["anchor"] == {"status": "not selected", "reason": None}
    assert data["versions"]["dbos"] is None


def test_a_dbos_anchor_run_fills_its_rows_and_the_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[Any] = []

    def fake(settings: Settings, **kwargs: Any) -> dbos.DbosReport:
        asked.append(sorted(kwargs["shapes"]))
        return dbos.parse_output(_samples("latency_sqlite")[1])

    monkeypatch.setattr("bench.anchors.dbos.run_anchor", fake)
    results = execute(dbos.SCENARIOS, TINY, anchor=True)
    assert asked == [["latency_sqlite", "throughput_sqlite"]]
    status = {m.scenario.id: (m.status, m.reason) for m in results.measurements}
    assert status == {
        "dbos.latency_sqlite": ("ok", None),
        "dbos.throughput_sqlite": ("error", "missing from the anchor's output"),
    }
    data = _document(results)
    assert data["dbos_anchor"] == {"status": "ok", "reason": None}
    assert data["versions"]["dbos"] == "3.4.0"
    disabled = _document(execute(dbos.SCENARIOS, TINY, anchor=False), anchor_enabled=False)
    assert disabled["dbos_anchor"] == {"status": "disabled", "reason": "--no-anchor"}


def _document(results: Any, *, anchor_enabled: bool = True) -> dict[str, Any]:
    return document(
        results,
        [],
        TINY,
        mode="quick",
        anchor_enabled=anchor_enabled,
        machine={},
        versions={},
        created="now",
    )


@pytest.mark.slow
def test_the_real_dbos_anchor_when_its_venv_is_installed() -> None:
    if dbos.installed_version(dbos.DBOS_DIR) != dbos.VERSION:
        pytest.skip("the DBOS venv is not installed (python -m bench --only 'dbos*' makes it)")
    report = dbos.run_anchor(Settings(reps=5, target_rep_ns=1, warmup_reps=1))
    assert (report.status, report.reason, report.errors) == ("ok", None, {})
    assert report.dbos == dbos.VERSION
    assert set(report.stats) == {s.id for s in dbos.SCENARIOS}
    assert report.stats["dbos.throughput_sqlite"].calls_per_rep == 16
