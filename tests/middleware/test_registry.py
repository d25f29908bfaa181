from __future__ import annotations

import pytest

import middleware as mw


def test_register_get_replace_and_unregister() -> None:
    registry = mw.Registry()
    external = mw.Pipeline([mw.timeout(5.0)], name="external-http")
    assert registry.register("external-http", external) is external
    assert registry.get("external-http") is external
    with pytest.raises(ValueError, match="'external-http' is registered already"):
        registry.register("external-http", mw.Pipeline())
    replacement = mw.Pipeline()
    registry.register("external-http", replacement, replace=True)
    assert registry.get("external-http") is replacement
    registry.register("db", mw.Pipeline())
    assert registry.names() == ["db", "external-http"]
    registry.unregister("db")
    registry.unregister("db")
    assert registry.names() == ["external-http"]


def test_unknown_name_lists_the_known_ones() -> None:
    registry = mw.Registry()
    with pytest.raises(KeyError, match=r"no pipeline named 'x' is registered \(known: none\)"):
        registry.get("x")
    registry.register("a", mw.Pipeline())
    with pytest.raises(KeyError, match=r"\(known: a\)"):
        registry.get("x")


@pytest.mark.parametrize(
    ("name", "pipeline", "message"),
    [
        ("", mw.Pipeline(), "name must be a non-empty str"),
        (3, mw.Pipeline(), "name must be a non-empty str"),
        ("x", [mw.timeout(1)], "pipeline must be an mw.Pipeline"),
    ],
)
def test_bad_registrations_are_refused(name, pipeline, message) -> None:
    with pytest.raises(TypeError, match=message):
        mw.Registry().register(name, pipeline)


async def test_the_process_wide_registry_serves_apply() -> None:
    mw.registry.register("tests.policy", mw.Pipeline([mw.timeout(1.0)]), replace=True)
    try:

        @mw.apply(mw.registry.get("tests.policy"))
        async def work() -> int:
            return 3

        assert await work() == 3
    finally:
        mw.registry.unregister("tests.policy")
