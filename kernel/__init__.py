"""The trio-runner runtime: resources scoped by trio nurseries, tasks with injected
dependencies and middleware, events and hooks, and a dependency graph validated before
anything starts.

    import kernel

This package imports ``middleware`` and ``resilience``, never the other way round.
"""

from kernel import config, durable, events, exposure, metrics, observability, redis, tags
from kernel._builtins import logger
from kernel._definitions import (
    App,
    Event,
    Hook,
    Optional,
    Override,
    Resource,
    Tag,
    TagUse,
    Task,
    event,
    hook,
    optional,
    override,
    resource,
    tag,
    task,
)
from kernel._errors import (
    CircularDependencyError,
    ConfigError,
    DefinitionError,
    DuplicateIdError,
    EmissionCycleError,
    GraphError,
    KernelError,
    MissingDependencyError,
    PublicError,
    RemoteError,
    RemoteUnavailable,
    ResourceInitError,
    UnknownEventError,
    WorkerFailed,
)
from kernel._events import Emission, EmitReport
from kernel._graph import Graph, Node, dry_run
from kernel._health import CheckResult, HealthReport
from kernel._main import main
from kernel._runtime import Runtime, run
from kernel._scope import Scope
from kernel._service import Service
from kernel._shutdown import ShuttingDown
from kernel.exposure._remote import remote_task as remote
from kernel.observability._logging import LogConfig
from kernel.observability._redaction import Redaction
from kernel.observability._sentry import SentryConfig
from kernel.observability._tracing import TracingConfig

__all__ = [
    "App",
    "CheckResult",
    "CircularDependencyError",
    "ConfigError",
    "DefinitionError",
    "DuplicateIdError",
    "Emission",
    "EmissionCycleError",
    "EmitReport",
    "Event",
    "Graph",
    "GraphError",
    "HealthReport",
    "Hook",
    "KernelError",
    "LogConfig",
    "MissingDependencyError",
    "Node",
    "Optional",
    "Override",
    "PublicError",
    "Redaction",
    "RemoteError",
    "RemoteUnavailable",
    "Resource",
    "ResourceInitError",
    "Runtime",
    "Scope",
    "SentryConfig",
    "Service",
    "ShuttingDown",
    "Tag",
    "TagUse",
    "Task",
    "TracingConfig",
    "UnknownEventError",
    "WorkerFailed",
    "config",
    "dry_run",
    "durable",
    "event",
    "events",
    "exposure",
    "hook",
    "logger",
    "main",
    "metrics",
    "observability",
    "optional",
    "override",
    "redis",
    "remote",
    "resource",
    "run",
    "tag",
    "tags",
    "task",
]
