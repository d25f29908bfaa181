"""`RedactedTraceback`: what the kernel's log records carry instead of the live exception.

A live exception reaches every frame it went through, and through them every local
variable: loguru's ``diagnose=True`` (the default of ``logger.add`` and of loguru's own
stderr handler) prints the value of each name on each line of the traceback,
``backtrace=True`` adds the frames above the ``except`` that caught it, and a sink of the
user's own may walk the frames itself. A task's arguments, a resource's config, an HTTP
request's body are all there. Redacting the message cannot reach them.

So a kernel record's exception is replaced (`redact_exception`) by a `RedactedTraceback`:
an exception with no traceback, no cause and no context — nothing left to walk — whose text
is the standard Python traceback of the original (`traceback.format_exception`: file, line,
function and source line of each frame, the chained exceptions, notes and groups; never a
variable's value), redacted as text with the active policy. Every handler renders it as it
renders any exception, and shows no locals whatever its options.
"""

from __future__ import annotations

import traceback
from typing import Any

from kernel._redaction import Redaction

__all__ = ["RedactedTraceback", "redact_exception", "safe_str", "type_name"]


class RedactedTraceback(Exception):
    """The redacted text of an exception, standing in for it in a kernel log record.

    ``str()`` is the whole redacted traceback (``Traceback (most recent call last): ...``
    down to the final ``Type: message`` line). ``type_name`` is the original exception's
    type (module-qualified unless builtin), ``message`` its redacted ``str()``, ``stack``
    the redacted traceback. The record's ``exception.type`` stays the original type.
    """

    def __init__(self, type_name: str, message: str, stack: str) -> None:
        super().__init__(stack.rstrip("\n"))
        self.type_name = type_name
        self.message = message
        self.stack = stack

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (loguru's enqueue=True pickles records), with no state beyond the text.
        return (type(self), (self.type_name, self.message, self.stack))


# Its name is printed in every log line that carries one: the public, short path.
RedactedTraceback.__module__ = "kernel.observability"


def redact_exception(exc: BaseException, policy: Redaction) -> RedactedTraceback:
    """``exc`` as a `RedactedTraceback`: its standard traceback, redacted by ``policy``."""
    name = type_name(type(exc))
    try:
        stack = "".join(traceback.format_exception(exc))
    except Exception:  # a broken __notes__, an exception group gone wrong, ...
        stack = f"{name}: <the traceback could not be formatted>\n"
    return RedactedTraceback(name, policy.redact_text(safe_str(exc)), policy.redact_text(stack))


def type_name(cls: type[BaseException]) -> str:
    """``cls``'s qualified name, with its module unless it is a builtin."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder naming its type when ``str`` raises."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} (str() failed)>"
