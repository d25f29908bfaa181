"""The default cache key of ``mw.cache``: the function id and the call's arguments."""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from middleware._call import Call

__all__ = ["default_key", "shared_key"]


def default_key(call: Call) -> Hashable:
    """``(target_id, args)``, plus the sorted keyword items when there are any.

    Raises `TypeError` naming the first unhashable argument.
    """
    key: tuple[Any, ...]
    if call.kwargs:
        key = (call.target_id, call.args, tuple(sorted(call.kwargs.items())))
    else:
        key = (call.target_id, call.args)
    try:
        hash(key)
    except TypeError:
        raise TypeError(_unhashable(call)) from None
    return key


def _unhashable(call: Call) -> str:
    arguments = [
        *((f"argument {index}", value) for index, value in enumerate(call.args)),
        *((f"argument {name!r}", value) for name, value in call.kwargs.items()),
    ]
    label, value = next(
        ((label, value) for label, value in arguments if not _hashes(value)),
        ("an argument", None),
    )
    return (
        f"mw.cache: {label} ({type(value).__name__}) of {call.target_id} is not hashable, so "
        "it cannot be part of the cache key; pass key=lambda call: ... to mw.cache"
    )


def _hashes(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def shared_key(call: Call) -> str:
    """The default key for a cache in Redis: ``[target_id, args, kwargs]`` as JSON text
    (keyword arguments sorted). Raises `TypeError` naming the first argument that is not
    JSON data (str, int, float, bool, None, lists and dicts of them)."""
    try:
        return json.dumps(
            [call.target_id, list(call.args), call.kwargs],
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError):
        raise TypeError(_not_json(call)) from None


def _not_json(call: Call) -> str:
    arguments = [
        *((f"argument {index}", value) for index, value in enumerate(call.args)),
        *((f"argument {name!r}", value) for name, value in call.kwargs.items()),
    ]
    label, value = next(
        ((label, value) for label, value in arguments if not _is_json(value)),
        ("an argument", None),
    )
    return (
        f"mw.cache: {label} ({type(value).__name__}) of {call.target_id} is not JSON data, so "
        "it cannot be part of a shared cache's key; pass key=lambda call: ... to mw.cache"
    )


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
