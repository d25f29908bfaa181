"""The settings of an HTTP exposure: `ExposureConfig`, and `BearerAuth` (static bearer tokens).

Nothing here imports the HTTP stack: declaring an exposure (``kernel.exposure.http(...)``)
validates its settings without hypercorn or Starlette; only starting it needs them.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

import attrs

from kernel._definitions import Tag, tag
from kernel._errors import DefinitionError
from resilience.validate import (
    fail,
    is_bool,
    non_negative_duration,
    positive_duration,
    positive_int,
    to_seconds,
)

__all__ = ["EXPOSURE", "Authenticator", "BearerAuth", "ExposureConfig"]

#: ``async verify(token) -> principal | None``: who the bearer ``token`` belongs to.
Authenticator: TypeAlias = Callable[[str], Awaitable[Any]]

# A bearer token as HTTP carries it: visible ASCII, no spaces (RFC 6750 is stricter still).
_TOKEN: Final = re.compile(r"[\x21-\x7e]+")
_BASE_PATH: Final = re.compile(r"(/[A-Za-z0-9._~-]+)+")
#: The deepest JSON nesting an exposure may accept (parsers and converters recurse).
MAX_DEPTH: Final = 512


def _digest(token: str) -> bytes:
    # Compared as fixed-size digests: the comparison then leaks not even the token's length.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@attrs.frozen(init=False, repr=False)
class BearerAuth:
    """Static bearer tokens: ``BearerAuth(tokens={"<token>": "<principal>", ...})``.

    ``tokens`` maps each accepted token to the principal it authenticates (a name for logs
    and for `kernel.exposure.principal`), or is a sequence of tokens (principals
    ``"token#0"``, ``"token#1"``, ... by position). Tokens are visible ASCII without spaces.
    A presented token is compared with `hmac.compare_digest` against every known token, all
    of them, whatever matches (no early exit); only SHA-256 digests of the tokens are kept,
    and the repr shows none of them.
    """

    _known: tuple[tuple[bytes, str], ...]

    def __init__(self, *, tokens: Mapping[str, str] | Iterable[str]) -> None:
        if isinstance(tokens, str | bytes) or not isinstance(tokens, Iterable):
            raise TypeError(
                "BearerAuth: tokens must be a mapping {token: principal} or a sequence of "
                f"tokens, got {type(tokens).__name__}"
            )
        pairs = (
            list(tokens.items())
            if isinstance(tokens, Mapping)
            else [(token, f"token#{index}") for index, token in enumerate(tokens)]
        )
        if not pairs:
            raise ValueError("BearerAuth: tokens must not be empty")
        for index, (token, principal) in enumerate(pairs):
            # The message never shows a token: it may be a real secret.
            if not isinstance(token, str) or not _TOKEN.fullmatch(token):
                raise ValueError(
                    f"BearerAuth: tokens[{index}] must be a non-empty str of visible ASCII "
                    "characters without spaces"
                )
            if not isinstance(principal, str) or not principal:
                raise TypeError(
                    f"BearerAuth: the principal of tokens[{index}] must be a non-empty str, "
                    f"got {principal!r}"
                )
        self.__attrs_init__(tuple((_digest(token), principal) for token, principal in pairs))

    def __repr__(self) -> str:
        return f"BearerAuth(<{len(self._known)} token(s)>)"

    def principal(self, token: str) -> str | None:
        """The principal ``token`` authenticates, or ``None``; compares against every token."""
        presented = _digest(token)
        found = None
        for known, principal in self._known:
            if hmac.compare_digest(presented, known):
                found = principal
        return found

    async def __call__(self, token: str) -> str | None:
        """`principal` as an `Authenticator`. Not a checkpoint."""
        return self.principal(token)


def _is_async_callable(value: object) -> bool:
    if inspect.iscoroutinefunction(value):
        return True
    return callable(value) and inspect.iscoroutinefunction(type(value).__call__)


def _check_auth(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None or isinstance(value, BearerAuth) or _is_async_callable(value):
        return
    fail(
        instance,
        attribute.name,
        "must be a kernel.exposure.BearerAuth(tokens=...) or an async function "
        f"verify(token) -> principal | None, got {value!r}",
        TypeError,
    )


def _to_patterns(value: Any) -> Any:
    """attrs converter: an iterable of patterns becomes a tuple (a bare str is refused
    by the validator: it would allow each of its characters)."""
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return tuple(value)
    return value


def _check_patterns(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        fail(
            instance,
            attribute.name,
            f"must be a sequence of ids or glob patterns (e.g. ['api.public.*']), got {value!r}",
            TypeError,
        )
    for pattern in value:
        if not isinstance(pattern, str) or not pattern:
            fail(
                instance,
                attribute.name,
                f"must hold non-empty str patterns, got {pattern!r}",
                TypeError,
            )


def _check_host(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        fail(instance, attribute.name, f"must be a host name or address, got {value!r}", TypeError)


def _check_port(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(instance, attribute.name, f"must be an int, got {value!r}", TypeError)
    if not 0 <= value <= 65535:
        fail(instance, attribute.name, f"must be in 0..65535 (0: any free port), got {value!r}")


def _check_base_path(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        fail(instance, attribute.name, f"must be a str, got {value!r}", TypeError)
    if not _BASE_PATH.fullmatch(value):
        fail(
            instance,
            attribute.name,
            "must be a path of one or more /segments of letters, digits and . _ ~ - without "
            f"a trailing slash (e.g. '/__runner'), got {value!r}",
        )


def _check_max_depth(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    positive_int(instance, attribute, value)
    if value > MAX_DEPTH:
        fail(instance, attribute.name, f"must be <= {MAX_DEPTH}, got {value!r}")


@attrs.frozen(kw_only=True)
class ExposureConfig:
    """The validated settings of one HTTP exposure; see `kernel.exposure.http`.

    Also the config of its ``kernel.exposure`` tag, which ``trio-runner doctor`` reads
    (``auth``, ``allow_tasks``, ``allow_events``, ``body_limit``).
    """

    host: str = attrs.field(default="127.0.0.1", validator=_check_host)
    port: int = attrs.field(default=0, validator=_check_port)
    base_path: str = attrs.field(default="/__runner", validator=_check_base_path)
    auth: BearerAuth | Authenticator | None = attrs.field(default=None, validator=_check_auth)
    allow_tasks: tuple[str, ...] = attrs.field(
        default=(), converter=_to_patterns, validator=_check_patterns
    )
    allow_events: tuple[str, ...] = attrs.field(
        default=(), converter=_to_patterns, validator=_check_patterns
    )
    body_limit: int = attrs.field(default=2 * 1024 * 1024, validator=positive_int)
    max_depth: int = attrs.field(default=32, validator=_check_max_depth)
    health: bool = attrs.field(default=True, validator=is_bool)
    metrics: bool = attrs.field(default=True, validator=is_bool)
    allow_anonymous: bool = attrs.field(default=False, validator=is_bool)
    graceful_timeout: float = attrs.field(
        default=5.0, converter=to_seconds, validator=non_negative_duration
    )
    read_timeout: float = attrs.field(
        default=30.0, converter=to_seconds, validator=positive_duration
    )
    body_timeout: float = attrs.field(
        default=60.0, converter=to_seconds, validator=positive_duration
    )
    health_cache: float = attrs.field(
        default=1.0, converter=to_seconds, validator=non_negative_duration
    )

    def __attrs_post_init__(self) -> None:
        # Fail closed: serving without authentication must be asked for in so many words.
        if self.auth is None and not self.allow_anonymous:
            raise DefinitionError(
                "ExposureConfig: auth is required: pass auth=kernel.exposure.BearerAuth("
                "tokens=...) or an async verify(token) -> principal | None; to serve without "
                "authentication (never on a reachable interface) pass allow_anonymous=True"
            )


#: The tag every HTTP exposure carries, with its `ExposureConfig` (``trio-runner doctor``
#: finds exposures by this id).
EXPOSURE: Final[Tag] = tag("kernel.exposure", config=ExposureConfig)
