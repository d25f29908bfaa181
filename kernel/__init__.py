"""The trio-runner runtime: resources scoped by trio nurseries, tasks with injected
dependencies and middleware, events and hooks, and a dependency graph validated before
anything starts.

    import kernel

This package imports ``middleware`` and ``resilience``, never the other way round.
"""

# Layout of the package (each module has one job; subpackages are imported by their
# siblings only through their public names, see tests/test_package_layout.py):
#
# base      _errors (the exception hierarchy), _converter and _structure (cattrs:
#           strict structuring, error paths), _redaction (what logs and reprs hide)
# declare   _definitions (resource, task, event, hook, tag, App), _builtins (logger and
#           the lifecycle events), _graph and _graph_render (validation, dry_run, render),
#           events, tags
# run       _runtime (run, Runtime), _host (Host: what a resource may ask of it), _scope
#           and _supervise (a resource's nursery, restarts), _bus (emission and hooks),
#           _calls and _shutdown (calls in flight, graceful shutdown), _health
# operate   _service, _main and _cli (processes, `trio-runner`), _doctor, metrics, redis
# subsystems  config/ (settings from env and TOML), observability/ (logs, traces, error
#           tracking), exposure/ (HTTP), durable/ (workflows), lanes/ (events between
#           processes)

import warnings as _warnings

from kernel import config, durable, events, exposure, lanes, metrics, observability, redis, tags
from kernel._builtins import logger
from kernel._bus import Delivery, Emission, EmitReport
from kernel._definitions import (
    App,
    Event,
    Hook,
    OptionalDependency,
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
from kernel._graph import Graph, Node, dry_run
from kernel._health import CheckResult, HealthReport
from kernel._host import Host
from kernel._main import main
from kernel._runtime import Runtime, run
from kernel._scope import Scope
from kernel._service import Service
from kernel._shutdown import ShuttingDown
from kernel.exposure import remote_task as remote
from kernel.observability import LogConfig, Redaction, SentryConfig, TracingConfig
from resilience.faces import present as _present

__all__ = [
    "App",
    "CheckResult",
    "CircularDependencyError",
    "ConfigError",
    "DefinitionError",
    "Delivery",
    "DuplicateIdError",
    "Emission",
    "EmissionCycleError",
    "EmitReport",
    "Event",
    "Graph",
    "GraphError",
    "HealthReport",
    "Hook",
    "Host",
    "KernelError",
    "LogConfig",
    "MissingDependencyError",
    "Node",
    "OptionalDependency",
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
    "lanes",
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

_present("kernel", globals())


def __getattr__(name: str) -> object:
    """The deprecated names, each still working with a `DeprecationWarning`."""
    if name == "Optional":
        _warnings.warn(
            "kernel.Optional is deprecated (it shadowed typing.Optional): "
            "use kernel.OptionalDependency, or kernel.optional(dep) to make one",
            DeprecationWarning,
            stacklevel=2,
        )
        return OptionalDependency
    raise AttributeError(f"module 'kernel' has no attribute {name!r}")
