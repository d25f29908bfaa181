"""The operator console: one page showing a running app, served by an HTTP exposure with
``kernel.exposure.http(..., console=True)`` at ``GET {base}/console/``.

The page is plain HTML, CSS and JavaScript shipped in this package (``static/``): no CDN,
no build step. It asks for the exposure's bearer token, keeps it in ``sessionStorage`` and
sends it in the ``Authorization`` header of every request to the JSON API under
``{base}/console/api/`` (no cookies: nothing for a cross-site request to ride on), and
refreshes every few seconds (``overview``, which holds ``app``, ``health``, ``primitives``,
``tasks`` and ``lanes``, and the durable listing: two requests a refresh):

- ``app``: id, uptime, state (ready, starting, shutting down), process and worker id;
- ``graph``: resources, tasks, events and hooks with their edges (drawn by the page);
- ``health``: the health report (shared with ``/health`` for ``health_cache`` seconds);
- ``primitives``: every circuit breaker (state, when it next admits a probe), rate limiter
  and bulkhead (use now) of the task pipelines, local or shared;
- ``tasks``: calls, errors, in flight, p50/p95/p99 and the history behind a small chart;
- ``durable/executions`` (``status``, ``workflow``, ``offset``, ``limit``, ``engine``),
  newest first; ``durable/executions/{id}`` with its steps and audit timeline; POST
  ``.../signal``, ``.../cancel`` and ``durable/recover``;
- ``lanes``: each lane's pending count, lag, oldest pending age and dead letters; POST
  ``lanes/{id}/replay``. Lanes are read through `LaneView`, a protocol.

Bad parameters are 400, unknown engines, executions and lanes 404, with the exposure's
error envelope; the API is in the exposure's OpenAPI document.

`Console` is what an exposure with ``console=True`` builds (its routes and OpenAPI
operations, over the exposure's `Gate`). Importing this package imports neither Starlette
nor hypercorn.
"""

from kernel.exposure.console._lanes import LaneView
from kernel.exposure.console._routes import Console, Gate
from resilience.faces import present as _present

__all__ = ["Console", "Gate", "LaneView"]

_present("kernel.exposure.console", globals())
