"""`run`: start an app, hand out a `Runtime`, and dispose everything on the way out.

Lifetimes are nested trio nurseries. Resources are initialised in the graph's order, each
after opening its own nursery (its ``scope.nursery``) on one `AsyncExitStack`; leaving the
stack disposes them in exactly the reverse order, each after its background work is
cancelled. The body of ``async with run(app)`` runs inside all of them, so a crash of any
background task cancels it and propagates, as a trio child's crash does.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import trio
from trio.lowlevel import current_task

import middleware as mw
import resilience as rs
from kernel._builtins import LOGGER_ID, disposed, disposing, ready
from kernel._bus import Delivery, EmitReport, EventBus, HookBinding, Relay
from kernel._calls import Calls, Gauge
from kernel._definitions import App, Event, Hook, Resource, Tag, Task
from kernel._errors import ConfigError, KernelError, ResourceInitError
from kernel._graph import Graph, Node, build_graph
from kernel._health import HealthReport, Readiness, breakers_of, check_health, health_targets
from kernel._scope import Scope
from kernel._shutdown import Shutdown, ShuttingDown
from kernel._structure import structure
from kernel.observability._failures import Failures
from kernel.observability._logging import LogConfig, install, kernel_logger, log_task_failure
from kernel.observability._metrics import observe_primitives
from kernel.observability._sentry import SentryConfig, track_errors
from kernel.observability._tracing import Tracing, TracingConfig, start_tracing
from middleware.observability import MetricsRegistry, default_registry, measure

__all__ = ["Runtime", "run"]

FailureMode = Literal["fail_fast", "aggregate"]


D = TypeVar("D")
T = TypeVar("T")
R = TypeVar("R")


def _definition(node: Node, kind: type[D]) -> D:
    """``node.definition``, which the graph guarantees to be a ``kind``."""
    definition = node.definition
    assert isinstance(definition, kind), (node.id, node.kind)
    return definition


def _binding(runtime: Runtime, index: int, node: Node) -> HookBinding:
    hook = _definition(node, Hook)
    listens = None if hook.on == "*" else frozenset(event.id for event in hook.on)
    call = runtime._trace_hook(_lazy_hook(runtime, node), node.id)
    return HookBinding(id=node.id, order=hook.order, index=index, listens=listens, call=call)


def _lazy_hook(runtime: Runtime, node: Node) -> Callable[[Any], Awaitable[Any]]:
    """A hook's call while resources start: resolves its deps when it runs (then `rebind`)."""

    def call(emission: Any) -> Awaitable[Any]:
        return runtime._hook_call(node)(emission)

    return call


