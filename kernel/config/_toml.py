"""`from_toml`: settings from a TOML file (stdlib `tomllib`), optionally from one table."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import attrs

from kernel._errors import ConfigError
from kernel._redaction import REDACTED
from kernel.config._load import attrs_class_of, fields_of, load, no_such_setting
from kernel.config._text import TextError, item_type, optional_of, parse, unwrap

__all__ = ["from_toml"]

T = TypeVar("T")


@attrs.define
class _Reading:
    """Durations written with units, read (the problems say where, secrets hidden)."""

    problems: list[str] = attrs.Factory(list)

    def read(
        self, table: dict[str, Any], cls: type[Any], path: str, *, secret: bool = False
    ) -> dict[str, Any]:
        """``table`` for ``cls``, durations read; everything under a secret field is secret."""
        data = dict(table)
        fields = fields_of(cls)
        for key in table:
            if key not in {field.name for field in fields}:
                self.problems.append(
                    no_such_setting(f"{path}{key}", [f"{path}{f.name}" for f in fields])
                )
        for field in fields:
            if field.name not in table:
                if field.required:
                    self.problems.append(f"{path}{field.name}: required, not set")
                continue
            value = table[field.name]
            key = f"{path}{field.name}"
            nested = attrs_class_of(field.hint)
            if nested is not None and isinstance(value, dict):
                data[field.name] = self.read(
                    value, nested, f"{key}.", secret=secret or field.secret
                )
                continue
            data[field.name] = self._durations(
                value, field.hint, key, secret=secret or field.secret
            )
        return data

    def _durations(self, value: Any, hint: Any, key: str, *, secret: bool) -> Any:
        """``value`` with the texts where a `Duration` is expected read (``"500ms"``)."""
        base, is_duration = unwrap(hint)
        base = optional_of(base) or base
        if is_duration or unwrap(base)[1]:
            if not isinstance(value, str):
                return value
            try:
                return parse(value, hint)
            except TextError as exc:
                shown = REDACTED if secret else repr(exc.text)
                self.problems.append(f"{key}: expected {exc.expected}, got {shown}")
                return value
        item = item_type(base)
        if item is not None and isinstance(value, list):
            return [
                self._durations(piece, item, f"{key}[{index}]", secret=secret)
                for index, piece in enumerate(value)
            ]
        return value


def _name(section: str | None) -> Any:
    def name(steps: list[str]) -> str:
        dotted = "".join(step if step.startswith("[") else f".{step}" for step in steps)
        if dotted:
            return dotted.removeprefix(".")
        return f"[{section}]" if section else "the top level"

    return name


def from_toml(path: str | os.PathLike[str], type_: type[T], *, section: str | None = None) -> T:
    """An instance of attrs class ``type_`` read from the TOML file at ``path``.

    The file's top level is the settings, or with ``section="tool.orders"`` the table
    ``[tool.orders]``. TOML values are typed already and go to the kernel's strict converter
    as they are (``pool_size = "4"`` is an error, not 4); a `Duration` may also be written
    with a unit (``timeout = "500ms"``). Unknown keys are errors.

    Raises `kernel.ConfigError` (a ValueError) naming the file and each key path
    (``orders.toml [tool.orders]: db.pool_size: expected int, got str 'ten'``), with the value
    of a secret field never shown, also when the file is not valid TOML or lacks the
    section; `OSError` when the file cannot be read; TypeError for bad arguments.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"from_toml: path must be a str or a path, got {path!r}")
    if section is not None and (not isinstance(section, str) or not section):
        raise TypeError(f"from_toml: section must be a non-empty str or None, got {section!r}")
    fields_of(type_)  # a bad type_ is the caller's TypeError before any file is read
    file = Path(path)
    owner = f"{file} [{section}]" if section else str(file)
    document = _document(file)
    table: Any = document
    for key in section.split(".") if section else ():
        table = table.get(key) if isinstance(table, dict) else None
        if table is None:
            raise ConfigError(str(file), [f"no [{section}] table"])
    if not isinstance(table, dict):
        raise ConfigError(str(file), [f"[{section}] is not a table"])
    reading = _Reading()
    data = reading.read(table, type_, "")
    return load(
        data,
        type_,
        owner=owner,
        name=_name(section),
        secrets=(),
        problems=reading.problems,
    )


def _document(file: Path) -> dict[str, Any]:
    raw = file.read_bytes()
    problem = None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except tomllib.TOMLDecodeError as exc:
        problem = f"not valid TOML: {exc}"
    raise ConfigError(str(file), [problem])
