"""JSON text for what the engine stores: inputs, step results, payloads, workflow results.

Values are unstructured with the kernel's converter (attrs classes, dataclasses, enums,
datetimes, sets become JSON-ready data) and written with `json`; they are read back with
`json` and, when a type is known, structured into it by the same converter, with the same
strict rules as an HTTP body or a config (`kernel._converter`). A value that cannot be
written raises `SerializationError` at once, at the first run, never at replay.
"""

from __future__ import annotations

import json
from typing import Any

import cattrs
from cattrs.errors import CattrsError

from kernel._converter import type_name
from kernel._structure import converter, problems
from kernel.durable._errors import CorruptRecordError, SerializationError

__all__ = ["decode", "dumps", "loads"]


def dumps(value: Any, *, what: str) -> str:
    """``value`` as JSON text; ``what`` names it in the error ("step 'charge' result")."""
    try:
        return json.dumps(converter.unstructure(value), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, cattrs.BaseValidationError) as exc:
        raise SerializationError(
            f"{what} cannot be stored as JSON: {exc} (return JSON data, or an attrs class / "
            f"dataclass of such)"
        ) from exc


def loads(text: str | None, type_: Any = None, *, what: str) -> Any:
    """The value stored as ``text``, structured into ``type_`` when given.

    Unreadable text, or data that no longer fits ``type_``, raises `CorruptRecordError`
    naming ``what``.
    """
    try:
        data = json.loads(text) if text is not None else None
    except (ValueError, TypeError) as exc:
        raise CorruptRecordError(f"{what} cannot be read back: {exc}") from exc
    return decode(data, type_, what=what)


def decode(data: Any, type_: Any = None, *, what: str) -> Any:
    """JSON data (already parsed) structured into ``type_`` when given (see `loads`)."""
    if type_ is None or type_ is Any or type_ is type(None):
        return data
    try:
        return converter.structure(data, type_)
    except (ValueError, TypeError, AttributeError, CattrsError) as exc:
        found = "; ".join(problems(exc, "value"))
        raise CorruptRecordError(
            f"{what} cannot be read back as {type_name(type_)}: {found}"
        ) from exc
