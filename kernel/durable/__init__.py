"""Durable workflows: tasks whose steps survive crashes, sleeps of days and restarts.

A workflow is a task tagged ``kernel.durable.workflow()``. On every wake-up (a sleep
ending, a signal arriving, a retry, a recovery after a crash) it re-runs from the top and
fast-forwards through the results its steps already recorded; side effects belong in steps.
"""

from kernel.durable._context import Context, StepBuilder
from kernel.durable._definitions import (
    WORKFLOW,
    Branch,
    Signal,
    SignalResult,
    WorkflowConfig,
    signal,
    workflow,
)
from kernel.durable._describe import FlowNode, FlowShape
from kernel.durable._engine import Engine
from kernel.durable._errors import (
    CompensationFailedError,
    CorruptRecordError,
    DurableError,
    LeaseLostError,
    NonDeterminismError,
    SerializationError,
    StoreUnavailableError,
    UnknownExecutionError,
    UnknownWorkflowError,
    WaitTimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from kernel.durable._memory import MemoryStore
from kernel.durable._metrics import DurableCollector, durable_families, metrics
from kernel.durable._postgres import PostgresStore
from kernel.durable._records import (
    STATUSES,
    TERMINAL,
    AuditEntry,
    Execution,
    Schedule,
    Status,
    StepRecord,
    StoreStats,
)
from kernel.durable._resource import engine
from kernel.durable._sqlite import SqliteStore
from kernel.durable._store import Store
from resilience.faces import present as _present

__all__ = [
    "STATUSES",
    "TERMINAL",
    "WORKFLOW",
    "AuditEntry",
    "Branch",
    "CompensationFailedError",
    "Context",
    "CorruptRecordError",
    "DurableCollector",
    "DurableError",
    "Engine",
    "Execution",
    "FlowNode",
    "FlowShape",
    "LeaseLostError",
    "MemoryStore",
    "NonDeterminismError",
    "PostgresStore",
    "Schedule",
    "SerializationError",
    "Signal",
    "SignalResult",
    "SqliteStore",
    "Status",
    "StepBuilder",
    "StepRecord",
    "Store",
    "StoreStats",
    "StoreUnavailableError",
    "UnknownExecutionError",
    "UnknownWorkflowError",
    "WaitTimeoutError",
    "WorkflowCancelledError",
    "WorkflowConfig",
    "WorkflowFailedError",
    "durable_families",
    "engine",
    "metrics",
    "signal",
    "workflow",
]

_present("kernel.durable", globals())
