"""Reading a request body within a byte limit, and parsing it as JSON within a depth limit.

Both run before anything of a request reaches the runtime:

- `read_body` refuses a declared ``Content-Length`` above the limit before reading a byte,
  then counts the chunks as they arrive and refuses as soon as the total crosses the limit:
  what was read is dropped and the rest is never read (the server stops reading the socket
  when the app does not pull: nothing beyond the limit is buffered). The whole body must
  arrive within a deadline (408 beyond): a client dripping a byte at a time cannot hold a
  request open for longer.
- `parse_json` wants strict UTF-8, measures the nesting depth with a scan that counts
  brackets outside strings (no recursion, linear time whatever the input) before
  ``json.loads`` runs, and refuses ``NaN``, ``Infinity`` and numbers beyond float range.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from itertools import accumulate
from typing import Any, Final, TypeAlias

import trio

__all__ = ["Receive", "ReceiveNow", "Refusal", "nesting_depth", "parse_json", "read_body"]

#: An ASGI ``receive`` callable.
Receive: TypeAlias = Callable[[], Awaitable[Mapping[str, Any]]]
#: The ASGI message already waiting for the app, taken without waiting; ``None``: none is.
ReceiveNow: TypeAlias = Callable[[], Mapping[str, Any] | None]

# A JSON string, or an unterminated one running to the end of the body (so that a scan never
# restarts inside it: linear time). Possessive: no backtracking.
_STRING: Final = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET: Final = re.compile(rb"[^\[\]{}]++")
# Openers step +1, closers -1 (0xff read as a signed byte).
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class Refusal(Exception):
    """A request refused with a client error: ``status``, ``code``, ``message`` and, for
    422, ``details`` (one line per problem); ``headers`` go on the response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = headers


def _too_large(limit: int) -> Refusal:
    return Refusal(413, "payload_too_large", f"the request body exceeds {limit} bytes")


async def read_body(
    receive: Receive,
    *,
    content_length: str | None,
    limit: int,
    time_limit: float = math.inf,
    received: ReceiveNow | None = None,
) -> bytes:
    """The request body, at most ``limit`` bytes, else `Refusal` 413; all of it within
    ``time_limit`` seconds, else `Refusal` 408.

    ``content_length`` is the request's ``Content-Length`` header (``None`` when absent, as
    for a chunked body). ``received``: the message already waiting for the app, if any,
    without waiting (``None`` when none is); when it holds the whole body no deadline needs
    arming (a trio cancel scope, the largest share of this function's cost). A checkpoint
    unless the whole body was already waiting; cancellation propagates.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise Refusal(400, "bad_request", "invalid Content-Length header") from None
        if declared > limit:
            raise _too_large(limit)
    body = _Body(limit)
    first = None if received is None else received()
    if first is not None and body.take(first):
        return body.join()
    with trio.move_on_after(time_limit):
        while True:
            if body.take(await receive()):
                return body.join()
    raise Refusal(
        408, "request_timeout", f"the request body did not arrive within {time_limit:g} s"
    )


class _Body:
    """The chunks of a request body read so far, at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._total = 0

    def take(self, message: Mapping[str, Any]) -> bool:
        """Add the chunk ``message`` carries (`Refusal` 413 beyond the limit, 400 when the
        client left); whether the body is complete."""
        if message["type"] != "http.request":
            raise Refusal(400, "bad_request", "the client left before sending the whole body")
        chunk: bytes = message.get("body", b"")
        self._total += len(chunk)
        if self._total > self._limit:
            raise _too_large(self._limit)
        self._chunks.append(chunk)
        return not message.get("more_body", False)

    def join(self) -> bytes:
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def nesting_depth(body: bytes) -> int:
    """How deeply the arrays and objects of the JSON text ``body`` nest (``0`` for a scalar).

    Brackets inside strings do not count. Meant for a text about to be parsed: on malformed
    input the figure is still bounded by the number of brackets.
    """
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    if not brackets:
        return 0
    return max(0, *accumulate(memoryview(brackets.translate(_STEPS)).cast("b")))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


#: Built once: ``json.loads`` with options builds a decoder per call.
_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_json(body: bytes, *, max_depth: int) -> Any:
    """``body`` decoded as UTF-8 JSON, else `Refusal` 400 ``malformed_json``.

    Refused: invalid UTF-8, nesting deeper than ``max_depth``, malformed JSON, ``NaN`` and
    ``Infinity``, numbers beyond float range or past Python's digit limit for ints.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "malformed_json", "the request body is not valid UTF-8") from None
    # Opening brackets bound the depth (those in strings too): most bodies need no scan.
    if body.count(b"[") + body.count(b"{") > max_depth and nesting_depth(body) > max_depth:
        raise Refusal(400, "malformed_json", f"the JSON body nests deeper than {max_depth} levels")
    try:
        if text.startswith("\ufeff"):  # (what json.loads checks, and decode does not)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise Refusal(
            400,
            "malformed_json",
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, "
            f"column {exc.colno})",
        ) from None
    except ValueError as exc:
        raise Refusal(400, "malformed_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Refusal(400, "malformed_json", "the JSON body nests too deeply") from None
