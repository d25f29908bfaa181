"""`Redaction`: what the logs must never show, and a deep copy of a value without it.

Two kinds of rules, both replacing what they match by ``"[REDACTED]"``:

- **Keys.** The value under a sensitive key is replaced whole (whatever its type), in dicts
  (any `Mapping`) at any depth, and in ``(key, value)`` pairs (2-tuples, as HTTP header
  lists are). A key is split into lower-case words at ``_``, ``-``, ``.``, spaces, digits
  and camelCase humps; it is sensitive when a deny term's words occur in it consecutively,
  the term's first word possibly ending a longer word and its last word possibly followed
  by ``s``, and a multi-word term possibly written as one word. So ``db_password``,
  ``X-Api-Key``, ``apikey``, ``accessToken``, ``authtoken``, ``passwords`` and
  ``session_id`` are sensitive, ``tokenizer_version`` and ``cardinality`` are not.
- **Keys in text.** Inside every string, the value written after a sensitive key, as the
  ``repr`` of a dict, keyword arguments, a query string, a header line or JSON write it:
  ``'password': 's3cr3t'``, ``password='s3cr3t'``, ``token=abc&x=1``, ``Authorization:
  Bearer abc``, ``"api_key": [1, 2]``, ``('cookie', 'c')``. A quoted value keeps its quotes
  around ``[REDACTED]``; a bracketed one is replaced to its closing bracket; a bare one up to
  the next space, comma, semicolon, ``&`` or closing bracket (an auth scheme such as
  ``Bearer`` takes the word after it along). ``name: message`` where the name ends in
  ``Error``, ``Exception`` or ``Warning`` is an exception's header line, not a key.
- **Values.** Inside every string (values, keys, and the text of the log message): card
  numbers (13 to 19 digits passing the Luhn check, digit groups possibly separated by one
  space or dash), US social security numbers (``ddd-dd-dddd``) and, when ``emails=True``,
  e-mail addresses. An int of 13 to 19 digits passing the Luhn check is a card number too.
- **Exceptions** inside a value become their ``repr``, redacted as text: a live exception
  object holds its traceback, whose frames hold every local variable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

__all__ = ["DEFAULT_KEYS", "REDACTED", "Redaction", "luhn_valid", "safe_repr"]

#: What a redacted value is replaced by.
REDACTED: Final = "[REDACTED]"

#: The deny-list of `Redaction.keys` by default.
DEFAULT_KEYS: Final[tuple[str, ...]] = (
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

_WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A maximal run of at least 13 digits, single spaces or dashes allowed between them.
_CARD_RUN: Final = re.compile(r"(?<![0-9])(?<![0-9][ -])[0-9](?:[ -]?[0-9]){12,}")
_DIGIT_GROUP: Final = re.compile(r"[0-9]+")
_SSN: Final = re.compile(r"(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])")
_EMAIL: Final = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
#: ``scheme://user:password@``: the password of a URL with credentials.
_URL_PASSWORD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):([^\s/@]+)@")
_KEYS_SEEN_MAX: Final = 4096
_CARD_INT_MIN: Final = 10**12
_CARD_INT_END: Final = 10**19
_DIGIT: Final = re.compile(r"[0-9]")
#: A key written in text (not inside a word or a path), bare or quoted, and what separates it
#: from its value: ``=`` or ``:`` (not ``==``, ``::`` or ``://``), or ``,`` after a quoted key
#: (a ``('key', value)`` pair).
_TEXT_KEY: Final = re.compile(
    r"""(?<![\w.\-/])(?P<quote>['"]?)(?P<key>[A-Za-z_][\w.\-]*)(?P=quote)"""
    r"""(?:[ \t]*(?P<sep>[:=])(?![:=/])|(?<=['"])[ \t]*,)[ \t]*"""
)
#: Where a bare value in text ends.
_BARE_VALUE: Final = re.compile(r"""[^\s,;&)\]}>'"]+""")
#: An HTTP auth scheme: the credentials are the word after it.
_AUTH_SCHEME: Final = re.compile(r"(?i:bearer|basic|digest|token|bot)[ \t]+(?=\S)")
_STRING_PREFIX: Final = re.compile(r"""[bBrRuU]{0,2}(?=['"])""")
_CLOSING: Final = {"(": ")", "[": "]", "{": "}"}
#: The last words of exception type names, whose ``Name: message`` line is not a key.
_EXCEPTION_WORDS: Final = ("_error_", "_exception_", "_warning_")
# Exact types returned as they are without a look (the common leaves).
_SCALARS: Final = frozenset({bool, float, bytes, type(None)})


def _words(key: str) -> str:
    """``"X-Api-Key"`` -> ``"_x_api_key_"``: the key's lower-case words, ``_``-delimited."""
    return "_" + "_".join(word.lower() for word in _WORDS.findall(key)) + "_"


def _term_pattern(term: str) -> str:
    words = _words(term).strip("_").split("_")
    return "_[a-z]*" + "_?".join(re.escape(word) for word in words) + "s?_"


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _redact_cards_in_run(match: re.Match[str]) -> str:
    """A run of digit groups with every card number in it (whole groups) redacted."""
    run = match.group()
    groups = list(_DIGIT_GROUP.finditer(run))
    hit = [False] * len(groups)
    for start in range(len(groups)):
        digits = ""
        for end in range(start, len(groups)):
            digits += groups[end].group()
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                hit[start : end + 1] = [True] * (end + 1 - start)
    if not any(hit):
        return run
    out: list[str] = []
    position = 0
    for index, group in enumerate(groups):
        if not hit[index]:
            out.append(run[position : group.end()])
        elif index == 0 or not hit[index - 1]:
            out.append(run[position : group.start()] + REDACTED)
        position = group.end()
    return "".join(out)


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder naming its type when ``repr`` raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} (repr() failed)>"


