"""The trio-runner runtime.

This package will hold resources scoped by trio nurseries, tasks with injected
dependencies and middleware, events and hooks, the validated dependency graph, logging,
health, graceful shutdown, HTTP exposure and durable workflows. It imports
``middleware`` and ``resilience``, never the other way round.
"""

__all__: list[str] = []
