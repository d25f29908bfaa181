"""`Service`: an app together with how it runs, so tools can inspect it without running it."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import attrs

from kernel._definitions import App
from kernel._runtime import Runtime, run
from kernel.observability._logging import LogConfig
from kernel.observability._sentry import SentryConfig
from kernel.observability._tracing import TracingConfig
from middleware.observability import MetricsRegistry
from resilience import Retry, backoff, validate

__all__ = ["WORKER_RESTART", "Service", "as_service"]

#: How a crashed worker is restarted by default: at most 5 runs in a streak (a run of
#: `kernel._workers.HEALTHY_RUN` seconds opens a new one), waits 0.25 s doubling to 4 s.
WORKER_RESTART: Final = Retry(
    attempts=5, wait=backoff.exponential(initial=0.25, maximum=4.0, jitter=None)
)


def _check_app(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, App):
        raise TypeError(f"Service: app must be a kernel.App, got {value!r}")


def _check_workers(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Service: workers must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"Service: workers must be >= 1, got {value!r}")


def _check_restart(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Retry):
        raise TypeError(f"Service: worker_restart must be an rs.Retry, got {value!r}")


def _as_tuple(value: Iterable[object]) -> tuple[object, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Service:
    """``kernel.Service(app=app, shutdown_signals=True, drain_timeout=30.0, ...)``.

    What `kernel.main` runs and ``trio-runner doctor`` inspects: the app, the options of
    `kernel.run` it is started with, and ``workers``: how many processes `kernel.main` runs
    it in (see `kernel.main`; not an option of `kernel.run`), with ``worker_restart`` the
    policy restarting a crashed one (`WORKER_RESTART`: 5 runs in a streak, 0.25 s doubling
    to 4 s; when it gives up the service comes down).
    """

    app: App = attrs.field(validator=_check_app)
    shutdown_signals: bool = attrs.field(default=True, validator=validate.is_bool)
    drain_timeout: float = attrs.field(
        default=30.0, converter=validate.to_seconds, validator=validate.non_negative_duration
    )
    parallel_init: bool = attrs.field(default=False, validator=validate.is_bool)
    middleware: tuple[object, ...] = attrs.field(default=(), converter=_as_tuple)
    log: LogConfig | None = None
    tracing: TracingConfig | None = None
    metrics: bool | MetricsRegistry = False
    sentry: SentryConfig | None = None
    workers: int = attrs.field(default=1, validator=_check_workers)
    worker_restart: Retry = attrs.field(default=WORKER_RESTART, validator=_check_restart)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `kernel.run` this service uses."""
        return {
            "shutdown_signals": self.shutdown_signals,
            "drain_timeout": self.drain_timeout,
            "parallel_init": self.parallel_init,
            "middleware": self.middleware,
            "log": self.log,
            "tracing": self.tracing,
            "metrics": self.metrics,
            "sentry": self.sentry,
        }

    def run(self) -> AbstractAsyncContextManager[Runtime]:
        """``async with service.run() as rt:`` — `kernel.run` with this service's options."""
        return run(self.app, **self.options())


def as_service(target: App | Service, **overrides: Any) -> Service:
    """``target`` as a Service (an App gets the defaults), with ``overrides`` applied."""
    if isinstance(target, Service):
        return attrs.evolve(target, **overrides) if overrides else target
    return Service(app=target, **overrides)
