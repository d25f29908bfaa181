"""The envelope: what is sealed opens unchanged; any change to a signed field, a missing or
foreign signature, and anything undecodable is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.lanes._envelope import FIELDS, BadEnvelope, seal, text_fields, unseal

SECRET = b"0123456789abcdef"
texts = st.text(min_size=1, max_size=30)


def sealed(secret: bytes | None = SECRET, **overrides: object) -> dict[str, str]:
    options: dict[str, object] = {
        "id": "e1",
        "event": "order.placed",
        "payload_json": json.dumps({"order": "A"}),
        "at": 1700000000.25,
        "source": "orders",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "request_id": "r-1",
        "secret": secret,
    }
    options.update(overrides)
    return seal(**options)  # type: ignore[arg-type]


@given(event=texts, source=texts, payload=st.dictionaries(texts, st.integers()))
def test_what_is_sealed_opens_unchanged(event: str, source: str, payload: dict[str, int]) -> None:
    fields = sealed(event=event, source=source, payload_json=json.dumps(payload))
    envelope = unseal(fields, SECRET)
    assert (envelope.event, envelope.source, envelope.payload) == (event, source, payload)
    assert envelope.at == 1700000000.25
    assert envelope.request_id == "r-1"
    assert envelope.traceparent is not None


@given(field=st.sampled_from(FIELDS), value=texts)
def test_any_change_to_a_signed_field_is_refused(field: str, value: str) -> None:
    fields = sealed()
    if fields[field] == value:
        return
    fields[field] = value
    with pytest.raises(BadEnvelope):
        unseal(fields, SECRET)


def test_unsigned_or_foreign_signatures_are_refused() -> None:
    unsigned = sealed(secret=None)
    with pytest.raises(BadEnvelope, match="unsigned"):
        unseal(unsigned, SECRET)
    with pytest.raises(BadEnvelope, match="signature mismatch"):
        unseal(sealed(secret=b"another secret, 16+"), SECRET)
    assert unseal(unsigned, None).event == "order.placed"  # without a secret: not checked


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": "2"}, "unknown envelope version"),
        ({"payload": "{nope"}, "payload is not JSON"),
        ({"at": "soon"}, "emitted-at is not a number"),
        ({"at": "inf"}, "emitted-at is not finite"),
    ],
)
def test_undecodable_envelopes_are_refused(change: dict[str, str], message: str) -> None:
    with pytest.raises(BadEnvelope, match=message):
        unseal({**sealed(secret=None), **change}, None)


def test_missing_fields_and_binary_fields_are_refused() -> None:
    with pytest.raises(BadEnvelope, match="missing field"):
        unseal({"event": "x"}, None)
    with pytest.raises(BadEnvelope, match="not UTF-8"):
        text_fields({b"event": b"\xff\xfe"})
    assert text_fields({b"a": b"b", "c": 1}) == {"a": "b", "c": "1"}
    empty = unseal(sealed(secret=None, traceparent=None, request_id=None), None)
    assert (empty.traceparent, empty.request_id) == (None, None)
