"""Redaction inside text: the value written after a sensitive key, and exceptions in values."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel import Redaction
from kernel._redaction import DEFAULT_KEYS
from kernel.observability import REDACTED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the repr of a dict, of keyword arguments, of an attrs or dataclass instance
        ("{'password': 's3cr3t', 'user': 'bob'}", "{'password': '[REDACTED]', 'user': 'bob'}"),
        ("charge(password='a b', card=1)", "charge(password='[REDACTED]', card=1)"),
        ("password='it\\'s' user='bob'", "password='[REDACTED]' user='bob'"),
        ("Db(dsn='x', api_key=b'k')", "Db(dsn='x', api_key=b'[REDACTED]')"),
        # JSON, with a value that is not a string
        ('{"token": [1, "a]", {"b": 2}], "n": 1}', '{"token": [REDACTED], "n": 1}'),
        ('{"secret": {"a": "}"}, "n": 1}', '{"secret": [REDACTED], "n": 1}'),
        ('{"cvv": 123}', '{"cvv": [REDACTED]}'),
        # query strings, header lines, (key, value) pairs
        ("GET /pay?token=abc&amount=3", "GET /pay?token=[REDACTED]&amount=3"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer [REDACTED]"),
        ("authorization: basic 'dXNlcg=='", "authorization: basic '[REDACTED]'"),
        ("[('cookie', 'c=1'), ('accept', '*/*')]", "[('cookie', '[REDACTED]'), ('accept', '*/*')]"),
        ("db_password=hunter2; user=app", "db_password=[REDACTED]; user=app"),
        ("X-Api-Key: k1 and more", "X-Api-Key: [REDACTED] and more"),
        ("session = 42", "session = [REDACTED]"),
        # not a key and its value
        ("password == other", "password == other"),
        ("tokenizer_version: 3", "tokenizer_version: 3"),
        ("InvalidTokenError: the token expired", "InvalidTokenError: the token expired"),
        ("password", "password"),
        ("password=", "password="),
        ("see https://x.org/secret:z", "see https://x.org/secret:z"),
        # unterminated values end with the text
        ("password='abc", f"password='{REDACTED}"),
        ('{"password": [1, 2', '{"password": [REDACTED]'),
    ],
)
def test_the_value_after_a_sensitive_key_in_text(text: str, expected: str) -> None:
    assert Redaction().redact_text(text) == expected


def test_keys_in_text_follow_the_policy_keys() -> None:
    assert Redaction(extra_keys=("pin",)).redact_text("pin=1234") == "pin=[REDACTED]"
    assert Redaction(keys=()).redact_text("password=x") == "password=x"
    assert Redaction(keys=("pin",)).redact_text("password=x pin=1") == "password=x pin=[REDACTED]"


class Declined(Exception):
    pass


def test_an_exception_inside_a_value_becomes_its_redacted_repr() -> None:
    exc = Declined("card 4111 1111 1111 1111 with {'password': 'p'}")
    assert Redaction().redact({"error": exc, "errors": [exc]}) == {
        "error": f"Declined(\"card {REDACTED} with {{'password': '{REDACTED}'}}\")",
        "errors": [f"Declined(\"card {REDACTED} with {{'password': '{REDACTED}'}}\")"],
    }
    assert Redaction.off().redact(exc) is exc


class Unprintable(Exception):
    def __repr__(self) -> str:
        raise RuntimeError("no")


def test_an_exception_whose_repr_fails_is_named() -> None:
    assert Redaction().redact(Unprintable()) == "<Unprintable (repr() failed)>"


# ---------------------------------------------------------------------- properties

WORDS = st.text(string.ascii_letters + string.digits + "-._", min_size=1, max_size=10)
FRAGMENTS = st.lists(
    st.one_of(
        st.sampled_from([*DEFAULT_KEYS, "user", "Error", "Bearer", "b"]),
        st.sampled_from(["=", ": ", ":", "==", "://", ", ", "'", '"', "\\", "&", ";", " "]),
        st.sampled_from(["[", "]", "(", ")", "{", "}", REDACTED, "4111111111111111"]),
        WORDS,
    ),
    max_size=16,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(FRAGMENTS)
def test_redacting_text_twice_changes_nothing_more(text: str) -> None:
    policy = Redaction()
    once = policy.redact_text(text)
    assert policy.redact_text(once) == once


SECRET = st.text(string.ascii_letters + string.digits + "!#$%*+-./?@^_~", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(DEFAULT_KEYS),
    st.sampled_from(["", "db_", "X-", "user."]),
    SECRET,
    st.sampled_from(["{k}={v}", "{k}: {v}", "'{k}': '{v}'", '"{k}": "{v}"', "('{k}', '{v}')"]),
    st.sampled_from(["", "x ", "{", "f("]),
    st.sampled_from(["", " y", ", 'n': 1}", "&a=1", ")"]),
)
def test_no_value_written_after_a_sensitive_key_survives(
    term: str, prefix: str, secret: str, form: str, before: str, after: str
) -> None:
    key = prefix + term
    text = before + form.format(k=key, v="SECRET" + secret) + after
    redacted = Redaction().redact_text(text)
    assert "SECRET" + secret not in redacted
    assert REDACTED in redacted
