"""`present`: make the names a package exports report the package as their module.

A class is defined in a private module (``resilience/_errors.py``) and exported by the
package (``resilience.CircuitOpen``); ``present("resilience", globals())`` at the end of
the package's ``__init__`` makes its ``__module__`` say ``resilience``, so reprs, tracebacks,
Sphinx-style references and ``pickle`` use the name a user imports. Trio does the same with
``fixup_module_metadata``; ``kernel`` and ``middleware`` call this one.

Only what is still in a private module moves (the first public face to export a name
keeps it: ``kernel.observability.LogConfig``), and only when its ``__name__`` is the name it
is exported under (so ``<module>.<name>`` finds it again). An attrs class whose annotations
cannot be resolved from its own module (names imported only for type checking) stays where
it is: moving it would break ``typing.get_type_hints`` and cattrs on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["present"]


def _private(module: object) -> bool:
    return isinstance(module, str) and any(
        part.startswith("_") and not part.startswith("__") for part in module.split(".")
    )


def _resolvable(cls: type) -> bool:
    if not attrs.has(cls):
        return True
    try:
        attrs.resolve_types(cls)
    except Exception:  # a name imported for type checking only, or not defined yet
        return False
    return True


def _move(obj: Any, module: str, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    old = getattr(obj, "__module__", None)
    obj.__module__ = module
    if isinstance(obj, type):
        prefix = f"{obj.__qualname__}."
        for member in vars(obj).values():
            inner = getattr(member, "__func__", member)  # classmethod / staticmethod
            qualname = getattr(inner, "__qualname__", None)
            if (
                getattr(inner, "__module__", None) == old
                and isinstance(qualname, str)
                and qualname.startswith(prefix)
            ):
                _move(inner, module, seen)


def present(module: str, namespace: Mapping[str, Any]) -> None:
    """Set ``__module__`` to ``module`` on each name of ``namespace["__all__"]`` that is a
    class or function defined in a private module, and on its methods and nested classes."""
    seen: set[int] = set()
    for name in namespace["__all__"]:
        obj = namespace[name]
        if not (isinstance(obj, type) or callable(obj)):
            continue
        if getattr(obj, "__name__", None) != name or not _private(getattr(obj, "__module__", "")):
            continue
        if isinstance(obj, type) and not _resolvable(obj):
            continue
        try:
            _move(obj, module, seen)
        except (AttributeError, TypeError):  # a builtin or a slotted callable object
            continue
