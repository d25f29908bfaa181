"""Live exposures for the server tests: `serving` starts an app with an exposure on loopback
and hands out the runtime, the exposure's value and an authenticated httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

import kernel
from kernel.exposure import BearerAuth, Exposure, http

TOKEN = "test-token-0123456789"
HEADERS: Mapping[str, str] = {"authorization": f"Bearer {TOKEN}"}
AUTH = BearerAuth(tokens={TOKEN: "tester"})
#: Every test against a live server is over in this many seconds, or fails.
DEADLINE = 10


@asynccontextmanager
async def serving(
    *definitions: object, headers: Mapping[str, str] = HEADERS, **options: Any
) -> AsyncIterator[tuple[kernel.Runtime, Exposure, httpx.AsyncClient]]:
    """Run an app registering ``definitions`` and an exposure ``http("exposure", **options)``
    (``auth`` defaults to `AUTH`); yield the runtime, the exposure and a client on its
    ``base_url`` sending ``headers``. Fails the test after `DEADLINE` seconds."""
    options.setdefault("auth", AUTH)
    exposure = http("exposure", **options)
    app = kernel.App("app", register=[*definitions, exposure])
    with trio.fail_after(DEADLINE):
        async with kernel.run(app) as rt:
            value = rt.resource(exposure)
            async with httpx.AsyncClient(
                base_url=value.base_url, headers=dict(headers), timeout=DEADLINE
            ) as client:
                yield rt, value, client


def failure(response: httpx.Response) -> dict[str, Any]:
    """The JSON failure body of ``response``, checked against the contract's shape."""
    body = response.json()
    assert isinstance(body, dict)
    assert body["ok"] is False
    assert set(body) <= {"ok", "code", "message", "request_id", "details"}
    assert isinstance(body["code"], str)
    assert isinstance(body["message"], str)
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["content-type"] == "application/json"
    return body
