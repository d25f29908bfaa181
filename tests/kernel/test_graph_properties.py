"""Random dependency graphs: init orders are topological, levels respect dependencies,
both are deterministic, and any cycle is reported as a real cycle of the graph."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernel
from kernel import App, CircularDependencyError, Graph
from kernel._graph import build_graph

SETTINGS = settings(max_examples=150, deadline=None)

LIVE_BUILTINS = ["kernel.logger"]


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(ids, edges, registration order): node i may depend only on nodes j < i."""
    size = draw(st.integers(1, 12))
    ids = [f"{'t' if draw(st.booleans()) and draw(st.booleans()) else 'r'}{i}" for i in range(size)]
    edges = {
        ids[i]: draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=3)) if i else []
        for i in range(size)
    }
    order = draw(st.permutations(ids))
    return ids, edges, order


def build(edges: dict[str, list[str]], order: list[str]) -> App:
    """Resources (``r*``) and tasks (``t*``) with deps callables, registered in ``order``."""
    made: dict[str, Any] = {}

    def deps_of(id: str) -> Callable[[], dict[str, Any]]:
        return lambda: {f"d{n}": made[target] for n, target in enumerate(edges[id])}

    for id in order:
        if id.startswith("t"):

            async def task_body(**_: Any) -> None:
                return None

            made[id] = kernel.task(id, deps=deps_of(id))(task_body)
        else:

            async def resource_body(**_: Any) -> AsyncIterator[None]:
                yield None

            made[id] = kernel.resource(id, deps=deps_of(id))(resource_body)
    return App("app", register=[made[id] for id in order])


def live_needs(edges: dict[str, list[str]]) -> dict[str, set[str]]:
    """Reference: the resources each resource reaches directly or through tasks only."""

    def reach(id: str) -> set[str]:
        found: set[str] = set()
        for target in edges[id]:
            found |= {target} if target.startswith("r") else reach(target)
        return found

    return {id: reach(id) for id in edges if id.startswith("r")}


def reference_order(needs: dict[str, set[str]], order: list[str]) -> list[str]:
    """Reference: repeatedly take the earliest registered resource whose needs are met."""
    result: list[str] = []
    pending = [id for id in order if id in needs]
    while pending:
        ready = next(id for id in pending if needs[id] <= set(result))
        pending.remove(ready)
        result.append(ready)
    return result


def names(graph: Graph) -> list[str]:
    return [node.id for node in graph.resources()]


@SETTINGS
@given(dags())
def test_init_order_is_topological_and_deterministic(
    dag: tuple[list[str], dict[str, list[str]], list[str]],
) -> None:
    _, edges, order = dag
    app = build(edges, order)
    graph = build_graph(app)
    needs = live_needs(edges)
    init = names(graph)
    assert init[:2] == [*LIVE_BUILTINS, "app"]
    assert init[2:] == reference_order(needs, order)
    position = {id: i for i, id in enumerate(init)}
    for id, required in needs.items():
        assert all(position[need] < position[id] for need in required)
    assert names(build_graph(app)) == init
    assert names(build_graph(build(edges, order))) == init


@SETTINGS
@given(dags())
def test_init_levels_respect_dependencies(
    dag: tuple[list[str], dict[str, list[str]], list[str]],
) -> None:
    _, edges, order = dag
    graph = build_graph(build(edges, order))
    needs = live_needs(edges)
    levels = [[node.id for node in level] for level in graph.init_levels()]
    level_of = {id: k for k, level in enumerate(levels) for id in level}
    assert sorted(level_of) == sorted([*LIVE_BUILTINS, "app", *needs])
    assert all(level for level in levels)
    for id, required in needs.items():
        expected = 1 + max((level_of[need] for need in required), default=-1)
        assert level_of[id] == expected
    flat = [id for level in levels for id in level]
    position = {id: i for i, id in enumerate(flat)}
    for id, required in needs.items():
        assert all(position[need] < position[id] for need in required)
    again = [
        [node.id for node in level] for level in build_graph(build(edges, order)).init_levels()
    ]
    assert again == levels


@SETTINGS
@given(dags(), st.data())
def test_a_back_edge_is_reported_as_a_real_cycle(
    dag: tuple[list[str], dict[str, list[str]], list[str]], data: st.DataObject
) -> None:
    ids, edges, order = dag
    # Pick a node and one it reaches (itself included): an edge back closes a cycle.
    head = data.draw(st.sampled_from(ids))
    reachable = {head}
    frontier = [head]
    while frontier:
        for target in edges[frontier.pop()]:
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    tail = data.draw(st.sampled_from(sorted(reachable)))
    edges = {**edges, tail: [*edges[tail], head]}
    with pytest.raises(CircularDependencyError) as info:
        build_graph(build(edges, order))
    cycle = info.value.cycle
    members = cycle[:-1]
    assert cycle[0] == cycle[-1]
    assert len(set(members)) == len(members)
    for dependent, dependency in itertools.pairwise(cycle):
        assert dependency in edges[dependent]
    assert members[0] == min(members, key=order.index)
    assert str(info.value) == "circular dependency: " + " -> ".join(cycle)
