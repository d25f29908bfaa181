"""`Secret`: a setting whose value is never shown, and which fields count as secret."""

from __future__ import annotations

import hmac
from typing import Any, Final, final

from kernel._redaction import REDACTED, Redaction
from kernel._structure import converter

__all__ = ["Secret", "is_secret"]

#: The logs' default deny-list decides which field names are secret, as it decides which
#: keys the logs redact: ``password``, ``db_password``, ``api_key``, ``token``, ...
_NAMES: Final = Redaction()


@final
class Secret:
    """A text value that never shows itself: ``repr`` and ``str`` are ``[REDACTED]``.

    Annotate a config field ``Secret`` (``token: kernel.config.Secret``) and it is structured
    from a ``str``, from the environment, a TOML file or a dict; read the text with
    `reveal` where it is used. Two secrets are equal when their texts are (compared in
    constant time).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret: value must be a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret text itself."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


def _structure_secret(value: Any, _: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    # The value itself is not shown: it may be the secret, mistyped.
    raise TypeError(f"expected a str for a Secret, got {type(value).__name__}")


converter.register_structure_hook(Secret, _structure_secret)


def is_secret(name: str, hint: Any) -> bool:
    """Whether a field's value must never be shown: its type is `Secret` (possibly inside a
    container or an optional), or its name is sensitive to the logs' redaction."""
    return _NAMES.is_sensitive(name) or _mentions_secret(hint)


def _mentions_secret(hint: Any) -> bool:
    if hint is Secret:
        return True
    return any(_mentions_secret(arg) for arg in getattr(hint, "__args__", ()))
