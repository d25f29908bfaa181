from __future__ import annotations

import copy
import string
from collections import OrderedDict, namedtuple
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kernel import Redaction, _redaction
from kernel._redaction import DEFAULT_KEYS, luhn_valid
from kernel.observability import REDACTED

CARD = "4111111111111111"  # Luhn-valid (a well-known test number)
AMEX = "378282246310005"


def reference_luhn(number: str) -> bool:
    """The Luhn check written differently from the product's, to test it against."""
    total = 0
    for index, char in enumerate(reversed(number)):
        total += int(char) if index % 2 == 0 else sum(divmod(2 * int(char), 10))
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    return next(body + d for d in string.digits if reference_luhn(body + d))


# ---------------------------------------------------------------------- keys


def test_the_default_deny_list_is_the_documented_one() -> None:
    assert DEFAULT_KEYS == (
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "set-cookie",
        "session",
        "credit_card",
        "card_number",
        "cvv",
        "ssn",
    )
    assert Redaction().keys == DEFAULT_KEYS


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "Password",
        "db_password",
        "password_hash",
        "passwords",
        "passwd",
        "client_secret",
        "clientSecret",
        "access_token",
        "accessToken",
        "authtoken",
        "token1",
        "X-Api-Key",
        "x_api_key",
        "apiKey",
        "APIKey",
        "XApiKey",
        "apikey",
        "api.key",
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "Set-Cookie",
        "setcookie",
        "session",
        "session_id",
        "sessionId",
        "credit_card",
        "creditCardNumber",
        "card_number",
        "cardnumber",
        "cvv",
        "CVV2",
        "ssn",
        "user ssn",
    ],
)
def test_sensitive_keys(key: str) -> None:
    policy = Redaction()
    assert policy.is_sensitive(key)
    assert policy.redact({key: "s3cr3t", "other": 1}) == {key: REDACTED, "other": 1}


@pytest.mark.parametrize(
    "key",
    [
        "tokenizer_version",
        "cardinality",
        "secretary_count",
        "username",
        "card",
        "number",
        "api",
        "key",
        "sess",
        "data",
        "",
        "___",
    ],
)
def test_keys_that_are_not_sensitive(key: str) -> None:
    policy = Redaction()
    assert not policy.is_sensitive(key)
    assert policy.redact({key: "visible"}) == {key: "visible"}


def test_only_str_and_bytes_keys_can_be_sensitive() -> None:
    policy = Redaction()
    assert policy.is_sensitive(b"authorization")
    assert not policy.is_sensitive(42)
    assert not policy.is_sensitive(None)
    assert policy.redact({b"token": "t", 42: "v", (1, 2): "w"}) == {
        b"token": REDACTED,
        42: "v",
        (1, 2): "w",
    }


def test_extra_keys_extend_and_keys_replace_the_deny_list() -> None:
    extended = Redaction(extra_keys=("pin", "private-key"))
    assert extended.keys == DEFAULT_KEYS
    assert extended.redact({"pin": 1234, "privateKey": "k", "password": "p"}) == {
        "pin": REDACTED,
        "privateKey": REDACTED,
        "password": REDACTED,
    }
    replaced = Redaction(keys=["pin"])
    assert replaced.keys == ("pin",)
    assert replaced.redact({"pin": 1, "password": "p"}) == {"pin": REDACTED, "password": "p"}


def test_the_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redaction, "_KEYS_SEEN_MAX", 2)
    policy = Redaction()
    data = {"a": 1, "b": 2, "token": "t", "c": 3}
    assert policy.redact(data) == {"a": 1, "b": 2, "token": REDACTED, "c": 3}
    assert policy.redact(data) == {"a": 1, "b": 2, "token": REDACTED, "c": 3}


# ---------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CARD, REDACTED),
        ("4111 1111 1111 1111", REDACTED),
        ("4111-1111-1111-1111", REDACTED),
        ("3782 822463 10005", REDACTED),
        (f"paid with {CARD}.", f"paid with {REDACTED}."),
        ("card 4111 1111 1111 1111 exp 12 25", f"card {REDACTED} exp 12 25"),
        ("order 7 4111 1111 1111 1111", f"order 7 {REDACTED}"),
        (f"{AMEX}/{CARD}", f"{REDACTED}/{REDACTED}"),
        ("4111111111111112", "4111111111111112"),  # fails the Luhn check
        ("411111111111", "411111111111"),  # 12 digits: too short
        ("12345678901234567890123", "12345678901234567890123"),  # one group of 23 digits
        ("4111  1111 1111 1111", "4111  1111 1111 1111"),  # two spaces split the number
        ("ssn 123-45-6789 on file", f"ssn {REDACTED} on file"),
        ("1234-45-6789", "1234-45-6789"),
        ("call 555-123-4567", "call 555-123-4567"),
        ("2024-01-31T10:00:00Z", "2024-01-31T10:00:00Z"),
        ("mail bob@example.com", "mail bob@example.com"),  # e-mails are off by default
        ("", ""),
        ("no digits here", "no digits here"),
    ],
)
def test_value_patterns_in_text(text: str, expected: str) -> None:
    assert Redaction().redact_text(text) == expected
    assert Redaction().redact(text) == expected


