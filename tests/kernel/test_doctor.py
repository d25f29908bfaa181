from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import kernel
import kernel.lanes
from kernel import MissingDependencyError, _doctor
from kernel._cli import main
from kernel._doctor import (
    Row,
    diagnose,
    installed_from_package,
    python_row,
    render_json,
    render_text,
)
from tests.kernel import doctor_apps as apps

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.kernel.doctor_apps:{}"
CHECKS = [
    "graph",
    "python",
    "installed",
    "external_io.resilience",
    "external_io.health",
    "shutdown.signals",
    "shutdown.drain",
    "logs.json",
    "logs.redaction",
    "metrics",
    "tracing",
    "error_tracking",
    "exposure.auth",
    "exposure.allow_lists",
    "exposure.body_limit",
    "lanes.secret",
    "lanes.claim_idle",
    "lanes.maxlen",
]
NO_EXPOSURE = dict.fromkeys(
    ("exposure.auth", "exposure.allow_lists", "exposure.body_limit"),
    ("n/a", "no HTTP exposure registered", None),
)
NO_LANE = dict.fromkeys(
    ("lanes.secret", "lanes.claim_idle", "lanes.maxlen"),
    ("n/a", "no event lane registered", None),
)
WRAP = "wrap the app in kernel.Service(...)"


def table(rows: list[Row]) -> dict[str, tuple[str, str, str | None]]:
    assert len({row.check for row in rows}) == len(rows)
    return {row.check: (row.status, row.detail, row.remediation) for row in rows}


def statuses(rows: list[Row]) -> dict[str, str]:
    return {row.check: row.status for row in rows}


def python() -> str:
    return "Python " + ".".join(map(str, sys.version_info[:3]))


def test_the_good_service_passes_every_check() -> None:
    rows = diagnose(apps.good)
    assert [row.check for row in rows] == CHECKS
    assert table(rows) == {
        "graph": ("pass", "app 'shop' is valid: 4 task(s), 5 resource(s)", None),
        "python": ("pass", python(), None),
        "installed": ("n/a", "checked with --prod", None),
        "external_io.resilience": (
            "pass",
            "2 task(s) using external I/O have a timeout and a retry or breaker",
            None,
        ),
        "external_io.health": ("pass", "2 external_io resource(s) have a health check", None),
        "shutdown.signals": ("pass", "SIGTERM and SIGINT start a graceful shutdown", None),
        "shutdown.drain": ("pass", "drain_timeout=30 s", None),
        "logs.json": ("pass", 'format="json"', None),
        "logs.redaction": (
            "pass",
            "on; kernel tracebacks carry no locals; no handler prints any",
            None,
        ),
        "metrics": ("pass", "on", None),
        "tracing": ("pass", "service 'shop', exporter otlp", None),
        "error_tracking": ("n/a", "checked with --prod", None),
        **NO_EXPOSURE,
        **NO_LANE,
    }


def test_the_bad_service_fails_every_check_it_can() -> None:
    rows = diagnose(apps.bad)
    assert [row.check for row in rows] == CHECKS
    found = table(rows)
    assert statuses(rows) == {
        "graph": "pass",
        "python": "pass",
        "installed": "n/a",
        **dict.fromkeys(CHECKS[3:11], "fail"),
        **dict.fromkeys(CHECKS[11:], "n/a"),
    }
    # till.audit's optional dependency is not registered: it uses no external I/O.
    assert found["external_io.resilience"] == (
        "fail",
        "till.charge (uses till.db; missing a timeout); "
        "till.refund (uses till.api; missing a retry or circuit breaker); "
        "till.status (uses till.db; missing a timeout and a retry or circuit breaker)",
        "give these tasks middleware=[mw.timeout(...), mw.retry(...) or "
        "mw.circuit_breaker(...)], or put them in kernel.Service(middleware=...)",
    )
    assert found["external_io.health"] == (
        "fail",
        "no health check: till.db",
        "declare kernel.resource(..., health=check) on each, check being an async function "
        "of the resource value",
    )
    assert found["shutdown.signals"][1:] == (
        "shutdown_signals=False: SIGTERM kills the process without draining",
        "set kernel.Service(shutdown_signals=True), or run it with kernel.main(...)",
    )
    assert found["shutdown.drain"][1].startswith("drain_timeout=0: task calls in flight")
    assert found["logs.json"][1:] == ("format='pretty'", 'set LogConfig(format="json")')
    assert found["logs.redaction"][1:] == (
        "off: secrets and card numbers reach the sinks",
        "set LogConfig(redact=True) or a kernel.Redaction(...)",
    )
    assert found["metrics"][1:] == ("off", "pass metrics=True (or a registry) to kernel.Service")
    assert found["tracing"][1:] == (
        "service 'till': spans are exported nowhere (exporter=None)",
        'set TracingConfig(exporter="otlp", endpoint=...) or another exporter',
    )


