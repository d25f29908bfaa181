"""The documentation site (docs/, built by ``make docs``): its Python blocks run, each page
in a namespace of its own, under a mock clock; its pages say what the code does."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from kernel._doctor import diagnose
from tests.kernel import doctor_apps
from tests.markdown_blocks import python_blocks, run_blocks, write_files

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(page for page in DOCS.rglob("*.md") if python_blocks(page))


def test_the_pages_with_code_are_found() -> None:
    names = {page.relative_to(DOCS).as_posix() for page in PAGES}
    assert {"getting-started.md", "resilience.md", "kernel.md", "configuration.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(DOCS).as_posix())
async def test_page_blocks_run(
    page: Path, autojump_clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_files(page, tmp_path)
    # A module of its own, as a script would be: annotations resolve through sys.modules.
    module = types.ModuleType("docs_page")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict[str, Any] = vars(module)
    await run_blocks(page, namespace)


def test_the_production_checklist_names_every_check_of_the_doctor() -> None:
    page = (DOCS / "production-checklist.md").read_text()
    checks = {row.check for row in diagnose(doctor_apps.good)}
    assert len(checks) >= 14
    for check in checks:
        assert f"`{check}`" in page, check


def test_the_readme_links_to_pages_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text())
    assert len(links) >= 8
    for link in links:
        assert (ROOT / link).is_file(), link
