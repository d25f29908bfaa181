"""`Registry`: named pipelines, so one policy ("external-http") serves many functions."""

from __future__ import annotations

import attrs

from middleware._pipeline import Pipeline

__all__ = ["Registry", "registry"]


@attrs.define
class Registry:
    """A name → `Pipeline` table. ``mw.registry`` is the process-wide one."""

    _pipelines: dict[str, Pipeline] = attrs.Factory(dict)

    def register(self, name: str, pipeline: Pipeline, *, replace: bool = False) -> Pipeline:
        """Register ``pipeline`` under ``name`` and return it.

        Registering a taken name raises `ValueError` unless ``replace=True``.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"registry.register: name must be a non-empty str, got {name!r}")
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"registry.register: pipeline must be an mw.Pipeline, got {pipeline!r}")
        if name in self._pipelines and not replace:
            raise ValueError(
                f"registry.register: a pipeline named {name!r} is registered already; "
                "pass replace=True to replace it"
            )
        self._pipelines[name] = pipeline
        return pipeline

    def get(self, name: str) -> Pipeline:
        """The pipeline registered as ``name``; `KeyError` listing the known names if none."""
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none"
            raise KeyError(f"no pipeline named {name!r} is registered (known: {known})") from None

    def unregister(self, name: str) -> None:
        """Forget ``name`` (nothing happens if it is not registered)."""
        self._pipelines.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._pipelines)


registry = Registry()
