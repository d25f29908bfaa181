"""The timing harness: calibrate, warm up, time repetitions; summarize the samples.

Every figure is nanoseconds per call. A repetition runs a scenario's loop of ``n`` calls
between two ``time.perf_counter_ns()`` readings with the garbage collector disabled; ``n``
is calibrated so that one repetition lasts about ``Settings.target_rep_ns``. The median of
the repetitions is the figure; min, quartiles and stdev travel with it. `measure_all`
interleaves the repetitions of many scenarios so that they share the machine's moods.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs

#: A scenario's timing loop: ``await loop(n)`` performs ``n`` calls of the measured shape.
#: A loop object may also have ``min_calls`` (calibration never settles below it: a load
#: loop needs its concurrency filled) and ``details()`` (see `bench._execute.Measurement`).
Loop = Callable[[int], Awaitable[None]]


@attrs.frozen(kw_only=True)
class Settings:
    """How long and how often to measure."""

    reps: int = attrs.field(validator=attrs.validators.ge(5))
    target_rep_ns: int = attrs.field(validator=attrs.validators.gt(0))
    warmup_reps: int = attrs.field(validator=attrs.validators.ge(1))
    max_calls: int = attrs.field(default=10_000_000, validator=attrs.validators.gt(0))


#: The full run: 15 interleaved rounds of ~40 ms repetitions.
FULL = Settings(reps=15, target_rep_ns=40_000_000, warmup_reps=1)
#: ``--quick``: every scenario briefly, to prove the suite works.
QUICK = Settings(reps=5, target_rep_ns=2_000_000, warmup_reps=1)


@attrs.frozen(kw_only=True)
class Stats:
    """Summary of the per-call samples (ns) of one scenario, one sample per repetition."""

    median_ns: float
    min_ns: float
    max_ns: float
    q1_ns: float
    q3_ns: float
    iqr_ns: float
    stdev_ns: float
    reps: int
    calls_per_rep: int
    samples_ns: tuple[float, ...]


def summarize(samples_ns: Sequence[float], calls_per_rep: int) -> Stats:
    """Summarize per-call samples; quartiles use the inclusive method (``statistics``)."""
    if not samples_ns:
        raise ValueError("summarize: samples_ns must not be empty")
    if calls_per_rep < 1:
        raise ValueError(f"summarize: calls_per_rep must be >= 1, got {calls_per_rep}")
    samples = tuple(float(s) for s in samples_ns)
    if len(samples) >= 2:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        stdev = statistics.stdev(samples)
    else:
        q1 = q3 = samples[0]
        stdev = 0.0
    return Stats(
        median_ns=statistics.median(samples),
        min_ns=min(samples),
        max_ns=max(samples),
        q1_ns=q1,
        q3_ns=q3,
        iqr_ns=q3 - q1,
        stdev_ns=stdev,
        reps=len(samples),
        calls_per_rep=calls_per_rep,
        samples_ns=samples,
    )


def calls_for(target_ns: int, calls: int, elapsed_ns: int, max_calls: int) -> int:
    """Scale ``calls`` (which took ``elapsed_ns``) to last ``target_ns``, within [1, max]."""
    scaled = round(calls * target_ns / max(elapsed_ns, 1))
    return max(1, min(max_calls, scaled))


async def timed(loop: Loop, calls: int) -> int:
    """Run ``loop(calls)`` once with the garbage collector disabled; return elapsed ns."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        await loop(calls)
        return time.perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()


async def calibrate(loop: Loop, settings: Settings) -> int:
    """Find the number of calls per repetition (the runs also warm the code up).

    The loop grows until it lasts an eighth of the target, then is rescaled twice more:
    the first, cold calls are slow, so one estimate alone would give far too few calls.
    It starts at, and never returns less than, the loop's ``min_calls`` if it has one.
    """
    target, most = settings.target_rep_ns, settings.max_calls
    least = min(most, max(1, getattr(loop, "min_calls", 1)))
    calls = least
    elapsed = await timed(loop, calls)
    while elapsed * 8 < target and calls < most:
        calls = min(calls * 4, most)
        elapsed = await timed(loop, calls)
    for _ in range(2):
        calls = max(least, calls_for(target, calls, elapsed, most))
        elapsed = await timed(loop, calls)
    return max(least, calls_for(target, calls, elapsed, most))


async def measure_all(
    loops: Mapping[str, Loop],
    settings: Settings,
    *,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Stats | Exception]:
    """Measure several loops with their repetitions interleaved, round-robin.

    Each loop is calibrated and warmed up in turn; then each round times one repetition
    of every loop. A slow spell of the machine (another process, a throttled CPU) thus
    touches every scenario alike instead of a few consecutive ones, which keeps the ratios
    between scenarios honest. A loop that raises is given its exception instead of stats.
    """
    calls: dict[str, int] = {}
    failed: dict[str, Exception] = {}
    for key, loop in loops.items():
        log(f"warming up {key}")
        try:
            n = await calibrate(loop, settings)
            for _ in range(settings.warmup_reps):
                await loop(n)
        except Exception as exc:
            failed[key] = exc
        else:
            calls[key] = n
    samples: dict[str, list[float]] = {key: [] for key in calls}
    gc.collect()
    for round_ in range(settings.reps if samples else 0):
        log(f"round {round_ + 1}/{settings.reps}")
        for key in list(samples):
            try:
                samples[key].append(await timed(loops[key], calls[key]) / calls[key])
            except Exception as exc:
                failed[key] = exc
                del samples[key]
    done: dict[str, Stats | Exception] = {k: summarize(v, calls[k]) for k, v in samples.items()}
    return {key: failed[key] if key in failed else done[key] for key in loops}


async def measure(loop: Loop, settings: Settings) -> Stats:
    """Calibrate, warm up, then time ``settings.reps`` repetitions of one loop."""
    outcome = (await measure_all({"loop": loop}, settings))["loop"]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
