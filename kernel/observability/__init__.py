"""Observability of a running app: structured logs with redaction, metrics, traces."""

__all__: list[str] = []
