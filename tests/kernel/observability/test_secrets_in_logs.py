"""No secret reaches any sink through a record the kernel makes, on every path where it logs
a failure (issue 20): what a user sees on stderr and in each of their sinks, in a real process.

`secret_paths` runs every path three times over — with nothing configured (loguru's own
handler, ``diagnose=True``, ``backtrace=True``), with JSON logs and with pretty logs (plus
four sinks of the user's own) — and each test searches one path's output, in every sink, for
the card number, the password, the URL's password and the exposure's token; and checks that
the failure was logged there, with its traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel.observability.secret_paths import PATHS, SECRETS, SINKS

ROOT = Path(__file__).resolve().parents[3]
MODES = ("default", "json", "pretty")
#: What each path's failure logs, in every sink (besides its traceback).
EVIDENCE = {
    "task": ("task failed: card [REDACTED] declined", "PaymentDeclined"),
    "hook": ("task failed: receipt mail declined", "in mail_receipt"),
    "resource_init": ("resource failed to initialise: gateway login declined",),
    "resource_dispose": ("resource failed to dispose: logout declined",),
    "supervised": ("supervised task 'poll' crashed (attempt 1)", "giving up"),
    "exposure_500": ("POST /__runner/task/api.pay -> 500: PaymentDeclined",),
    "durable": ("durable emit of 'pay.receipt' failed", "failed: PaymentDeclined: capture"),
    "remote": ("RefundRefused", "RemoteError", "refund of card [REDACTED] refused"),
}
TRACEBACK = "Traceback (most recent call last)"

Outputs = dict[str, dict[str, dict[str, str]]]  # mode -> path -> sink -> text


def sections(stderr: str) -> dict[str, str]:
    """stderr cut at the program's ``=== <path>`` lines."""
    parts = re.split(r"^=== (\w+)\n", stderr, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """Every sink's text, per mode and path: the three runs go in parallel."""
    runs = {}
    for mode in MODES:
        out = tmp_path_factory.mktemp(mode)
        command = [sys.executable, "-m", "tests.kernel.observability.secret_paths", mode, out]
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        runs[mode] = (out, process)
    found: Outputs = {}
    for mode, (out, process) in runs.items():
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        by_path = sections(stderr)
        assert list(by_path) == [*PATHS, "done"]
        found[mode] = {
            path: {
                "stderr": by_path[path],
                **{
                    sink: (out / f"{path}.{sink}.log").read_text()
                    for sink in SINKS
                    if mode != "default"
                },
            }
            for path in PATHS
        }
        found[mode]["done"] = {"stderr": by_path["done"]}
    return found


@pytest.mark.parametrize("path", list(EVIDENCE))
def test_no_secret_reaches_any_sink(outputs: Outputs, path: str) -> None:
    for mode in MODES:
        sinks = outputs[mode][path]
        assert len(sinks) == (1 if mode == "default" else 1 + len(SINKS))
        for sink, text in sinks.items():
            where = f"{mode} mode, {sink}"
            for evidence in (*EVIDENCE[path], TRACEBACK):
                assert evidence in text, f"{where}: {evidence!r} not logged"
            leaked = [secret for secret in SECRETS if secret in text]
            assert leaked == [], f"{where} shows {leaked}"


def test_json_logs_own_stderr_and_give_loguru_its_handler_back(outputs: Outputs) -> None:
    # loguru's default handler would print every record again, as text, with locals.
    for path in PATHS:
        for line in outputs["json"][path]["stderr"].splitlines():
            assert json.loads(line)["timestamp"]
    for mode in MODES:
        assert "INFO     | __main__:main:" in outputs[mode]["done"]["stderr"]
        assert "back on loguru's own handler" in outputs[mode]["done"]["stderr"]
