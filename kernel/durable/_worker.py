"""The worker: claims runnable executions, runs them (replaying recorded steps) with a
renewed lease, and writes where each run ended: completed, failed, sleeping, waiting, or
pending again for a retry."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import trio

from kernel._definitions import Task
from kernel._errors import ConfigError
from kernel._shutdown import ShuttingDown
from kernel.durable._context import Context, Suspend
from kernel.durable._errors import (
    CompensationFailedError,
    CorruptRecordError,
    DurableError,
    LeaseLostError,
)
from kernel.durable._records import AuditEntry, Execution, Status
from kernel.durable._serde import dumps, loads
from kernel.observability import execution_id as log_execution_id
from kernel.observability import execution_watch, kernel_logger

if TYPE_CHECKING:
    from kernel.durable._engine import Engine

__all__ = ["Worker", "retry_delay"]

#: Errors that no retry can fix: the execution fails at once. Every DurableError a run
#: raises is one (non-determinism, unreadable rows, unserializable results, misuse of the
#: context such as a duplicate step id or a switch no branch matches), and so is a
#: ConfigError (an input or event payload that does not fit its type).
_FATAL = (DurableError, ConfigError)

#: The shortest idle: something due but not claimable yet (a lease ending exactly now is
#: claimable only once it has passed) is looked at again this much later, never in a spin
#: (under a MockClock, a spin at one instant would never end).
_MIN_IDLE = 0.001


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` of a failed body: 1, 2, 4, ... up to 60."""
    return float(min(2 ** (attempt - 1), 60))


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Worker:
    """Runs the executions of one engine; lives in the engine resource's nursery."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.running: dict[str, trio.CancelScope] = {}
        #: The lease renewal of each run, stopped before the run writes its outcome.
        self._renewers: dict[str, trio.CancelScope] = {}
        self._log = kernel_logger(engine.id)

    async def run(self) -> None:
        """Claim and run executions until cancelled (when the engine is disposed)."""
        engine = self.engine
        options = engine.options
        await engine.runtime.wait_ready()  # workflows may need resources started after us
        async with trio.open_nursery() as runs:
            while True:
                wake = engine.wake_event()
                if not engine.runtime.shutting_down:
                    await engine.fire_due_schedules()
                    free = options.concurrency - len(self.running)
                    if free > 0:
                        now = engine.now()
                        claimed = await engine.store.claim(
                            engine.worker_id,
                            now=now,
                            lease_until=now + options.claim_ttl,
                            limit=free,
                        )
                        for execution in claimed:
                            if execution.terminal:  # its row was unreadable: failed
                                await self._unreadable(execution, now)
                            elif execution.id not in self.running:
                                self.running[execution.id] = trio.CancelScope()
                                runs.start_soon(self._run, execution)
                        if len(claimed) == free:
                            await trio.lowlevel.checkpoint()
                            continue
                await self._idle(wake)

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
                async with trio.open_nursery() as nursery:
                    renewing = self._renewers[execution.id] = trio.CancelScope()
                    nursery.start_soon(self._renew, execution.id, scope, renewing)
                    await self._execute(execution)
                    nursery.cancel_scope.cancel()
        # The nursery wraps what leaves it in an ExceptionGroup: hence ``except*``.
        except* LeaseLostError:
            self._log.warning("execution {}: lease lost; the run stopped", execution.id)
        except* trio.Cancelled:
            await self._hand_back(execution)
            raise
        finally:
            log_execution_id.reset(token)
            del self.running[execution.id]
            self._renewers.pop(execution.id, None)
            self.engine.poke()

    async def _hand_back(self, execution: Execution) -> None:
        """The engine is being disposed mid-run: give the execution back at once, so a
        restart does not wait out the lease."""
        engine = self.engine
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(engine.options.claim_ttl),
            contextlib.suppress(LeaseLostError, CorruptRecordError),
        ):
            await engine.store.release(
                execution.id, engine.worker_id, status="pending", now=engine.now()
            )

    async def _renew(
        self, execution_id: str, scope: trio.CancelScope, renewing: trio.CancelScope
    ) -> None:
        engine = self.engine
        with renewing:
            while True:
                await trio.sleep(engine.options.claim_ttl / 3)
                try:
                    await engine.store.renew(
                        execution_id,
                        engine.worker_id,
                        lease_until=engine.now() + engine.options.claim_ttl,
                    )
                except LeaseLostError:
                    if renewing.cancel_called:
                        return  # the run released it meanwhile: not a lost lease
                    self._log.warning(
                        "execution {}: lease lost or cancelled; stopping", execution_id
                    )
                    scope.cancel()
                    return

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
        except LeaseLostError:
            raise
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
        renewing = self._renewers.get(execution.id)
        if renewing is not None:
            renewing.cancel()  # a renewal racing the release must not cancel the run
        now = engine.now()
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
            )
        except CorruptRecordError as exc:  # its row went bad during the run
            self._log.warning("{}; not released (a claim fails it if it has not ended)", exc)
            engine.poke()
            engine.finished(execution.id)
            return
        await self._reported(updated, now)

    async def _unreadable(self, execution: Execution, now: float) -> None:
        """A claim failed ``execution``: its row could not be read back. A run of it here
        stops (its row was failed under it)."""
        running = self.running.get(execution.id)
        if running is not None:
            running.cancel()
        await self._reported(execution, now)

    async def _reported(self, execution: Execution, now: float) -> None:
        """Audit and log the status the execution went to; wake its waiters if it ended."""
        engine = self.engine
        status, error = execution.status, execution.error
        if engine.options.audit:
            data: dict[str, object] = {"to": status, "attempt": execution.attempt}
            if error is not None:
                data["error"] = error
            await engine.store.append_audit(
                AuditEntry(execution.id, "status_changed", now, None, data)
            )
        if status == "failed" or status == "compensation_failed":
            self._log.error("execution {} {}: {}", execution.id, status, error)
        if execution.terminal:
            engine.finished(execution.id)
