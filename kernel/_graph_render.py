"""Rendering a `Graph`: a readable text listing, or a Mermaid flowchart.

Config values are never printed (they may hold secrets); only their type is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from kernel._definitions import Hook, Task

if TYPE_CHECKING:
    from kernel._graph import Graph, Node

__all__ = ["FORMATS", "render"]

FORMATS: Final = ("text", "mermaid")

#: Mermaid node shapes by kind: (opening, closing).
_SHAPES: Final = {
    "resource": ("[", "]"),
    "app": ("[[", "]]"),
    "task": ("([", "])"),
    "event": ("{{", "}}"),
    "hook": (">", "]"),
}
#: The virtual node every ``"*"`` hook hangs from.
_ANY_EVENT: Final = "any_event"
#: Mermaid entity codes for characters a quoted label cannot hold (``#`` first).
_ESCAPES: Final = (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"))


def render(graph: Graph, format: str) -> str:
    """``graph`` in ``format`` (one of `FORMATS`, checked by the caller)."""
    return _text(graph) if format == "text" else _mermaid(graph)


# --- text -------------------------------------------------------------------------------


def _deps_lines(node: Node) -> list[str]:
    lines: list[str] = []
    for keyword, target in node.deps.items():
        if target is None:
            shown = f"None (optional {node.dep_ids[keyword]!r} is not registered)"
        else:
            shown = f"{target.id} ({target.kind})"
        lines.append(f"      {keyword} -> {shown}")
    return lines


def _head(node: Node, extra: str = "") -> str:
    return f"  {node.id}  [{node.place}]{extra}"


def _text(graph: Graph) -> str:
    counts = dict.fromkeys(_SHAPES, 0)
    for node in graph.nodes.values():
        counts[node.kind] += 1
    summary = ", ".join(f"{kind}s: {count}" for kind, count in counts.items())
    lines = [
        f"app {graph.root.id!r} ({summary})",
        "",
        "resources and apps, in init order:",
    ]
    for node in graph.resources():
        extra = " (app)" if node.kind == "app" else ""
        if node.config is not None:
            extra += f"  config: {type(node.config).__name__}"
        lines += [_head(node, extra), *_deps_lines(node)]
    lines += ["", "tasks:"]
    for node in graph.tasks():
        count = len(node.definition.pipeline) if isinstance(node.definition, Task) else 0
        lines += [_head(node, f"  middleware: {count}"), *_deps_lines(node)]
    lines += ["", "events, with their hooks in run order:"]
    for node in graph.events():
        lines.append(_head(node))
        for hook in graph.hooks_for(node.id):
            assert isinstance(hook.definition, Hook)
            every = ", every event" if hook.definition.wildcard else ""
            lines.append(f"      {hook.id} (order {hook.definition.order}{every})")
    lines += ["", "hooks:"]
    for node in graph.hooks():
        on = ", ".join(event.id for event in node.on) or "*"
        lines += [_head(node, f"  on: {on}"), *_deps_lines(node)]
    return "\n".join(line.rstrip() for line in lines)


# --- mermaid ----------------------------------------------------------------------------


def _label(text: str) -> str:
    for char, code in _ESCAPES:
        text = text.replace(char, code)
    return f'"{text}"'


def _mermaid(graph: Graph) -> str:
    names = {node.id: f"n{position}" for position, node in enumerate(graph.nodes.values())}
    lines = [
        "graph TD",
        "  %% shapes: resource rectangle, app subroutine, task stadium, event hexagon, hook flag",
    ]
    for node in graph.nodes.values():
        opening, closing = _SHAPES[node.kind]
        lines.append(f"  {names[node.id]}{opening}{_label(node.id)}{closing}")
    wildcard = any(
        isinstance(node.definition, Hook) and node.definition.wildcard for node in graph.hooks()
    )
    if wildcard:
        lines.append(f"  {_ANY_EVENT}{{{{{_label('* (every event)')}}}}}")
    for node in graph.nodes.values():
        lines.extend(
            f"  {names[node.id]} --> {names[target.id]}"
            for target in node.deps.values()
            if target is not None
        )
    for node in graph.hooks():
        sources = [names[event.id] for event in node.on] or [_ANY_EVENT]
        lines.extend(f"  {source} -.-> {names[node.id]}" for source in sources)
    return "\n".join(lines)