def test_emails_are_redacted_when_switched_on() -> None:
    policy = Redaction(emails=True)
    assert policy.redact_text("mail bob.smith+x@mail.example.com now") == f"mail {REDACTED} now"
    assert policy.redact_text("a @ b") == "a @ b"
    assert policy.redact({"contact": ["bob@example.com"]}) == {"contact": [REDACTED]}


def test_value_patterns_can_be_switched_off_one_by_one() -> None:
    text = f"{CARD} 123-45-6789"
    assert Redaction(cards=False).redact_text(text) == f"{CARD} {REDACTED}"
    assert Redaction(ssns=False).redact_text(text) == f"{REDACTED} 123-45-6789"
    assert Redaction(cards=False, ssns=False).redact_text(text) == text


def test_int_card_numbers_are_redacted_other_numbers_are_not() -> None:
    policy = Redaction()
    assert policy.redact([int(CARD), -int(CARD), 4111111111111112, 42, True, 10**30]) == [
        REDACTED,
        REDACTED,
        4111111111111112,
        42,
        True,
        10**30,
    ]
    assert Redaction(cards=False).redact(int(CARD)) == int(CARD)


def test_luhn() -> None:
    assert luhn_valid(CARD)
    assert luhn_valid(AMEX)
    assert luhn_valid("0")
    assert not luhn_valid("4111111111111112")


def test_string_keys_are_searched_for_value_patterns_too() -> None:
    assert Redaction().redact({CARD: 1}) == {REDACTED: 1}


class Text(str):
    __slots__ = ()


def test_str_subclasses_are_redacted_as_text() -> None:
    assert Redaction().redact([Text(f"card {CARD}")]) == [f"card {REDACTED}"]
    assert Redaction().redact({Text("password"): "p"}) == {"password": REDACTED}


# ---------------------------------------------------------------------- structure


Point = namedtuple("Point", "x y")


class Opaque:
    def __init__(self, secret: str) -> None:
        self.secret = secret


def test_redact_copies_every_container_kind_at_any_depth() -> None:
    opaque = Opaque("kept")
    data = {
        "user": {"name": "bob", "auth": {"password": "p", "history": [{"token": "t"}]}},
        "pairs": (("Authorization", "Bearer x"), ("accept", "*/*"), (b"cookie", b"c=1")),
        "point": Point(CARD, 2),
        "tags": {"a", CARD},
        "frozen": frozenset({CARD}),
        "proxy": MappingProxyType({"secret": 1}),
        "ordered": OrderedDict(ssn="123-45-6789"),
        "opaque": opaque,
        "bytes": b"4111111111111111",
        "float": 1.5,
        "none": None,
    }
    out = Redaction().redact(data)
    assert out == {
        "user": {"name": "bob", "auth": {"password": REDACTED, "history": [{"token": REDACTED}]}},
        "pairs": (("Authorization", REDACTED), ("accept", "*/*"), (b"cookie", REDACTED)),
        "point": Point(REDACTED, 2),
        "tags": {"a", REDACTED},
        "frozen": frozenset({REDACTED}),
        "proxy": {"secret": REDACTED},
        "ordered": {"ssn": REDACTED},
        "opaque": opaque,
        "bytes": b"4111111111111111",
        "float": 1.5,
        "none": None,
    }
    assert type(out["point"]) is Point
    assert type(out["frozen"]) is frozenset
    assert type(out["proxy"]) is dict
    assert out["opaque"] is opaque  # not looked into


def test_a_whole_value_under_a_sensitive_key_is_replaced() -> None:
    assert Redaction().redact({"session": {"id": 1, "user": [1, 2]}, "token": None}) == {
        "session": REDACTED,
        "token": REDACTED,
    }


def test_cycles_and_shared_references_are_copied_once() -> None:
    shared = {"password": "p"}
    loop: list[Any] = [shared, shared]
    loop.append(loop)
    parent: dict[str, Any] = {"name": "n"}
    parent["self"] = parent
    holder: list[Any] = []
    tup = (holder, CARD)
    holder.append(tup)

    out = Redaction().redact([loop, parent, tup])
    copied_loop, copied_parent, copied_tup = out
    assert copied_loop[0] == {"password": REDACTED}
    assert copied_loop[0] is copied_loop[1]
    assert copied_loop[2] is copied_loop
    assert copied_parent["self"] is copied_parent
    assert copied_parent["name"] == "n"
    assert copied_tup[1] == REDACTED
    assert copied_tup[0][0][0] is copied_tup[0]
    assert loop[2] is loop  # the input is untouched
    assert shared == {"password": "p"}


