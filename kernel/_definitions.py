"""Definitions: what an application is made of, declared before anything runs.

All definitions are frozen attrs classes compared by identity; the graph matches them by
``id``. ``res.with_config(...)`` and ``res.fork(...)`` return new definitions.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Generic, Literal, Protocol, TypeAlias, overload

import attrs
from typing_extensions import ParamSpec, TypeVar

import middleware as mw
from kernel._errors import DefinitionError
from kernel._structure import structure

__all__ = [
    "App",
    "Deps",
    "Event",
    "Hook",
    "OptionalDependency",
    "Override",
    "Resource",
    "Tag",
    "TagUse",
    "Task",
    "event",
    "hook",
    "optional",
    "override",
    "resource",
    "tag",
    "task",
]

#: A resource's value (``rt.resource(res)`` returns one); ``Resource`` alone is ``Resource[Any]``.
T = TypeVar("T", default=Any)
#: A task body's parameters and result (``Task`` alone is ``Task[..., Any]``).
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)

_ID: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def _check_id(kind: str, id: object) -> str:
    if not isinstance(id, str) or not _ID.match(id):
        raise DefinitionError(
            f"{kind}: id must be a str of letters, digits and . _ : / - (not starting with a "
            f"digit or punctuation), got {id!r}"
        )
    return id


def _check_attrs_type(owner: str, name: str, value: object) -> None:
    if value is not None and not (isinstance(value, type) and attrs.has(value)):
        raise DefinitionError(f"{owner}: {name} must be an attrs class or None, got {value!r}")


def _check_deps(owner: str, deps: object) -> None:
    if deps is None or callable(deps):
        return
    if not isinstance(deps, Mapping):
        raise DefinitionError(
            f"{owner}: deps must be a dict {{keyword: definition}} or a zero-argument callable "
            f"returning one, got {deps!r}"
        )
    for keyword in deps:
        if not isinstance(keyword, str) or not keyword.isidentifier():
            raise DefinitionError(f"{owner}: deps keys must be identifiers, got {keyword!r}")


def _check_async(owner: str, fn: object, *, generator_ok: bool) -> None:
    if inspect.iscoroutinefunction(fn):
        return
    if generator_ok and inspect.isasyncgenfunction(fn):
        return
    what = "an async function or async generator" if generator_ok else "an async function"
    raise DefinitionError(f"{owner}: must decorate {what}, got {fn!r}")


@attrs.frozen(eq=False)
class Tag:
    """Metadata attached to definitions; ``rt.find(tag)`` lists who carries it.

    Use ``tags=(tag,)`` or ``tags=(tag.with_config(...),)`` when the tag has a ``config``
    type (a dict is structured into it).
    """

    id: str
    config: type[Any] | None = None

    def with_config(self, value: Any) -> TagUse:
        """This tag with a config value (structured into ``config`` when that is set)."""
        if self.config is not None:
            value = structure(value, self.config, owner=f"tag {self.id!r}", path="config")
        return TagUse(self, value)


@attrs.frozen
class TagUse:
    """A tag as attached to one definition, with its config (``None`` when it has none)."""

    tag: Tag
    config: Any = None


def _tags(owner: str, tags: Iterable[object]) -> tuple[TagUse, ...]:
    if isinstance(tags, str | Tag | TagUse) or not isinstance(tags, Iterable):
        raise DefinitionError(f"{owner}: tags must be a sequence of tags, got {tags!r}")
    uses: list[TagUse] = []
    for item in tags:
        if isinstance(item, Tag):
            if item.config is not None:
                raise DefinitionError(
                    f"{owner}: tag {item.id!r} has a config type; attach it with "
                    f"{item.id}.with_config(...)"
                )
            uses.append(TagUse(item))
        elif isinstance(item, TagUse):
            uses.append(item)
        else:
            raise DefinitionError(f"{owner}: tags must be kernel.tag(...) values, got {item!r}")
    return tuple(uses)


@attrs.frozen(eq=False)
class Resource(Generic[T]):
    """A singleton with a lifetime: made once when the app starts, disposed when it stops.

    Declared with `resource`. ``fn`` is an async generator (init before ``yield value``,
    dispose after) or an async function (no dispose). It receives its config first when
    ``config`` is set, its deps as keywords, and ``scope`` when it has such a parameter.
    ``T`` is the type of its value: ``rt.resource(res)`` is a ``T`` to mypy.
    """

    id: str
    fn: Callable[..., Any]
    deps: Deps = None
    config_type: type[Any] | None = None
    config: Any = UNSET
    tags: tuple[TagUse, ...] = ()
    health: Callable[[T], Awaitable[None]] | None = None
    #: Whether ``fn`` is an async generator (so the resource has a dispose part).
    is_generator: bool = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: inspect.isasyncgenfunction(self.fn), takes_self=True),
    )
    #: Whether ``fn`` takes a ``scope`` parameter (and so gets a nursery of its own).
    wants_scope: bool = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: "scope" in inspect.signature(self.fn).parameters, takes_self=True
        ),
    )

    def with_config(self, value: Any) -> Resource[T]:
        """A copy carrying ``value`` as its config, for registration.

        A dict is structured into the ``config`` type when the app starts; an error names
        the resource and the field path.
        """
        if self.config_type is None:
            raise DefinitionError(f"resource {self.id!r}: takes no config (declare config=...)")
        return attrs.evolve(self, config=value)

    def fork(self, new_id: str) -> Resource[T]:
        """A second, independent resource with the same implementation and id ``new_id``."""
        return attrs.evolve(self, id=_check_id("Resource.fork", new_id))


@attrs.frozen(eq=False)
class Task(Generic[P, R]):
    """An async action with injected dependencies and a middleware pipeline.

    Declared with `task`. Calling the task object calls the bare body (pass its deps
    yourself, handy in unit tests); ``rt.run_task(task, ...)`` and injected dependencies run
    the full pipeline with deps resolved. ``P`` and ``R`` are the body's parameters and
    result: calling the task is checked against ``P``, and ``await rt.run_task(task, ...)``
    is an ``R`` to mypy (its arguments are not checked: deps are injected, and a task with
    ``input=`` also takes a dict).
    """

    id: str
    fn: Callable[P, Awaitable[R]]
    deps: Deps = None
    pipeline: mw.Pipeline = attrs.Factory(mw.Pipeline)
    tags: tuple[TagUse, ...] = ()
    input: type[Any] | None = None
    result: type[Any] | None = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        """The bare body: no middleware, no injection, no validation."""
        return self.fn(*args, **kwargs)


@attrs.frozen(eq=False)
class Event:
    """A typed signal; hooks listen to it. Declared with `event`."""

    id: str
    payload: type[Any] | None = None


@attrs.frozen(eq=False)
class Hook:
    """A handler run when one of its events is emitted. Declared with `hook`."""

    id: str
    fn: Callable[..., Awaitable[Any]]
    on: tuple[Event, ...] | Literal["*"]
    order: int = 0
    deps: Deps = None

    @property
    def wildcard(self) -> bool:
        """Whether the hook listens to every event."""
        return self.on == "*"


@attrs.frozen(eq=False)
class OptionalDependency:
    """A dependency that resolves to ``None`` when its target is not registered."""

    target: Resource | Task | Event


@attrs.frozen(eq=False)
class Override:
    """Register ``replacement`` in place of ``original`` (same kind; it takes the id)."""

    original: Resource | Task | Hook | Event
    replacement: Resource | Task | Hook | Event


Definition: TypeAlias = "Resource | Task | Event | Hook | App"
DepTarget: TypeAlias = "Resource | Task | Event | OptionalDependency | App"
Deps: TypeAlias = "Mapping[str, DepTarget] | Callable[[], Mapping[str, DepTarget]] | None"


@attrs.frozen(eq=False, init=False)
class App:
    """The root of an application: what it registers, and overrides for tests.

    ``register`` holds definitions, configured resources and other Apps (collected
    recursively). The App is itself a resource: its value is the dict of its resolved deps.
    """

    id: str
    register: tuple[object, ...] = ()
    overrides: tuple[Override, ...] = ()
    deps: Deps = None

    def __init__(
        self,
        id: str,
        *,
        register: Iterable[object] = (),
        overrides: Iterable[Override] = (),
        deps: Deps = None,
    ) -> None:
        owner = f"App {id!r}"
        _check_id("App", id)
        _check_deps(owner, deps)
        if isinstance(register, str) or not isinstance(register, Iterable):
            raise DefinitionError(f"{owner}: register must be a list of definitions")
        listed_overrides = tuple(overrides)
        for item in listed_overrides:
            if not isinstance(item, Override):
                raise DefinitionError(
                    f"{owner}: overrides must be kernel.override(original, replacement) "
                    f"values, got {item!r}"
                )
        self.__attrs_init__(id, tuple(register), listed_overrides, deps)


class ResourceDecorator(Protocol):
    """What `resource` returns: decorating an async generator yielding ``T``, or an async
    function returning ``T``, gives a ``Resource[T]``."""

    @overload
    def __call__(self, fn: Callable[..., AsyncIterator[T]], /) -> Resource[T]: ...
    @overload
    def __call__(self, fn: Callable[..., Awaitable[T]], /) -> Resource[T]: ...


class TaskDecorator(Protocol):
    """What `task` returns: decorating ``async def f(*P) -> R`` gives a ``Task[P, R]``."""

    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...


def resource(
    id: str,
    *,
    deps: Deps = None,
    config: type[Any] | None = None,
    tags: Iterable[Tag | TagUse] = (),
    health: Callable[[Any], Awaitable[None]] | None = None,
) -> ResourceDecorator:
    """Declare a resource (decorates an async generator or async function)."""
    owner = f"resource {_check_id('resource', id)!r}"
    _check_deps(owner, deps)
    _check_attrs_type(owner, "config", config)
    uses = _tags(owner, tags)
    if health is not None and not inspect.iscoroutinefunction(health):
        raise DefinitionError(f"{owner}: health must be an async function (value) -> None")

    def decorate(fn: Callable[..., Any]) -> Resource[Any]:
        _check_async(owner, fn, generator_ok=True)
        return Resource(id, fn, deps, config, UNSET, uses, health)

    return decorate


def task(
    id: str,
    *,
    deps: Deps = None,
    middleware: Iterable[object] = (),
    tags: Iterable[Tag | TagUse] = (),
    input: type[Any] | None = None,
    result: type[Any] | None = None,
) -> TaskDecorator:
    """Declare a task (decorates an async function).

    ``middleware`` is a list of middlewares (first listed outermost), composed once at boot.
    With ``input=`` the task takes one argument, structured into that attrs type; with
    ``result=`` its return value is checked (a dict is structured) against that type.
    """
    owner = f"task {_check_id('task', id)!r}"
    _check_deps(owner, deps)
    _check_attrs_type(owner, "input", input)
    _check_attrs_type(owner, "result", result)
    uses = _tags(owner, tags)
    try:
        pipeline = mw.Pipeline(middleware)
    except TypeError as exc:
        raise DefinitionError(f"{owner}: {exc}") from exc

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Any:  # a Task[P, R]: see TaskDecorator
        _check_async(owner, fn, generator_ok=False)
        return Task(id, fn, deps, pipeline, uses, input, result)

    return decorate


def event(id: str, *, payload: type[Any] | None = None) -> Event:
    """Declare an event; ``payload`` is an attrs type emitted payloads are checked against."""
    _check_attrs_type(f"event {_check_id('event', id)!r}", "payload", payload)
    return Event(id, payload)


def hook(
    id: str,
    *,
    on: Event | Iterable[Event] | Literal["*"],
    order: int = 0,
    deps: Deps = None,
) -> Callable[[Callable[..., Awaitable[Any]]], Hook]:
    """Declare a hook on an event, a list of events, or ``"*"`` (every event).

    Lower ``order`` runs first. The hook receives a `kernel.Emission` and its deps.
    """
    owner = f"hook {_check_id('hook', id)!r}"
    _check_deps(owner, deps)
    if isinstance(order, bool) or not isinstance(order, int):
        raise DefinitionError(f"{owner}: order must be an int, got {order!r}")
    listen: tuple[Event, ...] | Literal["*"]
    if on == "*":
        listen = "*"
    elif isinstance(on, Event):
        listen = (on,)
    elif isinstance(on, Iterable):
        listen = tuple(on)
        if not listen or not all(isinstance(item, Event) for item in listen):
            raise DefinitionError(f"{owner}: on must be events or '*', got {on!r}")
    else:
        raise DefinitionError(f"{owner}: on must be an event, a list of events or '*'")

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Hook:
        _check_async(owner, fn, generator_ok=False)
        return Hook(id, fn, listen, order, deps)

    return decorate


def tag(id: str, *, config: type[Any] | None = None) -> Tag:
    """Declare a tag; with ``config`` (an attrs type) each use carries a config value."""
    _check_attrs_type(f"tag {_check_id('tag', id)!r}", "config", config)
    return Tag(id, config)


def optional(dep: Resource | Task | Event) -> OptionalDependency:
    """Depend on ``dep`` if it is registered; receive ``None`` otherwise."""
    if not isinstance(dep, Resource | Task | Event):
        raise DefinitionError(f"kernel.optional: expected a resource, task or event, got {dep!r}")
    return OptionalDependency(dep)


def override(
    original: Resource | Task | Hook | Event, replacement: Resource | Task | Hook | Event
) -> Override:
    """Replace ``original`` by ``replacement`` wherever the app registers it (tests, stubs).

    Both must be of the same kind; the replacement takes the original's id.
    """
    if type(original) is not type(replacement) or not isinstance(
        original, Resource | Task | Hook | Event
    ):
        raise DefinitionError(
            "kernel.override: original and replacement must be the same kind of definition, "
            f"got {type(original).__name__} and {type(replacement).__name__}"
        )
    return Override(original, attrs.evolve(replacement, id=original.id))
