"""A program handing secrets to every path on which the kernel logs a failure.

``python -m tests.kernel.observability.secret_paths MODE OUT_DIR`` runs each path in turn,
printing ``=== <path>`` to stderr before it (and ``=== done`` at the end, then one record
through loguru's default handler, which the kernel removed while its config was installed):

- ``default``: nothing configured — what loguru's own stderr handler (``diagnose=True``,
  ``backtrace=True``) prints is what a new user sees;
- ``json`` / ``pretty``: ``log=kernel.LogConfig(format=MODE, level="DEBUG")`` on stderr, and
  four loguru sinks of the user's own, one file each per path in ``OUT_DIR``
  (``<path>.<sink>.log``): loguru's defaults (``user-default``), ``serialize=True``
  (``user-serialized``), the record's ``{extra}`` (``user-extra``), and a sink that walks
  the exception's frames and prints their locals as an error reporter does (``user-frames``).

The secrets travel as a task's arguments, a resource's config, a hook's payload, an HTTP
request's body, a workflow's input, and in the exceptions' messages; each path catches the
failure as a caller would. Only public API that predates the fix is used, so the program
shows the leak on the old code too. Exit status 1 if a path did not run as planned.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from loguru import logger

import kernel
from kernel.durable import MemoryStore

CARD = "4111111111111111"
PASSWORD = "s3cr3t-pass"
URL_PASSWORD = "url-pa55word"
TOKEN = "exposure-t0ken-value"
DSN = f"postgresql://app:{URL_PASSWORD}@db.internal:5432/pay"
SECRETS = (CARD, PASSWORD, URL_PASSWORD, TOKEN)
SINKS = ("user-default", "user-serialized", "user-extra", "user-frames")


class PaymentDeclined(Exception):
    pass


def declined(what: str, payment: Any) -> PaymentDeclined:
    """The failure every path raises: the secrets in its message, as careless code puts them."""
    return PaymentDeclined(f"{what} declined {payment!r} via {DSN}")


def payment() -> dict[str, str]:
    return {"card_number": CARD, "password": PASSWORD}


# --------------------------------------------------------------------------- the paths


@kernel.task("pay.charge")
async def charge(card_number: str, *, password: str, dsn: str) -> None:
    details = {"card_number": card_number, "password": password}
    raise declined(f"card {card_number}", details)


async def task_path(log: kernel.LogConfig | None) -> None:
    async with kernel.run(kernel.App("shop", register=[charge]), log=log) as rt:
        with contextlib.suppress(PaymentDeclined):  # handled by the caller
            await rt.run_task(charge, CARD, password=PASSWORD, dsn=DSN)


receipt = kernel.event("pay.receipt")


@kernel.hook("pay.mail_receipt", on=receipt)
async def mail_receipt(emission: kernel.Emission) -> None:
    raise declined("receipt mail", emission.payload)


@kernel.task("pay.checkout", deps={"receipt": receipt})
async def checkout(order: dict[str, str], *, receipt: Any) -> None:
    await receipt(order)


async def hook_path(log: kernel.LogConfig | None) -> None:
    app = kernel.App("shop", register=[receipt, mail_receipt, checkout])
    async with kernel.run(app, log=log) as rt:
        with contextlib.suppress(PaymentDeclined):
            await rt.run_task(checkout, payment())


@attrs.frozen
class Gateway:
    dsn: str
    password: str
    card_number: str


@kernel.resource("pay.gateway", config=Gateway)
async def gateway(config: Gateway) -> Any:
    raise declined("gateway login", config)
    yield  # pragma: no cover


async def resource_init_path(log: kernel.LogConfig | None) -> None:
    app = kernel.App("shop", register=[gateway.with_config(Gateway(DSN, PASSWORD, CARD))])
    try:
        async with kernel.run(app, log=log):
            pass
    except kernel.ResourceInitError:
        pass


@kernel.resource("pay.session")
async def session() -> Any:
    credentials = payment()
    yield "session"
    raise declined("logout", credentials)


async def resource_dispose_path(log: kernel.LogConfig | None) -> None:
    try:
        async with kernel.run(kernel.App("shop", register=[session]), log=log):
            pass
    except ExceptionGroup:
        pass


async def poll(card_number: str, password: str) -> None:
    raise declined("poll", {"card_number": card_number, "password": password})


@kernel.resource("pay.poller")
async def poller(scope: kernel.Scope) -> Any:
    scope.supervise(poll, CARD, PASSWORD, name="poll")
    yield "poller"


async def supervised_path(log: kernel.LogConfig | None) -> None:
    try:
        async with kernel.run(kernel.App("shop", register=[poller]), log=log):
            await trio.sleep_forever()
    except ExceptionGroup:
        pass


@kernel.task("api.pay")
async def pay(card_number: str, password: str) -> None:
    raise declined("api payment", {"card_number": card_number, "password": password})


def api() -> kernel.Resource:
    return kernel.exposure.http(
        "api", auth=kernel.exposure.BearerAuth(tokens={TOKEN: "shop"}), allow_tasks=["api.*"]
    )


async def exposure_path(log: kernel.LogConfig | None) -> None:
    exposure = api()
    async with kernel.run(kernel.App("shop", register=[pay, exposure]), log=log) as rt:
        url = rt.resource(exposure).url
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{url}/__runner/task/api.pay",
                json={"input": payment()},
                headers={"authorization": f"Bearer {TOKEN}"},
            )
    assert response.status_code == 500, response.text


engine = kernel.durable.engine("pay.durable", store=MemoryStore(), max_attempts=1)


@kernel.task("pay.settle", deps={"durable": engine}, tags=[kernel.durable.workflow()])
async def settle(order: dict[str, str], *, durable: Any) -> None:
    ctx = durable.context()
    await ctx.emit(receipt, order)  # its hook fails: logged, not raised

    async def capture() -> None:
        raise declined("capture", order)

    await ctx.step("capture", capture)


async def durable_path(log: kernel.LogConfig | None) -> None:
    app = kernel.App("shop", register=[engine, settle, receipt, mail_receipt])
    async with kernel.run(app, log=log) as rt:
        with contextlib.suppress(kernel.durable.WorkflowFailedError):
            await rt.resource(engine).start_and_wait(settle, payment())


class RefundRefused(kernel.PublicError):
    """Its message crosses the wire: the caller's error carries the secrets in it."""

    http_status = 409
    code = "refund_refused"


