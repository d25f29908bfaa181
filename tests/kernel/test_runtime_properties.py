"""For random DAGs of resources, init follows dependencies and dispose is its exact reverse."""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import kernel
from kernel import run


@st.composite
def dags(draw: st.DrawFn) -> list[list[int]]:
    """deps[i] lists the resources (all < i) that resource i depends on."""
    size = draw(st.integers(min_value=1, max_value=12))
    return [
        sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3))) if i else []
        for i in range(size)
    ]


def build(deps: list[list[int]], order: list[int], log: list[tuple[str, int]]) -> kernel.App:
    resources: dict[int, kernel.Resource] = {}

    def make(i: int) -> kernel.Resource:
        @kernel.resource(f"r{i}", deps={f"d{j}": resources[j] for j in deps[i]})
        async def res(**_: Any) -> Any:
            log.append(("init", i))
            yield i
            log.append(("dispose", i))

        return res

    for i in range(len(deps)):
        resources[i] = make(i)
    # Register in a shuffled order: the graph, not the list, decides.
    return kernel.App("app", register=[resources[i] for i in order])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), deps=dags(), parallel=st.booleans())
def test_init_is_topological_and_dispose_is_its_reverse(
    data: st.DataObject, deps: list[list[int]], parallel: bool
) -> None:
    order = data.draw(st.permutations(range(len(deps))))
    log: list[tuple[str, int]] = []

    async def main() -> None:
        async with run(build(deps, order, log), parallel_init=parallel):
            log.append(("running", -1))

    trio.run(main)
    middle = log.index(("running", -1))
    inits = [i for kind, i in log[:middle]]
    disposals = [i for kind, i in log[middle + 1 :]]
    assert sorted(inits) == list(range(len(deps)))
    position = {i: n for n, i in enumerate(inits)}
    for i, needed in enumerate(deps):
        for j in needed:
            assert position[j] < position[i], f"r{i} started before its dependency r{j}"
    if parallel:
        # Independent resources start together: any order among them, but a resource is
        # always disposed before everything it depends on.
        gone = {i: n for n, i in enumerate(disposals)}
        assert all(gone[i] < gone[j] for i, needed in enumerate(deps) for j in needed)
    else:
        assert disposals == inits[::-1]
