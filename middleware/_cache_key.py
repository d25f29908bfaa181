"""The default cache key of ``mw.cache``: the function id and the call's arguments."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from middleware._call import Call

__all__ = ["default_key"]


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
