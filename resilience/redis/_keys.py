"""Key names of the shared primitives, and the ids they write into Redis.

Every key is ``{prefix}:{kind}:{{{name}}}:{part}[:{user key}]``: the primitive's name is
the hash tag, so all keys of one primitive live on one Redis Cluster slot (a Lua script
may only touch keys of one slot), and the part comes before the user's key, so no user
key can make one part's name collide with another's.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

__all__ = ["IdSource", "check_label", "check_user_key", "is_label", "key_of"]


def check_label(owner: str, field: str, value: Any) -> str:
    """``value`` if it is a usable prefix or name: a non-empty ``str`` without ``{`` or
    ``}`` (they would break the hash tag); else `TypeError` / `ValueError` naming it."""
    if not isinstance(value, str):
        raise TypeError(f"{owner}: {field} must be a str, got {value!r}")
    if not value or value != value.strip():
        raise ValueError(
            f"{owner}: {field} must be non-empty, without surrounding spaces, got {value!r}"
        )
    if "{" in value or "}" in value:
        raise ValueError(f"{owner}: {field} must not contain '{{' or '}}', got {value!r}")
    return value


def is_label(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: `check_label` for the field (a primitive's ``name``)."""
    check_label(type(instance).__name__, attribute.name, value)


def check_user_key(owner: str, value: Any, *, optional: bool) -> str | None:
    """A per-key argument: a ``str`` (or ``None`` where ``optional``), else `TypeError`."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        expected = "a str or None" if optional else "a str"
        raise TypeError(f"{owner}: key must be {expected}, got {value!r}")
    return value


def key_of(prefix: str, kind: str, name: str, part: str, user_key: str | None = None) -> str:
    """The Redis key of ``part`` of the primitive ``kind``/``name`` (see the module doc)."""
    base = f"{prefix}:{kind}:{{{name}}}:{part}"
    return base if user_key is None else f"{base}:{user_key}"


class IdSource:
    """Unique ids for what a process writes into Redis (permits, leases, reservations):
    ``<token>:<n>``, where ``token`` is random per `IdSource` (one per store, so per
    process and store) and ``n`` counts up."""

    __slots__ = ("_counter", "token")

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)

    def new(self) -> str:
        """A fresh id."""
        return f"{self.token}:{next(self._counter)}"
