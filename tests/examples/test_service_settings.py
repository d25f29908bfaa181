"""examples/service/settings.py: the order service's settings from its environment."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kernel
from tests.examples.conftest import EXAMPLES

SERVICE = EXAMPLES / "service"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The module's globals, imported for real (its annotations resolve in its module)."""
    monkeypatch.syspath_prepend(str(SERVICE))
    sys.modules.pop("settings", None)
    yield vars(importlib.import_module("settings"))
    sys.modules.pop("settings", None)


def test_defaults_without_any_variable(settings) -> None:
    given = settings["from_environment"]({"PATH": "/bin", "HOME": "/root"})
    assert (given.port, given.token, given.log_format) == (8080, None, "pretty")
    assert given.database() == settings["DEFAULT_DB"]
    assert len(given.bearer_token()) >= 16
    assert given.bearer_token() != given.bearer_token()  # made up afresh when not given


def test_every_variable(settings, tmp_path: Path) -> None:
    given = settings["from_environment"](
        {"PORT": "0", "TOKEN": "dev", "DURABLE_DB": str(tmp_path / "o.db"), "LOG_FORMAT": "json"}
    )
    assert (given.port, given.bearer_token(), given.log_format) == (0, "dev", "json")
    assert given.database() == tmp_path / "o.db"
    assert "dev" not in repr(given)
    empty = settings["from_environment"]({"TOKEN": "", "DURABLE_DB": ""})
    assert (empty.token, empty.database()) == (None, settings["DEFAULT_DB"])


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"PORT": "eighty"}, "PORT: expected int, got 'eighty'"),
        ({"PORT": "70000"}, "Settings: 'port' must be <= 65535: 70000"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: expected one of 'pretty', 'json', got 'xml'"),
    ],
)
def test_a_bad_setting_is_named(settings, environ: dict[str, str], problem: str) -> None:
    with pytest.raises(kernel.ConfigError, match=problem):
        settings["from_environment"](environ)


@pytest.mark.slow
def test_the_service_refuses_to_start_on_a_bad_setting_and_says_which() -> None:
    done = subprocess.run(
        [sys.executable, str(SERVICE)],
        env={**os.environ, "PORT": "eighty", "TOKEN": "never-shown"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "order service: bad settings: environment: PORT: expected int, got 'eighty'\n"
    )
