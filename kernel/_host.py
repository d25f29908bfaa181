"""`Host`: what a resource may ask of the runtime it runs in (``scope.runtime``).

A resource that serves the app to the outside (the HTTP exposure, a durable engine's
worker, a lane's consumer) needs a few things of the runtime: run a task through its
pipeline, emit an event, read readiness and health. This protocol names exactly those, so
such a resource depends on a small surface instead of the whole `kernel.Runtime` (which
satisfies it), and tests can host a resource with a fake.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from kernel._bus import Delivery, EmitReport, Relay
    from kernel._definitions import App, Event, Resource, Tag, Task
    from kernel._graph import Graph
    from kernel._health import HealthReport
    from middleware.observability import MetricsRegistry

__all__ = ["Host"]


class Host(Protocol):
    """The runtime as a resource sees it. `kernel.Runtime` is one; see its methods."""

    @property
    def graph(self) -> Graph:
        """The validated graph of the app."""

    @property
    def metrics(self) -> MetricsRegistry | None:
        """The registry counting the app's task calls, or ``None`` when metrics are off."""

    @property
    def ready(self) -> bool:
        """True from the ``ready`` event until a shutdown is requested or disposal starts."""

    @property
    def closing(self) -> bool:
        """True from the moment a shutdown is requested or disposal begins."""

    @property
    def shutting_down(self) -> bool:
        """Whether intake has stopped (new task calls raise `kernel.ShuttingDown`)."""

    async def wait_ready(self) -> None:
        """Return once every resource is up."""

    async def run_task(self, task: Task[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``task`` through its pipeline with its deps injected."""

    def emit(
        self,
        event: Event,
        payload: Any = None,
        *,
        failure_mode: Literal["fail_fast", "aggregate"] = "fail_fast",
        report: bool = False,
    ) -> Awaitable[EmitReport | None]:
        """Run the event's hooks."""

    def relay(self, event: Event, relay: Relay | None) -> None:
        """Emitting ``event`` awaits ``relay(event, payload, source)`` instead of its hooks
        (an event lane)."""

    def deliver(
        self,
        event: Event,
        payload: Any,
        *,
        delivery: Delivery,
        source: str | None = None,
        failure_mode: Literal["fail_fast", "aggregate"] = "fail_fast",
    ) -> Awaitable[EmitReport | None]:
        """Run ``event``'s hooks here for a message a lane received."""

    async def health(self, *, check_timeout: float | timedelta = 5.0) -> HealthReport:
        """Run the health checks and report."""

    def find(self, tag: Tag) -> list[tuple[Any, Any]]:
        """The definitions carrying ``tag``, each with its tag config."""

    def dependencies(self, task: Task[..., Any]) -> dict[str, Any]:
        """The keyword arguments ``task``'s body receives (its resolved deps)."""

    def resource(self, resource: Resource[Any] | App) -> Any:
        """The value of a started resource (the operator console reads engines and lanes)."""

    def task_state(self, task: Task[..., Any]) -> dict[str, object]:
        """The state objects ``task``'s pipeline exposes (``breaker``, ``limiter``...)."""
