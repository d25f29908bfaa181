"""`Context`: what a workflow body calls to make its operations durable.

Each durable operation (step, sleep, signal wait, emit, switch, note, compensation) takes
the next *position* and a step id. Its first run records its outcome; later runs (replays
after a sleep, a signal, a retry or a crash) return the recorded outcome without running
anything. A replay that reaches a step id other than the one recorded at that position
raises `NonDeterminismError`.
"""

from __future__ import annotations

import contextlib
import math
import typing
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from datetime import timedelta
from typing import Any, Generic, TypeVar, overload

import attrs
import trio

import resilience as rs
from kernel._definitions import Event
from kernel.durable._definitions import Branch, Signal, SignalResult
from kernel.durable._errors import (
    CompensationFailedError,
    CorruptRecordError,
    DurableError,
    NonDeterminismError,
)
from kernel.durable._records import AuditEntry, AuditKind, Execution, StepRecord
from kernel.durable._serde import decode, dumps, loads
from kernel.durable._store import Store
from resilience import validate

__all__ = ["Context", "RunEnv", "StepBuilder", "Suspend"]

T = TypeVar("T")


class Suspend(BaseException):
    """Raised by a durable wait to end this run until ``wake_at`` or a signal.

    A BaseException, so that ``except Exception`` in a workflow body cannot swallow it.
    """

    def __init__(
        self, status: str, *, wake_at: float | None, waiting_for: str | None = None
    ) -> None:
        self.status = status
        self.wake_at = wake_at
        self.waiting_for = waiting_for
        super().__init__(status, wake_at, waiting_for)


@attrs.frozen
class RunEnv:
    """What every run of one engine shares: the store, who we are, the clock, the audit."""

    store: Store
    worker: str
    now: Callable[[], float]
    audit: bool
    emit: Callable[[Event, Any], Awaitable[object]]
    #: Raises unless ``event`` is registered and ``payload`` fits it; returns the payload
    #: structured (called before an emit is marked done, so a mistake is not swallowed).
    check_event: Callable[[Event, Any], Any]


#: Return annotations by code object: a step body is often a closure made anew on every
#: run, but its code (and so its annotation) is the same; resolving hints costs ~100 µs.
_RETURNS: dict[object, Any] = {}


def _returns(fn: Callable[..., Any]) -> Any:
    """The return annotation of ``fn`` (the type step results are read back into)."""
    key = getattr(fn, "__code__", fn)
    try:
        return _RETURNS[key]
    except (KeyError, TypeError):
        pass
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:
        hint = None
    with contextlib.suppress(TypeError):  # (an unhashable callable: not cached)
        _RETURNS[key] = hint
    return hint


class StepBuilder(Generic[T]):
    """``ctx.step(id)``: set the body with `up` and a compensation with `down`, then await.

    ``await ctx.step("charge", charge, order)`` is the short form of
    ``await ctx.step("charge").up(charge, order)``.
    """

    __slots__ = ("_args", "_context", "_down", "_fn", "_id", "_retries", "_returns", "_timeout")

    def __init__(
        self,
        context: Context,
        step_id: str,
        retries: int,
        timeout: float | None,
        returns: Any,
    ) -> None:
        self._context = context
        self._id = step_id
        self._retries = retries
        self._timeout = timeout
        self._returns = returns
        self._fn: Callable[..., Awaitable[Any]] | None = None
        self._args: tuple[Any, ...] = ()
        self._down: Callable[[Any], Awaitable[object]] | None = None

    def up(self, fn: Callable[..., Awaitable[T]], /, *args: Any) -> StepBuilder[T]:
        """The step's body: ``await fn(*args)`` runs once; its result is recorded."""
        self._fn = fn
        self._args = args
        return self

    def down(self, compensate: Callable[[T], Awaitable[object]]) -> StepBuilder[T]:
        """Undo the step in `Context.rollback`: ``await compensate(result)``."""
        self._down = compensate
        return self

    def __await__(self) -> Generator[Any, None, T]:
        if self._fn is None:
            raise DurableError(f"step {self._id!r}: no body; use ctx.step(id, fn) or .up(fn)")
        return self._context._step(self).__await__()


@attrs.define(eq=False)
class _Compensation:
    step_id: str
    down: Callable[[Any], Awaitable[object]]
    value: Any


