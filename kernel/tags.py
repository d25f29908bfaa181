"""Tags the kernel understands: attach them with ``tags=[kernel.tags.critical]``.

- `critical`: the app cannot serve without this resource. When its ``health=`` check fails,
  ``rt.health()`` reports the whole app ``"unhealthy"`` (a failing check of an untagged
  resource only makes it ``"degraded"``).
- `external_io`: the resource talks to something outside the process (a database, an HTTP
  API, a broker). ``trio-runner doctor`` expects such a resource to have a health check, and
  the tasks depending on it a timeout and a retry or circuit breaker.
"""

from __future__ import annotations

from typing import Final

from kernel._definitions import Tag, tag

__all__ = ["critical", "external_io"]

#: The app is unhealthy when this resource's health check fails.
critical: Final[Tag] = tag("kernel.critical")
#: The resource does I/O outside the process.
external_io: Final[Tag] = tag("kernel.external_io")
