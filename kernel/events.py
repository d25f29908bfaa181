"""The kernel's lifecycle events: ``ready``, ``disposing``, ``disposed``."""

from kernel._builtins import disposed, disposing, ready

__all__ = ["disposed", "disposing", "ready"]