@kernel.task("api.refund")
async def refund(card_number: str, password: str) -> None:
    details = {"card_number": card_number, "password": password}
    raise RefundRefused(f"refund of card {card_number} refused {details!r} via {DSN}")


@kernel.task("api.void")
async def void(card_number: str, password: str) -> None:
    raise declined("void", {"card_number": card_number, "password": password})


async def remote_path(log: kernel.LogConfig | None) -> None:
    exposure = api()
    server = kernel.App("server", register=[refund, void, exposure])
    async with kernel.run(server, log=log) as served:
        endpoint = kernel.exposure.remote(
            "payments", base_url=served.resource(exposure).url, token=TOKEN
        )
        remote_refund = kernel.remote(refund, via=endpoint)
        remote_void = kernel.remote(void, via=endpoint)
        client = kernel.App("client", register=[endpoint, remote_refund, remote_void])
        async with kernel.run(client) as rt:
            with contextlib.suppress(RefundRefused):
                await rt.run_task(remote_refund, card_number=CARD, password=PASSWORD)
            with contextlib.suppress(kernel.RemoteError):  # a 500: "internal error"
                await rt.run_task(remote_void, card_number=CARD, password=PASSWORD)


PATHS: dict[str, Callable[[kernel.LogConfig | None], Awaitable[None]]] = {
    "task": task_path,
    "hook": hook_path,
    "resource_init": resource_init_path,
    "resource_dispose": resource_dispose_path,
    "supervised": supervised_path,
    "exposure_500": exposure_path,
    "durable": durable_path,
    "remote": remote_path,
}


# --------------------------------------------------------------------------- the sinks


@attrs.define
class FrameWalker:
    """A sink that reports each record's exception with the locals of its frames."""

    path: Path

    def __call__(self, message: Any) -> None:
        record = message.record
        lines = [str(message), repr(record["extra"])]
        exception = record["exception"]
        if exception is not None:
            lines += traceback.TracebackException(
                exception.type, exception.value, exception.traceback, capture_locals=True
            ).format()
        with self.path.open("a") as file:
            file.write("\n".join(lines) + "\n")


def user_sinks(out: Path, path: str) -> list[int]:
    def file(sink: str) -> Path:
        return out / f"{path}.{sink}.log"

    return [
        logger.add(file("user-default")),
        logger.add(file("user-serialized"), serialize=True),
        logger.add(file("user-extra"), format="{level} {message} | {extra}\n{exception}"),
        logger.add(FrameWalker(file("user-frames"))),
    ]


async def main(mode: str, out: Path) -> int:
    failures = 0
    for name, run_path in PATHS.items():
        print(f"=== {name}", file=sys.stderr, flush=True)
        log = None if mode == "default" else kernel.LogConfig(format=mode, level="DEBUG")
        handlers = [] if log is None else user_sinks(out, name)
        try:
            with trio.fail_after(20):
                await run_path(log)
        except BaseException as exc:  # reported without its message, which holds secrets
            failures += 1
            print(f"!!! {name} did not run as planned: {type(exc).__name__}", file=sys.stderr)
        finally:
            for handler in handlers:
                logger.remove(handler)
    print("=== done", file=sys.stderr, flush=True)
    logger.info("back on loguru's own handler")  # the kernel gave it back
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1], Path(sys.argv[2])))
