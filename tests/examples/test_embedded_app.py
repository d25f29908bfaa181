"""examples/embedded_app.py: the kernel as one `async with` inside a host trio program."""

from __future__ import annotations

import pytest

from kernel._cli import main as cli
from tests.examples.conftest import EXAMPLES, run_program


async def test_the_embedded_kernel_runs_and_disposes(autojump_clock, capsys, load_example) -> None:
    await load_example("embedded_app")["main"]()
    out = capsys.readouterr().out
    assert "refused: task 'orders.place': input: 'quantity' must be > 0: 0" in out
    assert "placed orders 1 and 2; pending ['order 1: tea', 'order 2: cake']" in out
    assert "after the background flush: ['order 1: tea', 'order 2: cake']" in out
    assert "the kernel is disposed; the program's heartbeat went on (4 beats)" in out


def test_its_graph_renders(capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    assert cli(["graph", "embedded_app:app"]) == 0
    out = capsys.readouterr().out
    assert "orders.outbox  [app 'shop']\n      store -> orders.store (resource)" in out


@pytest.mark.slow
def test_it_runs_as_a_program() -> None:
    done = run_program("embedded_app")
    assert done.returncode == 0, done.stderr
    assert "store closed with 2 orders" in done.stderr
