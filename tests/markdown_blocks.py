"""Running the Python blocks of a Markdown document (the README, the docs pages) as a test.

Blocks fenced as ```` ```python ```` run, in order, in one namespace, with top-level
``await`` allowed (the test provides the trio loop and, usually, a mock clock). Blocks with
any other info string (```` ```py ````, ```` ```sh ````, ```` ```python title="x" ````) are
shown to readers and not run, except TOML blocks titled with a file name
(```` ```toml title="orders.toml" ````), which `write_files` writes out for the blocks that
read them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import middleware as mw

BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_BLOCK = re.compile(r'^```toml title="([\w.-]+)"\n(.*?)^```', re.MULTILINE | re.DOTALL)


def python_blocks(document: Path) -> list[str]:
    """The source of each runnable block of ``document``, in order."""
    return BLOCK.findall(document.read_text())


def write_files(document: Path, directory: Path) -> list[Path]:
    """Write each titled TOML block of ``document`` into ``directory``; the paths written."""
    written = []
    for name, text in FILE_BLOCK.findall(document.read_text()):
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


async def run_blocks(document: Path, namespace: dict[str, Any]) -> None:
    """Run every runnable block of ``document`` in ``namespace``; a failure names its block.

    Documents name policies in the process-wide ``mw.registry``, as a reader's program
    would; the names a document registered are unregistered afterwards, so documents that
    name the same policy run in any order.
    """
    named = set(mw.registry.names())
    try:
        for number, source in enumerate(python_blocks(document), start=1):
            code = compile(
                source,
                f"{document.name} block {number}",
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                dont_inherit=True,  # a reader's script has no `from __future__` of this module
            )
            result = eval(code, namespace)
            if result is not None:
                await result
    finally:
        for name in set(mw.registry.names()) - named:
            mw.registry.unregister(name)
