"""Observation middleware: ``mw.log()``, ``mw.metrics()``, ``mw.trace()``."""

__all__: list[str] = []
