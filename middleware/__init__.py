"""Composition of resilience primitives into middleware pipelines.

This package will hold the ``Middleware`` protocol, pipelines composed once,
``@apply`` for any ``async def``, adapters that turn each ``resilience`` primitive into
middleware, and observation middleware. It imports ``resilience`` and never ``kernel``.
"""

__all__: list[str] = []
