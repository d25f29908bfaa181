"""HTTP exposure of tasks and events (hypercorn + Starlette on trio), and remote tasks.

    exposure = kernel.exposure.http("api", auth=kernel.exposure.BearerAuth(tokens={...}),
                                    allow_tasks=("orders.*",))
    payments = kernel.exposure.remote("payments", base_url="http://10.0.0.7:8080", token=...)
    app = kernel.App("shop", register=[..., payments],
                     overrides=[kernel.override(charge, kernel.remote(charge, via=payments))])

Serving needs the ``http`` extra (``pip install 'trio-runner[http]'``); importing this
package does not import hypercorn, Starlette or httpx.
"""

from kernel.exposure import console
from kernel.exposure._config import BearerAuth, ExposureConfig
from kernel.exposure._context import principal, request_id
from kernel.exposure._remote import RemoteEndpoint, remote, remote_task, retryable
from kernel.exposure._server import Exposure, http
from resilience.faces import present as _present

__all__ = [
    "BearerAuth",
    "Exposure",
    "ExposureConfig",
    "RemoteEndpoint",
    "console",
    "http",
    "principal",
    "remote",
    "remote_task",
    "request_id",
    "retryable",
]

_present("kernel.exposure", globals())
