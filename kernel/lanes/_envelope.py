"""The envelope of one lane message: the fields of its stream entry.

    v            "1"
    id           the emission's own id (random, 32 hex digits; kept by a replay)
    event        the event's id
    payload      the payload as JSON (cattrs-unstructured)
    at           emitted-at, Unix seconds
    source       who emitted (the emitter's id, else the lane's source: host and pid)
    traceparent  the W3C trace context of the emitter ("" without one)
    request_id   the HTTP request being served when it was emitted ("" without one)
    sig          with a secret: HMAC-SHA256 (hex) over the fields above, in that order

`seal` builds them; `unseal` checks and decodes what a stream gave back, which is untrusted:
anything missing, unsigned (when a secret is set), tampered with or undecodable raises
`BadEnvelope`, which the consumer dead-letters without running a hook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["FIELDS", "BadEnvelope", "Envelope", "seal", "unseal"]

VERSION: Final = "1"

#: The signed fields, in the order the signature covers them.
FIELDS: Final = ("v", "id", "event", "payload", "at", "source", "traceparent", "request_id")


class BadEnvelope(Exception):
    """A stream entry that is not a valid envelope; the message says what is wrong."""


@attrs.frozen
class Envelope:
    """A decoded envelope (``payload`` still JSON-decoded only, not structured)."""

    id: str
    event: str
    payload: Any
    at: float
    source: str | None
    traceparent: str | None
    request_id: str | None


def _signature(secret: bytes, values: list[str]) -> str:
    message = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def seal(
    *,
    id: str,
    event: str,
    payload_json: str,
    at: float,
    source: str,
    traceparent: str | None,
    request_id: str | None,
    secret: bytes | None,
) -> dict[str, str]:
    """The stream entry's fields for one emission."""
    values = [
        VERSION,
        id,
        event,
        payload_json,
        repr(at),
        source,
        traceparent or "",
        request_id or "",
    ]
    fields = dict(zip(FIELDS, values, strict=True))
    if secret is not None:
        fields["sig"] = _signature(secret, values)
    return fields


def text_fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A stream entry's fields as text (Redis gives bytes); `BadEnvelope` when they are not
    UTF-8."""
    fields: dict[str, str] = {}
    for key, value in raw.items():
        try:
            name = key.decode() if isinstance(key, bytes) else str(key)
            fields[name] = value.decode() if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            raise BadEnvelope(f"a field is not UTF-8 text: {exc}") from None
    return fields


def unseal(fields: Mapping[str, str], secret: bytes | None) -> Envelope:
    """The envelope in ``fields``, checked (see the module docstring)."""
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise BadEnvelope(f"not a lane envelope: missing field(s) {', '.join(missing)}")
    values = [fields[name] for name in FIELDS]
    if values[0] != VERSION:
        raise BadEnvelope(f"unknown envelope version {values[0]!r}")
    if secret is not None:
        sig = fields.get("sig")
        if sig is None:
            raise BadEnvelope("unsigned envelope (the lane has a secret)")
        if not hmac.compare_digest(sig.encode(), _signature(secret, values).encode()):
            raise BadEnvelope("signature mismatch (tampered with, or signed with another secret)")
    try:
        payload = json.loads(values[3])
    except ValueError as exc:
        raise BadEnvelope(f"payload is not JSON: {exc}") from None
    try:
        at = float(values[4])
    except ValueError:
        raise BadEnvelope(f"emitted-at is not a number: {values[4]!r}") from None
    if not math.isfinite(at):
        raise BadEnvelope(f"emitted-at is not finite: {values[4]!r}")
    return Envelope(
        id=values[1],
        event=values[2],
        payload=payload,
        at=at,
        source=values[5] or None,
        traceparent=values[6] or None,
        request_id=values[7] or None,
    )
