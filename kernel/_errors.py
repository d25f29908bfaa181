"""The kernel's error family.

::

    Exception
     └── KernelError                    every error the kernel raises itself
          ├── DefinitionError           a definition is malformed (bad id, bad option, ...)
          ├── GraphError                the registrations do not form a valid app
          │    ├── DuplicateIdError
          │    ├── MissingDependencyError
          │    ├── CircularDependencyError
          │    └── UnknownEventError    a hook listens to an event nobody registered
          ├── ConfigError               a config or payload did not structure into its type
          ├── ResourceInitError         a resource's init failed (the cause is chained)
          ├── EmissionCycleError        hooks emitting events in a loop beyond the depth limit
          ├── PublicError               an error whose code and message may cross HTTP
          ├── RemoteError               a remote task call failed (status, code, request id)
          │    └── RemoteUnavailable    no answer: refused, broken connection, timeout
          └── WorkerFailed              a worker process of kernel.main(workers=N) failed
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CircularDependencyError",
    "ConfigError",
    "DefinitionError",
    "DuplicateIdError",
    "EmissionCycleError",
    "GraphError",
    "KernelError",
    "MissingDependencyError",
    "PublicError",
    "RemoteError",
    "RemoteUnavailable",
    "ResourceInitError",
    "UnknownEventError",
    "WorkerFailed",
]


class KernelError(Exception):
    """Base class of every error raised by the kernel itself."""


class DefinitionError(KernelError, TypeError):
    """A definition was declared with a bad id or option."""


class GraphError(KernelError):
    """The registered definitions do not form a valid application graph."""


class DuplicateIdError(GraphError):
    """Two registrations share an id. ``places`` are where each was registered."""

    def __init__(self, id: str, places: Sequence[str]) -> None:
        self.id = id
        self.places = tuple(places)
        super().__init__(
            f"duplicate id {id!r}: registered in {self.places[0]} and in {self.places[1]}"
        )


class MissingDependencyError(GraphError):
    """``dependent`` depends on ``missing``, which is not registered."""

    def __init__(self, dependent: str, missing: str, keyword: str) -> None:
        self.dependent = dependent
        self.missing = missing
        self.keyword = keyword
        super().__init__(
            f"{dependent!r} depends on {missing!r} (as {keyword}=), which is not registered; "
            f"register it, or use kernel.optional(...) to receive None when it is absent"
        )


class CircularDependencyError(GraphError):
    """Dependencies form a cycle; ``cycle`` lists its ids, the first one repeated last."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(f"circular dependency: {' -> '.join(self.cycle)}")


class UnknownEventError(GraphError):
    """A hook listens to, or something emits, an event that is not registered."""

    def __init__(self, dependent: str, event: str, message: str | None = None) -> None:
        self.dependent = dependent
        self.event = event
        super().__init__(
            message or f"{dependent!r} listens to event {event!r}, which is not registered"
        )


class ConfigError(KernelError, ValueError):
    """A value did not structure into its declared type; the message names each field path."""

    def __init__(self, owner: str, problems: Sequence[str]) -> None:
        self.owner = owner
        self.problems = list(problems)
        super().__init__(f"{owner}: " + "; ".join(self.problems))


class ResourceInitError(KernelError):
    """The init of resource ``resource_id`` failed; ``__cause__`` is the original error."""

    def __init__(self, resource_id: str) -> None:
        self.resource_id = resource_id
        super().__init__(f"resource {resource_id!r} failed to initialise")


class EmissionCycleError(KernelError):
    """Hooks kept emitting events inside each other's handling, past the depth limit."""

    def __init__(self, chain: Sequence[str], limit: int) -> None:
        self.chain = list(chain)
        super().__init__(
            f"event emission nested deeper than {limit}: {' -> '.join(self.chain)}; "
            "hooks are emitting events in a cycle"
        )


class PublicError(KernelError):
    """An error meant for remote callers: HTTP exposure passes its ``code`` and message.

    Subclass it with class attributes ``http_status`` and ``code`` (or pass them), e.g.
    ``class OutOfStock(kernel.PublicError): http_status = 409; code = "out_of_stock"``. Any
    other exception leaving an exposed task becomes a sanitized 500 with no details.
    """

    http_status: int = 400
    code: str = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status


class RemoteError(KernelError):
    """A task called over HTTP failed: the HTTP ``status``, the error ``code``, the server's
    ``request_id`` and its (sanitized) message."""

    #: The HTTP status; ``None`` for a `RemoteUnavailable` (no answer came).
    status: int | None

    def __init__(self, message: str, *, status: int, code: str, request_id: str | None) -> None:
        super().__init__(f"{message} (HTTP {status}, code {code!r}, request id {request_id})")
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id


class RemoteUnavailable(RemoteError):
    """A task called over HTTP got no answer: the connection was refused or broke, or a
    phase of the request timed out. Chained (``__cause__``) from httpx's transport error;
    ``status`` and ``request_id`` are ``None``, ``code`` is ``"unavailable"``. Whether the
    task ran on the server is unknown (it may have, if the connection broke after the
    request was sent)."""

    def __init__(self, message: str) -> None:
        KernelError.__init__(self, message)
        self.message = message
        self.status = None
        self.code = "unavailable"
        self.request_id = None


class WorkerFailed(KernelError):
    """A worker process of ``kernel.main(app, workers=N)`` exited with a failure: it kept
    crashing (so the service came down), or it did not stop cleanly. ``worker`` is its
    number (1..N), ``status`` its exit status (negative: killed by that signal); the
    worker's own error went to its stderr (the parent's)."""

    def __init__(self, message: str, *, worker: int, status: int) -> None:
        super().__init__(message)
        self.worker = worker
        self.status = status