def test_a_service_without_log_config_with_a_registry_and_an_exporter_instance() -> None:
    found = table(diagnose(apps.unlogged))
    json_logs = 'pass log=kernel.LogConfig(format="json") to kernel.Service'
    assert found["logs.json"] == (
        "fail",
        "no log config: loguru's default text handler",
        json_logs,
    )
    assert found["logs.redaction"] == (
        "fail",
        "no log config: records of your own loggers are not redacted, and loguru's default "
        "handler prints the locals in their tracebacks",
        json_logs + " (it redacts by default)",
    )
    assert found["metrics"] == ("pass", "on", None)
    assert found["tracing"] == ("pass", "service 'shop', exporter InMemorySpanExporter", None)
    # Without the app-level breaker, orders.charge has a timeout only.
    assert found["external_io.resilience"][:2] == (
        "fail",
        "orders.charge (uses payments; missing a retry or circuit breaker)",
    )


def test_a_service_without_observability_options() -> None:
    found = table(diagnose(apps.plain))
    assert found["metrics"] == (
        "fail",
        "off",
        "pass metrics=True (or a registry) to kernel.Service",
    )
    assert found["tracing"] == (
        "fail",
        "not configured",
        'pass tracing=kernel.TracingConfig(service_name=..., exporter="otlp")',
    )
    assert found["logs.json"][0] == found["logs.redaction"][0] == "fail"


def test_a_bare_app_is_judged_with_service_defaults_and_fails_observability() -> None:
    found = table(diagnose(apps.good_app))
    assert found["shutdown.signals"][0] == found["shutdown.drain"][0] == "pass"
    assert found["shutdown.drain"][1] == "drain_timeout=30 s"
    assert {
        check: found[check] for check in ("logs.json", "logs.redaction", "metrics", "tracing")
    } == {
        "logs.json": ("fail", "a bare App has no log config", WRAP),
        "logs.redaction": ("fail", "a bare App has no log config", WRAP),
        "metrics": ("fail", "a bare App has no metrics option", WRAP),
        "tracing": ("fail", "a bare App has no tracing config", WRAP),
    }


def test_external_io_rows_are_not_applicable_without_external_io() -> None:
    found = table(diagnose(apps.local_app))
    assert found["external_io.resilience"] == (
        "n/a",
        "no task depends on a resource tagged kernel.tags.external_io",
        None,
    )
    assert found["external_io.health"] == (
        "n/a",
        "no resource is tagged kernel.tags.external_io",
        None,
    )


def test_error_tracking_is_checked_with_prod() -> None:
    def row(target: object) -> tuple[str, str, str | None]:
        return table(diagnose(target, prod=True))["error_tracking"]  # type: ignore[arg-type]

    assert row(apps.good) == ("pass", "Sentry, environment 'production', release '1.4.2'", None)
    assert row(apps.tracked) == ("pass", "Sentry, environment default, release default", None)
    assert row(apps.good_app) == ("fail", "a bare App has no error tracking", WRAP)
    assert row(apps.plain) == (
        "fail",
        "not configured: unexpected failures reach no one",
        "pass sentry=kernel.SentryConfig(dsn=..., environment=..., release=...) to kernel.Service",
    )
    # The config follows the log config's policy: off there, off here.
    assert row(apps.tracked_unredacted) == (
        "fail",
        "redaction off: secrets and card numbers are sent",
        "set SentryConfig(redact=True) or a kernel.Redaction(...)",
    )
    assert row(apps.tracked_leaky)[:2] == (
        "fail",
        "the redaction policy lets a card number through",
    )


def test_error_tracking_fails_without_sentry_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _doctor.importlib.util.find_spec
    monkeypatch.setattr(
        _doctor.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "sentry_sdk" else real(name, *args),
    )
    found = table(diagnose(apps.good, prod=True))["error_tracking"]
    assert found == ("fail", "sentry-sdk is not installed", "pip install 'trio-runner[sentry]'")


def test_an_invalid_graph_gives_one_failed_row() -> None:
    rows = diagnose(apps.invalid_app)
    assert len(rows) == 1
    (row,) = rows
    assert (row.check, row.status) == ("graph", "fail")
    assert row.detail.startswith("MissingDependencyError: 'needs.db' depends on 'db'")
    assert (
        row.remediation == "fix the definitions; `trio-runner graph TARGET` validates the app alone"
    )
    assert row == _doctor.invalid_graph_row(MissingDependencyError("needs.db", "db", "db"))


