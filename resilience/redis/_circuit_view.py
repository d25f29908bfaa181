"""What a process knows of the fleet's circuit: `View`, read from the script's reply.

The reply of ``lua/circuit.lua`` is the circuit after the operation, with server times in
microseconds; a `View` holds it in the process's trio time (``trio.current_time()``): the
server's time of the reply minus the local time it arrived is the offset between the two
clocks (to within one round trip), so "open until" becomes a local deadline. A view is
trusted until ``valid_until``: one ``sync_interval`` after the request that produced it was
sent, since the circuit may have changed any time after that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from resilience._circuit import CircuitState

__all__ = ["UNKNOWN", "View", "parse_view"]

_STATES = {state.value: state for state in CircuitState}


@attrs.frozen
class View:
    """The circuit as one reply described it (times are local trio times).

    ``epoch`` counts the fleet's transitions (-1: not known yet); ``open_until`` is ``None``
    unless open and not isolated; ``streak`` the fleet's consecutive failures (consecutive
    mode); ``window`` its (calls, failures, slow calls) in the ratio window; ``lifetime``
    its (successes, failures, cancellations, slow calls, rejections); ``result`` the
    operation's own answer; ``repaired``: the script dropped unreadable data.
    """

    state: CircuitState
    epoch: int
    isolated: bool
    opened_at: float | None
    open_until: float | None
    opens: int
    probes: int
    streak: int
    window: tuple[int, int, int]
    lifetime: tuple[int, int, int, int, int]
    valid_until: float
    result: int = 0
    repaired: bool = False


#: The view of a process that has not heard from Redis yet: closed, and already stale.
UNKNOWN = View(
    state=CircuitState.CLOSED,
    epoch=-1,
    isolated=False,
    opened_at=None,
    open_until=None,
    opens=0,
    probes=0,
    streak=0,
    window=(0, 0, 0),
    lifetime=(0, 0, 0, 0, 0),
    valid_until=-math.inf,
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_view(reply: Sequence[Any], *, sent: float, received: float, interval: float) -> View:
    """The `View` in ``reply``, a request sent at local time ``sent`` and answered at
    ``received``; trusted for ``interval`` seconds from ``sent``. Raises `ValueError` on a
    reply of another shape (a script of another version)."""
    if len(reply) != 19:
        raise ValueError(f"circuit script: expected 19 values, got {len(reply)}")
    numbers = [int(value) for index, value in enumerate(reply) if index != 2]
    repaired, now_us, epoch, isolated, opened_us, until_us, opens, probes, streak = numbers[:9]
    state = _STATES.get(_text(reply[2]))
    if state is None:
        raise ValueError(f"circuit script: unknown state {_text(reply[2])!r}")
    offset = now_us / 1_000_000 - received

    def local(us: int) -> float:
        return us / 1_000_000 - offset

    open_until = local(until_us) if state is CircuitState.OPEN and not isolated else None
    return View(
        state=state,
        epoch=epoch,
        isolated=bool(isolated),
        opened_at=local(opened_us) if opened_us else None,
        open_until=open_until,
        opens=opens,
        probes=probes,
        streak=streak,
        window=(numbers[9], numbers[10], numbers[11]),
        lifetime=(numbers[12], numbers[13], numbers[14], numbers[15], numbers[16]),
        valid_until=sent + interval,
        result=numbers[17],
        repaired=bool(repaired),
    )
