"""`Pipeline`: an ordered list of middlewares, composed once per wrapped function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

import attrs

from middleware._call import Call, Middleware, Next

__all__ = ["Bound", "Factory", "Pipeline", "apply", "compose", "target_id_of"]

P = ParamSpec("P")
T = TypeVar("T")


@attrs.frozen
class Bound:
    """What a `Factory` gives for one wrapped function: the middleware, and the state
    objects to expose on the wrapped function (``{"breaker": CircuitBreaker(...)}``)."""

    middleware: Middleware
    exposes: dict[str, object] = attrs.Factory(dict)


@runtime_checkable
class Factory(Protocol):
    """A middleware that builds its state once per wrapped function (the adapters)."""

    def bind(self, target_id: str) -> Bound:
        """The middleware for the function named ``target_id``."""


def _is_middleware(value: object) -> bool:
    if isinstance(value, Factory):
        return True
    if inspect.iscoroutinefunction(value):
        return True
    call = getattr(type(value), "__call__", None)  # noqa: B004 - the method, not callable()
    return inspect.iscoroutinefunction(call)


def _flatten(middlewares: Iterable[object], owner: str) -> tuple[Middleware | Factory, ...]:
    flat: list[Middleware | Factory] = []
    for index, item in enumerate(middlewares):
        if isinstance(item, Pipeline):
            flat.extend(item.middlewares)
        elif _is_middleware(item):
            flat.append(item)  # type: ignore[arg-type]
        else:
            raise TypeError(
                f"{owner}: middlewares[{index}] is not a middleware: {item!r}; expected an "
                "async callable (call, next), an adapter such as mw.retry(...), or a Pipeline"
            )
    return tuple(flat)


def target_id_of(fn: object) -> str:
    """The default id of a wrapped function: ``module.qualname``."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


def _link(middleware: Middleware, inner: Next) -> Next:
    def step(call: Call) -> Awaitable[Any]:
        return middleware(call, inner)

    return step


def compose(middlewares: Iterable[Middleware], terminal: Next) -> Next:
    """Chain ``middlewares`` around ``terminal``: the first one is the outermost.

    Each link is a plain function returning the middleware's awaitable, so a chain of n
    middlewares costs n frames of the middlewares themselves and nothing per link.
    """
    chain = terminal
    for middleware in reversed(tuple(middlewares)):
        chain = _link(middleware, chain)
    return chain


def _check_async(fn: object, owner: str) -> None:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"{owner}: {target_id_of(fn)} is not an async function; middleware awaits the "
            "call, so decorate an `async def` (a blocking sync function would stall trio)"
        )


@attrs.frozen(init=False)
class Pipeline:
    """Middlewares in order, the first listed the outermost.

    ``Pipeline([mw.timeout(5), mw.retry()])`` bounds all attempts together;
    ``Pipeline([mw.retry(), mw.timeout(5)])`` bounds each attempt. Pipelines nest (a
    Pipeline among the middlewares is spliced in) and concatenate with ``+``.
    `wrap` composes the chain once for a function; no work is done per call beyond the
    middlewares themselves.
    """

    middlewares: tuple[Middleware | Factory, ...]
    name: str | None

    def __init__(self, middlewares: Iterable[object] = (), *, name: str | None = None) -> None:
        if isinstance(middlewares, str | bytes) or not isinstance(middlewares, Iterable):
            raise TypeError(
                f"Pipeline: middlewares must be a list of middlewares, got {middlewares!r}"
            )
        self.__attrs_init__(_flatten(middlewares, "Pipeline"), name)

    def __add__(self, other: Pipeline) -> Pipeline:
        """``p1 + p2``: ``p1``'s middlewares outside ``p2``'s; the name is ``p1``'s (or
        ``p2``'s when ``p1`` has none)."""
        if not isinstance(other, Pipeline):
            return NotImplemented
        name = self.name if self.name is not None else other.name
        return Pipeline((*self.middlewares, *other.middlewares), name=name)

    def __len__(self) -> int:
        return len(self.middlewares)

    def wrap(
        self, fn: Callable[P, Awaitable[T]], *, target_id: str | None = None
    ) -> Callable[P, Awaitable[T]]:
        """An async callable that runs ``fn`` through this pipeline.

        It keeps ``fn``'s ``__name__``, ``__doc__``, ``__wrapped__`` and signature, and
        exposes ``.pipeline`` plus the state objects of adapters built for it
        (``.breaker``, ``.limiter``, ``.cache``, … — the outermost of a kind wins).
        ``target_id`` defaults to ``module.qualname`` of ``fn``.
        """
        _check_async(fn, "Pipeline.wrap")
        tid = target_id_of(fn) if target_id is None else target_id
        exposed: dict[str, object] = {}
        bound: list[Middleware] = []
        for item in self.middlewares:
            if isinstance(item, Factory):
                made = item.bind(tid)
                bound.append(made.middleware)
                for attribute, value in made.exposes.items():
                    exposed.setdefault(attribute, value)
            else:
                bound.append(item)

        if not bound:

            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return await fn(*args, **kwargs)

        else:

            def terminal(call: Call) -> Awaitable[Any]:
                return fn(*call.args, **call.kwargs)

            # The wrapper calls the outermost middleware itself: one link fewer per call.
            outermost, inner = bound[0], compose(bound[1:], terminal)

            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return await outermost(Call(tid, args, kwargs), inner)  # type: ignore[no-any-return]

        functools.update_wrapper(wrapper, fn)
        wrapper.pipeline = self  # type: ignore[attr-defined]
        wrapper.target_id = tid  # type: ignore[attr-defined]
        for attribute, value in exposed.items():
            setattr(wrapper, attribute, value)
        return wrapper


def apply(
    *middlewares: object,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate an ``async def`` with middlewares (or Pipelines), the first the outermost.

    A sync function is refused with `TypeError` at decoration time.
    """
    pipeline = Pipeline(middlewares)

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        _check_async(fn, "mw.apply")
        return pipeline.wrap(fn)

    return decorate