def test_exposure_rows_pass_for_an_exposure_configured_by_the_book() -> None:
    found = table(diagnose(apps.exposed_app))
    # The task carrying the tag is not an exposure.
    assert {check: found[check] for check in NO_EXPOSURE} == {
        "exposure.auth": ("pass", "auth configured: http", None),
        "exposure.allow_lists": (
            "pass",
            "every exposure lists what it serves, without a bare '*'",
            None,
        ),
        "exposure.body_limit": ("pass", "every exposure has a body limit <= 10 MiB", None),
    }


def test_exposure_rows_name_each_problem() -> None:
    found = table(diagnose(apps.open_app))
    assert {check: found[check] for check in NO_EXPOSURE} == {
        "exposure.auth": (
            "fail",
            "anonymous exposure (no auth): http",
            "configure auth= on every exposure; never expose tasks anonymously",
        ),
        "exposure.allow_lists": (
            "fail",
            "http: allow_tasks has a bare '*'; admin: allow_events has a bare '*'; "
            "idle: allow_tasks and allow_events are both empty",
            "list the task and event ids callable remotely (patterns like 'api.public.*')",
        ),
        "exposure.body_limit": (
            "fail",
            "http: body_limit=10485761 bytes is over 10 MiB; admin: no body_limit; "
            "gateway: body_limit=0 bytes is not positive",
            "set body_limit between 1 and 10485760 bytes (10 MiB)",
        ),
    }


@pytest.mark.parametrize(
    ("version", "status"),
    [((3, 10, 14), "fail"), ((3, 11, 0), "pass"), ((3, 13, 1), "pass"), ((4, 0, 0), "pass")],
)
def test_python_row(version: tuple[int, ...], status: str) -> None:
    row = python_row(version)
    assert (row.check, row.status) == ("python", status)
    shown = "Python " + ".".join(map(str, version))
    if status == "pass":
        assert (row.detail, row.remediation) == (shown, None)
    else:
        assert (row.detail, row.remediation) == (
            f"{shown}; trio-runner needs 3.11 or newer",
            "run on Python >= 3.11",
        )


def package(root: Path, *, pyproject: bool = False) -> Path:
    (root / "kernel").mkdir(parents=True)
    if pyproject:
        (root / "pyproject.toml").write_text("[project]\n")
    return root / "kernel"


def test_installed_from_package(tmp_path: Path) -> None:
    venv = tmp_path / "venv" / "lib" / "python3.11"
    assert installed_from_package(package(venv / "site-packages"))
    assert installed_from_package(package(tmp_path / "usr" / "lib" / "python3" / "dist-packages"))
    # A source checkout, even one inside a directory named site-packages.
    assert not installed_from_package(package(tmp_path / "src"))
    assert not installed_from_package(package(tmp_path / "site-packages" / "co", pyproject=True))
    assert not installed_from_package(package(tmp_path / "plain", pyproject=True))
    # The tests run from this checkout (an editable install).
    assert not installed_from_package(_doctor.KERNEL_DIR)


def test_installed_row_with_prod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = package(tmp_path / "site-packages")
    monkeypatch.setattr(_doctor, "KERNEL_DIR", installed)
    assert table(diagnose(apps.good, prod=True))["installed"] == (
        "pass",
        f"kernel is imported from {installed}",
        None,
    )
    checkout = package(tmp_path / "checkout", pyproject=True)
    monkeypatch.setattr(_doctor, "KERNEL_DIR", checkout)
    assert table(diagnose(apps.good, prod=True))["installed"] == (
        "fail",
        f"kernel is imported from a source checkout: {checkout}",
        "install a built wheel (pip install trio-runner-<version>.whl) and run from it",
    )
    assert table(diagnose(apps.good))["installed"][0] == "n/a"


def test_render_text_aligns_and_counts() -> None:
    rows = [
        Row("graph", "pass", "fine"),
        Row("shutdown.drain", "fail", "drain_timeout=0", "set it"),
        Row("installed", "n/a", "checked with --prod"),
    ]
    assert render_text(rows) == (
        "\N{CHECK MARK}  graph           fine\n"
        "\N{BALLOT X}  shutdown.drain  drain_timeout=0\n"
        "                   fix: set it\n"
        "\N{EN DASH}  installed       checked with --prod\n"
        "1 passed, 1 failed, 1 not applicable"
    )
    assert render_text(rows, ascii=True) == (
        "ok  graph           fine\n"
        "XX  shutdown.drain  drain_timeout=0\n"
        "                    fix: set it\n"
        "--  installed       checked with --prod\n"
        "1 passed, 1 failed, 1 not applicable"
    )


