"""`Engine`: the durable service a workflow app talks to (the engine resource's value)."""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Set
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import trio

from kernel._definitions import Event, Task
from kernel._structure import structure
from kernel.durable._context import Context, RunEnv
from kernel.durable._definitions import WORKFLOW, Signal, WorkflowConfig
from kernel.durable._describe import FlowShape, Recorder
from kernel.durable._durations import StepDurations
from kernel.durable._errors import (
    CorruptRecordError,
    DurableError,
    LeaseLostError,
    UnknownExecutionError,
    UnknownWorkflowError,
    WaitTimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from kernel.durable._options import EngineOptions
from kernel.durable._records import ACTIVE, AuditEntry, Execution, Schedule, Status
from kernel.durable._schedules import check_cadence, next_tick
from kernel.durable._serde import dumps, loads
from kernel.durable._store import Store, WatchedStore
from kernel.observability import kernel_logger
from resilience import validate

if TYPE_CHECKING:
    from kernel._host import Host
    from kernel.durable._worker import Worker

__all__ = ["Engine"]

RUNNING: frozenset[Status] = frozenset({"running"})

_HOST = socket.gethostname()


def _process_gone(owner: str) -> bool:
    """Whether ``owner`` (``host:pid:nonce``) was a worker in a process of this host that
    no longer exists (its executions can be taken back without waiting out the lease)."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


_EPOCH: trio.lowlevel.RunVar[float] = trio.lowlevel.RunVar("kernel.durable.epoch")


def _epoch() -> float:
    """The wall-clock time at trio time 0, taken once per trio run: every engine of a run
    (and a restarted one) shares one clock, whether trio's clock is real or a MockClock."""
    try:
        return _EPOCH.get()
    except LookupError:
        _EPOCH.set(time.time() - trio.current_time())
        return _EPOCH.get()


def _nothing() -> None:
    """Nothing to undo."""


#: `Engine.update_schedule`'s "not given" (None is an input like any other).
_UNCHANGED: Any = object()


@attrs.define(eq=False)
class _Waiter:
    """One `Engine.wait` in progress: woken to look again, or handed the ended execution."""

    woken: trio.Event = attrs.field(factory=trio.Event)
    ended: Execution | None = None


class Engine:
    """Start, signal, cancel, schedule and inspect durable executions.

    The value of a ``kernel.durable.engine(...)`` resource: depend on it from tasks, and
    call ``engine.context()`` inside a workflow for its durable operations.
    """

    def __init__(self, id: str, store: Store, runtime: Host, options: EngineOptions) -> None:
        self._id = id
        self._store = store
        self._runtime = runtime
        self._options = options
        self._worker_id = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        self._current: ContextVar[Context | None] = ContextVar(f"durable:{id}", default=None)
        #: The runs in progress in this process, by execution id: the engine owns the
        #: set (`cancel` stops a run through it), its worker fills it.
        self._running: dict[str, trio.CancelScope] = {}
        self._worker: Worker | None = None
        self._epoch = _epoch()
        self._wake = trio.Event()
        self._waiters: dict[str, list[_Waiter]] = {}
        #: When the schedules must be looked at again (the earliest tick, or the next
        #: poll for other processes' changes); -inf: at the next round.
        self._schedules_due = -math.inf
        #: Counts changes, so that a look that raced one does not hide it.
        self._schedule_changes = 0
        self._workflows: dict[str, tuple[Task, WorkflowConfig]] = {
            task.id: (task, config) for task, config in runtime.find(WORKFLOW)
        }
        self._steps: StepDurations | None = None
        self._env = RunEnv(
            store,
            self._worker_id,
            self.now,
            options.audit,
            self._emit,
            self._check_event,
            self._observe_step,
        )
        self._log = kernel_logger(id)
        self._unwatch: Callable[[], None] = (
            store.watch(self._store_changed) if isinstance(store, WatchedStore) else _nothing
        )

    def _store_changed(self) -> None:
        self._schedules_due = -math.inf
        self._schedule_changes += 1
        self.poke()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.woken.set()

    @property
    def id(self) -> str:
        """The engine resource's id."""
        return self._id

    @property
    def store(self) -> Store:
        """Where this engine's executions live."""
        return self._store

    @property
    def runtime(self) -> Host:
        """The kernel runtime the engine belongs to."""
        return self._runtime

    @property
    def options(self) -> EngineOptions:
        """The engine resource's settings (frozen)."""
        return self._options

    @property
    def worker_id(self) -> str:
        """Who this engine's worker is in the store (``host:pid:nonce``)."""
        return self._worker_id

    @property
    def env(self) -> RunEnv:
        """What every run of this engine shares (frozen)."""
        return self._env

    @property
    def current(self) -> ContextVar[Context | None]:
        """The context of the run in progress in this task (set by the worker)."""
        return self._current

    @property
    def worker(self) -> Worker | None:
        """This process's worker, once `start_worker` ran (None in a front-only engine)."""
        return self._worker

    def start_worker(self, nursery: trio.Nursery) -> None:
        """Run this engine's worker in ``nursery`` (the engine resource's), once."""
        if self._worker is not None:
            raise DurableError(f"engine {self.id!r}: its worker is already running")
        # Imported here: the worker's module imports kernel._shutdown, which must not be
        # the first to import kernel.observability (their modules import each other). The
        # worker's module does not import this one: it depends on `WorkerHost`.
        from kernel.durable._worker import Worker

        self._worker = Worker(self, self._running)
        nursery.start_soon(self._worker.run, name=f"{self.id}.worker")

    def running_executions(self) -> Set[str]:
        """The ids of the executions running in this process now (a snapshot)."""
        return frozenset(self._running)

    def measure_steps(self) -> StepDurations:
        """Start counting the durations of the steps this process runs (for
        `kernel.durable.metrics`); the counts, shared by every caller."""
        if self._steps is None:
            self._steps = StepDurations()
        return self._steps

    def _observe_step(self, workflow: str, seconds: float) -> None:
        if self._steps is not None:
            self._steps.observe(workflow, seconds)

    def dispose(self) -> None:
        """Stop watching the store (called by the engine resource when it is disposed)."""
        self._unwatch()

    # ------------------------------------------------------------------ plumbing

    def now(self) -> float:
        """The engine's clock in epoch seconds (trio's clock, so a MockClock rules it)."""
        return self._epoch + trio.current_time()

    def poke(self) -> None:
        """Wake the worker: something may have become runnable."""
        self._wake.set()

    def wake_event(self) -> trio.Event:
        """A fresh event for the worker to sleep on (set by the next `poke`)."""
        self._wake = trio.Event()
        return self._wake

    def finished(self, execution: Execution) -> None:
        """Hand ``execution``, which has ended, to its waiters in this process (they return
        without reading it back)."""
        for waiter in self._waiters.pop(execution.id, ()):
            waiter.ended = execution
            waiter.woken.set()

    def changed(self, execution_id: str) -> None:
        """Wake the execution's waiters to read it again (it may have ended, or its row
        gone bad)."""
        for waiter in self._waiters.get(execution_id, ()):
            waiter.woken.set()

    def schedules_changed(self) -> None:
        """Look at the schedules at the worker's next round."""
        self._schedules_due = -math.inf
        self._schedule_changes += 1
        self.poke()

    def workflow_task(self, workflow_id: str) -> Task | None:
        """The registered workflow task with this id, or None."""
        found = self._workflows.get(workflow_id)
        return found[0] if found is not None else None

    async def _emit(self, event: Event, payload: Any) -> None:
        try:
            await self.runtime.emit(event, payload)
        except Exception as exc:
            self._log.opt(exception=exc).warning("durable emit of {!r} failed", event.id)

    def _check_event(self, event: Event, payload: Any) -> Any:
        node = self.runtime.graph.nodes.get(event.id) if isinstance(event, Event) else None
        if node is None or node.kind != "event":
            raise DurableError(f"emit: {event!r} is not an event registered in this app")
        if event.payload is not None:
            payload = structure(payload, event.payload, owner=f"event {event.id!r}", path="payload")
        return payload

    def _resolve(self, task_or_id: Task | str) -> Task:
        workflow_id = task_or_id.id if isinstance(task_or_id, Task) else task_or_id
        task = self.workflow_task(workflow_id) if isinstance(workflow_id, str) else None
        if task is None:
            raise UnknownWorkflowError(
                f"{workflow_id!r} is not a workflow of this app: register a task tagged "
                f"kernel.durable.workflow()"
            )
        return task

    def _input(self, task: Task, value: Any) -> str:
        if task.input is not None:
            value = structure(value, task.input, owner=f"workflow {task.id!r}", path="input")
        return dumps(value, what=f"workflow {task.id!r} input")

    async def _audit_status(self, execution: Execution, status: Status) -> None:
        if self.options.audit:
            entry = AuditEntry(execution.id, "status_changed", self.now(), None, {"to": status})
            await self.store.append_audit(entry)

    # ------------------------------------------------------------------ inside workflows

    def context(self) -> Context:
        """The durable context of the workflow run in progress (inside a workflow only)."""
        context = self.current.get()
        if context is None:
            raise DurableError(
                f"engine {self.id!r}: context() is only available inside a workflow run by "
                f"this engine (start it with engine.start(...), not by calling the task)"
            )
        return context

    def workflows(self) -> list[Task]:
        """The app's workflows: tasks tagged ``kernel.durable.workflow``, by id."""
        return [self._workflows[key][0] for key in sorted(self._workflows)]

    # ------------------------------------------------------------------ starting

    async def _create(
        self,
        task: Task,
        value: Any,
        *,
        wake_at: float | None,
        idempotency_key: str | None,
        execution_id: str | None = None,
    ) -> str:
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError(f"idempotency_key must be a str, got {idempotency_key!r}")
        now = self.now()
        execution = Execution(
            id=uuid.uuid4().hex if execution_id is None else execution_id,
            workflow=task.id,
            input=self._input(task, value),
            wake_at=wake_at,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )
        audit = None
        if self.options.audit:
            audit = AuditEntry(execution.id, "status_changed", now, None, {"to": "pending"})
        stored = await self.store.create_execution(execution, audit=audit)
        if stored.id == execution.id:
            self.poke()
        return stored.id

    async def start(
        self, task_or_id: Task | str, input: Any = None, *, idempotency_key: str | None = None
    ) -> str:
        """Start a workflow; return the execution id at once (store it in your domain row).

        The input is checked against the task's ``input=`` type and stored as JSON. With
        ``idempotency_key``, a key already used returns that execution's id instead.
        """
        task = self._resolve(task_or_id)
        return await self._create(task, input, wake_at=None, idempotency_key=idempotency_key)

    async def start_and_wait(
        self,
        task_or_id: Task | str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> tuple[str, Any]:
        """`start`, then `wait`: ``(execution_id, result)``."""
        if idempotency_key is not None:  # (the id is the key's execution's, known after)
            execution_id = await self.start(task_or_id, input, idempotency_key=idempotency_key)
            return execution_id, await self.wait(execution_id, timeout=timeout)
        task = self._resolve(task_or_id)
        execution_id = uuid.uuid4().hex
        # Waiting before the execution exists: its end cannot come unseen, so the wait
        # need not read it back first (one store call fewer).
        waiter = self._add_waiter(execution_id)
        try:
            await self._create(
                task, input, wake_at=None, idempotency_key=None, execution_id=execution_id
            )
        except BaseException:
            self._remove_waiter(execution_id, waiter)
            raise
        return execution_id, await self._wait(execution_id, timeout, waiter)

    async def schedule(
        self,
        task_or_id: Task | str,
        input: Any = None,
        *,
        at: datetime | float | None = None,
        delay: float | timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start a workflow later: ``at`` (an aware datetime or epoch seconds) or after
        ``delay`` (seconds or a timedelta). The execution is ``pending`` until then."""
        if (at is None) == (delay is None):
            raise ValueError("schedule: give exactly one of at= and delay=")
        if delay is not None:
            wake_at = self.now() + validate.seconds(
                delay, owner="schedule", name="delay", minimum="zero"
            )
        elif isinstance(at, datetime):
            if at.tzinfo is None:
                raise ValueError("schedule: at must be an aware datetime (with a tzinfo)")
            wake_at = at.timestamp()
        elif isinstance(at, int | float) and not isinstance(at, bool):
            wake_at = float(at)
        else:
            raise ValueError(f"schedule: at must be a datetime or epoch seconds, got {at!r}")
        task = self._resolve(task_or_id)
        return await self._create(task, input, wake_at=wake_at, idempotency_key=idempotency_key)

    # ------------------------------------------------------------------ following

    async def get_execution(self, execution_id: str) -> Execution:
        """The execution (raises `UnknownExecutionError` for an unknown id)."""
        execution = await self.store.get_execution(execution_id)
        if execution is None:
            raise UnknownExecutionError(f"no execution has id {execution_id!r}")
        return execution

    def result_of(self, execution: Execution) -> Any:
        """The result of a completed execution, read into the workflow's ``result=`` type."""
        found = self._workflows.get(execution.workflow)
        type_ = found[0].result if found is not None else None
        return loads(execution.result, type_, what=f"execution {execution.id!r} result")

    async def wait(self, execution_id: str, *, timeout: float | None = None) -> Any:
        """Wait until the execution ends; return its result.

        Raises `WorkflowFailedError` (failed or compensation_failed, with the stored
        error), `WorkflowCancelledError`, or `WaitTimeoutError` after ``timeout`` seconds;
        `CorruptRecordError` while its row cannot be read back (a worker's next claim fails
        an active one, which then raises `WorkflowFailedError`).
        """
        return await self._wait(execution_id, timeout, None)

    async def _wait(self, execution_id: str, timeout: float | None, first: _Waiter | None) -> Any:
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                execution = await self._await_end(execution_id, first)
        except trio.TooSlowError:
            raise WaitTimeoutError(
                f"execution {execution_id!r} did not end within {timeout} s"
            ) from None
        if execution.status == "completed":
            return self.result_of(execution)
        if execution.status == "cancelled":
            raise WorkflowCancelledError(f"execution {execution_id!r} was cancelled")
        raise WorkflowFailedError(execution_id, execution.status, execution.error)

    def _add_waiter(self, execution_id: str) -> _Waiter:
        waiter = _Waiter()
        self._waiters.setdefault(execution_id, []).append(waiter)
        return waiter

    def _remove_waiter(self, execution_id: str, waiter: _Waiter) -> None:
        waiters = self._waiters.get(execution_id)
        if waiters is None:
            return  # (handed its execution by `finished`, which pops them all)
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            del self._waiters[execution_id]

    async def _await_end(self, execution_id: str, first: _Waiter | None = None) -> Execution:
        """The ended execution. ``first``: a waiter registered before the execution was
        created (nothing to read back before waiting on it)."""
        poll = math.inf if self.store.local else self.options.polling_interval
        waiter = first
        while True:
            read = waiter is None
            if waiter is None:  # before the read: an end meanwhile is not missed
                waiter = self._add_waiter(execution_id)
            try:
                if read:
                    execution = await self.get_execution(execution_id)
                    if execution.terminal:
                        return execution
                with trio.move_on_after(poll):
                    await waiter.woken.wait()
                if waiter.ended is not None:
                    return waiter.ended
            finally:
                self._remove_waiter(execution_id, waiter)
            waiter = None

    async def signal(self, execution_id: str, signal: Signal[Any], payload: Any = None) -> None:
        """Send ``signal`` to the execution; the next (or current) wait for it receives it.

        Buffered when nobody waits yet. The payload is checked against the signal's
        ``payload`` type. An unknown or ended execution raises.
        """
        if not isinstance(signal, Signal):
            raise TypeError(f"signal: expected a kernel.durable.signal, got {signal!r}")
        if signal.payload is not None:
            payload = structure(
                payload, signal.payload, owner=f"signal {signal.id!r}", path="payload"
            )
        text = dumps(payload, what=f"signal {signal.id!r} payload")
        execution = await self.get_execution(execution_id)
        if execution.terminal:
            raise DurableError(
                f"execution {execution_id!r} has ended ({execution.status}); "
                f"signal {signal.id!r} not sent"
            )
        await self.store.send_signal(execution_id, signal.id, text, now=self.now())
        self.poke()

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel the execution (a run in progress stops at its next checkpoint here, or
        within a third of ``claim_ttl`` in another process). Ended ones are left as they are.
        """
        before = await self.get_execution(execution_id)
        execution = await self.store.request_cancel(execution_id, now=self.now())
        assert execution is not None
        if not before.terminal and execution.status == "cancelled":
            await self._audit_status(execution, "cancelled")
            running = self._running.get(execution_id)
            if running is not None:
                running.cancel()
            self.finished(execution)
        return execution

    async def recover(self) -> list[str]:
        """Kick incomplete executions: take back those whose worker process on this host
        has died (without waiting out their lease) and wake the worker. Returns the ids of
        the executions that have not ended."""
        for execution in await self.store.list_executions(statuses=RUNNING):
            if execution.owner is not None and _process_gone(execution.owner):
                now = self.now()
                audit = None
                if self.options.audit:
                    data = {"to": "pending", "recovered_from": execution.owner}
                    audit = AuditEntry(execution.id, "status_changed", now, None, data)
                try:
                    await self.store.release(
                        execution.id, execution.owner, status="pending", now=now, audit=audit
                    )
                except LeaseLostError:
                    continue  # someone else took it meanwhile
                except CorruptRecordError:
                    continue  # it went bad meanwhile: the next claim fails it
                self._log.info(
                    "execution {}: its worker {} is gone; recovered", execution.id, execution.owner
                )
        self.poke()
        return [e.id for e in await self.store.list_executions(statuses=ACTIVE)]

    # ------------------------------------------------------------------ schedules

    async def ensure_schedule(
        self,
        task_or_id: Task | str,
        input: Any = None,
        *,
        id: str,
        cron: str | None = None,
        interval: float | timedelta | None = None,
    ) -> Schedule:
        """Create the recurring schedule ``id``, or update it when it differs (safe to call
        at every start). ``cron`` is read in UTC; ``interval`` in seconds. Each tick
        starts exactly one execution, whatever the number of workers."""
        interval = check_cadence(cron, interval)
        if not isinstance(id, str) or not id:
            raise ValueError(f"ensure_schedule: id must be a non-empty str, got {id!r}")
        task = self._resolve(task_or_id)
        text = self._input(task, input)
        try:
            existing = await self.store.get_schedule(id)
        except CorruptRecordError as exc:
            self._log.warning("{}; replacing it", exc)
            existing = None
        now = self.now()
        if existing is not None and (
            existing.workflow,
            existing.input,
            existing.cron,
            existing.interval,
        ) == (task.id, text, cron, interval):
            return existing
        schedule = Schedule(
            id=id,
            workflow=task.id,
            input=text,
            cron=cron,
            interval=interval,
            next_run_at=next_tick(cron, interval, due=now, now=now),
            paused=existing.paused if existing is not None else False,
            last_execution_id=existing.last_execution_id if existing is not None else None,
            created_at=existing.created_at if existing is not None else now,
            updated_at=now,
        )
        stored = await self.store.put_schedule(schedule)
        self.schedules_changed()
        return stored

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        """The schedule, or None."""
        return await self.store.get_schedule(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        return await self.store.list_schedules()

    async def _change_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        schedule = await self.store.get_schedule(schedule_id)
        if schedule is None:
            raise KeyError(f"no schedule has id {schedule_id!r}")
        stored = await self.store.put_schedule(
            attrs.evolve(schedule, updated_at=self.now(), **changes)
        )
        self.schedules_changed()
        return stored

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        """Stop starting executions for this schedule until `resume_schedule`."""
        return await self._change_schedule(schedule_id, paused=True)

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        """Start ticking again, from the next tick after now (missed ticks are skipped)."""
        schedule = await self.store.get_schedule(schedule_id)
        if schedule is None:
            raise KeyError(f"no schedule has id {schedule_id!r}")
        next_run_at = schedule.next_run_at
        if next_run_at <= self.now():
            next_run_at = next_tick(
                schedule.cron, schedule.interval, due=next_run_at, now=self.now()
            )
        return await self._change_schedule(schedule_id, paused=False, next_run_at=next_run_at)

    async def update_schedule(
        self,
        schedule_id: str,
        *,
        input: Any = _UNCHANGED,
        cron: str | None = None,
        interval: float | None = None,
    ) -> Schedule:
        """Change the input (any value, None included; left as it is when not given)
        and/or the cadence (give both or neither of cron/interval's replacement: one of
        them)."""
        schedule = await self.store.get_schedule(schedule_id)
        if schedule is None:
            raise KeyError(f"no schedule has id {schedule_id!r}")
        changes: dict[str, Any] = {}
        if input is not _UNCHANGED:
            changes["input"] = self._input(self._resolve(schedule.workflow), input)
        if cron is not None or interval is not None:
            check_cadence(cron, interval)
            now = self.now()
            changes.update(
                cron=cron,
                interval=interval,
                next_run_at=next_tick(cron, interval, due=now, now=now),
            )
        return await self._change_schedule(schedule_id, **changes)

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule (executions it started are not touched)."""
        removed = await self.store.delete_schedule(schedule_id)
        self.schedules_changed()
        return removed

    async def fire_due_schedules(self) -> None:
        """Start one execution for each due tick (the worker calls this every round).

        Reads the schedules only when one may be due: at the earliest tick seen, after a
        change made through this engine (or a local store), and, for stores other
        processes write, every ``polling_interval``.
        """
        now = self.now()
        if now < self._schedules_due:
            return
        changes = self._schedule_changes
        look_again = math.inf if self.store.local else now + self.options.polling_interval
        for schedule in await self.store.list_schedules():
            if schedule.paused:
                continue
            if schedule.next_run_at > now:
                look_again = min(look_again, schedule.next_run_at)
                continue
            execution = Execution(
                id=uuid.uuid4().hex,
                workflow=schedule.workflow,
                input=schedule.input,
                idempotency_key=f"schedule:{schedule.id}:{schedule.next_run_at!r}",
                created_at=now,
                updated_at=now,
            )
            try:
                following = next_tick(
                    schedule.cron, schedule.interval, due=schedule.next_run_at, now=now
                )
            except (ValueError, ArithmeticError) as exc:  # a cron line with no next date...
                self._log.error("schedule {!r} cannot tick ({}); it is paused", schedule.id, exc)
                await self.store.put_schedule(attrs.evolve(schedule, paused=True, updated_at=now))
                continue
            if await self.store.fire_schedule(
                schedule.id, due=schedule.next_run_at, next_run_at=following, execution=execution
            ):
                await self._audit_status(execution, "pending")
                look_again = min(look_again, following)
            else:  # changed meanwhile (another worker fired it): look again next round
                look_again = -math.inf
        if changes == self._schedule_changes:
            self._schedules_due = look_again

    # ------------------------------------------------------------------ describing

    async def describe(self, task_or_id: Task | str, input: Any = None) -> FlowShape:
        """The workflow's durable operations in order, recorded without running any step
        body (steps return None). ``input`` defaults to the tag's ``defaults``."""
        task = self._resolve(task_or_id)
        if input is None:
            input = self._workflows[task.id][1].defaults
        if task.input is not None and input is not None:
            input = structure(input, task.input, owner=f"workflow {task.id!r}", path="input")
        recorder = Recorder(self.env, task.id)
        deps = self.runtime.dependencies(task)
        token = self.current.set(recorder)
        stopped = None
        try:
            await task.fn(input, **deps)
        except Exception as exc:
            stopped = f"{type(exc).__name__}: {exc}"
        finally:
            self.current.reset(token)
        return FlowShape(task.id, tuple(recorder.nodes), stopped)