def _value_span(text: str, start: int) -> tuple[int, int, int] | None:
    """The value written at ``text[start:]``: the span to replace and where it ends (past a
    closing quote), or ``None`` when there is no value there."""
    scheme = _AUTH_SCHEME.match(text, start)
    if scheme is not None:
        start = scheme.end()
    if start >= len(text):
        return None
    prefix = _STRING_PREFIX.match(text, start)
    if prefix is not None:
        quote_at = prefix.end()
        end = _quoted_end(text, quote_at)
        closed = end > quote_at + 1 and text[end - 1] == text[quote_at]
        return quote_at + 1, end - 1 if closed else end, end
    if text[start] in _CLOSING:
        end = _bracketed_end(text, start)
        return start, end, end
    bare = _BARE_VALUE.match(text, start)
    if bare is None:
        return None
    return start, bare.end(), bare.end()


def _quoted_end(text: str, quote_at: int) -> int:
    """The index after the quote closing the string opened at ``text[quote_at]`` (the end of
    the text when it is not closed)."""
    quote = text[quote_at]
    index = quote_at + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == quote:
            return index + 1
        index += 1
    return len(text)


def _bracketed_end(text: str, start: int) -> int:
    """The index after the bracket closing the one at ``text[start]``, skipping quoted
    strings (the end of the text when it is not closed)."""
    expected: list[str] = []
    index = start
    while index < len(text):
        char = text[index]
        if char in "'\"":
            index = _quoted_end(text, index)
            continue
        if char in _CLOSING:
            expected.append(_CLOSING[char])
        elif expected and char == expected[-1]:
            expected.pop()
            if not expected:
                return index + 1
        index += 1
    return len(text)


def _check_terms(instance: Redaction, attribute: attrs.Attribute[Any], value: Any) -> None:
    for term in value:
        if not isinstance(term, str):
            raise TypeError(f"Redaction: {attribute.name} must be strings, got {term!r}")
        if not _WORDS.search(term):
            raise ValueError(
                f"Redaction: {attribute.name} entries need a letter or digit, got {term!r}"
            )


