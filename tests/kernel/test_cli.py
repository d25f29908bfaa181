from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kernel._cli import load_app, main
from kernel._graph import build_graph

GOOD = """
    import kernel

    @kernel.resource("db")
    async def db():
        yield "db"

    @kernel.resource("server", deps={"db": db})
    async def server(db):
        yield "server"

    app = kernel.App("shop", register=[server, db])

    class holder:
        app = app

    not_an_app = 42
"""

CYCLE = """
    import kernel

    refs = {}

    @kernel.resource("a", deps=lambda: {"b": refs["b"]})
    async def a(b):
        yield "a"

    @kernel.resource("b", deps={"a": a})
    async def b(a):
        yield "b"

    refs["b"] = b
    app = kernel.App("loop", register=[a, b])
"""


@pytest.fixture
def write_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], str]]:
    """Write a module into an importable directory; forget it from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_graph_prints_the_text_render(
    write_module: Callable[[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = write_module("cli_good_text", GOOD)
    assert main(["graph", f"{name}:app"]) == 0
    out, err = capsys.readouterr()
    assert out == build_graph(load_app(f"{name}:app")).render("text") + "\n"
    assert "  server  [app 'shop']\n      db -> db (resource)" in out
    assert err == ""


def test_graph_prints_mermaid_and_follows_dotted_attributes(
    write_module: Callable[[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = write_module("cli_good_mermaid", GOOD)
    assert main(["graph", f"{name}:holder.app", "--format", "mermaid"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("graph TD\n")
    assert '  n5["server"]\n  n6["db"]\n  n5 --> n6\n' in out  # server --> db


def test_an_invalid_graph_exits_1_with_the_error(
    write_module: Callable[[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = write_module("cli_cycle", CYCLE)
    assert main(["graph", f"{name}:app"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "CircularDependencyError: circular dependency: a -> b -> a\n"


def test_a_definition_error_while_importing_exits_1(
    write_module: Callable[[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = write_module("cli_bad_definition", 'import kernel\nkernel.event("9lives")\n')
    assert main(["graph", f"{name}:app"]) == 1
    assert capsys.readouterr().err.startswith("DefinitionError: event: id must be a str")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "TARGET must be module:attribute, got 'no_colon'"),
        (":app", "TARGET must be module:attribute, got ':app'"),
        ("mod:", "TARGET must be module:attribute, got 'mod:'"),
        (
            "cli_no_such_module:app",
            "cannot import module 'cli_no_such_module': "
            "ModuleNotFoundError(\"No module named 'cli_no_such_module'\")",
        ),
        ("{good}:missing", "'{good}:missing': no attribute 'missing'"),
        ("{good}:holder.nope", "'{good}:holder.nope': no attribute 'nope'"),
        ("{good}:not_an_app", "'{good}:not_an_app' is a int, not a kernel.App"),
        ("{broken}:app", "cannot import module '{broken}': ZeroDivisionError('division by zero')"),
    ],
)
def test_a_bad_target_exits_2(
    target: str,
    message: str,
    write_module: Callable[[str, str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = {
        "good": write_module("cli_good_target", GOOD),
        "broken": write_module("cli_broken", "1 / 0\n"),
    }
    assert main(["graph", target.format(**names)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"trio-runner: {message.format(**names)}\n"


def test_the_current_directory_is_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cli_cwd_app.py").write_text(textwrap.dedent(GOOD))
    try:
        assert main(["graph", "cli_cwd_app:app"]) == 0
        assert sys.path[0] == str(tmp_path)
        assert main(["graph", "cli_cwd_app:app"]) == 0  # already on the path: added once
        assert sys.path.count(str(tmp_path)) == 1
    finally:
        sys.modules.pop("cli_cwd_app", None)
    assert "kernel.logger" in capsys.readouterr().out


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "graph" in capsys.readouterr().out
    assert main(["graph", "--help"]) == 0
    assert "--format {text,mermaid}" in capsys.readouterr().out
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("usage: trio-runner")
    assert main(["graph", "m:app", "--format", "dot"]) == 2
    assert "invalid choice: 'dot'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


@pytest.mark.slow
def test_the_module_runs_as_a_program(tmp_path: Path) -> None:
    (tmp_path / "cli_program.py").write_text(textwrap.dedent(GOOD))
    done = subprocess.run(
        [sys.executable, "-m", "kernel._cli", "graph", "cli_program:app", "--format", "mermaid"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("graph TD\n")
    assert done.stdout.endswith('  n5["server"]\n  n6["db"]\n  n5 --> n6\n')
