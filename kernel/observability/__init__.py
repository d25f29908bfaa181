"""Observability of a running app: structured logs with redaction, metrics, traces and
error tracking. Each is off until `kernel.run` is given its config.

- logs: `LogConfig` (``kernel.run(app, log=...)``), `Redaction` (what is hidden), and
  `kernel_logger(source)`, the loguru logger bound to ``source`` that the kernel and its
  subsystems log with;
- traces: `TracingConfig` (``kernel.run(app, tracing=...)``);
- error tracking: `SentryConfig` (``kernel.run(app, sentry=...)``; the ``sentry`` extra);
- metrics: see `kernel.metrics` (Prometheus text) and ``middleware.observability``.

`RedactedTraceback` is what a log record made by the kernel carries as its exception: the
original's traceback as redacted text, with no frames (and so no local variables) to print.
`REDACTED` is the text that stands for a hidden value. `execution_id` (a context variable)
and `execution_watch` tie a durable execution's logs and failures to its id.
"""

from kernel._redaction import REDACTED, Redaction
from kernel.observability._failures import execution_watch
from kernel.observability._logging import LogConfig, execution_id, kernel_logger
from kernel.observability._sentry import SentryConfig
from kernel.observability._tracebacks import RedactedTraceback
from kernel.observability._tracing import TracingConfig
from resilience.faces import present as _present

__all__ = [
    "REDACTED",
    "LogConfig",
    "RedactedTraceback",
    "Redaction",
    "SentryConfig",
    "TracingConfig",
    "execution_id",
    "execution_watch",
    "kernel_logger",
]

_present("kernel.observability", globals())