def _to_terms(value: Iterable[str]) -> tuple[str, ...]:
    """attrs converter: a tuple of the terms (a lone string is an error, not its letters)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"Redaction: keys and extra_keys must be a sequence of str, got {value!r}")
    return tuple(value)


def _is_bool(instance: Redaction, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"Redaction: {attribute.name} must be a bool, got {value!r}")


@attrs.frozen(kw_only=True)
class Redaction:
    """A redaction policy: sensitive keys and the value patterns to hide (module docstring).

    ``keys`` replaces the default deny-list, ``extra_keys`` extends it; ``cards``, ``ssns``
    and ``url_credentials`` (the password in ``scheme://user:password@host``; all on by
    default) and ``emails`` (off) switch the value patterns.
    ``Redaction.off()`` redacts nothing.
    """

    keys: tuple[str, ...] = attrs.field(
        default=DEFAULT_KEYS, converter=_to_terms, validator=_check_terms
    )
    extra_keys: tuple[str, ...] = attrs.field(
        default=(), converter=_to_terms, validator=_check_terms
    )
    cards: bool = attrs.field(default=True, validator=_is_bool)
    ssns: bool = attrs.field(default=True, validator=_is_bool)
    emails: bool = attrs.field(default=False, validator=_is_bool)
    url_credentials: bool = attrs.field(default=True, validator=_is_bool)
    _key_pattern: re.Pattern[str] | None = attrs.field(init=False, repr=False, eq=False)
    _key_hint: re.Pattern[str] | None = attrs.field(init=False, repr=False, eq=False)
    _keys_seen: dict[str, tuple[str, bool]] = attrs.field(
        init=False, repr=False, eq=False, factory=dict
    )

    def __attrs_post_init__(self) -> None:
        terms = (*self.keys, *self.extra_keys)
        pattern = re.compile("|".join(map(_term_pattern, terms))) if terms else None
        object.__setattr__(self, "_key_pattern", pattern)
        # Every word of a sensitive key is in the text, so its term's first word is too:
        # lower-cased text without any first word holds no key, and skips the scan. (One
        # search of the lower-cased text: an IGNORECASE alternation is ~8x slower.)
        firsts = sorted({_words(term).strip("_").split("_")[0] for term in terms})
        hint = re.compile("|".join(map(re.escape, firsts))) if firsts else None
        object.__setattr__(self, "_key_hint", hint)

    @classmethod
    def off(cls) -> Redaction:
        """A policy that redacts nothing."""
        return cls(keys=(), cards=False, ssns=False, emails=False, url_credentials=False)

    @property
    def enabled(self) -> bool:
        """Whether this policy can redact anything at all."""
        return (
            self._key_pattern is not None
            or self.cards
            or self.ssns
            or self.emails
            or self.url_credentials
        )

    def is_sensitive(self, key: object) -> bool:
        """Whether the value under ``key`` (a str or bytes; anything else never is) is hidden."""
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if not isinstance(key, str):
            return False
        return self._key(key)[1]

    def redact_text(self, text: str) -> str:
        """``text`` with the values after sensitive keys, card numbers, SSNs, URL passwords
        (and e-mails, when on) replaced."""
        hint = self._key_hint
        if hint is not None and hint.search(text.lower()) is not None:
            text = self._redact_keys_in_text(text)
        if self.url_credentials and "://" in text:
            text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
        if (self.cards or self.ssns) and _DIGIT.search(text) is not None:
            if self.cards:
                text = _CARD_RUN.sub(_redact_cards_in_run, text)
            if self.ssns:
                text = _SSN.sub(REDACTED, text)
        if self.emails and "@" in text:
            text = _EMAIL.sub(REDACTED, text)
        return text

    def redact(self, value: Any) -> Any:
        """A redacted deep copy of ``value``; the input is never changed.

        dicts and other mappings become dicts, lists stay lists, tuples (named ones too),
        sets and frozensets keep their type, str are redacted; any other value is returned
        as it is (it is not looked into). Shared and cyclic references are copied once, as
        `copy.deepcopy` does. With nothing to redact (``Redaction.off()``) ``value`` itself
        is returned.
        """
        if not self.enabled:
            return value
        return self._copy(value, {})

    def _copy(self, value: Any, memo: dict[int, Any]) -> Any:
        cls = type(value)
        if cls is str:
            return self.redact_text(value)
        if cls in _SCALARS:
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return self._redact_int(value)
        copied = memo.get(id(value))
        if copied is not None:
            return copied
        if cls is dict or isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            memo[id(value)] = out
            for key, item in value.items():
                if isinstance(key, str):
                    new_key, sensitive = self._key(key)
                    out[new_key] = REDACTED if sensitive else self._copy(item, memo)
                else:
                    out[key] = REDACTED if self.is_sensitive(key) else self._copy(item, memo)
            return out
        if isinstance(value, list):
            items: list[Any] = []
            memo[id(value)] = items
            items.extend([self._copy(item, memo) for item in value])
            return items
        if isinstance(value, tuple):
            return self._copy_tuple(value, memo)
        if isinstance(value, set | frozenset):
            return type(value)(self._copy(item, memo) for item in value)
        if isinstance(value, BaseException):
            return self.redact_text(safe_repr(value))
        return value

    def _redact_keys_in_text(self, text: str) -> str:
        """``text`` with the value after each sensitive key (see the module docstring)."""
        out: list[str] = []
        done = 0  # text[:done] is decided
        for match in _TEXT_KEY.finditer(text):
            if match.start() < done:
                continue  # inside a value already replaced
            words = _words(match["key"])
            if match["sep"] == ":" and words.endswith(_EXCEPTION_WORDS):
                continue
            if not self._key(match["key"])[1]:
                continue
            span = _value_span(text, match.end())
            if span is None:
                continue
            begin, stop, end = span
            out.append(text[done:begin] + REDACTED + text[stop:end])
            done = end
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def _key(self, key: str) -> tuple[str, bool]:
        """``key`` redacted as text, and whether its value is hidden (cached per policy)."""
        try:
            return self._keys_seen[key]
        except KeyError:
            pass
        pattern = self._key_pattern
        found = (
            self.redact_text(key),
            pattern is not None and pattern.search(_words(key)) is not None,
        )
        if len(self._keys_seen) >= _KEYS_SEEN_MAX:
            self._keys_seen.clear()
        self._keys_seen[key] = found
        return found

    def _copy_tuple(self, value: tuple[Any, ...], memo: dict[int, Any]) -> Any:
        items = [self._copy(item, memo) for item in value]
        if len(items) == 2 and self.is_sensitive(value[0]):
            items[1] = REDACTED
        # A cycle through this tuple (via a list or dict) may have copied it already.
        copied = memo.get(id(value))
        if copied is not None:
            return copied
        out = type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        memo[id(value)] = out
        return out

    def _redact_int(self, value: int) -> Any:
        if (
            self.cards
            and _CARD_INT_MIN <= abs(value) < _CARD_INT_END
            and luhn_valid(str(abs(value)))
        ):
            return REDACTED
        return value
