"""Definitions refuse bad declarations at once, naming the definition and the option."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import kernel
import middleware as mw


@attrs.frozen
class Config:
    url: str


async def body() -> None:
    return None


def sync_body() -> None:
    return None


async def generator_body() -> Any:
    yield None


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: kernel.resource("9lives")(body), "resource: id must be a str"),
        (lambda: kernel.task("")(body), "task: id must be a str"),
        (lambda: kernel.event("has space"), "event: id must be a str"),
        (lambda: kernel.tag(3), "tag: id must be a str"),  # type: ignore[arg-type]
        (
            lambda: kernel.resource("db", config=dict)(body),
            "resource 'db': config must be an attrs",
        ),
        (lambda: kernel.task("t", input=int)(body), "task 't': input must be an attrs class"),
        (lambda: kernel.event("e", payload=str), "event 'e': payload must be an attrs class"),
        (lambda: kernel.tag("x", config=list), "tag 'x': config must be an attrs class"),
        (lambda: kernel.resource("db", deps=[1])(body), "resource 'db': deps must be a dict"),
        (lambda: kernel.task("t", deps={"not valid": 1})(body), "deps keys must be identifiers"),
        (lambda: kernel.resource("db")(sync_body), "resource 'db': must decorate an async"),
        (lambda: kernel.task("t")(generator_body), "task 't': must decorate an async function"),
        (lambda: kernel.hook("h", on="*")(sync_body), "hook 'h': must decorate an async function"),
        (lambda: kernel.resource("db", health=sync_body)(body), "health must be an async function"),
        (lambda: kernel.resource("db", tags="public")(body), "tags must be a sequence of tags"),
        (lambda: kernel.resource("db", tags=[1])(body), "tags must be kernel.tag"),
        (
            lambda: kernel.resource("db", tags=[kernel.tag("t", config=Config)])(body),
            r"tag 't' has a config type; attach it with t.with_config",
        ),
        (lambda: kernel.task("t", middleware=[5])(body), r"task 't': Pipeline: middlewares\[0\]"),
        (lambda: kernel.hook("h", on=5)(body), "hook 'h': on must be an event, a list"),
        (lambda: kernel.hook("h", on="everything")(body), "hook 'h': on must be events or"),
        (lambda: kernel.hook("h", on=[])(body), "hook 'h': on must be events or '\\*'"),
        (lambda: kernel.hook("h", on=[1])(body), "hook 'h': on must be events or '\\*'"),
        (lambda: kernel.hook("h", on="*", order=1.5)(body), "hook 'h': order must be an int"),
        (lambda: kernel.optional("db"), "kernel.optional: expected a resource, task or event"),
        (lambda: kernel.App("a", register="db"), "App 'a': register must be a list"),
        (lambda: kernel.App("a", overrides=[1]), "App 'a': overrides must be kernel.override"),
        (lambda: kernel.resource("db")(body).with_config({}), "resource 'db': takes no config"),
        (lambda: kernel.resource("db")(body).fork("bad id"), "Resource.fork: id must be a str"),
        (
            lambda: kernel.override(kernel.resource("db")(body), kernel.task("db")(body)),
            "same kind of definition, got Resource and Task",
        ),
    ],
)
def test_bad_declarations_are_refused(declare: Any, message: str) -> None:
    with pytest.raises(kernel.DefinitionError, match=message):
        declare()


def test_definition_errors_are_type_errors_too() -> None:
    assert issubclass(kernel.DefinitionError, TypeError)
    assert issubclass(kernel.DefinitionError, kernel.KernelError)


async def test_calling_a_task_calls_the_bare_body() -> None:
    seen: list[str] = []

    async def record(call: mw.Call, next: mw.Next) -> Any:
        seen.append("middleware")
        return await next(call)

    @kernel.task("greet", middleware=[record], deps={"prefix": kernel.logger})
    async def greet(name: str, *, prefix: str) -> str:
        return f"{prefix} {name}"

    assert await greet("ann", prefix="hi") == "hi ann"
    assert seen == []
    assert len(greet.pipeline) == 1


def test_configured_copies_forks_and_tags() -> None:
    region = kernel.tag("region", config=Config)
    public = kernel.tag("public")

    @kernel.resource("db", config=Config, tags=[public, region.with_config({"url": "eu"})])
    async def db(config: Config) -> Any:
        yield config

    configured = db.with_config({"url": "x"})
    assert configured.id == "db"
    assert configured.config == {"url": "x"}
    assert db.config is not configured.config
    replica = db.fork("db-replica")
    assert (replica.id, replica.fn) == ("db-replica", db.fn)
    assert db.tags == (kernel.TagUse(public), kernel.TagUse(region, Config("eu")))
    assert db.is_generator
    assert not db.wants_scope
    # A tag without a config type carries any value as is.
    assert kernel.tag("owner").with_config({"team": "payments"}).config == {"team": "payments"}


def test_hooks_listen_to_one_event_a_list_or_everything() -> None:
    a, b = kernel.event("a"), kernel.event("b")
    assert kernel.hook("one", on=a)(body).on == (a,)
    assert kernel.hook("two", on=[a, b], order=-1)(body).on == (a, b)
    everything = kernel.hook("all", on="*")(body)
    assert everything.wildcard
    assert everything.on == "*"


def test_override_gives_the_replacement_the_original_id() -> None:
    original = kernel.task("orders.create")(body)
    replacement = kernel.task("fake")(body)
    swap = kernel.override(original, replacement)
    assert swap.replacement.id == "orders.create"
    assert swap.original is original


def test_optional_is_the_deprecated_name_of_optional_dependency() -> None:
    with pytest.warns(DeprecationWarning, match="shadowed typing.Optional"):
        old = kernel.Optional  # type: ignore[attr-defined]
    assert old is kernel.OptionalDependency
    assert "Optional" not in kernel.__all__  # `from kernel import *` keeps typing's
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        kernel.Nope  # type: ignore[attr-defined]  # noqa: B018
