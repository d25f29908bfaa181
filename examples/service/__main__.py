"""The example order service: ``make run`` (or ``python examples/service``).

HTTP on 127.0.0.1:8080 (``PORT`` to change, 0 for any free port), a development token
printed at start (``TOKEN`` to choose one), pretty logs (``LOG_FORMAT=json`` for JSON),
metrics at ``/metrics``, health at ``/health`` and ``/ready``. Ctrl-C (or SIGTERM) shuts it
down gracefully, phase by phase.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

import trio
from loguru import logger
from orders import PaymentsConfig, app

import kernel
from kernel.exposure import BearerAuth, http


def service(
    *, port: int, token: str, log_format: str = "pretty", sink: Any = sys.stderr
) -> kernel.Service:
    """The order service: the order domain, exposed over HTTP, with logs and metrics on."""
    exposure = http(
        "orders.http",
        host="127.0.0.1",
        port=port,
        auth=BearerAuth(tokens={token: "developer"}),
        allow_tasks=("orders.*",),
        allow_events=(),
    )
    return kernel.Service(
        app=kernel.App("order-service", register=[app(PaymentsConfig()), exposure]),
        log=kernel.LogConfig(format=log_format, sink=sink),  # type: ignore[arg-type]
        metrics=True,
        drain_timeout=10.0,
    )


def banner(rt: kernel.Runtime, token: str) -> str:
    exposure = rt.graph.node("orders.http").definition
    assert isinstance(exposure, kernel.Resource)
    url = rt.resource(exposure).url
    return "\n".join(
        [
            f"order service on {url}  (Ctrl-C to stop)",
            f"development token: {token}",
            f'  curl -s -H "authorization: Bearer {token}" -d \'{{"input": {{"item": "tea", '
            f'"quantity": 2}}}}\' {url}/__runner/task/orders.create',
            f'  curl -s -H "authorization: Bearer {token}" -d \'{{"input": {{"id": 1}}}}\' '
            f"{url}/__runner/task/orders.get",
            f"  curl -s {url}/health    curl -s {url}/metrics",
        ]
    )


async def announce(rt: kernel.Runtime, token: str) -> None:
    print(banner(rt, token), flush=True)
    await trio.sleep_forever()


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    token = os.environ.get("TOKEN") or secrets.token_urlsafe(16)
    logger.remove()  # loguru's default handler; the service logs through LogConfig instead
    kernel.main(
        service(port=port, token=token, log_format=os.environ.get("LOG_FORMAT", "pretty")),
        serve=lambda rt: announce(rt, token),
    )


if __name__ == "__main__":
    main()
