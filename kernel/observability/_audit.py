"""Whether logs are sanitized under a `LogConfig`: the ``logs.redaction`` row of the doctor.

`log_problems` checks what the row claims, in the process it runs in (after the target
module was imported, so the loguru handlers it adds are seen):

- **the policy**: redaction must be on. A probe — an exception raised in a frame whose
  arguments and locals hold a card number, a password and a URL with a password, its message
  holding them too, logged with the same in ``data`` — is redacted by the kernel's own
  `redact_record`, with the config's policy; then everything a sink could show of the record
  is searched for them: its message, its extra, its exception's text as any formatter prints
  it, and the locals of every frame still reachable from it (what ``diagnose=True`` prints).
  A policy that replaced the default keys, or switched cards or URL credentials off, fails.
- **the handlers**: no loguru handler may have ``diagnose=True``. Kernel records carry no
  frames (above), but any other record with an exception — your own, ``mw.log()``'s —
  would have the locals of its frames printed by such a handler, unredacted. loguru's
  default handler does not count: installing the config removes it.
"""

from __future__ import annotations

import collections
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from kernel._redaction import Redaction, safe_repr
from kernel.observability._handlers import default_handler_id, handlers
from kernel.observability._logging import LogConfig, redact_record

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["Problem", "log_problems", "policy_leaks"]

_CARD: Final = "4111111111111111"
_PASSWORD: Final = "doctor-probe-password"
_URL_PASSWORD: Final = "doctor-probe-url-password"
_WHAT: Final = (
    (_PASSWORD, "a value under a sensitive key"),
    (_CARD, "a card number"),
    (_URL_PASSWORD, "the password of a URL"),
)
_OFF_FIX: Final = "set LogConfig(redact=True) or a kernel.Redaction(...)"
# What loguru puts in a record's exception (a namedtuple it does not export).
_RecordException = collections.namedtuple("_RecordException", "type value traceback")


@attrs.frozen
class Problem:
    """What could reach a sink, and how to fix it."""

    detail: str
    fix: str


class _ProbeError(Exception):
    pass


def log_problems(config: LogConfig) -> list[Problem]:
    """What keeps the logs of an app running with ``config`` from being sanitized."""
    policy = config.redact
    problems = []
    if not policy.enabled:
        problems.append(Problem("off: secrets and card numbers reach the sinks", _OFF_FIX))
    else:
        leaked = policy_leaks(policy)
        if leaked:
            problems.append(
                Problem(
                    f"the redaction policy lets {' and '.join(leaked)} through",
                    "keep the default keys (extend them with kernel.Redaction(extra_keys=...)) "
                    "and cards and url_credentials on",
                )
            )
    problems.extend(_handler_problems(kernel_records_too=not policy.enabled))
    return problems


def _handler_problems(*, kernel_records_too: bool) -> list[Problem]:
    found = handlers()
    if found is None:
        return [
            Problem(
                "loguru's handlers could not be inspected (an unknown loguru version)",
                "check by hand that every loguru handler is added with diagnose=False",
            )
        ]
    default = default_handler_id()  # removed when the config is installed
    whose = "of every record" if kernel_records_too else "of your own and mw.log()'s records"
    return [
        Problem(
            f"loguru handler {handler.id} ({handler.sink}) has diagnose=True: it prints the "
            f"local variables in the tracebacks {whose}, unredacted",
            "add your loguru handlers with diagnose=False",
        )
        for handler in found
        if handler.diagnose and handler.id != default
    ]


def policy_leaks(policy: Redaction) -> list[str]:
    """What of the probe's secrets a sink could still see once the kernel redacted it with
    ``policy`` (``"a card number"``, ...; empty when none)."""
    exc = _probe_exception()
    secrets = {"card_number": _CARD, "password": _PASSWORD, "dsn": _dsn()}
    record = {
        "message": f"task failed: {exc}",
        "extra": {"source": "doctor", "data": secrets, "error": exc},
        "exception": _RecordException(type(exc), exc, exc.__traceback__),
    }
    redact_record(cast("Record", record), policy)
    exception = record["exception"]
    assert isinstance(exception, _RecordException)
    shown = [
        str(record["message"]),
        safe_repr(record["extra"]),
        safe_repr(exception.value),
        "".join(traceback.format_exception(exception.value)),
        *(safe_repr(frame_locals) for frame_locals in _reachable_locals(exception)),
    ]
    text = "\n".join(shown)
    return [what for secret, what in _WHAT if secret in text]


def _dsn() -> str:
    return f"postgresql://doctor:{_URL_PASSWORD}@db/probe"


def _probe_exception() -> _ProbeError:
    def connect(dsn: str) -> None:
        raise ConnectionError(f"cannot reach {dsn}")

    def charge(card_number: str, password: str, dsn: str) -> None:
        payment = {"card_number": card_number, "password": password}
        try:
            connect(dsn)
        except ConnectionError as cause:
            raise _ProbeError(f"declined {payment!r}: card {card_number} via {dsn}") from cause

    try:
        charge(_CARD, _PASSWORD, _dsn())
    except _ProbeError as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover


def _reachable_locals(exception: Any) -> Iterator[dict[str, Any]]:
    """The locals of every frame a handler could reach from a record's exception (the
    probe's chain; it holds no exception group)."""
    tracebacks: list[TracebackType | None] = [exception.traceback]
    seen: set[int] = set()
    pending: list[BaseException | None] = [exception.value]
    while pending:
        value = pending.pop()
        if value is None or id(value) in seen:
            continue
        seen.add(id(value))
        tracebacks.append(value.__traceback__)
        pending += [value.__cause__, value.__context__]
    for tb in tracebacks:
        while tb is not None:
            yield tb.tb_frame.f_locals
            tb = tb.tb_next
