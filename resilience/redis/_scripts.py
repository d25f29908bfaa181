"""The Lua scripts of the shared primitives: each atomic decision is one script.

Scripts live in ``lua/*.lua`` beside this module; each is prefixed with ``lua/prelude.lua``
(the server clock, dropping foreign keys, TTLs). `Script` carries the source and its SHA1:
the store calls ``EVALSHA`` and, when Redis answers ``NOSCRIPT`` (a restarted server, a
``SCRIPT FLUSH``, a cluster node that never saw it), ``EVAL`` with the source, which also
caches the script on that server for the next ``EVALSHA``.

Every script takes ``ARGV[1]``: ``""`` to use the Redis server's clock (``TIME``), or a time
in microseconds (tests drive a fake clock this way; production never does).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

import attrs

__all__ = ["Script", "script"]


@attrs.frozen
class Script:
    """A script's ``name`` (its file, for error messages), full ``source`` and ``sha``."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


def _read(name: str) -> str:
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@functools.cache
def script(name: str) -> Script:
    """The script ``lua/<name>.lua`` with the prelude, read once per process."""
    return Script(name, _read("prelude") + "\n" + _read(name))