class Runtime:
    """A running app: run tasks, emit events, read resources.

    Obtained from ``async with kernel.run(app) as rt:``.
    """

    def __init__(
        self,
        graph: Graph,
        middleware: Iterable[object] = (),
        *,
        drain_timeout: float | timedelta = 30.0,
        tracing: Tracing | None = None,
        metrics: MetricsRegistry | None = None,
        failures: Failures | None = None,
    ) -> None:
        self._graph = graph
        self._tracing = tracing
        self._failures = failures
        #: The registry counting this runtime's task calls, or ``None`` when metrics are off.
        self.metrics = metrics
        self._policy = mw.Pipeline(middleware)
        self._values: dict[str, Any] = {}
        self._runners: dict[str, Callable[..., Awaitable[Any]]] = {}
        # run_task's fast path: one lookup gives the runner and its in-flight gauge.
        self._entries: dict[str, tuple[Callable[..., Awaitable[Any]], Gauge]] = {}
        self._calls = Calls()
        self._disposing_announced = False
        self._readiness = Readiness()
        self._shutdown = Shutdown(
            drain_timeout=drain_timeout, calls=self._calls, announce=self._announce_disposing
        )
        self._dispose_errors: list[Exception] = []
        self._stack: AsyncExitStack | None = None
        self._closed = False
        self._bus = EventBus(
            (_definition(node, Event) for node in graph.events()),
            (_binding(self, index, node) for index, node in enumerate(graph.hooks())),
        )

    # ------------------------------------------------------------------ public API

    @property
    def graph(self) -> Graph:
        """The validated graph of the app."""
        return self._graph

    async def run_task(self, task: Task[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run ``task`` through its middleware pipeline with its deps injected.

        A checkpoint whenever the task is. The task's exception propagates (and is logged
        with the task id as source, at ``LogConfig.task_failures``: DEBUG by default);
        cancellation propagates. Raises `ShuttingDown` once intake has stopped, and when a
        shutdown cancels the call (after the drain, or when the app is disposed while it runs).
        """
        calls = self._calls
        if current_task() is not calls.main:
            # Not covered by the body's cancel scope (or intake has stopped): tracked.
            return await self._run_tracked(task, args, kwargs)  # type: ignore[no-any-return]
        try:
            runner, gauge = self._entries[task.id]
        except KeyError:
            runner, gauge = self._entry_for(task)
        gauge.in_flight += 1
        try:  # (`_logged`, inlined: one coroutine frame less on the fast path)
            return await runner(*args, **kwargs)  # type: ignore[no-any-return]
        except Exception as exc:
            _log_failure(task.id, exc)
            raise
        finally:
            gauge.in_flight -= 1
            if calls.stopping:  # (intake may have stopped during the call)
                calls.finished()

    async def _run_tracked(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`run_task` for a call the body does not cover: inside a cancel scope of its own,
        which the runtime cancels before it disposes anything."""
        calls = self._calls
        if calls.stopping:
            raise ShuttingDown(f"task {task.id!r} refused: the runtime is {self._state}")
        try:
            runner, gauge = self._entries[task.id]
        except KeyError:
            runner, gauge = self._entry_for(task)
        return await calls.run(task.id, gauge, _logged, task.id, runner, args, kwargs)

    def emit(
        self,
        event: Event,
        payload: Any = None,
        *,
        failure_mode: FailureMode = "fail_fast",
        report: bool = False,
    ) -> Awaitable[EmitReport | None]:
        """``await rt.emit(event, payload)``: run the event's hooks (and ``"*"`` hooks) in
        order; see `kernel.Emission`.

        ``failure_mode="aggregate"`` runs every hook and raises an ExceptionGroup of the
        failures; ``report=True`` returns who ran, who failed and who stopped propagation.
        A checkpoint only where the hooks are; cancellation propagates. Raises
        `ShuttingDown` once intake has stopped, and when a shutdown cancels the emission.
        (A plain method returning the bus's awaitable: one coroutine frame less per emit.)
        """
        calls = self._calls
        if current_task() is calls.main:
            return self._bus.emit(
                event, payload, source=None, failure_mode=failure_mode, report=report
            )
        # Not covered by the body's cancel scope (or intake has stopped): tracked.
        if calls.stopping:
            raise ShuttingDown(f"event {event.id!r} refused: the runtime is {self._state}")
        return self._emit_tracked(event, payload, None, failure_mode, report)

    def _emit_tracked(
        self,
        event: Event,
        payload: Any,
        source: str | None,
        failure_mode: FailureMode,
        report: bool,
    ) -> Awaitable[EmitReport | None]:
        label = f"event {event.id}"
        return self._calls.run(
            label,
            self._calls.gauge(label),
            self._bus.emit,
            event,
            payload,
            source=source,
            failure_mode=failure_mode,
            report=report,
        )

    def _resource_emitter(self, event: Event, source: str) -> Callable[..., Awaitable[Any]]:
        """The emitter a resource depends on: every emission tracked (a resource's background
        work is not covered by the body), refused once the calls in flight were cancelled."""

        def emit(
            payload: Any = None, *, failure_mode: FailureMode = "fail_fast", report: bool = False
        ) -> Awaitable[EmitReport | None]:
            if self._calls.cancelled:
                raise ShuttingDown(f"event {event.id!r} refused: the runtime is disposing")
            return self._emit_tracked(event, payload, source, failure_mode, report)

        return emit

    def relay(self, event: Event, relay: Relay | None) -> None:
        """For event lanes (`kernel.lanes`): from now on emitting ``event`` anywhere in the
        app validates its payload and awaits ``relay(event, payload, source)`` instead of
        running its hooks here; ``None`` undoes it. Raises `UnknownEventError` when the
        event is not registered, `ValueError` when another lane relays it already."""
        self._bus.relay(event.id, relay)

    def deliver(
        self,
        event: Event,
        payload: Any,
        *,
        delivery: Delivery,
        source: str | None = None,
        failure_mode: FailureMode = "fail_fast",
    ) -> Awaitable[EmitReport | None]:
        """For event lanes: run ``event``'s hooks here for a message a lane received, with
        ``emission.delivery`` set, as a tracked call (the drain waits for it; at the drain
        deadline it is cancelled and raises `ShuttingDown`). Raises `ShuttingDown` at once
        once intake has stopped: the message stays for another consumer."""
        calls = self._calls
        if calls.stopping:
            raise ShuttingDown(
                f"lane delivery of {event.id!r} refused: the runtime is {self._state}"
            )
        label = f"event {event.id}"
        return calls.run(
            label,
            calls.gauge(label),
            self._bus.emit,
            event,
            payload,
            source=source,
            failure_mode=failure_mode,
            report=False,
            delivery=delivery,
        )

    def shutdown(self) -> None:
        """Start a graceful shutdown, as SIGTERM would (calling it again skips the drain).

        Returns at once; once the calls in flight have finished or the drain budget is
        spent, every call still running is cancelled, then the body of
        ``async with kernel.run(app)``.
        """
        self._shutdown.request("requested by rt.shutdown()")

    async def health(self, *, check_timeout: float | timedelta = 5.0) -> HealthReport:
        """Run every started resource's ``health`` check concurrently (each bounded by
        ``check_timeout``) and report: overall status (a failing ``kernel.tags.critical`` resource
        makes it ``unhealthy``; other failures and circuits not closed make it ``degraded``),
        each check's status, latency and sanitized error, the circuit breakers of the task
        pipelines, readiness and a timestamp. A checkpoint; cancellation propagates.
        Runs as a tracked call: once disposal begins it raises `ShuttingDown` instead.
        """
        calls = self._calls
        if calls.cancelled:
            raise ShuttingDown("health check refused: the runtime is disposing")
        report: HealthReport = await calls.run(
            "health",
            calls.gauge("health"),
            check_health,
            health_targets(self._graph, self._values),
            timeout=check_timeout,
            circuits=breakers_of(self._runners.values()),
            ready=self.ready,
        )
        return report

    @property
    def ready(self) -> bool:
        """True from the ``ready`` event until a shutdown is requested or disposal starts."""
        return self._readiness.ready and not self._shutdown.requested

    async def wait_ready(self) -> None:
        """Return once every resource is up (the ``ready`` event was emitted): for
        background work that a resource starts during init but that needs the whole app,
        such as a durable engine's worker."""
        await self._readiness.wait_started()

    @property
    def shutting_down(self) -> bool:
        """Whether intake has stopped (new task calls raise `ShuttingDown`)."""
        return self._calls.stopping

    @property
    def _state(self) -> str:
        return "disposed" if self._closed else "shutting down"

    @property
    def closing(self) -> bool:
        """True from the moment a shutdown is requested or disposal begins (intake is
        stopping or has stopped): what a server needs to tell its clients not to come back
        on the same connection."""
        return self._shutdown.requested or self._readiness.stopping

    @overload
    def resource(self, resource: Resource[T], /) -> T: ...
    @overload
    def resource(self, resource: App, /) -> dict[str, Any]: ...

    def resource(self, resource: Resource[Any] | App, /) -> Any:
        """The value of a started resource (or the deps dict of an App)."""
        try:
            return self._values[resource.id]
        except KeyError:
            if resource.id in self._graph.nodes:
                raise KernelError(f"resource {resource.id!r} is not started") from None
            raise KernelError(f"resource {resource.id!r} is not registered in this app") from None

    def dependencies(self, task: Task[..., Any]) -> dict[str, Any]:
        """The keyword arguments ``task``'s body receives: its deps, resolved (what a
        durable engine passes when it describes a workflow without running it)."""
        return self._resolve(self._graph.node(task.id))

    def find(self, tag: Tag) -> list[tuple[Any, Any]]:
        """The definitions carrying ``tag``, each with its tag config."""
        return [(node.definition, config) for node, config in self._graph.find(tag)]

    def task_state(self, task: Task) -> dict[str, object]:
        """The state objects ``task``'s middleware pipeline exposes, by attribute
        (``breaker``, ``limiter``, ``bulkhead``, ``cache``...: see ``mw.Pipeline.wrap``),
        the very ones its calls go through (its runner is built now if it has not run yet).
        Raises `KernelError` once the runtime is disposed. Not a checkpoint."""
        try:
            runner, _ = self._entries[task.id]
        except KeyError:
            runner, _ = self._entry_for(task)
        return {
            name: value
            for name, value in getattr(runner, "__dict__", {}).items()
            if name not in _NOT_STATE
        }

    async def dispose(self) -> None:
        """Dispose every resource now, in reverse dependency order.

        Call it from the task that entered ``kernel.run``, outside any cancel scope opened
        since; leaving the ``async with`` afterwards does nothing more. Disposer errors are
        raised together as an ExceptionGroup.
        """
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        await stack.aclose()
        self._raise_dispose_errors()

    # ------------------------------------------------------------------ resolution

    def _resolve(self, node: Node) -> dict[str, Any]:
        live = node.kind in ("resource", "app")
        return {
            keyword: self._dependency(node.id, target, live)
            for keyword, target in node.deps.items()
        }

    def _dependency(self, dependent: str, target: Node | None, live: bool) -> Any:
        """The value injected into ``dependent`` for ``target``. A ``live`` dependent (a
        resource or App) emits through a tracked emitter: its background work is not covered
        by the body, and the hooks' deps are not ordered before it. Tasks it depends on are
        (through the graph), so it gets their runners as tasks and hooks do."""
        if target is None:
            return None
        if target.id == LOGGER_ID:
            return kernel_logger(dependent)
        if target.kind in ("resource", "app"):
            try:
                return self._values[target.id]
            except KeyError:
                raise KernelError(
                    f"{dependent!r} needs resource {target.id!r}, which is not started yet "
                    "(an event emitted during init reaches only hooks whose deps are up)"
                ) from None
        if target.kind == "task":
            return self._runners.get(target.id) or self._runner_for(_definition(target, Task))
        event = _definition(target, Event)
        if live:
            return self._resource_emitter(event, dependent)
        return functools.partial(self._bus.emit, event, source=dependent)

    def _trace_hook(
        self, call: Callable[[Any], Awaitable[Any]], hook_id: str
    ) -> Callable[[Any], Awaitable[Any]]:
        if self._failures is not None:  # inside the span: the report carries its trace id
            call = self._failures.hook(call, hook_id)
        return call if self._tracing is None else self._tracing.hook(call, hook_id)

    def _hook_call(self, node: Node) -> Callable[[Any], Awaitable[Any]]:
        deps = self._resolve(node)
        fn = _definition(node, Hook).fn
        return functools.partial(fn, **deps) if deps else fn

    def _entry_for(self, task: Task) -> tuple[Callable[..., Awaitable[Any]], Gauge]:
        runner = self._runner_for(task)
        gauge = self._calls.gauge(task.id)
        self._entries[task.id] = (runner, gauge)
        return runner, gauge

    def _runner_for(self, task: Task) -> Callable[..., Awaitable[Any]]:
        if self._closed:
            raise KernelError(f"task {task.id!r}: the runtime is disposed")
        try:
            node = self._graph.nodes[task.id]
        except KeyError:
            raise KernelError(f"task {task.id!r} is not registered in this app") from None
        if node.kind != "task":
            raise KernelError(f"{task.id!r} is a {node.kind}, not a task")
        definition = _definition(node, Task)
        deps = self._resolve(node)
        body: Callable[..., Awaitable[Any]] = (
            functools.partial(definition.fn, **deps) if deps else definition.fn
        )
        pipeline = self._policy + definition.pipeline
        runner = pipeline.wrap(body, target_id=definition.id) if len(pipeline) else body
        if self.metrics is not None:
            # Measured directly around the pipeline: no wrapper of its own for plain tasks.
            measured = functools.partial(measure(self.metrics.task(definition.id)), runner)
            measured.__dict__.update(getattr(runner, "__dict__", {}))
            runner = measured
        if self._failures is not None and self._tracing is None:
            # The error tracking boundary, outside every middleware (with tracing on, it is
            # a middleware inside the task's span instead: see `_running`).
            runner = self._failures.task(definition.id, runner)
        if definition.input is not None or definition.result is not None:
            # At the edge, outside the middleware: a bad input is not worth a retry.
            runner = _validating(definition, runner)
        self._runners[task.id] = runner
        return runner

    # ------------------------------------------------------------------ lifecycle

    async def _start(self, stack: AsyncExitStack, parallel: bool) -> ResourceInitError | None:
        """Initialise every resource; return the first init error instead of raising it."""
        self._stack = stack
        stack.push_async_callback(self._finish)
        levels = self._graph.init_levels() if parallel else [[n] for n in self._graph.resources()]
        for level in levels:
            error = await self._start_level(stack, level)
            if error is not None:
                # Calls a started resource's background work made stop before any dispose.
                stack.push_async_callback(self._shutdown.settle)
                return error
        for node in self._graph.tasks():
            self._entry_for(_definition(node, Task))
        # Everything is up: hooks call their bodies directly from now on.
        self._bus.rebind(
            {n.id: self._trace_hook(self._hook_call(n), n.id) for n in self._graph.hooks()}
        )
        stack.push_async_callback(self._begin_disposal)
        self._readiness.mark_ready()
        await self._bus.emit(ready, source="kernel")
        return None

    async def _start_level(
        self, stack: AsyncExitStack, level: list[Node]
    ) -> ResourceInitError | None:
        hosted: list[_Hosted] = []
        for node in level:
            # Only a resource that takes `scope` can start background work: only it gets a
            # nursery (opened here, before its init; closed by its exit, before its dispose).
            opener = trio.open_nursery() if _wants_scope(node) else None
            scope = None if opener is None else Scope(node.id, await opener.__aenter__(), self)
            hosted.append(_Hosted(self, node, scope, opener))
            stack.push_async_exit(hosted[-1].exit)

        async def start(resource: _Hosted) -> None:
            try:
                resource.value, resource.generator = await self._init(resource.node, resource.scope)
                resource.started = True
            except Exception as exc:
                resource.error = exc

        if len(hosted) == 1:
            await start(hosted[0])
        else:
            async with trio.open_nursery() as nursery:
                for resource in hosted:
                    nursery.start_soon(start, resource)
        first_error: ResourceInitError | None = None
        for resource in hosted:
            if resource.started:
                self._values[resource.node.id] = resource.value
                continue
            kernel_logger(resource.node.id).opt(exception=resource.error).error(
                "resource failed to initialise: {}", resource.error
            )
            self._failed(resource.node.id, "init", resource.error)
            if first_error is None:
                first_error = ResourceInitError(resource.node.id)
                first_error.__cause__ = resource.error
        return first_error

    async def _init(
        self, node: Node, scope: Scope | None
    ) -> tuple[Any, AsyncGenerator[Any, None] | None]:
        if node.kind == "app":
            return self._resolve(node), None
        definition = _definition(node, Resource)
        kwargs = self._resolve(node)
        if scope is not None:
            kwargs["scope"] = scope
        args = (node.config,) if definition.config_type is not None else ()
        if definition.is_generator:
            generator = definition.fn(*args, **kwargs)
            try:
                value = await generator.__anext__()
            except StopAsyncIteration:
                raise KernelError(
                    f"resource {node.id!r}: its generator ended without yielding a value"
                ) from None
            return value, generator
        return await definition.fn(*args, **kwargs), None

    async def _dispose(self, node: Node, generator: AsyncGenerator[Any, None] | None) -> None:
        """Run the resource's dispose part, shielded from cancellation. Never raises."""
        self._values.pop(node.id, None)
        if generator is None:
            return
        with trio.CancelScope(shield=True):
            try:
                await generator.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                kernel_logger(node.id).opt(exception=exc).error(
                    "resource failed to dispose: {}", exc
                )
                self._failed(node.id, "dispose", exc)
                exc.add_note(f"while disposing resource {node.id!r}")
                self._dispose_errors.append(exc)
                return
            await generator.aclose()
            self._dispose_errors.append(
                KernelError(f"resource {node.id!r}: its generator yielded more than once")
            )

    def _failed(self, resource_id: str, phase: str, error: BaseException | None) -> None:
        """Report a resource's failure to error tracking, when it is on."""
        if self._failures is not None and error is not None:
            self._failures.resource_failed(resource_id, phase, error)

    async def _announce_disposing(self) -> None:
        self._readiness.mark_stopping()
        if not self._disposing_announced:
            self._disposing_announced = True
            await self._emit_quietly(disposing)

    async def _begin_disposal(self) -> None:
        """First on the way out, before any resource: no call may outlive what it uses."""
        self._closed = True
        await self._announce_disposing()
        await self._shutdown.settle()

    async def _finish(self) -> None:
        self._closed = True
        self._runners.clear()
        self._entries.clear()
        await self._emit_quietly(disposed)

    async def _emit_quietly(self, event: Event) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self._bus.emit(event, source="kernel", failure_mode="aggregate")
            except Exception as exc:
                self._dispose_errors.append(exc)

    def _raise_dispose_errors(self) -> None:
        errors, self._dispose_errors = self._dispose_errors, []
        if errors:
            raise ExceptionGroup(f"{len(errors)} error(s) while disposing the app", errors)


#: What a pipeline wrapper carries besides its middlewares' state (`Runtime.task_state`).
_NOT_STATE = frozenset({"pipeline", "target_id", "__wrapped__"})


def _wants_scope(node: Node) -> bool:
    return node.kind == "resource" and _definition(node, Resource).wants_scope


class _Hosted:
    """One resource's nursery and lifetime, as pushed on the runtime's exit stack."""

    __slots__ = ("error", "generator", "node", "opener", "runtime", "scope", "started", "value")

    def __init__(
        self,
        runtime: Runtime,
        node: Node,
        scope: Scope | None,
        opener: AbstractAsyncContextManager[Any] | None,
    ) -> None:
        self.runtime = runtime
        self.node = node
        self.scope = scope
        self.opener = opener
        self.started = False
        self.value: Any = None
        self.generator: AsyncGenerator[Any, None] | None = None
        self.error: Exception | None = None

    async def exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Cancel the background work, wait for it to end, then dispose the resource."""
        if self.scope is None or self.opener is None:
            if self.started:
                await self.runtime._dispose(self.node, self.generator)
            return None
        self.scope.nursery.cancel_scope.cancel()
        try:
            return await self.opener.__aexit__(exc_type, exc, tb)
        except BaseException as error:  # its background work crashed (or passes a crash on)
            self.runtime._failed(self.node.id, "background", error)
            raise
        finally:
            if self.started:
                await self.runtime._dispose(self.node, self.generator)


async def _logged(
    task_id: str,
    runner: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``await runner(*args, **kwargs)``, its failure logged (`_log_failure`)."""
    try:
        return await runner(*args, **kwargs)
    except Exception as exc:
        _log_failure(task_id, exc)
        raise


def _log_failure(task_id: str, exc: Exception) -> None:
    """How a task call's failure is logged, whichever path the call took."""
    if isinstance(exc, ConfigError):
        # The caller's input did not fit: worth a line, not a traceback.
        kernel_logger(task_id).warning("task input rejected: {}", exc)
    else:
        log_task_failure(task_id, exc, depth=2)  # the record names run_task's line


def _validating(task: Task, body: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    owner = f"task {task.id!r}"

    async def validated(*args: Any, **kwargs: Any) -> Any:
        if task.input is not None:
            if len(args) == 1 and not kwargs:
                raw = args[0]
            elif not args:
                raw = kwargs
            else:
                raise ConfigError(
                    owner, ["input: pass one value (an instance or a dict), or its fields"]
                )
            result = await body(structure(raw, task.input, owner=owner, path="input"))
        else:
            result = await body(*args, **kwargs)
        if task.result is not None:
            return structure(result, task.result, owner=owner, path="result")
        return result

    # Keep what the pipeline wrapper exposes (.breaker, .limiter, .cache, .pipeline).
    validated.__dict__.update(getattr(body, "__dict__", {}))
    return validated


@asynccontextmanager
async def run(
    app: App,
    *,
    parallel_init: bool = False,
    middleware: Iterable[object] = (),
    shutdown_signals: bool = False,
    drain_timeout: float | timedelta = 30.0,
    log: LogConfig | None = None,
    tracing: TracingConfig | None = None,
    metrics: bool | MetricsRegistry = False,
    sentry: SentryConfig | None = None,
) -> AsyncIterator[Runtime]:
    """Start ``app`` and yield its `Runtime`; dispose everything on the way out.

    The graph is validated first (nothing starts if it is invalid). Resources start in
    dependency order, each in its own nursery scope; with ``parallel_init=True``
    independent resources start concurrently. ``middleware`` is an app-level policy put in
    front of (outside) every task's own middleware. If a resource fails to start, those
    already up are disposed in reverse order and `ResourceInitError` is raised with the
    cause chained. On exit — normal, by exception or by cancellation — ``disposing`` is
    emitted, every call still in flight (an HTTP request's, a worker's, a resource's
    background work's) is cancelled and waited for, then every resource is disposed in
    reverse dependency order (each disposer runs even if others fail, shielded from
    cancellation), then ``disposed``; disposer errors are raised as one ExceptionGroup (or,
    when the body raised, logged and noted on its exception).

    Graceful shutdown (see `Runtime.shutdown`): with ``shutdown_signals=True``, SIGTERM and
    SIGINT start it; ``disposing`` is emitted, new task calls raise `ShuttingDown`, calls in
    flight, wherever they started, get ``drain_timeout`` seconds to finish (a second signal
    skips the wait), then those left and the body are cancelled (a cancelled call raises
    `ShuttingDown` to its caller) and the app disposed as above; ``run`` then returns
    normally.

    Observability, each off by default: ``log=kernel.LogConfig(format="json", ...)`` adds a
    loguru handler (redacted JSON or pretty lines) for the runtime's lifetime;
    ``tracing=kernel.TracingConfig(service_name=...)`` makes a span per task run and hook
    run, with resilience events as span events; ``metrics=True`` (the process-wide registry
    that `kernel.metrics.prometheus_text` reads) or a ``MetricsRegistry`` counts every task
    call (calls, errors, in flight, rate, p50/p95/p99) and the resilience primitives' events,
    readable as ``rt.metrics.snapshot()``; ``sentry=kernel.SentryConfig(dsn=...)`` reports
    each unexpected failure of a task, hook, resource or durable execution once to Sentry,
    redacted as the logs are (the ``sentry`` extra; see `kernel.SentryConfig`).
    """
    if isinstance(metrics, bool):
        registry = default_registry if metrics else None
    elif isinstance(metrics, MetricsRegistry):
        registry = metrics
    else:
        raise TypeError(f"kernel.run: metrics must be a bool or a MetricsRegistry, got {metrics!r}")
    if sentry is not None and not isinstance(sentry, SentryConfig):
        raise TypeError(f"kernel.run: sentry must be a kernel.SentryConfig or None, got {sentry!r}")
    graph = build_graph(app)
    installed = install(log) if log is not None else None
    try:
        async with _running(
            graph,
            parallel_init,
            middleware,
            shutdown_signals,
            drain_timeout,
            tracing,
            registry,
            sentry,
        ) as runtime:
            yield runtime
    finally:
        if installed is not None:
            installed.remove()


@asynccontextmanager
async def _running(
    graph: Graph,
    parallel_init: bool,
    middleware: Iterable[object],
    shutdown_signals: bool,
    drain_timeout: float | timedelta,
    tracing: TracingConfig | None,
    registry: MetricsRegistry | None,
    sentry: SentryConfig | None,
) -> AsyncIterator[Runtime]:
    traced = start_tracing(tracing) if tracing is not None else None
    policy: tuple[object, ...] = (traced.middleware(),) if traced is not None else ()
    body_error: Exception | None = None
    init_error: ResourceInitError | None = None
    # This runtime's listeners see the events of the calls made in its context only. Applied
    # only when something listens: one more context variable makes every ContextVar.set in
    # the runtime's tasks (the bus sets one per emission) dearer.
    listeners = rs.Listeners()
    async with AsyncExitStack() as stack:
        if traced is not None or registry is not None:
            stack.enter_context(listeners.applied())
        if traced is not None:
            # Exported last, after the `disposed` hooks; resilience events become span events.
            stack.push_async_callback(traced.aclose)
            stack.enter_context(listeners.observe(traced.events_listener()))
        failures = None
        if sentry is not None:
            # Flushed after the `disposed` hooks; the task boundary is outside all middleware.
            failures = await stack.enter_async_context(track_errors(sentry))
            if traced is not None:  # inside the task's span (else the runner is wrapped)
                policy += (failures.middleware(),)
        runtime = Runtime(
            graph,
            (*policy, *middleware),
            drain_timeout=drain_timeout,
            tracing=traced,
            metrics=registry,
            failures=failures,
        )
        if failures is not None:
            failures.attach(runtime)
        if registry is not None:
            stack.enter_context(observe_primitives(registry, into=listeners))
        # The runtime's own background work; cancelled after every resource is disposed.
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        nursery.start_soon(runtime._shutdown.run)
        if shutdown_signals:
            await nursery.start(runtime._shutdown.watch_signals)
        init_error = await runtime._start(stack, parallel_init)
        if init_error is None:
            # The body's cancel scope, innermost on the stack (so rt.dispose() from the body
            # unwinds in order); a graceful shutdown cancels it.
            stack.enter_context(runtime._shutdown.body)
            calls = runtime._calls
            if not calls.stopping:
                # The body's calls, made in this task, are covered by its cancel scope.
                calls.main = current_task()
            try:
                yield runtime
            except Exception as exc:
                # Kept out of the nurseries, so it comes out as itself, not in a group.
                body_error = exc
            finally:
                calls.main = None
        runtime._stack = None  # leaving the block disposes (a no-op after rt.dispose())
    failure = init_error or body_error
    if failure is not None:
        for error in runtime._dispose_errors:
            failure.add_note(f"also, while disposing: {type(error).__name__}: {error}")
        runtime._dispose_errors.clear()
        raise failure
    runtime._raise_dispose_errors()
