"""The errors of event lanes."""

from __future__ import annotations

from kernel._errors import KernelError

__all__ = ["LaneUnavailable"]


class LaneUnavailable(KernelError):
    """An emission on a lane was not written: the stream could not be reached (within the
    lane's ``emit_wait``), or the lane is stopped. Nothing was delivered; emitting again is
    safe. Chained from the cause (`rs.StoreUnavailable` for a Redis lane)."""
