"""The service's settings, read from the environment with `kernel.config.from_env`.

``PORT`` (8080; 0 for any free port), ``TOKEN`` (made up at start when unset), ``DURABLE_DB``
(the SQLite file of the approvals) and ``LOG_FORMAT`` (``pretty`` or ``json``)::

    PORT=8081 LOG_FORMAT=json make run
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs

import kernel
from kernel.config import Secret

#: Where approvals are kept unless ``DURABLE_DB`` says otherwise (``.data/`` is gitignored).
DEFAULT_DB = Path(__file__).resolve().parents[2] / ".data" / "orders.sqlite3"


@attrs.frozen
class Settings:
    """What the service can be told from outside; every field has a development default."""

    port: int = attrs.field(
        default=8080, validator=[attrs.validators.ge(0), attrs.validators.le(65535)]
    )
    #: The bearer token callers must send; a fresh one is made up when unset or empty.
    token: Secret | None = None
    #: The approvals' SQLite file; `DEFAULT_DB` when unset or empty.
    durable_db: Path | None = None
    log_format: Literal["pretty", "json"] = "pretty"

    def bearer_token(self) -> str:
        """The token to require: the one given, else a new random one."""
        return self.token.reveal() if self.token else secrets.token_urlsafe(16)

    def database(self) -> Path:
        """The approvals' SQLite file."""
        return self.durable_db or DEFAULT_DB


def from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``environ`` (the process environment by default).

    No prefix: the variables are the service's plain ``PORT``, ``TOKEN``, ``DURABLE_DB`` and
    ``LOG_FORMAT``. Raises `kernel.ConfigError` naming the variable, e.g.
    ``environment: PORT: expected int, got 'eighty'``.
    """
    return kernel.config.from_env(Settings, prefix="", environ=environ)
