"""The worker: claims runnable executions, runs them (replaying recorded steps) with a
renewed lease, and writes where each run ended: completed, failed, sleeping, waiting, or
pending again for a retry."""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import trio

from kernel._definitions import Task
from kernel._errors import ConfigError
from kernel._shutdown import ShuttingDown
from kernel.durable._context import Context, RunEnv, Suspend
from kernel.durable._errors import (
    CompensationFailedError,
    CorruptRecordError,
    DurableError,
    LeaseLostError,
    StoreUnavailableError,
)
from kernel.durable._options import EngineOptions
from kernel.durable._records import AuditEntry, Execution, Status
from kernel.durable._serde import dumps, loads
from kernel.durable._store import Store
from kernel.observability import execution_id as log_execution_id
from kernel.observability import execution_watch, kernel_logger

if TYPE_CHECKING:
    from kernel._host import Host

__all__ = ["Worker", "WorkerHost", "retry_delay"]


class WorkerHost(Protocol):
    """What a worker needs of its engine (`kernel.durable.Engine` is one): the worker
    depends on this, not on the engine's module."""

    @property
    def id(self) -> str: ...
    @property
    def store(self) -> Store: ...
    @property
    def runtime(self) -> Host: ...
    @property
    def options(self) -> EngineOptions: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def env(self) -> RunEnv: ...
    @property
    def current(self) -> ContextVar[Context | None]: ...

    def now(self) -> float: ...
    def poke(self) -> None: ...
    def wake_event(self) -> trio.Event: ...
    def finished(self, execution: Execution) -> None: ...
    def changed(self, execution_id: str) -> None: ...
    def workflow_task(self, workflow_id: str) -> Task | None: ...
    async def fire_due_schedules(self) -> None: ...


#: Errors that no retry can fix: the execution fails at once. Every DurableError a run
#: raises is one (non-determinism, unreadable rows, unserializable results, misuse of the
#: context such as a duplicate step id or a switch no branch matches), and so is a
#: ConfigError (an input or event payload that does not fit its type).
_FATAL = (DurableError, ConfigError)

