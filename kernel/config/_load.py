"""The last step of every loader: structure with the kernel's converter, then say each problem
with the setting's own name (``APP_DB__POOL_SIZE``, ``db.pool_size``), secrets hidden."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable, Collection, Iterator
from typing import Any, Final, TypeVar

import attrs

from kernel._errors import ConfigError
from kernel._redaction import REDACTED
from kernel._structure import structure
from kernel.config._secret import is_secret
from kernel.config._text import optional_of, unwrap

__all__ = [
    "Field",
    "attrs_class_of",
    "fields_of",
    "hide",
    "load",
    "no_such_setting",
    "secret_texts",
]

T = TypeVar("T")

#: The root of the field paths in the converter's messages, replaced by setting names here.
_ROOT: Final = "$"
_STEP: Final = re.compile(r"\.(\w+)|(\[[^\]]*\])")


@attrs.frozen
class Field:
    """One field of a settings class: its dict key, type, default and whether it is secret."""

    name: str
    hint: Any
    required: bool
    secret: bool

    @property
    def word(self) -> str:
        """The name as written in settings (a private ``_x`` is ``x``)."""
        return self.name.lstrip("_")


def attrs_class_of(hint: Any) -> type[Any] | None:
    """The attrs class that ``hint`` is (possibly ``Optional``), else None."""
    base = unwrap(hint)[0]
    base = optional_of(base) or base
    return base if isinstance(base, type) and attrs.has(base) else None


def fields_of(cls: type[Any]) -> list[Field]:
    """The fields of attrs class ``cls`` set through ``__init__``, with resolved types.

    Raises TypeError, naming the class, when ``cls`` is not an attrs class or its
    annotations cannot be resolved.
    """
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise TypeError(f"expected an attrs class for the settings, got {cls!r}")
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as exc:
        raise TypeError(f"{cls.__qualname__}: cannot resolve its annotations: {exc}") from exc
    return [
        Field(
            name=field.name,
            hint=hints.get(field.name, field.type if field.type is not None else Any),
            required=field.default is attrs.NOTHING,
            secret=is_secret(field.name, hints.get(field.name)),
        )
        for field in attrs.fields(cls)
        if field.init
    ]


def no_such_setting(name: str, known: Collection[str]) -> str:
    """The problem of a setting ``name`` that is no field, with the closest of ``known``."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"{name}: no such setting" + (f"; did you mean {close[0]}?" if close else "")


def hide(message: str, secrets: Collection[str]) -> str:
    """``message`` with every secret text in it (quoted or bare) replaced by ``[REDACTED]``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            message = message.replace(repr(secret), REDACTED).replace(secret, REDACTED)
    return message


def secret_texts(value: Any, hint: Any) -> list[str]:
    """Every string under a secret field of ``value``, read as ``hint`` (a dict for an attrs
    class, lists of them, at any depth), so that no error can quote one."""
    cls = attrs_class_of(hint)
    if cls is not None and isinstance(value, dict):
        texts: list[str] = []
        for field in fields_of(cls):
            if field.name in value:
                item = value[field.name]
                texts += _texts(item) if field.secret else secret_texts(item, field.hint)
        return texts
    if isinstance(value, list | tuple):
        args = typing.get_args(unwrap(hint)[0])
        return [text for item in value for arg in args for text in secret_texts(item, arg)]
    return []


def _texts(value: Any) -> list[str]:
    """Every string inside a value (a secret may hide in a list or a mapping)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts(item)]
    return []


def _steps(path: str) -> Iterator[str]:
    for match in _STEP.finditer(path):
        yield match[1] if match[1] is not None else match[2]


def load(
    data: dict[str, Any],
    cls: type[T],
    *,
    owner: str,
    name: Callable[[list[str]], str],
    secrets: Collection[str],
    problems: list[str],
) -> T:
    """``data`` structured into ``cls``, or `ConfigError` listing ``problems`` found earlier
    and the converter's, each led by ``name(path steps)``, with ``secrets`` and every text
    under a secret field of ``data`` hidden.

    The error is raised with no cause or context: the converter's own exceptions quote the
    values they refused.
    """
    found = list(problems)
    hidden = [*secrets, *secret_texts(data, cls)]
    if not found:
        try:
            return structure(data, cls, owner=owner, path=_ROOT)
        except ConfigError as exc:
            found = [_rename(problem, name) for problem in exc.problems]
    # Raised here, outside the handler, so that it carries no context either.
    raise ConfigError(owner, [hide(problem, hidden) for problem in found])


def _rename(problem: str, name: Callable[[list[str]], str]) -> str:
    path, sep, message = problem.partition(": ")
    if not sep or not path.startswith(_ROOT):
        return problem
    return f"{name(list(_steps(path[len(_ROOT) :])))}: {message}"
