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


def _isort_style(name: str) -> tuple[int, str]:
    """The order of ruff's RUF022: CONSTANTS, then Classes, then functions and modules."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


#: The public faces inside the packages: each is imported by users and by sibling subpackages.
FACES = (
    "kernel.config",
    "kernel.durable",
    "kernel.exposure",
    "kernel.exposure.console",
    "kernel.lanes",
    "kernel.observability",
    "middleware.observability",
    "resilience.redis",
)


@pytest.mark.parametrize("name", PACKAGES + FACES)
def test_all_is_sorted_and_matches_the_public_names(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert exported == sorted(exported, key=_isort_style)
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


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, dotted, with its line: ``from a.b import c`` gives
    ``a.b`` and ``a.b.c`` (``c`` may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _private_owner(module: str) -> str | None:
    """The package whose private module ``module`` is (``kernel.durable._engine`` →
    ``kernel.durable``), or ``None`` when every part of it is public."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def _may_import(importer: str, owner: str) -> bool:
    """Whether the module ``importer`` may import a private module of package ``owner``.

    Only from inside: a module of ``owner`` or of one of its subpackages, or a root module
    of the same layer (``kernel/_runtime.py`` assembles ``kernel.observability``). Never
    another layer, never a sibling subpackage (``kernel.exposure`` uses
    ``kernel.durable``'s public names).
    """
    if importer == owner or importer.startswith(owner + "."):
        return True
    layer = owner.split(".")[0]
    return (
        importer.split(".")[0] == layer
        and importer.count(".") <= 1
        and not (importer.count(".") == 1 and (ROOT / Path(*importer.split("."))).is_dir())
    )


def _reach_ins(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / name).rglob("*.py")):
        relative = path.relative_to(ROOT)
        importer = ".".join(relative.with_suffix("").parts)
        for line, module in _imports(path):
            owner = _private_owner(module)
            if owner is None or owner.split(".")[0] not in PACKAGES:
                continue
            if not _may_import(importer, owner):
                found.setdefault(f"{relative}:{line}", []).append(module)
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_layers_and_siblings_import_each_other_through_public_names(name: str) -> None:
    assert _reach_ins(name) == {}


def test_the_reach_in_check_catches_what_it_should() -> None:
    assert _private_owner("kernel.durable._engine") == "kernel.durable"
    assert _private_owner("kernel.durable.Engine") is None
    assert _private_owner("kernel.__version__") is None
    assert _may_import("kernel.durable._worker", "kernel.durable")
    assert _may_import("kernel.durable._worker", "kernel")  # the layer's own base
    assert _may_import("kernel._runtime", "kernel.observability")  # the root assembles
    assert not _may_import("kernel.exposure._app", "kernel.durable")  # a sibling
    assert not _may_import("kernel.exposure._app", "kernel.observability")
    assert not _may_import("kernel._runtime", "middleware.observability")  # another layer
    assert not _may_import("middleware.observability._metrics", "resilience")


#: Exported classes that keep their private module: their annotations name what is imported
#: for type checking only (an optional extra's types), so `typing.get_type_hints` needs
#: that module's namespace (see `resilience.faces`).
KEPT_PRIVATE = {
    "kernel.TracingConfig",
    "kernel.exposure.RemoteEndpoint",
    "kernel.exposure.console.Gate",
    "kernel.durable.PostgresStore",
    "kernel.observability.TracingConfig",
    "middleware.observability.Trace",
    "resilience.redis.Store",
}


@pytest.mark.parametrize("name", PACKAGES + FACES)
def test_exported_classes_report_their_public_module(name: str) -> None:
    package = importlib.import_module(name)
    private = set()
    for attribute in package.__all__:
        value = getattr(package, attribute)
        if isinstance(value, type) and "._" in value.__module__:
            private.add(f"{name}.{attribute}")
        elif isinstance(value, type):
            public = importlib.import_module(value.__module__)
            assert getattr(public, value.__name__) is value
    assert private == {n for n in KEPT_PRIVATE if n.rpartition(".")[0] == name}


def test_tracebacks_and_reprs_name_the_public_module() -> None:
    import kernel
    import resilience as rs

    assert repr(rs.CircuitOpen) == "<class 'resilience.CircuitOpen'>"
    assert rs.CircuitBreaker.call.__module__ == "resilience"
    assert kernel.run.__module__ == "kernel"
    assert repr(kernel.durable.Engine) == "<class 'kernel.durable.Engine'>"