def test_render_json() -> None:
    rows = [Row("graph", "pass", "fine"), Row("metrics", "fail", "off", "turn it on")]
    assert json.loads(render_json(rows)) == [
        {"check": "graph", "status": "pass", "detail": "fine", "remediation": None},
        {"check": "metrics", "status": "fail", "detail": "off", "remediation": "turn it on"},
    ]


# --- the command line ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _from_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets are ``tests.kernel.doctor_apps:...``, importable from the repository root."""
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", ["good", "bad", "good_app", "open_app"])
def test_doctor_prints_the_table(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", TARGET.format(name)]) == 0
    out, err = capsys.readouterr()
    assert out == render_text(diagnose(getattr(apps, name))) + "\n"
    assert err == ""


def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", TARGET.format("bad"), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == json.loads(render_json(diagnose(apps.bad)))
    assert [item["check"] for item in listed] == CHECKS
    assert {item["status"] for item in listed} == {"pass", "fail", "n/a"}
    assert all((item["remediation"] is None) == (item["status"] != "fail") for item in listed)


@pytest.mark.parametrize(
    ("name", "strict", "code"),
    [
        ("good", False, 0),
        ("good", True, 0),
        ("bad", False, 0),
        ("bad", True, 1),
        ("invalid_app", False, 1),
        ("invalid_app", True, 1),
    ],
)
def test_doctor_exit_codes(
    name: str, strict: bool, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["doctor", TARGET.format(name), *(["--strict"] if strict else [])]
    assert main(argv) == code
    assert capsys.readouterr().err == ""


def test_doctor_prod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_doctor, "KERNEL_DIR", package(tmp_path / "site-packages"))
    assert main(["doctor", TARGET.format("good"), "--prod", "--strict"]) == 0
    assert "\N{CHECK MARK}  installed " in capsys.readouterr().out
    monkeypatch.setattr(_doctor, "KERNEL_DIR", package(tmp_path / "src", pyproject=True))
    assert main(["doctor", TARGET.format("good"), "--prod", "--strict"]) == 1
    assert "\N{BALLOT X}  installed " in capsys.readouterr().out


def test_doctor_on_an_invalid_graph_prints_the_graph_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor", TARGET.format("invalid_app"), "--format", "json"]) == 1
    (item,) = json.loads(capsys.readouterr().out)
    assert (item["check"], item["status"]) == ("graph", "fail")
    assert item["detail"].startswith("MissingDependencyError: ")


@pytest.fixture
def broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module whose import raises a ValueError (a Service option out of range)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    source = "import kernel\nservice = kernel.Service(app=kernel.App('x'), drain_timeout=-1)\n"
    (tmp_path / "doctor_broken.py").write_text(textwrap.dedent(source))
    yield "doctor_broken"
    sys.modules.pop("doctor_broken", None)


def test_doctor_on_a_target_that_fails_to_define_exits_1(
    broken_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", f"{broken_module}:service"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "\N{BALLOT X}  graph  ValueError: Service: drain_timeout must be >= 0, got -1\n"
    )
    assert out.endswith("0 passed, 1 failed, 0 not applicable\n")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "TARGET must be module:attribute, got 'no_colon'"),
        (
            "tests.kernel.doctor_apps:ExposureConfig",
            "'tests.kernel.doctor_apps:ExposureConfig' is a type, not a kernel.App or "
            "kernel.Service",
        ),
        (
            "tests.kernel.doctor_apps:nothing",
            "'tests.kernel.doctor_apps:nothing': no attribute 'nothing'",
        ),
    ],
)
def test_doctor_on_a_bad_target_exits_2(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", target, "--strict"]) == 2
    assert capsys.readouterr() == ("", f"trio-runner: {message}\n")


def test_graph_still_takes_apps_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", TARGET.format("good")]) == 2
    assert "not a kernel.App\n" in capsys.readouterr().err
    assert main(["graph", TARGET.format("good_app")]) == 0


def test_doctor_falls_back_to_ascii_symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, encoding="ascii"))
    assert main(["doctor", TARGET.format("bad")]) == 0
    sys.stdout.flush()
    printed = buffer.getvalue().decode("ascii")
    assert printed == render_text(diagnose(apps.bad), ascii=True) + "\n"
    assert printed.startswith("ok  graph ")


