"""`Failures`, without Sentry: which failures reach a reporter, once each, with what tags.

The end-to-end behaviour with the real sentry-sdk is in ``test_sentry.py``; these drive the
boundaries directly, with a reporter that records what it is given.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest
import trio
from loguru import logger

import kernel
import middleware as mw
import resilience as rs
from kernel.observability import execution_watch
from kernel.observability._failures import EXPECTED, MAX_PATH, ExecutionWatch, Failures


@attrs.define
class Recorder:
    """A reporter keeping ``(error, tags, path)``; ``broken`` makes it raise."""

    reports: list[tuple[BaseException, dict[str, str], list[str]]] = attrs.Factory(list)
    broken: bool = False

    def report(self, error: BaseException, tags: Mapping[str, str], path: Sequence[str]) -> None:
        if self.broken:
            raise RuntimeError("the reporter is down")
        self.reports.append((error, dict(tags), list(path)))


class Runtime:
    """Stands for a runtime: anything failures can be attached to."""


def boundary(failures: Failures, task_id: str) -> mw.Middleware:
    return failures.middleware().bind(task_id).middleware


async def call(middleware: mw.Middleware, fn: Any) -> Any:
    async def next(call: mw.Call) -> Any:
        return await fn()

    return await middleware(mw.Call("t", (), {}), next)


async def raise_(error: BaseException) -> None:
    raise error


async def test_only_unexpected_failures_are_reported_and_groups_by_their_leaves() -> None:
    recorder = Recorder()
    failures = Failures(recorder, ignore=[LookupError])
    task = boundary(failures, "t")
    expected_errors = [
        kernel.PublicError("x"),
        kernel.ShuttingDown("x"),
        kernel.ConfigError("task 't'", ["input: expected int"]),
        rs.CircuitOpen("x"),
        rs.RateLimited("x"),
        rs.BulkheadFull("x"),
        KeyError("ignored"),
    ]
    assert len(expected_errors) == len(EXPECTED) + 1
    for expected in expected_errors:
        with pytest.raises(type(expected)):
            await call(task, lambda expected=expected: raise_(expected))
    with pytest.raises(BaseExceptionGroup):
        await call(task, lambda: raise_(BaseExceptionGroup("g", [KeyboardInterrupt()])))
    assert recorder.reports == []
    group = ExceptionGroup("g", [KeyError("ignored"), ValueError("counts")])
    with pytest.raises(ExceptionGroup):
        await call(task, lambda: raise_(group))
    ((error, tags, path),) = recorder.reports
    assert error is group
    assert tags == {"runner.task.id": "t", "runner.kind": "task"}
    assert path == ["task t"]


async def test_a_failing_reporter_is_logged_and_never_changes_the_failure() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{extra[source]}: {message}")
    try:
        failures = Failures(Recorder(broken=True))
        with pytest.raises(ValueError, match="the real one"):
            await call(boundary(failures, "t"), lambda: raise_(ValueError("the real one")))
    finally:
        logger.remove(sink)
    assert lines == ["kernel.errors: error tracking: report failed: the reporter is down\n"]


async def test_a_frozen_exception_is_remembered_and_pickles_afresh() -> None:
    @attrs.frozen
    class Frozen(Exception):
        code: int

    recorder = Recorder()
    failures = Failures(recorder)
    error = Frozen(7)
    for _ in range(2):
        with pytest.raises(Frozen):
            await call(boundary(failures, "t"), lambda: raise_(error))
    assert len(recorder.reports) == 1
    copy = pickle.loads(pickle.dumps(ValueError("sent away")))
    assert copy.args == ("sent away",)
    plain = ValueError("reported")
    with pytest.raises(ValueError, match="reported"):
        await call(boundary(failures, "t"), lambda: raise_(plain))
    revived = pickle.loads(pickle.dumps(plain))
    with pytest.raises(ValueError, match="reported"):  # a copy elsewhere fails on its own
        await call(boundary(failures, "u"), lambda: raise_(revived))
    assert [path for _, _, path in recorder.reports] == [["task t"], ["task t"], ["task u"]]


async def test_boundaries_defer_to_the_enclosing_one_while_it_runs() -> None:
    recorder = Recorder()
    failures = Failures(recorder)
    inner, outer = boundary(failures, "inner"), boundary(failures, "outer")
    error = OSError("disk full")

    async def calls_inner() -> None:
        await call(inner, lambda: raise_(error))

    with pytest.raises(OSError, match="disk full"):
        await call(outer, calls_inner)
    ((reported, tags, path),) = recorder.reports
    assert reported is error
    assert tags == {"runner.task.id": "inner", "runner.kind": "task"}
    assert path == ["task inner", "task outer"]


async def test_a_nursery_opened_before_the_boundary_is_not_inside_it() -> None:
    recorder = Recorder()
    failures = Failures(recorder)
    job_boundary = boundary(failures, "job")
    done = trio.Event()

    async with trio.open_nursery() as outside:  # opened by this task, before `outer` runs

        async def job() -> None:
            with pytest.raises(OSError, match="job failed"):
                await call(job_boundary, lambda: raise_(OSError("job failed")))
            done.set()

        async def starts_a_job() -> None:
            outside.start_soon(job)
            await done.wait()  # `outer` still runs while the job fails

        await call(boundary(failures, "outer"), starts_a_job)
    assert [path for _, _, path in recorder.reports] == [["task job"]]


async def test_an_execution_reports_once_when_told_and_nothing_without_failures() -> None:
    recorder = Recorder()
    failures = Failures(recorder)
    runtime = Runtime()
    failures.attach(runtime)
    watch = execution_watch(runtime, "e-1", "wf")
    attempts = []
    for attempt in range(3):
        error = TimeoutError(f"attempt {attempt}")
        attempts.append(error)
        with pytest.raises(TimeoutError):
            await watch.attempt(call, boundary(failures, "wf"), lambda error=error: raise_(error))
    assert recorder.reports == []  # the attempts defer to the execution
    watch.failed(attempts[-1])
    ((error, tags, path),) = recorder.reports
    assert error is attempts[-1]
    assert tags == {
        "runner.task.id": "wf",
        "runner.execution.id": "e-1",
        "runner.workflow.id": "wf",
        "runner.kind": "execution",
    }
    assert path == ["task wf", "execution e-1 of wf"]
    untracked = execution_watch(Runtime(), "e-2", "wf")
    assert isinstance(untracked, ExecutionWatch)
    assert await untracked.attempt(trio.sleep, 0) is None
    untracked.failed(ValueError("nobody listens"))
    assert len(recorder.reports) == 1


async def test_a_boundary_that_ended_or_is_in_another_branch_does_not_enclose() -> None:
    recorder = Recorder()
    failures = Failures(recorder)
    late, aside = boundary(failures, "late"), boundary(failures, "aside")
    ready, go, done = trio.Event(), trio.Event(), trio.Event()

    async with trio.open_nursery() as top:  # this task's, opened before anything

        async def after_it_ended() -> None:
            await go.wait()  # `outer` has returned by now
            with pytest.raises(OSError, match="late"):
                await call(late, lambda: raise_(OSError("late")))

        async def from_a_branch() -> None:
            with pytest.raises(OSError, match="aside"):
                await call(aside, lambda: raise_(OSError("aside")))
            done.set()

        async def child_with_a_boundary() -> None:
            async def body() -> None:
                top.start_soon(after_it_ended)
                top.start_soon(from_a_branch)  # climbs past this child's parent
                await done.wait()
                ready.set()

            await call(boundary(failures, "outer"), body)
            go.set()

        async with trio.open_nursery() as middle:
            middle.start_soon(child_with_a_boundary)
    await ready.wait()
    assert sorted(path[0] for _, _, path in recorder.reports) == ["task aside", "task late"]


async def test_a_hook_boundary_names_each_event_it_runs_for() -> None:
    recorder = Recorder()
    failures = Failures(recorder)

    async def hook(emission: Any) -> None:
        raise ValueError(emission.event.id)

    watched = failures.hook(hook, "audit")
    for event_id in ("a", "b", "a"):
        emission = attrs.make_class("Emission", ["event"])(attrs.make_class("E", ["id"])(event_id))
        with pytest.raises(ValueError, match=event_id):
            await watched(emission)
    assert [tags["runner.event.id"] for _, tags, _ in recorder.reports] == ["a", "b", "a"]
    assert recorder.reports[0][2] == ["hook audit on a"]


async def test_an_exception_raised_over_and_over_keeps_a_bounded_path() -> None:
    recorder = Recorder()
    failures = Failures(recorder)
    inner, outer = boundary(failures, "inner"), boundary(failures, "outer")
    shared = OSError("the same object every time")

    async def handles_it() -> None:
        with pytest.raises(OSError, match="the same object"):
            await call(inner, lambda: raise_(shared))

    for _ in range(MAX_PATH * 2):
        await call(outer, handles_it)  # handled inside: never reported
    assert recorder.reports == []
    with pytest.raises(OSError, match="the same object"):
        await call(boundary(failures, "last"), lambda: raise_(shared))
    ((error, tags, path),) = recorder.reports
    assert error is shared
    assert len(path) == MAX_PATH
    assert path[-1] == "task last"
    assert tags["runner.task.id"] == "inner"  # where it was first raised
