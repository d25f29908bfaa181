"""`from_env`: settings from environment variables, one variable per field.

A field ``pool_size`` of a nested settings field ``db`` is ``{prefix}DB__POOL_SIZE``: names
are upper-cased and nested classes add ``__``. How each type is written: `kernel.config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from kernel._redaction import REDACTED
from kernel.config._load import Field, attrs_class_of, fields_of, load, no_such_setting
from kernel.config._text import TextError, parse

__all__ = ["from_env"]

T = TypeVar("T")


@attrs.define
class _Reading:
    """What one pass over the environment found."""

    environ: Mapping[str, str]
    problems: list[str] = attrs.Factory(list)
    secrets: list[str] = attrs.Factory(list)
    #: The variable (or ``PREFIX*`` group) behind each field path, for the converter's errors.
    names: dict[tuple[str, ...], str] = attrs.Factory(dict)

    def read(
        self, cls: type[Any], prefix: str, path: tuple[str, ...], *, secret: bool = False
    ) -> dict[str, Any]:
        """The fields of ``cls`` found under ``prefix``; everything under a secret field is
        secret (``secret``)."""
        self.names[path] = f"{prefix}*" if prefix else cls.__qualname__
        data: dict[str, Any] = {}
        known: set[str] = set()
        groups: set[str] = set()
        for field in fields_of(cls):
            var = prefix + field.word.upper()
            known.add(var)
            nested = attrs_class_of(field.hint)
            group = var + "__"
            if nested is not None:
                groups.add(group)
            if nested is not None and (
                _any_starts_with(self.environ, group)
                or (field.required and var not in self.environ)
            ):
                if var in self.environ:
                    self.problems.append(f"{var}: set either {var} or {group}* variables, not both")
                data[field.name] = self.read(
                    nested, group, (*path, field.name), secret=secret or field.secret
                )
            elif var in self.environ:
                self.names[(*path, field.name)] = var
                self._leaf(data, field, var, secret=secret or field.secret)
            elif field.required:
                self.problems.append(f"{var}: required, not set")
        if prefix:
            self._unknown(prefix, known, tuple(groups))
        return data

    def _leaf(self, data: dict[str, Any], field: Field, var: str, *, secret: bool) -> None:
        text = self.environ[var]
        if secret:
            self.secrets.append(text)
        try:
            data[field.name] = parse(text, field.hint)
        except TextError as exc:
            shown = REDACTED if secret else repr(exc.text)
            self.problems.append(f"{var}{exc.where}: expected {exc.expected}, got {shown}")

    def _unknown(self, prefix: str, known: set[str], groups: tuple[str, ...]) -> None:
        """A variable under ``prefix`` that names no field is a mistake, said with a hint.

        Variables under a nested class's group (``APP_DB__``) are checked by that class."""
        for var in sorted(self.environ):
            if not var.startswith(prefix) or var in known or var.startswith(groups):
                continue
            self.problems.append(no_such_setting(var, known))

    def name(self, steps: list[str]) -> str:
        """The variable for a field path of the converter (``["db", "url"]``, ``["hosts",
        "[0]"]``): the longest named head of the path, then the rest as written."""
        for cut in range(len(steps), -1, -1):
            found = self.names.get(tuple(steps[:cut]))
            if found is not None:
                return found + "".join(
                    step if step.startswith("[") else f".{step}" for step in steps[cut:]
                )
        return "environment"  # pragma: no cover - the root is always named


def _any_starts_with(environ: Mapping[str, str], prefix: str) -> bool:
    return any(var.startswith(prefix) for var in environ)


def from_env(
    type_: type[T], *, prefix: str = "APP_", environ: Mapping[str, str] | None = None
) -> T:
    """An instance of attrs class ``type_`` read from environment variables.

    Each field is read from ``{prefix}{FIELD}`` (``APP_TIMEOUT``); a field that is itself an
    attrs class from ``{prefix}{FIELD}__{SUBFIELD}`` (``APP_DB__URL``), or from one variable
    holding JSON. A variable that is not set leaves the field's default. Text is read as the
    field's type expects (``true``/``off``, ``2.5``, ``500ms`` for a `Duration`, ``a,b`` or
    ``["a", "b"]`` for a list: see `kernel.config`), then structured by the kernel's strict
    converter, so attrs validators run as usual.

    ``environ`` defaults to `os.environ`. With a non-empty ``prefix``, a variable that starts
    with it but names no field is an error (a typo would otherwise be silently ignored).

    Raises `kernel.ConfigError` (a ValueError) listing every problem, each led by the
    variable's name: ``APP_DB__POOL_SIZE: expected int, got 'ten'``; the value of a secret
    field (a `Secret`, or a name such as ``password`` or ``api_key``) is never shown. Raises
    TypeError for a ``type_`` that is not an attrs class, or bad arguments.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"from_env: prefix must be a str, got {prefix!r}")
    if environ is None:
        environ = os.environ
    elif not isinstance(environ, Mapping):
        raise TypeError(f"from_env: environ must be a mapping, got {type(environ).__name__}")
    reading = _Reading(environ)
    data = reading.read(type_, prefix, ())
    return load(
        data,
        type_,
        owner="environment",
        name=reading.name,
        secrets=reading.secrets,
        problems=reading.problems,
    )