class Context:
    """The durable operations of one run of one execution (``engine.context()``).

    Durable operations must be awaited one after the other (not concurrently), in an order
    that depends only on the input and on earlier results: that order is what replays
    check.
    """

    def __init__(self, env: RunEnv, execution: Execution, records: Iterable[StepRecord]) -> None:
        self._env = env
        self._execution = execution
        self._by_id: dict[str, StepRecord] = {}
        self._by_position: dict[int, StepRecord] = {}
        for record in records:
            self._by_id[record.step_id] = record
            if record.position is not None:
                self._by_position[record.position] = record
        self._position = 0
        self._used: set[str] = set()
        self._counters: Counter[str] = Counter()
        self._compensations: list[_Compensation] = []
        #: The switch whose branch is running (durable operations are refused inside it).
        self._in_branch: str | None = None

    @property
    def execution_id(self) -> str:
        """The id of the execution this run belongs to."""
        return self._execution.id

    @property
    def attempt(self) -> int:
        """How many earlier runs of the body failed (0 on the first attempt)."""
        return self._execution.attempt

    # ------------------------------------------------------------------ positions

    def _auto_id(self, kind: str, step_id: str | None) -> str:
        if step_id is not None:
            return step_id
        self._counters[kind] += 1
        return f"__{kind}:{self._counters[kind]}"

    def _take(self, step_id: str) -> tuple[int, StepRecord | None]:
        """The next position for ``step_id``, and its record if it ran before."""
        if not isinstance(step_id, str) or not step_id:
            raise DurableError(f"a step id must be a non-empty str, got {step_id!r}")
        if self._in_branch is not None:
            raise DurableError(
                f"{step_id!r}: a branch of switch {self._in_branch!r} runs once and only its "
                f"result is recorded, so it cannot contain durable operations; put them "
                f"after the switch, chosen by its result"
            )
        if step_id in self._used:
            raise DurableError(
                f"execution {self.execution_id!r}: step id {step_id!r} is used twice; "
                f"each durable operation needs its own id"
            )
        self._used.add(step_id)
        position = self._position
        self._position += 1
        record = self._by_id.get(step_id)
        if (record is not None and record.position != position) or (
            record is None and position in self._by_position
        ):
            expected = self._by_position.get(position)
            raise NonDeterminismError(
                self.execution_id,
                position,
                expected.step_id if expected is not None else "(nothing)",
                step_id,
            )
        return position, record

    async def _record(self, step_id: str, position: int | None, result: str) -> None:
        record = StepRecord(self.execution_id, step_id, position, result, self._env.now())
        await self._env.store.record_step(self._env.worker, record)
        self._by_id[step_id] = record

    async def _audit(
        self, kind: AuditKind, step_id: str | None, data: Mapping[str, Any] | None = None
    ) -> None:
        if self._env.audit:
            entry = AuditEntry(self.execution_id, kind, self._env.now(), step_id, data or {})
            await self._env.store.append_audit(entry)

    # ------------------------------------------------------------------ steps

    @overload
    def step(
        self,
        step_id: str,
        /,
        *,
        retries: int = 0,
        timeout: float | timedelta | None = None,
        returns: Any = None,
    ) -> StepBuilder[Any]: ...

    @overload
    def step(
        self,
        step_id: str,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        retries: int = 0,
        timeout: float | timedelta | None = None,
        returns: Any = None,
    ) -> StepBuilder[T]: ...

    def step(
        self,
        step_id: str,
        fn: Callable[..., Awaitable[Any]] | None = None,
        /,
        *args: Any,
        retries: int = 0,
        timeout: float | timedelta | None = None,
        returns: Any = None,
    ) -> StepBuilder[Any]:
        """A memoized step: ``await ctx.step("charge", charge, order)``.

        The first run awaits ``fn(*args)`` (retried up to ``retries`` more times with
        exponential backoff, each try bounded by ``timeout`` seconds), records its result
        as JSON and returns it read back, so a replay returns the very same value. A
        result is read back into ``returns``, by default ``fn``'s return annotation.
        A result that cannot be stored fails the step at once (`SerializationError`).
        A failure is not recorded: the step runs again on the next attempt.
        """
        owner = f"step {step_id!r}"
        validate.count(retries, owner=owner, name="retries", minimum=0)
        timeout = validate.optional_seconds(timeout, owner=owner, name="timeout")
        builder: StepBuilder[Any] = StepBuilder(self, step_id, retries, timeout, returns)
        return builder if fn is None else builder.up(fn, *args)

    async def _step(self, builder: StepBuilder[T]) -> T:
        step_id = builder._id
        position, record = self._take(step_id)
        fn = builder._fn
        assert fn is not None
        returns = builder._returns if builder._returns is not None else _returns(fn)
        what = f"step {step_id!r} result"
        if record is None:
            started = trio.current_time()
            call: Callable[..., Awaitable[Any]] = fn
            if builder._timeout is not None:
                call = _bounded(rs.Timeout(builder._timeout), call)
            if builder._retries:
                retry = rs.Retry(
                    attempts=builder._retries + 1,
                    wait=rs.backoff.exponential(initial=0.1, maximum=10.0),
                )
                call = _bounded(retry, call)
            value = await call(*builder._args)
            text = dumps(value, what=what)
            await self._record(step_id, position, text)
            duration = (trio.current_time() - started) * 1000
            await self._audit("step_completed", step_id, {"duration_ms": round(duration, 3)})
        else:
            text = record.result
        result: T = loads(text, returns, what=what)
        if builder._down is not None:
            self._compensations.append(_Compensation(step_id, builder._down, result))
        return result

    async def rollback(self) -> None:
        """Run the compensations (``.down``) of the steps so far, newest first, each once.

        A compensation that raises stops the rollback with `CompensationFailedError`; left
        uncaught it ends the execution ``compensation_failed``.
        """
        while self._compensations:
            compensation = self._compensations.pop()
            position, record = self._take(f"rollback:{compensation.step_id}")
            if record is not None:
                continue
            try:
                await compensation.down(compensation.value)
            except Exception as exc:
                raise CompensationFailedError(
                    f"execution {self.execution_id!r}: compensation of step "
                    f"{compensation.step_id!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            await self._record(f"rollback:{compensation.step_id}", position, "null")

    # ------------------------------------------------------------------ time and signals

    async def sleep(self, seconds: float | timedelta, *, step_id: str | None = None) -> None:
        """Sleep durably: the wake time is stored first, and a recovery after a crash
        waits only the remainder. The run ends here and the execution is ``sleeping``
        until then (no worker, no memory held)."""
        seconds = validate.seconds(seconds, owner="sleep", name="seconds", minimum="zero")
        sleep_id = self._auto_id("sleep", step_id)
        position, record = self._take(sleep_id)
        if record is None:
            wake_at = self._env.now() + seconds
            await self._record(sleep_id, position, dumps({"wake_at": wake_at}, what="sleep"))
            await self._audit("sleep_started", sleep_id, {"seconds": seconds, "wake_at": wake_at})
        else:
            what = f"sleep {sleep_id!r}"
            wake_at = _time(_members(record.result, ("wake_at",), what=what)["wake_at"], what=what)
        if self._env.now() < wake_at:
            raise Suspend("sleeping", wake_at=wake_at)

    @overload
    async def wait_for_signal(
        self,
        signal: Signal[T],
        *,
        step_id: str | None = None,
        timeout: None = None,
    ) -> T: ...

    @overload
    async def wait_for_signal(
        self,
        signal: Signal[T],
        *,
        step_id: str | None = None,
        timeout: float | timedelta,
    ) -> SignalResult[T]: ...

    async def wait_for_signal(
        self,
        signal: Signal[T],
        *,
        step_id: str | None = None,
        timeout: float | timedelta | None = None,
    ) -> T | SignalResult[T]:
        """Wait for ``signal``; return its payload (a signal sent before the wait was
        buffered and is taken now). With ``timeout`` (seconds, stored like a sleep's wake
        time) return a `SignalResult`: ``kind="signal"`` with the payload, or
        ``kind="timeout"``. Each signal is delivered to exactly one wait."""
        if not isinstance(signal, Signal):
            raise DurableError(f"wait_for_signal: expected a kernel.durable.signal, got {signal!r}")
        timeout = validate.optional_seconds(
            timeout, owner="wait_for_signal", name="timeout", minimum="zero"
        )
        wait_id = self._auto_id(f"signal:{signal.id}", step_id)
        position, record = self._take(wait_id)
        what = f"signal wait {wait_id!r}"
        if record is None:
            record = await self._receive(signal, wait_id, position, timeout)
        outcome = _members(record.result, ("kind",), what=what)
        kind = outcome["kind"]
        if kind not in ("signal", "timeout") or (kind == "signal" and "payload" not in outcome):
            raise CorruptRecordError(f"{what} cannot be read back: neither a signal nor a timeout")
        payload: Any = None
        if kind == "signal":
            payload = decode(outcome["payload"], signal.payload, what=what)
        if timeout is None:
            return payload  # type: ignore[no-any-return]
        return SignalResult(kind, payload)

    async def _receive(
        self, signal: Signal[Any], wait_id: str, position: int, seconds: float | None
    ) -> StepRecord:
        env = self._env
        deadline: float | None = None
        if seconds is not None:
            deadline_id = f"{wait_id}:deadline"
            stored = self._by_id.get(deadline_id)
            if stored is None:
                deadline = env.now() + seconds
                await self._record(deadline_id, None, dumps(deadline, what="deadline"))
            else:
                what = f"deadline of {wait_id!r}"
                deadline = _time(loads(stored.result, what=what), what=what)
        text = await env.store.consume_signal(
            env.worker,
            self.execution_id,
            signal.id,
            step_id=wait_id,
            position=position,
            now=env.now(),
        )
        if text is not None:
            await self._audit("signal_delivered", wait_id, {"signal": signal.id})
            return StepRecord(self.execution_id, wait_id, position, text, env.now())
        if deadline is not None and env.now() >= deadline:
            text = dumps({"kind": "timeout"}, what="timeout")
            await self._record(wait_id, position, text)
            return self._by_id[wait_id]
        await self._audit("signal_waiting", wait_id, {"signal": signal.id, "deadline": deadline})
        raise Suspend("waiting", wake_at=deadline, waiting_for=signal.id)

    # ------------------------------------------------------------------ the rest

    async def emit(self, event: Event, payload: Any = None, *, step_id: str | None = None) -> None:
        """Emit a kernel event at most once for this execution (best effort: it is marked
        done before the hooks run, so a crash in between loses it; a hook's error is
        logged, not raised). An unregistered event or a payload that does not fit raises
        here, before anything is marked."""
        emit_id = self._auto_id(f"emit:{event.id}", step_id)
        position, record = self._take(emit_id)
        if record is not None:
            return
        payload = self._env.check_event(event, payload)
        await self._record(emit_id, position, "null")
        await self._env.emit(event, payload)

    async def switch(
        self,
        switch_id: str,
        value: Any,
        branches: Iterable[Branch[T]],
        default: Branch[T] | None = None,
        *,
        returns: Any = None,
    ) -> T:
        """Replay-safe branching: the first branch whose ``match(value)`` is true runs
        (else ``default``; neither raises `DurableError`); the branch id and its result are
        recorded, and a replay returns them without evaluating any matcher. A branch runs
        once, like a step body: durable operations inside it are refused."""
        position, record = self._take(switch_id)
        what = f"switch {switch_id!r} result"
        if record is None:
            started = trio.current_time()
            chosen = next((b for b in branches if b.match is not None and b.match(value)), default)
            if chosen is None:
                raise DurableError(
                    f"switch {switch_id!r}: no branch matched {value!r} and there is no default"
                )
            self._in_branch = switch_id
            try:
                result = await chosen.run(value)
            finally:
                self._in_branch = None
            text = dumps({"branch": chosen.id, "result": result}, what=what)
            await self._record(switch_id, position, text)
            duration = round((trio.current_time() - started) * 1000, 3)
            await self._audit(
                "switch_evaluated", switch_id, {"branch": chosen.id, "duration_ms": duration}
            )
        else:
            text = record.result
        return decode(_members(text, ("result",), what=what)["result"], returns, what=what)  # type: ignore[no-any-return]

    async def note(self, message: str, meta: Mapping[str, Any] | None = None) -> None:
        """Add a line to the execution's audit timeline, once (replays do not repeat it)."""
        note_id = self._auto_id("note", None)
        position, record = self._take(note_id)
        if record is not None or not self._env.audit:
            return
        data = {"message": str(message), "meta": dict(meta or {})}
        dumps(data, what="note meta")
        await self._record(note_id, position, "null")
        await self._audit("note", note_id, data)


def _members(text: str, keys: tuple[str, ...], *, what: str) -> dict[str, Any]:
    """The JSON object a durable operation recorded, which must have ``keys``."""
    data = loads(text, what=what)
    if type(data) is not dict or not all(key in data for key in keys):
        raise CorruptRecordError(
            f"{what} cannot be read back: expected a JSON object with {', '.join(keys)}"
        )
    return data


def _time(value: Any, *, what: str) -> float:
    """A recorded time (a wake time, a deadline): a finite number."""
    if type(value) not in (int, float) or not math.isfinite(value):
        raise CorruptRecordError(f"{what} cannot be read back: {value!r} is not a time")
    return float(value)


def _bounded(
    policy: rs.Timeout | rs.Retry, fn: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any) -> Any:
        return await policy.call(fn, *args)

    return call
