from __future__ import annotations

import pytest
import trio

from resilience import Event, Fallback


async def fail(exc: Exception) -> str:
    raise exc


async def test_value_on_failure(events: list[Event]) -> None:
    fallback = Fallback(value="cached", name="profile")
    assert await fallback.call(fail, KeyError("k")) == "cached"
    assert [(e.kind, e.source) for e in events] == [("fallback.used", "profile")]


async def test_success_is_untouched() -> None:
    async def ok() -> str:
        return "fresh"

    assert await Fallback(value="cached").call(ok) == "fresh"


async def test_handler_receives_the_error_and_the_arguments() -> None:
    seen: list[tuple[Exception, tuple[object, ...], dict[str, object]]] = []

    async def handler(exc: Exception, *args: object, **kwargs: object) -> str:
        seen.append((exc, args, kwargs))
        return "handled"

    async def lookup(user: str, *, region: str) -> str:
        raise LookupError(user)

    assert await Fallback(handler=handler).call(lookup, "ann", region="eu") == "handled"
    [(exc, args, kwargs)] = seen
    assert isinstance(exc, LookupError)
    assert exc.args == ("ann",)
    assert args == ("ann",)
    assert kwargs == {"region": "eu"}


async def test_on_selects_failures_by_type_or_predicate() -> None:
    by_type = Fallback(value=0, on=(KeyError,))
    assert await by_type.call(fail, KeyError()) == 0
    with pytest.raises(ValueError, match="kept"):
        await by_type.call(fail, ValueError("kept"))

    by_predicate = Fallback(value=0, on=lambda exc: "soft" in str(exc))
    assert await by_predicate.call(fail, RuntimeError("soft")) == 0
    with pytest.raises(RuntimeError, match="hard"):
        await by_predicate.call(fail, RuntimeError("hard"))


async def test_none_is_a_valid_fallback_value() -> None:
    assert await Fallback(value=None).call(fail, KeyError()) is None


async def test_cancellation_is_never_turned_into_a_fallback(autojump_clock) -> None:
    with trio.move_on_after(1) as scope:
        await Fallback(value="no").call(trio.sleep, 5)
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({}, ValueError, "Fallback: value or handler must be given, and not both"),
        ({"value": 1, "handler": fail}, ValueError, "and not both"),
        ({"handler": 3}, TypeError, "Fallback: handler must be an async callable"),
        ({"value": 1, "on": trio.Cancelled}, ValueError, "Fallback: on must name Exception"),
        ({"value": 1, "on": 7}, TypeError, "Fallback: on must be exception types"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, exc, message) -> None:
    with pytest.raises(exc, match=message):
        Fallback(**kwargs)
