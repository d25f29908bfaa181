"""HTTP exposure of tasks and events (hypercorn + Starlette on trio), and remote tasks.

Needs the ``http`` extra: ``pip install 'trio-runner[http]'``.
"""

__all__: list[str] = []
