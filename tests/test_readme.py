"""The README's Python blocks run, in order, in one namespace, under a mock clock."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_has_a_block_per_section() -> None:
    assert len(blocks()) >= 10


async def test_readme_blocks_run(autojump_clock, capsys) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    for number, source in enumerate(blocks(), start=1):
        code = compile(
            source, f"README.md block {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(code, namespace)
        if result is not None:
            await result
    out = capsys.readouterr().out
    assert "call did not finish within 0.5 s" in out
    assert "open, retry after 10 s" in out
    assert "rate limited, retry after" in out
    assert "shipped with r-o-1\nrefunded ['o-1']\ncompleted\n" in out
