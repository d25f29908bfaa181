"""Observability of a running app: structured logs with redaction, metrics, traces.

`RedactedTraceback` is what a log record made by the kernel carries as its exception: the
original's traceback as redacted text, with no frames (and so no local variables) to print.
"""

from kernel.observability._tracebacks import RedactedTraceback

__all__ = ["RedactedTraceback"]
