"""The public faces of the three packages, and the direction of imports between them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("resilience", "middleware", "kernel")
# A layer may import only the layers below it.
FORBIDDEN = {"resilience": {"middleware", "kernel"}, "middleware": {"kernel"}, "kernel": set()}


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_matches_the_public_names(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert exported == sorted(exported)
    public = {n for n in vars(package) if not n.startswith("_")} - {"annotations"}
    assert public == set(exported)
    for attribute in exported:
        assert getattr(package, attribute) is not None


@pytest.mark.parametrize("name", PACKAGES)
def test_ships_py_typed(name: str) -> None:
    assert (ROOT / name / "py.typed").is_file()


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_imports_only_go_downwards(name: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_top_levels(path) & FORBIDDEN[name])
        for path in sorted((ROOT / name).rglob("*.py"))
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}