def test_doctor_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "doctor" in capsys.readouterr().out
    assert main(["doctor", "--help"]) == 0
    usage = capsys.readouterr().out
    assert "[--prod] [--strict] [--format {text,json}]" in usage
    assert main(["doctor", "m:app", "--format", "mermaid"]) == 2
    assert "invalid choice: 'mermaid'" in capsys.readouterr().err


@pytest.mark.slow
def test_doctor_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kernel._cli", "doctor", TARGET.format("bad"), "--strict"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.splitlines()[-1] == "2 passed, 8 failed, 8 not applicable"
    assert "\N{BALLOT X}  external_io.resilience  till.charge " in done.stdout


def test_an_anonymous_exposure_serving_the_console_is_called_out() -> None:
    exposure = kernel.exposure.http(
        "http", allow_anonymous=True, allow_tasks=("a.*",), console=True
    )
    found = table(diagnose(kernel.App("console", register=[exposure])))
    assert found["exposure.auth"] == (
        "fail",
        "anonymous exposure (no auth): http (serves the operator console to anyone)",
        "configure auth= on every exposure; never expose tasks anonymously",
    )
    guarded = kernel.exposure.http(
        "http", auth=kernel.exposure.BearerAuth(tokens=["t"]), allow_tasks=("a.*",), console=True
    )
    assert table(diagnose(kernel.App("console", register=[guarded])))["exposure.auth"][0] == "pass"


LANE_CHECKS = list(NO_LANE)


def test_lane_rows_pass_for_lanes_configured_by_the_book() -> None:
    found = table(diagnose(apps.laned_app, prod=True))
    assert {check: found[check] for check in LANE_CHECKS} == {
        # audit.lane retries after its claim_idle, but only produces: nothing to judge.
        "lanes.secret": ("pass", "envelopes signed: orders.lane, audit.lane", None),
        "lanes.claim_idle": ("pass", "every consuming lane retries within claim_idle", None),
        "lanes.maxlen": ("pass", "every lane's stream is capped, at >= 1000 entries", None),
    }
    assert table(diagnose(apps.laned_app))["lanes.secret"] == ("n/a", "checked with --prod", None)


def test_lane_rows_name_each_problem() -> None:
    found = table(diagnose(apps.loose_app, prod=True))
    assert {check: found[check] for check in LANE_CHECKS} == {
        # The memory lanes stay in their process: unsigned is fine there.
        "lanes.secret": (
            "fail",
            "unsigned envelopes (no secret): loose.lane; anyone able to write to the stream "
            "can make their hooks run",
            "give every lane secret=... (at least 16 bytes, the same in producers and "
            "consumers, from a kernel.config.Secret setting)",
        ),
        # loose.lane waits 1, 4, then 8 s (capped); small.lane 30 s, as long as claim_idle.
        "lanes.claim_idle": (
            "fail",
            "loose.lane: retries wait up to 8 s, claim_idle=5 s; small.lane: retries wait up "
            "to 30 s, claim_idle=30 s: another consumer takes the entry before its retry is "
            "due (the delay becomes claim_idle)",
            "keep retry_delay (and max_retry_delay, with retry_backoff) below claim_idle, "
            "or raise claim_idle",
        ),
        "lanes.maxlen": (
            "fail",
            "loose.lane: maxlen=None, the stream grows without bound; small.lane: "
            "maxlen=100 trims undelivered entries after a short burst; capped.lane: "
            "maxlen=2000 <= max_pending=2000, entries are trimmed before the lane turns "
            "degraded",
            "set maxlen to at least 1000 and above max_pending: the most entries a consumer "
            "outage may leave in the stream",
        ),
    }


def test_lane_rows_of_memory_lanes_alone_and_of_one_attempt() -> None:
    memory_only = kernel.App(
        "memory_only",
        register=[
            apps.lane_event,
            kernel.lanes.memory(
                "once.lane",
                events=apps.lane_event,
                max_attempts=1,
                retry_delay=60.0,
                claim_idle=1.0,
            ),
        ],
    )
    found = table(diagnose(memory_only, prod=True))
    assert found["lanes.secret"] == ("n/a", "no Redis lane registered", None)
    # One attempt: no retry ever waits.
    assert found["lanes.claim_idle"][0] == "pass"
    producer_only = kernel.App(
        "producer_only", register=[apps.audit_entry, apps.lane_store, apps.producer_lane]
    )
    assert table(diagnose(producer_only))["lanes.claim_idle"] == (
        "n/a",
        "no lane consumes here",
        None,
    )