def test_off_redacts_nothing_and_returns_the_value_itself() -> None:
    policy = Redaction.off()
    data = {"password": "p", "card": CARD}
    assert not policy.enabled
    assert policy.redact(data) is data
    assert not policy.is_sensitive("password")
    assert policy.redact_text(CARD) == CARD
    assert Redaction().enabled
    assert Redaction(keys=(), cards=False, ssns=False, emails=True).enabled


def test_redaction_is_a_frozen_value() -> None:
    assert Redaction(extra_keys=["pin"]) == Redaction(extra_keys=("pin",))
    assert hash(Redaction()) == hash(Redaction())
    assert Redaction() != Redaction(emails=True)
    assert "_key_pattern" not in repr(Redaction())


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"keys": "password"}, TypeError, "Redaction: keys and extra_keys must be a sequence"),
        ({"extra_keys": 3}, TypeError, "Redaction: keys and extra_keys must be a sequence"),
        ({"keys": ["password", 3]}, TypeError, "Redaction: keys must be strings, got 3"),
        ({"extra_keys": ["--"]}, ValueError, "Redaction: extra_keys entries need a letter"),
        ({"extra_keys": [""]}, ValueError, "Redaction: extra_keys entries need a letter"),
        ({"emails": "yes"}, TypeError, "Redaction: emails must be a bool, got 'yes'"),
        ({"cards": 1}, TypeError, "Redaction: cards must be a bool, got 1"),
        ({"ssns": None}, TypeError, "Redaction: ssns must be a bool, got None"),
    ],
)
def test_bad_configuration_names_the_argument(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Redaction(**kwargs)


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Redaction(("pin",))  # type: ignore[call-arg]


# ---------------------------------------------------------------------- properties

SAFE_TEXT = st.text(max_size=12)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    SAFE_TEXT,
    st.sampled_from([CARD, "123-45-6789", f"x {AMEX} y"]),
)
keys = st.one_of(SAFE_TEXT, st.sampled_from(DEFAULT_KEYS), st.integers())
nested = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
        st.frozensets(st.one_of(SAFE_TEXT, st.integers()), max_size=3),
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(nested)
def test_redact_never_mutates_its_input_and_is_idempotent(value: Any) -> None:
    snapshot = copy.deepcopy(value)
    policy = Redaction(emails=True)
    once = policy.redact(value)
    assert value == snapshot
    assert policy.redact(once) == once


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid number of 13 to 19 digits, its groups split by single spaces or dashes."""
    length = draw(st.integers(13, 19))
    number = with_check_digit(
        draw(st.text(string.digits, min_size=length - 1, max_size=length - 1))
    )
    cuts = sorted(draw(st.sets(st.integers(1, length - 1), max_size=5)))
    parts = [number[start:end] for start, end in zip([0, *cuts], [*cuts, length], strict=True)]
    separators = draw(st.lists(st.sampled_from(" -"), min_size=len(cuts), max_size=len(cuts)))
    return parts[0] + "".join(sep + part for sep, part in zip(separators, parts[1:], strict=True))


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(max_size=20),
    card=card_numbers(),
    suffix=st.text(max_size=20),
    boundary=st.sampled_from([" ", "-", ":", "\n", "x", "=", "("]),
)
def test_card_numbers_inside_arbitrary_text_are_redacted(
    prefix: str, card: str, suffix: str, boundary: str
) -> None:
    assume(card not in prefix + suffix)
    text = prefix + boundary + card + " " + suffix
    redacted = Redaction().redact_text(text)
    assert card not in redacted
    assert REDACTED in redacted
    assert Redaction().redact({"note": [text]})["note"][0] == redacted


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6), max_size=3),
    st.sampled_from(DEFAULT_KEYS),
    st.lists(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6), max_size=3),
    st.sampled_from(["_", "-", ".", "camel"]),
)
def test_a_deny_term_as_a_word_of_a_key_makes_it_sensitive(
    before: list[str], term: str, after: list[str], style: str
) -> None:
    words = [*before, term, *after]
    if style == "camel":
        key = words[0] + "".join(word[:1].upper() + word[1:] for word in words[1:])
    else:
        key = style.join(words)
    assert Redaction().is_sensitive(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:s3cr3t@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
        ("redis://:pw@cache:6379", "redis://:[REDACTED]@cache:6379"),
        ("https://example.org/a@b", "https://example.org/a@b"),
        ("no url here: a:b@c", "no url here: a:b@c"),
    ],
)
def test_url_passwords_are_redacted(text: str, expected: str) -> None:
    assert Redaction().redact_text(text) == expected
    assert Redaction(url_credentials=False).redact_text(text) == text
