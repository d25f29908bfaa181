"""The dependency graph: what an App registers, resolved, validated and ordered.

`build_graph` (public as ``kernel.dry_run``) is pure: no trio, no I/O. It

1. collects registrations recursively (the built-ins first, then the root App and every
   nested App, each App a node of its own),
2. applies overrides (the replacement is registered as is: it keeps neither the config
   nor the tags of what it replaces),
3. validates, raising the first problem found in registration order: duplicate ids, hooks
   on unregistered events, dependencies (shape, kind, presence), cycles, resource config,
4. orders: `Graph.resources` is the init order, `Graph.init_levels` the parallel one.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, TypeGuard

import attrs

from kernel._builtins import BUILTINS
from kernel._definitions import (
    UNSET,
    App,
    Event,
    Hook,
    OptionalDependency,
    Resource,
    Tag,
    Task,
    _check_deps,
)
from kernel._errors import (
    CircularDependencyError,
    ConfigError,
    DefinitionError,
    DuplicateIdError,
    GraphError,
    MissingDependencyError,
    UnknownEventError,
)
from kernel._graph_render import FORMATS, render
from kernel._structure import structure

__all__ = ["Graph", "Kind", "Node", "build_graph", "dry_run"]

Kind: TypeAlias = Literal["resource", "task", "event", "hook", "app"]
Definition: TypeAlias = "Resource | Task | Event | Hook | App"

#: Where the built-ins are registered, and where the root App is.
KERNEL_PLACE: Final = "kernel"
ROOT_PLACE: Final = "root"

_KINDS: Final[tuple[tuple[type[Any], Kind], ...]] = (
    (Resource, "resource"),
    (Task, "task"),
    (Event, "event"),
    (Hook, "hook"),
    (App, "app"),
)
#: Kinds that are initialised and disposed.
_LIVE: Final = frozenset({"resource", "app"})


def _is_definition(value: object) -> TypeGuard[Definition]:
    return isinstance(value, Resource | Task | Event | Hook | App)


def _kind(definition: Definition) -> Kind:
    for cls, kind in _KINDS:
        if isinstance(definition, cls):
            return kind
    raise AssertionError(definition)


@attrs.frozen(eq=False, repr=False)
class Node:
    """One registration, resolved.

    ``deps`` maps each keyword to the registered node it resolved to (``None`` for a
    missing optional); ``dep_ids`` maps it to the id it asked for. ``on`` lists the event
    nodes a hook listens to (empty for ``"*"`` hooks and for other kinds). ``config`` is the
    structured config of a resource (``None`` when it declares no config type).
    """

    id: str
    kind: Kind
    definition: Definition
    place: str
    index: int
    deps: Mapping[str, Node | None] = MappingProxyType({})
    dep_ids: Mapping[str, str] = MappingProxyType({})
    on: tuple[Node, ...] = ()
    config: Any = None

    def __repr__(self) -> str:
        return f"<Node {self.kind} {self.id!r}>"


@attrs.frozen(eq=False, repr=False)
class Graph:
    """A validated application: its nodes in registration order, and how to start them."""

    root: Node
    nodes: Mapping[str, Node]
    _init_order: tuple[Node, ...]
    _levels: tuple[tuple[Node, ...], ...]
    _hooks: Mapping[str, tuple[Node, ...]]

    def __repr__(self) -> str:
        return f"<Graph of app {self.root.id!r}: {len(self.nodes)} nodes>"

    def resources(self) -> list[Node]:
        """Resource and App nodes in init order (each after everything it depends on).

        A dependency through tasks counts (a resource needing a task needing a resource);
        among ready nodes the earliest registered comes first, so built-ins lead.
        """
        return list(self._init_order)

    def init_levels(self) -> list[list[Node]]:
        """Resource and App nodes by level: level k needs only nodes of levels below k."""
        return [list(level) for level in self._levels]

    def tasks(self) -> list[Node]:
        """Task nodes in registration order."""
        return self._of("task")

    def events(self) -> list[Node]:
        """Event nodes in registration order."""
        return self._of("event")

    def hooks(self) -> list[Node]:
        """Hook nodes in registration order."""
        return self._of("hook")

    def hooks_for(self, event: Event | str) -> list[Node]:
        """The hooks run when ``event`` is emitted, in run order.

        That is every hook listening to it or to ``"*"``, by ``order`` (lower first), ties
        in registration order.
        """
        node = self.node(event)
        if node.kind != "event":
            raise KeyError(f"{node.id!r} is a {node.kind}, not an event")
        return list(self._hooks[node.id])

    def node(self, definition_or_id: object) -> Node:
        """The node registered under this id (or under this definition's id)."""
        if isinstance(definition_or_id, str):
            key = definition_or_id
        elif _is_definition(definition_or_id):
            key = definition_or_id.id
        else:
            raise KeyError(f"expected a definition or an id, got {definition_or_id!r}")
        try:
            return self.nodes[key]
        except KeyError:
            raise KeyError(f"{key!r} is not registered in app {self.root.id!r}") from None

    def find(self, tag: Tag) -> list[tuple[Node, Any]]:
        """Nodes carrying ``tag`` (matched by id), each with the config of its first use."""
        if not isinstance(tag, Tag):
            raise TypeError(f"Graph.find: expected a kernel.tag(...), got {tag!r}")
        found: list[tuple[Node, Any]] = []
        for node in self.nodes.values():
            uses = getattr(node.definition, "tags", ())
            use = next((use for use in uses if use.tag.id == tag.id), None)
            if use is not None:
                found.append((node, use.config))
        return found

    def render(self, format: str = "text") -> str:
        """The graph as ``"text"`` (a readable listing) or ``"mermaid"`` (a flowchart)."""
        if format not in FORMATS:
            raise ValueError(
                f"Graph.render: format must be one of {', '.join(map(repr, FORMATS))}, "
                f"got {format!r}"
            )
        return render(self, format)

    def _of(self, kind: Kind) -> list[Node]:
        return [node for node in self.nodes.values() if node.kind == kind]


def dry_run(app: App) -> Graph:
    """Validate ``app`` without starting anything; return its `Graph`.

    Raises the first problem found: a `DefinitionError`, a `GraphError` subclass or a
    `ConfigError`.
    """
    return build_graph(app)


def build_graph(app: App) -> Graph:
    """Collect, override, validate and order everything ``app`` registers."""
    if not isinstance(app, App):
        raise DefinitionError(f"expected a kernel.App, got {app!r}")
    entries, apps = _collect(app)
    _apply_overrides(entries, apps)
    _check_hooks(entries)
    for entry in entries.values():
        _resolve_deps(entry, entries)
    topological = _check_cycles(entries)
    configs = {id: _config(entry.definition) for id, entry in entries.items()}
    return _assemble(app.id, entries, topological, configs)


_NO_DEPS: Final[Mapping[str, Any]] = MappingProxyType({})


@attrs.define
class _Entry:
    definition: Definition
    kind: Kind
    place: str
    index: int
    #: keyword -> the id each dependency asked for.
    wanted: Mapping[str, str] = _NO_DEPS
    #: Registered ids this node points at: its resolved deps, and a hook's events.
    targets: tuple[str, ...] = ()


# --- 1. collect -------------------------------------------------------------------------


def _collect(app: App) -> tuple[dict[str, _Entry], list[tuple[int, str, App]]]:
    """Every registration by id, in order; and every App with its depth and place."""
    entries: dict[str, _Entry] = {}
    apps: list[tuple[int, str, App]] = []

    def add(definition: Definition, place: str) -> None:
        id = definition.id
        if id in entries:
            raise DuplicateIdError(id, [entries[id].place, place])
        entries[id] = _Entry(definition, _kind(definition), place, len(entries))

    def visit(current: App, place: str, depth: int) -> None:
        add(current, place)
        inner = f"app {current.id!r}" if depth == 0 else f"{place} > app {current.id!r}"
        apps.append((depth, inner, current))
        for item in current.register:
            if isinstance(item, App):
                visit(item, inner, depth + 1)
            elif _is_definition(item):
                add(item, inner)
            else:
                raise DefinitionError(
                    f"app {current.id!r} registers {item!r}, which is not a resource, task, "
                    "event, hook or App"
                )

    for builtin in BUILTINS:
        assert _is_definition(builtin)
        add(builtin, KERNEL_PLACE)
    visit(app, ROOT_PLACE, 0)
    return entries, apps


# --- 2. overrides -----------------------------------------------------------------------


def _apply_overrides(entries: dict[str, _Entry], apps: list[tuple[int, str, App]]) -> None:
    """Swap in replacements; for an id overridden by several Apps the outermost wins.

    Two overrides of one id by Apps equally far from the root (or twice by one App) are
    ambiguous unless an App nearer the root overrides it too.
    """
    offers: dict[str, list[tuple[int, str, Definition]]] = {}
    for depth, where, app in apps:
        for item in app.overrides:
            id = item.original.id
            registered = entries.get(id)
            if registered is None:
                raise GraphError(f"{where} overrides {id!r}, which is not registered")
            kind = _kind(item.replacement)
            if kind != registered.kind:
                raise GraphError(
                    f"{where} overrides {id!r} with a {kind}, but {id!r} is a "
                    f"{registered.kind} (registered in {registered.place})"
                )
            offers.setdefault(id, []).append((depth, where, item.replacement))
    for id, offered in offers.items():
        outermost = min(depth for depth, _, _ in offered)
        winners = [(where, new) for depth, where, new in offered if depth == outermost]
        if len(winners) > 1:
            raise GraphError(
                f"conflicting overrides of {id!r}: in {winners[0][0]} and in {winners[1][0]}; "
                "override it once, or in an outer App"
            )
        where, replacement = winners[0]
        entry = entries[id]
        entry.definition = replacement
        entry.place = f"{entry.place} (overridden in {where})"


# --- 3. validate ------------------------------------------------------------------------


def _owner(entry: _Entry) -> str:
    return f"{entry.kind} {entry.definition.id!r}"


def _mismatch(entry: _Entry, asked: str, as_kind: Kind, target: _Entry) -> GraphError:
    return GraphError(
        f"{entry.definition.id!r} refers to {target.definition.id!r} ({asked}) as a "
        f"{as_kind}, but it is registered as a {target.kind} in {target.place}"
    )


def _check_hooks(entries: dict[str, _Entry]) -> None:
    for entry in entries.values():
        definition = entry.definition
        if isinstance(definition, Hook) and definition.on != "*":
            for event in definition.on:
                target = entries.get(event.id)
                if target is None:
                    raise UnknownEventError(definition.id, event.id)
                if target.kind != "event":
                    raise _mismatch(entry, "in on=", "event", target)
            # Not dependencies, but the hook's node points at its events' nodes.
            entry.targets = tuple(event.id for event in definition.on)


def _deps_of(entry: _Entry) -> Mapping[str, object]:
    """The declared deps, calling a deps callable (exactly once per build)."""
    deps = getattr(entry.definition, "deps", None)
    if deps is None:
        return {}
    if isinstance(deps, Mapping):
        return deps
    owner = _owner(entry)
    call: Callable[[], object] = deps
    try:
        produced = call()
    except Exception as exc:
        raise DefinitionError(f"{owner}: its deps callable raised {exc!r}") from exc
    if not isinstance(produced, Mapping):
        raise DefinitionError(
            f"{owner}: its deps callable must return a dict {{keyword: definition}}, "
            f"got {produced!r}"
        )
    _check_deps(owner, produced)
    return produced


def _resolve_deps(entry: _Entry, entries: Mapping[str, _Entry]) -> None:
    """Record what ``entry`` depends on; raise on a bad value, a wrong kind or a missing id."""
    deps = _deps_of(entry)
    if not deps:
        return
    asked: dict[str, str] = {}
    for keyword, value in deps.items():
        optional = isinstance(value, OptionalDependency)
        target = value.target if isinstance(value, OptionalDependency) else value
        if not _is_definition(target) or isinstance(target, Hook):
            raise DefinitionError(
                f"{_owner(entry)}: deps[{keyword!r}] must be a resource, task, event, App or "
                f"kernel.optional(...), got {value!r}"
            )
        kind = _kind(target)
        id = target.id
        registered = entries.get(id)
        if registered is None and not optional:
            raise MissingDependencyError(entry.definition.id, id, keyword)
        if registered is not None and registered.kind != kind:
            raise _mismatch(entry, f"as {keyword}=", kind, registered)
        asked[keyword] = id
    entry.wanted = MappingProxyType(asked)
    entry.targets += tuple(id for id in asked.values() if id in entries)


def _check_cycles(entries: Mapping[str, _Entry]) -> list[str]:
    """Raise for the first cycle a DFS in registration order meets; else return the DFS
    post-order, a topological order (dependencies first) of every node.

    Edges to events are walked too: events depend on nothing, so they close no cycle.
    """
    done: dict[str, None] = {}
    for start in entries:
        if start in done:
            continue
        path = [start]
        on_path = {start}
        stack = [iter(entries[start].targets)]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done[finished] = None
                continue
            if target in on_path:
                members = path[path.index(target) :]
                first = min(range(len(members)), key=lambda i: entries[members[i]].index)
                members = members[first:] + members[:first]
                raise CircularDependencyError([*members, members[0]])
            if target not in done:
                path.append(target)
                on_path.add(target)
                stack.append(iter(entries[target].targets))
    return list(done)


def _config(definition: Definition) -> Any:
    if not isinstance(definition, Resource) or definition.config_type is None:
        return None
    owner = f"resource {definition.id!r}"
    if definition.config is UNSET:
        try:
            return definition.config_type()
        except (TypeError, ValueError):
            raise ConfigError(
                owner, [f"config: required; register {definition.id}.with_config(...)"]
            ) from None
    return structure(definition.config, definition.config_type, owner=owner, path="config")


# --- 4. order and assemble --------------------------------------------------------------


def _kahn(
    order: Iterable[str], needs: Mapping[str, Iterable[str]], rank: Mapping[str, int]
) -> list[str]:
    """A topological order of ``order`` (needs first), preferring the lowest rank."""
    waiting = {id: set(needs[id]) for id in order}
    users: dict[str, list[str]] = {id: [] for id in waiting}
    for id, required in waiting.items():
        for need in required:
            users[need].append(id)
    ready = [(rank[id], id) for id, required in waiting.items() if not required]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        _, id = heapq.heappop(ready)
        result.append(id)
        for user in users[id]:
            waiting[user].discard(id)
            if not waiting[user]:
                heapq.heappush(ready, (rank[user], user))
    return result


def _assemble(
    root: str, entries: Mapping[str, _Entry], topological: list[str], configs: Mapping[str, Any]
) -> Graph:
    nodes, reach = _nodes(entries, topological, configs)
    init, levels = _init_order(entries, nodes, reach)
    return Graph(
        nodes[root],
        MappingProxyType(nodes),
        tuple(init),
        tuple(tuple(level) for level in levels),
        MappingProxyType(_hooks_by_event(nodes)),
    )


def _nodes(
    entries: Mapping[str, _Entry], topological: list[str], configs: Mapping[str, Any]
) -> tuple[dict[str, Node], dict[str, set[str]]]:
    """The nodes in registration order, and the live nodes each one needs started first.

    A node needs the resources and Apps it depends on, directly or through tasks (events
    and hooks start nothing).
    """
    built: dict[str, Node] = {}
    reach: dict[str, set[str]] = {}
    for id in topological:  # dependencies first: each node can point at theirs
        entry = entries[id]
        definition = entry.definition
        on: tuple[Node, ...] = ()
        if isinstance(definition, Hook) and definition.on != "*":
            on = tuple(built[event.id] for event in definition.on)
        deps: Mapping[str, Node | None] = _NO_DEPS
        if entry.wanted:
            deps = MappingProxyType({kw: built.get(to) for kw, to in entry.wanted.items()})
        built[id] = Node(
            id=id,
            kind=entry.kind,
            definition=definition,
            place=entry.place,
            index=entry.index,
            deps=deps,
            dep_ids=entry.wanted,
            on=on,
            config=configs[id],
        )
        needs: set[str] = set()
        for target in entry.targets:
            kind = entries[target].kind
            if kind in _LIVE:
                needs.add(target)
            elif kind == "task":
                needs |= reach[target]
        reach[id] = needs
    return {id: built[id] for id in entries}, reach


def _init_order(
    entries: Mapping[str, _Entry], nodes: Mapping[str, Node], reach: Mapping[str, set[str]]
) -> tuple[list[Node], list[list[Node]]]:
    """Live nodes in init order (Kahn, earliest registered first), and by level."""
    rank = {id: entry.index for id, entry in entries.items()}
    init = _kahn([id for id in entries if entries[id].kind in _LIVE], reach, rank)
    level: dict[str, int] = {}
    levels: list[list[Node]] = []
    for id in init:
        needs = reach[id]
        level[id] = at = 1 + max(map(level.__getitem__, needs)) if needs else 0
        if at == len(levels):
            levels.append([])
        levels[at].append(nodes[id])
    return [nodes[id] for id in init], levels


def _hooks_by_event(nodes: Mapping[str, Node]) -> dict[str, tuple[Node, ...]]:
    """For each event, the hooks listening to it or to ``"*"``, by order then registration."""
    listening: dict[str, list[tuple[int, int, Node]]] = {
        node.id: [] for node in nodes.values() if node.kind == "event"
    }
    for node in nodes.values():
        definition = node.definition
        if isinstance(definition, Hook):
            for event in listening if definition.wildcard else (e.id for e in node.on):
                listening[event].append((definition.order, node.index, node))
    return {event: tuple(h for _, _, h in sorted(found)) for event, found in listening.items()}