#: The shortest idle: something due but not claimable yet (a lease ending exactly now is
#: claimable only once it has passed) is looked at again this much later, never in a spin
#: (under a MockClock, a spin at one instant would never end).
_MIN_IDLE = 0.001
#: The first and the longest wait before looking at a store that did not answer again.
_OUTAGE_FIRST = 0.05
_OUTAGE_LONGEST = 5.0


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` of a failed body: 1, 2, 4, ... up to 60."""
    return float(min(2 ** (attempt - 1), 60))


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Worker:
    """Runs the executions of one engine; lives in the engine resource's nursery. The
    runs in progress go in ``running``, the engine's (it cancels them through it)."""

    def __init__(self, engine: WorkerHost, running: dict[str, trio.CancelScope]) -> None:
        self.engine = engine
        self.running = running
        #: Whether a run ending must wake the loop to claim: the last claim filled every
        #: free slot (there may be more), or none was free. When it found less than it
        #: could take, nothing was left, and an end (a terminal status makes nothing else
        #: runnable) need not look again: whatever becomes runnable after pokes the engine
        #: or is due by time.
        self._claim_on_end = True
        #: Runs whose release just ended their execution (read when the run finishes).
        self._ended_here: set[str] = set()
        #: The runs whose leases the renewal loop keeps (one loop for all of them): a run
        #: leaves before it writes its outcome, so a renewal racing it is not a lost lease.
        self._renewing: set[str] = set()
        #: Set when a run joins ``_renewing`` while the loop waits for one.
        self._renewal_wanted = trio.Event()
        self._log = kernel_logger(engine.id)

    async def run(self) -> None:
        """Claim and run executions until cancelled (when the engine is disposed)."""
        engine = self.engine
        options = engine.options
        await engine.runtime.wait_ready()  # workflows may need resources started after us
        outage = 0.0  # the current wait between looks at a store that does not answer
        async with trio.open_nursery() as runs:
            runs.start_soon(self._renewals)
            while True:
                wake = engine.wake_event()
                try:
                    if await self._round(runs):
                        await trio.lowlevel.checkpoint()
                        continue
                    await self._idle(wake)
                except StoreUnavailableError as exc:
                    if not outage:
                        self._log.warning("{}; looking again, backing off", exc)
                    outage = min(max(outage * 2, _OUTAGE_FIRST), _OUTAGE_LONGEST)
                    await trio.sleep(min(outage, options.polling_interval))
                    continue
                if outage:
                    self._log.info("the store answers again")
                    outage = 0.0

    async def _round(self, runs: trio.Nursery) -> bool:
        """Fire due schedules, claim what the free slots can take and start it; whether
        every slot was filled (so that there may be more to claim at once)."""
        engine = self.engine
        options = engine.options
        self._claim_on_end = True
        if engine.runtime.shutting_down:
            return False
        await engine.fire_due_schedules()
        free = options.concurrency - len(self.running)
        if free <= 0:
            return False
        now = engine.now()
        claimed = await engine.store.claim(
            engine.worker_id, now=now, lease_until=now + options.claim_ttl, limit=free
        )
        for execution in claimed:
            if execution.terminal:  # its row was unreadable: failed
                await self._unreadable(execution, now)
            elif execution.id not in self.running:
                self.running[execution.id] = trio.CancelScope()
                runs.start_soon(self._run, execution)
        self._claim_on_end = len(claimed) == free
        return self._claim_on_end

    async def _idle(self, wake: trio.Event) -> None:
        engine = self.engine
        budget = math.inf if engine.store.local else engine.options.polling_interval
        due = await engine.store.next_due()
        if due is not None and len(self.running) < engine.options.concurrency:
            budget = min(budget, max(due - engine.now(), _MIN_IDLE))
        with trio.move_on_after(budget):
            await wake.wait()

    async def _run(self, execution: Execution) -> None:
        scope = self.running[execution.id]
        token = log_execution_id.set(execution.id)
        try:
            with scope:  # cancelled when the lease is lost or the execution cancelled
                self._renewing.add(execution.id)
                self._renewal_wanted.set()
                await self._execute(execution)
        except LeaseLostError:
            self._log.warning("execution {}: lease lost; the run stopped", execution.id)
        except StoreUnavailableError as exc:
            # What was recorded stays; the lease runs out, then a worker runs it again.
            self._log.warning(
                "execution {}: the store failed ({}); the run stopped", execution.id, exc
            )
        except trio.Cancelled:
            self._renewing.discard(execution.id)
            await self._hand_back(execution)
            raise
        finally:
            log_execution_id.reset(token)
            del self.running[execution.id]
            self._renewing.discard(execution.id)
            if execution.id not in self._ended_here or self._claim_on_end:
                self.engine.poke()
            self._ended_here.discard(execution.id)

    async def _hand_back(self, execution: Execution) -> None:
        """The engine is being disposed mid-run: give the execution back at once, so a
        restart does not wait out the lease."""
        engine = self.engine
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(engine.options.claim_ttl),
            contextlib.suppress(LeaseLostError, CorruptRecordError, StoreUnavailableError),
        ):
            await engine.store.release(
                execution.id, engine.worker_id, status="pending", now=engine.now()
            )

    async def _renewals(self) -> None:
        """The one renewal loop of the worker's runs: every third of ``claim_ttl`` while
        any runs, each run's lease is renewed (a run that started since the last tick is
        renewed sooner than that, never later); idle while none runs."""
        engine = self.engine
        while True:
            if not self._renewing:
                self._renewal_wanted = trio.Event()
                await self._renewal_wanted.wait()
            await trio.sleep(engine.options.claim_ttl / 3)
            for execution_id in list(self._renewing):
                if execution_id in self._renewing:  # (not released meanwhile)
                    await self._renew(execution_id)

    async def _renew(self, execution_id: str) -> None:
        engine = self.engine
        try:
            await engine.store.renew(
                execution_id, engine.worker_id, lease_until=engine.now() + engine.options.claim_ttl
            )
        except LeaseLostError:
            if execution_id not in self._renewing:
                return  # the run released it meanwhile: not a lost lease
            self._renewing.discard(execution_id)
            self._log.warning("execution {}: lease lost or cancelled; stopping", execution_id)
            scope = self.running.get(execution_id)
            if scope is not None:
                scope.cancel()
        except DurableError as exc:  # (an outage, a row gone bad): the lease may hold
            self._log.warning("execution {}: lease not renewed ({})", execution_id, exc)

    async def _execute(self, execution: Execution) -> None:
        engine = self.engine
        task = engine.workflow_task(execution.workflow)
        # Error tracking: failures inside a run are the execution's, reported once, when final.
        watch = execution_watch(engine.runtime, execution.id, execution.workflow)
        try:
            if task is None:
                raise CorruptRecordError(
                    f"execution {execution.id!r}: workflow {execution.workflow!r} is not "
                    f"registered in this app"
                )
            value = await watch.attempt(self._body, task, execution)
        except Suspend as suspend:
            await self._release(
                execution,
                suspend.status,  # type: ignore[arg-type]
                wake_at=suspend.wake_at,
                waiting_for=suspend.waiting_for,
            )
        except ShuttingDown:
            await self._release(execution, "pending")
        except (LeaseLostError, StoreUnavailableError):
            raise  # (the store's failure, not the execution's: nothing more is written)
        except CompensationFailedError as exc:
            watch.failed(exc)
            await self._release(execution, "compensation_failed", error=describe_error(exc))
        except _FATAL as exc:
            watch.failed(exc)
            await self._release(execution, "failed", error=describe_error(exc))
        except Exception as exc:
            attempt = execution.attempt + 1
            if attempt >= engine.options.max_attempts:
                watch.failed(exc)
                await self._release(execution, "failed", error=describe_error(exc), attempt=attempt)
            else:
                delay = retry_delay(attempt)
                self._log.warning(
                    "execution {}: attempt {} failed ({}); retrying in {} s",
                    execution.id,
                    attempt,
                    describe_error(exc),
                    delay,
                )
                await self._release(
                    execution,
                    "pending",
                    error=describe_error(exc),
                    attempt=attempt,
                    wake_at=engine.now() + delay,
                )
        else:
            await self._release(execution, "completed", result=value)

    async def _body(self, task: Task, execution: Execution) -> str:
        engine = self.engine
        records = await engine.store.list_step_results(execution.id)
        argument = loads(execution.input, what=f"execution {execution.id!r} input")
        context = Context(engine.env, execution, records)
        token = engine.current.set(context)
        try:
            result: Any = await engine.runtime.run_task(task, argument)
        finally:
            engine.current.reset(token)
        return dumps(result, what=f"workflow {task.id!r} result")

    async def _release(
        self,
        execution: Execution,
        status: Status,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        waiting_for: str | None = None,
        attempt: int | None = None,
    ) -> None:
        engine = self.engine
        self._renewing.discard(execution.id)  # a renewal racing the release is not a loss
        now = engine.now()
        audit = None
        if engine.options.audit:
            audit = _status_line(
                execution.id,
                now,
                status,
                execution.attempt if attempt is None else attempt,
                error,
            )
        try:
            updated = await engine.store.release(
                execution.id,
                engine.worker_id,
                status=status,
                now=now,
                result=result,
                error=error,
                wake_at=wake_at,
                waiting_for=waiting_for,
                attempt=attempt,
                audit=audit,
            )
        except CorruptRecordError as exc:  # its row went bad during the run
            self._log.warning("{}; not released (a claim fails it if it has not ended)", exc)
            engine.poke()
            engine.changed(execution.id)
            return
        self._ended(updated)

    async def _unreadable(self, execution: Execution, now: float) -> None:
        """A claim failed ``execution``: its row could not be read back. A run of it here
        stops (its row was failed under it)."""
        running = self.running.get(execution.id)
        if running is not None:
            running.cancel()
        engine = self.engine
        if engine.options.audit:
            line = _status_line(
                execution.id, now, execution.status, execution.attempt, execution.error
            )
            await engine.store.append_audit(line)
        self._ended(execution)

    def _ended(self, execution: Execution) -> None:
        """Log the status the execution went to (its audit line is written); hand it to
        its waiters if it ended."""
        status = execution.status
        if status == "failed" or status == "compensation_failed":
            self._log.error("execution {} {}: {}", execution.id, status, execution.error)
        if execution.terminal:
            if execution.id in self.running:
                self._ended_here.add(execution.id)
            self.engine.finished(execution)


def _status_line(
    execution_id: str, now: float, status: Status, attempt: int, error: str | None
) -> AuditEntry:
    """The ``status_changed`` line of the timeline for an execution going to ``status``."""
    data: dict[str, object] = {"to": status, "attempt": attempt}
    if error is not None:
        data["error"] = error
    return AuditEntry(execution_id, "status_changed", now, None, data)
