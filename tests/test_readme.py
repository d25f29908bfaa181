"""The README's Python blocks run, in order, in one namespace, under a mock clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.markdown_blocks import python_blocks, run_blocks

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> list[str]:
    return python_blocks(README)


def test_readme_has_a_block_per_section() -> None:
    assert len(blocks()) >= 10


async def test_readme_blocks_run(autojump_clock, capsys) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    await run_blocks(README, namespace)
    out = capsys.readouterr().out
    assert "call did not finish within 0.5 s" in out
    assert "open, retry after 10 s" in out
    assert "rate limited, retry after" in out
    assert "shipped with r-o-1\nrefunded ['o-1']\ncompleted\n" in out
