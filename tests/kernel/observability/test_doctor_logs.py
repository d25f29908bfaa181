"""The doctor's ``logs.redaction`` row checks what it claims: the kernel's records, redacted
with the service's policy, show no secret and no frame, and no loguru handler prints locals."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from loguru import logger

from kernel import Redaction
from kernel._doctor import Row, diagnose
from kernel.observability import LogConfig, _audit, _handlers
from kernel.observability._audit import Problem, log_problems
from kernel.observability._handlers import HandlerInfo
from tests.kernel import doctor_apps as apps

ROOT = Path(__file__).resolve().parents[3]
PASS = "on; kernel tracebacks carry no locals; no handler prints any"
DIAGNOSE_FIX = "add your loguru handlers with diagnose=False"
OFF = Problem(
    "off: secrets and card numbers reach the sinks",
    "set LogConfig(redact=True) or a kernel.Redaction(...)",
)


def row(log: LogConfig | None) -> Row:
    (found,) = [
        r for r in diagnose(attrs.evolve(apps.good, log=log)) if r.check == "logs.redaction"
    ]
    return found


@pytest.fixture
def diagnosing_handler() -> Iterator[int]:
    """A handler added with loguru's defaults: ``diagnose=True``."""
    handler_id = logger.add(io.StringIO())
    yield handler_id
    logger.remove(handler_id)


def locals_problem(handler_id: int, whose: str) -> Problem:
    return Problem(
        f"loguru handler {handler_id} (<_io.StringIO object at "
        f"{_sink_address(handler_id)}>) has diagnose=True: it prints the local variables in "
        f"the tracebacks {whose}, unredacted",
        DIAGNOSE_FIX,
    )


def _sink_address(handler_id: int) -> str:
    found = _handlers.handlers()
    assert found is not None
    (sink,) = [handler.sink for handler in found if handler.id == handler_id]
    return sink.rsplit(" at ", 1)[1].rstrip(">")


def test_the_default_policy_and_no_handler_printing_locals_pass() -> None:
    assert log_problems(LogConfig(format="json")) == []
    assert row(LogConfig(format="json")) == Row("logs.redaction", "pass", PASS)


def test_a_handler_with_diagnose_fails_the_row(diagnosing_handler: int) -> None:
    problem = locals_problem(diagnosing_handler, "of your own and mw.log()'s records")
    assert log_problems(LogConfig()) == [problem]
    assert row(LogConfig(format="json")) == Row(
        "logs.redaction", "fail", problem.detail, DIAGNOSE_FIX
    )


@pytest.mark.parametrize(("default_id", "counted"), [(0, False), (None, True)])
def test_loguru_default_handler_does_not_count_it_is_removed_at_install(
    monkeypatch: pytest.MonkeyPatch, default_id: int | None, counted: bool
) -> None:
    found = [HandlerInfo(0, "<stderr>", diagnose=True), HandlerInfo(3, "app.log", diagnose=False)]
    monkeypatch.setattr(_audit, "handlers", lambda: found)
    monkeypatch.setattr(_audit, "default_handler_id", lambda: default_id)
    problems = log_problems(LogConfig())
    assert [p.detail.split(" has ")[0] for p in problems] == (
        ["loguru handler 0 (<stderr>)"] if counted else []
    )


def test_with_redaction_off_a_diagnose_handler_shows_kernel_records_too(
    diagnosing_handler: int,
) -> None:
    assert log_problems(LogConfig(redact=False)) == [
        OFF,
        locals_problem(diagnosing_handler, "of every record"),
    ]
    found = row(LogConfig(redact=False))
    assert found.status == "fail"
    assert found.remediation == f"{OFF.fix}; {DIAGNOSE_FIX}"


@pytest.mark.parametrize(
    ("policy", "leaked"),
    [
        (Redaction(keys=("pin",)), "a value under a sensitive key"),
        (Redaction(cards=False), "a card number"),
        (Redaction(url_credentials=False), "the password of a URL"),
        (
            Redaction(keys=(), cards=False),
            "a value under a sensitive key and a card number",
        ),
    ],
)
def test_a_policy_that_lets_a_probe_secret_through_fails(policy: Redaction, leaked: str) -> None:
    (problem,) = log_problems(LogConfig(redact=policy))
    assert problem.detail == f"the redaction policy lets {leaked} through"
    assert problem.fix.startswith("keep the default keys")


def test_the_probe_finds_frames_left_on_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the kernel did before issue 20: message and extra redacted, live exception kept.
    def message_and_extra_only(record: Any, policy: Redaction) -> None:
        record["message"] = policy.redact_text(record["message"])
        record["extra"] = policy.redact(record["extra"])

    monkeypatch.setattr(_audit, "redact_record", message_and_extra_only)
    (problem,) = log_problems(LogConfig())
    assert problem.detail == (
        "the redaction policy lets a value under a sensitive key and a card number and the "
        "password of a URL through"
    )


def test_handlers_that_cannot_be_inspected_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_audit, "handlers", lambda: None)
    assert log_problems(LogConfig()) == [
        Problem(
            "loguru's handlers could not be inspected (an unknown loguru version)",
            "check by hand that every loguru handler is added with diagnose=False",
        )
    ]


@pytest.mark.parametrize(("handler", "status"), [("diagnose", "fail"), ("plain", "pass")])
def test_the_doctor_sees_the_handlers_a_target_module_adds(handler: str, status: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kernel._cli",
            "doctor",
            "tests.kernel.observability.doctor_targets:service",
            "--format",
            "json",
        ],
        cwd=ROOT,
        env={**os.environ, "DOCTOR_TARGET_HANDLER": handler},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (found,) = [r for r in json.loads(done.stdout) if r["check"] == "logs.redaction"]
    assert found["status"] == status
    if status == "fail":
        assert found["detail"].startswith("loguru handler 1 (<stderr>) has diagnose=True")


def test_kernel_records_pass_the_probe_with_a_users_policy_that_keeps_the_rules() -> None:
    policy = Redaction(extra_keys=("pin",), emails=True)
    assert log_problems(LogConfig(redact=policy)) == []
