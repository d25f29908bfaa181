"""Event lanes: events that travel between processes, at least once, with retries, dead
letters and signed envelopes.

    orders = kernel.lanes.redis(
        "orders.lane", store=redis, events=[order_placed], group="billing", secret=key
    )

While the lane is registered, emitting ``order_placed`` anywhere in the app validates the
payload and appends one entry to a Redis stream (``await rt.emit`` returns once Redis has
it); every process with ``consume=True`` reads the stream in consumer group ``group`` and
runs the event's hooks there, which see ``emission.delivery`` (message id and attempt).
`memory` is the same contract inside one process, for tests.
"""

from kernel._bus import Delivery
from kernel.lanes._broker import MemoryBroker
from kernel.lanes._errors import LaneUnavailable
from kernel.lanes._lane import Lane
from kernel.lanes._metrics import lane_families
from kernel.lanes._resources import lane_tag, memory, redis
from kernel.lanes._stats import DeadLetter, LaneStats, LaneStatus
from resilience.faces import present as _present

__all__ = [
    "DeadLetter",
    "Delivery",
    "Lane",
    "LaneStats",
    "LaneStatus",
    "LaneUnavailable",
    "MemoryBroker",
    "lane_families",
    "lane_tag",
    "memory",
    "redis",
]

_present("kernel.lanes", globals())
