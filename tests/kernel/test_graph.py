from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

import kernel
from kernel import (
    App,
    CircularDependencyError,
    ConfigError,
    DefinitionError,
    DuplicateIdError,
    Event,
    Graph,
    GraphError,
    MissingDependencyError,
    Node,
    Resource,
    UnknownEventError,
    dry_run,
)
from kernel._definitions import UNSET
from kernel._graph import build_graph

BUILTIN_IDS = ["kernel.logger", "kernel.ready", "kernel.disposing", "kernel.disposed"]


def res(id: str, deps: Any = None, **options: Any) -> Resource:
    """A resource whose body yields its id."""

    async def body(**_: Any) -> AsyncIterator[str]:
        yield id

    return kernel.resource(id, deps=deps, **options)(body)


def tsk(id: str, deps: Any = None, **options: Any) -> kernel.Task:
    async def body(**_: Any) -> str:
        return id

    return kernel.task(id, deps=deps, **options)(body)


def hk(id: str, on: Any, order: int = 0, deps: Any = None) -> kernel.Hook:
    async def body(emission: Any, **_: Any) -> None:
        return None

    return kernel.hook(id, on=on, order=order, deps=deps)(body)


def fn_of(node: Node) -> object:
    """The body of a resource, task or hook node."""
    definition = node.definition
    assert isinstance(definition, Resource | kernel.Task | kernel.Hook)
    return definition.fn


def ids(nodes: list[Node]) -> list[str]:
    return [node.id for node in nodes]


# --- collection ---------------------------------------------------------------------------


def test_builtins_come_first_then_the_root_and_its_registrations() -> None:
    db = res("db")
    graph = build_graph(App("shop", register=[db]))
    assert list(graph.nodes) == [*BUILTIN_IDS, "shop", "db"]
    assert graph.root is graph.nodes["shop"]
    assert graph.root.kind == "app"
    assert graph.nodes["kernel.logger"].place == "kernel"
    assert graph.nodes["kernel.ready"].kind == "event"
    assert graph.root.place == "root"
    assert graph.nodes["db"].place == "app 'shop'"
    assert graph.nodes["db"].definition is db
    assert [node.index for node in graph.nodes.values()] == list(range(6))


def test_nested_apps_are_nodes_and_name_their_place() -> None:
    inner = App("payments", register=[res("stripe")])
    billing = App("billing", register=[res("invoices"), inner])
    graph = build_graph(App("shop", register=[billing, res("db")]))
    assert list(graph.nodes)[4:] == ["shop", "billing", "invoices", "payments", "stripe", "db"]
    assert graph.nodes["billing"].place == "app 'shop'"
    assert graph.nodes["billing"].kind == "app"
    assert graph.nodes["invoices"].place == "app 'shop' > app 'billing'"
    assert graph.nodes["payments"].place == "app 'shop' > app 'billing'"
    assert graph.nodes["stripe"].place == "app 'shop' > app 'billing' > app 'payments'"
    assert graph.nodes["db"].place == "app 'shop'"


@pytest.mark.parametrize(
    "item", [kernel.tag("t"), 3, print, kernel.optional(kernel.event("e"))], ids=repr
)
def test_registering_something_else_names_the_app_and_the_item(item: object) -> None:
    app = App("shop", register=[App("billing", register=[item])])
    with pytest.raises(DefinitionError) as info:
        build_graph(app)
    assert str(info.value) == (
        f"app 'billing' registers {item!r}, which is not a resource, task, event, hook or App"
    )


def test_build_graph_wants_an_app() -> None:
    with pytest.raises(DefinitionError, match=r"^expected a kernel\.App, got 'shop'$"):
        build_graph("shop")  # type: ignore[arg-type]


def test_dry_run_is_build_graph() -> None:
    app = App("shop", register=[res("db")])
    graph = dry_run(app)
    assert isinstance(graph, Graph)
    assert list(graph.nodes) == list(build_graph(app).nodes)


# --- duplicates ---------------------------------------------------------------------------


def test_duplicate_ids_name_both_places() -> None:
    app = App("shop", register=[res("db"), App("billing", register=[res("db")])])
    with pytest.raises(DuplicateIdError) as info:
        build_graph(app)
    assert str(info.value) == (
        "duplicate id 'db': registered in app 'shop' and in app 'shop' > app 'billing'"
    )
    assert info.value.id == "db"
    assert info.value.places == ("app 'shop'", "app 'shop' > app 'billing'")


def test_registering_the_same_object_twice_is_a_duplicate() -> None:
    db = res("db")
    with pytest.raises(DuplicateIdError, match=r"^duplicate id 'db': registered in app 'shop'"):
        build_graph(App("shop", register=[db, db]))


def test_one_namespace_for_every_kind() -> None:
    app = App("shop", register=[res("x"), kernel.event("x")])
    with pytest.raises(DuplicateIdError, match="'x'"):
        build_graph(app)
    with pytest.raises(DuplicateIdError) as info:
        build_graph(App("shop", register=[res("shop")]))
    assert info.value.places == ("root", "app 'shop'")


def test_registering_a_builtin_is_a_duplicate_of_the_kernel_one() -> None:
    with pytest.raises(DuplicateIdError) as info:
        build_graph(App("shop", register=[kernel.logger]))
    assert str(info.value) == (
        "duplicate id 'kernel.logger': registered in kernel and in app 'shop'"
    )


def test_a_nested_app_registered_twice_is_reported_as_itself() -> None:
    billing = App("billing", register=[res("invoices")])
    with pytest.raises(DuplicateIdError) as info:
        build_graph(App("shop", register=[billing, billing]))
    assert info.value.id == "billing"


# --- hooks --------------------------------------------------------------------------------


def test_a_hook_on_an_unregistered_event_is_an_error() -> None:
    placed = kernel.event("order.placed")
    with pytest.raises(UnknownEventError) as info:
        build_graph(App("shop", register=[hk("notify", on=placed)]))
    assert str(info.value) == ("'notify' listens to event 'order.placed', which is not registered")
    assert (info.value.dependent, info.value.event) == ("notify", "order.placed")


def test_hooks_may_listen_to_builtin_events_and_to_everything() -> None:
    graph = build_graph(
        App("shop", register=[hk("on_ready", on=kernel.events.ready), hk("all", on="*")])
    )
    assert graph.nodes["on_ready"].on == (graph.nodes["kernel.ready"],)
    assert graph.nodes["all"].on == ()


def test_a_hook_may_be_registered_before_its_event() -> None:
    placed = kernel.event("placed")
    graph = build_graph(App("shop", register=[hk("h", on=[placed]), placed]))
    assert graph.nodes["h"].on == (graph.nodes["placed"],)
    assert graph.nodes["h"].deps == {}
    assert ids(graph.hooks_for(placed)) == ["h"]


def test_a_hook_on_an_id_registered_as_another_kind_is_an_error() -> None:
    impostor = kernel.event("db")
    app = App("shop", register=[res("db"), hk("h", on=impostor)])
    with pytest.raises(GraphError) as info:
        build_graph(app)
    assert str(info.value) == (
        "'h' refers to 'db' (in on=) as a event, but it is registered as a resource in app 'shop'"
    )


def test_hooks_for_orders_by_order_then_registration_with_wildcards() -> None:
    placed = kernel.event("placed")
    app = App(
        "shop",
        register=[
            placed,
            hk("late", on=placed, order=10),
            hk("star", on="*", order=5),
            hk("early_b", on=[placed], order=-1),
            hk("early_a", on=placed, order=-1),
            hk("other", on=kernel.events.ready),
        ],
    )
    graph = build_graph(app)
    assert ids(graph.hooks_for(placed)) == ["early_b", "early_a", "star", "late"]
    assert ids(graph.hooks_for("kernel.ready")) == ["other", "star"]
    assert ids(graph.hooks_for(kernel.events.disposed)) == ["star"]
    assert ids(graph.hooks()) == ["late", "star", "early_b", "early_a", "other"]
    with pytest.raises(KeyError, match="'late' is a hook, not an event"):
        graph.hooks_for("late")


# --- dependencies -------------------------------------------------------------------------


def test_deps_resolve_to_registered_nodes() -> None:
    db = res("db")
    placed = kernel.event("placed")
    checkout = tsk("checkout", deps={"db": db, "placed": placed})
    server = res("server", deps={"db": db, "checkout": checkout, "log": kernel.logger})
    graph = build_graph(App("shop", register=[server, checkout, db, placed]))
    node = graph.nodes["server"]
    assert dict(node.deps) == {
        "db": graph.nodes["db"],
        "checkout": graph.nodes["checkout"],
        "log": graph.nodes["kernel.logger"],
    }
    assert dict(node.dep_ids) == {"db": "db", "checkout": "checkout", "log": "kernel.logger"}
    assert graph.nodes["checkout"].deps["placed"] is graph.nodes["placed"]
    assert graph.nodes["db"].deps == {}


def test_a_missing_dependency_names_dependent_missing_and_keyword() -> None:
    db = res("db")
    app = App("shop", register=[res("server", deps={"database": db})])
    with pytest.raises(MissingDependencyError) as info:
        build_graph(app)
    assert str(info.value) == (
        "'server' depends on 'db' (as database=), which is not registered; register it, "
        "or use kernel.optional(...) to receive None when it is absent"
    )
    assert (info.value.dependent, info.value.missing, info.value.keyword) == (
        "server",
        "db",
        "database",
    )


def test_missing_dependencies_of_tasks_hooks_and_apps_are_errors_too() -> None:
    ghost = res("ghost")
    for dependent in (
        tsk("t", deps={"g": ghost}),
        hk("h", on="*", deps={"g": ghost}),
        App("inner", deps={"g": ghost}),
    ):
        with pytest.raises(MissingDependencyError) as info:
            build_graph(App("shop", register=[dependent]))
        assert (info.value.dependent, info.value.missing) == (dependent.id, "ghost")


def test_an_optional_dependency_resolves_to_none_when_missing() -> None:
    cache = res("cache")
    audit = kernel.event("audit")
    server = res("server", deps={"cache": kernel.optional(cache), "audit": kernel.optional(audit)})
    graph = build_graph(App("shop", register=[server]))
    assert dict(graph.nodes["server"].deps) == {"cache": None, "audit": None}
    assert dict(graph.nodes["server"].dep_ids) == {"cache": "cache", "audit": "audit"}


def test_an_optional_dependency_resolves_to_the_node_when_registered() -> None:
    cache = res("cache")
    server = res("server", deps={"cache": kernel.optional(cache)})
    graph = build_graph(App("shop", register=[server, cache]))
    assert graph.nodes["server"].deps["cache"] is graph.nodes["cache"]
    assert ids(graph.resources())[-2:] == ["cache", "server"]


def test_a_deps_callable_is_called_once_and_allows_forward_references() -> None:
    calls: list[str] = []
    refs: dict[str, Resource] = {}

    def deps() -> dict[str, Resource]:
        calls.append("called")
        return {"db": refs["db"]}

    server = res("server", deps=deps)
    refs["db"] = res("db")
    graph = build_graph(App("shop", register=[server, refs["db"]]))
    assert calls == ["called"]
    assert graph.nodes["server"].deps["db"] is graph.nodes["db"]


def test_a_deps_callable_that_raises_names_the_dependent() -> None:
    def deps() -> dict[str, Any]:
        raise NameError("db")

    with pytest.raises(DefinitionError) as info:
        build_graph(App("shop", register=[tsk("checkout", deps=deps)]))
    assert str(info.value) == "task 'checkout': its deps callable raised NameError('db')"
    assert isinstance(info.value.__cause__, NameError)


@pytest.mark.parametrize(
    ("produced", "message"),
    [
        (
            [1],
            "resource 'server': its deps callable must return a dict {keyword: definition}, "
            "got [1]",
        ),
        ({"not valid": 1}, "resource 'server': deps keys must be identifiers, got 'not valid'"),
    ],
)
def test_a_deps_callable_returning_a_bad_shape_names_the_dependent(
    produced: object, message: str
) -> None:
    app = App("shop", register=[res("server", deps=lambda: produced)])
    with pytest.raises(DefinitionError) as info:
        build_graph(app)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "value", [kernel.tag("t"), 42, "db", hk("h", on="*")], ids=["tag", "int", "str", "hook"]
)
def test_a_deps_value_that_is_not_a_definition_names_dependent_and_keyword(
    value: object,
) -> None:
    app = App("shop", register=[res("server", deps=lambda: {"thing": value})])
    with pytest.raises(DefinitionError) as info:
        build_graph(app)
    assert str(info.value) == (
        "resource 'server': deps['thing'] must be a resource, task, event, App or "
        f"kernel.optional(...), got {value!r}"
    )


def test_a_dependency_registered_as_another_kind_is_an_error() -> None:
    fake_db = tsk("db")
    app = App("shop", register=[res("db"), res("server", deps={"db": fake_db})])
    with pytest.raises(GraphError) as info:
        build_graph(app)
    assert str(info.value) == (
        "'server' refers to 'db' (as db=) as a task, but it is registered as a resource in "
        "app 'shop'"
    )


def test_apps_depend_and_are_depended_on() -> None:
    db = res("db")
    billing = App("billing", register=[db], deps={"db": db})
    server = res("server", deps={"billing": billing})
    graph = build_graph(App("shop", register=[server, billing]))
    assert graph.nodes["server"].deps["billing"] is graph.nodes["billing"]
    assert graph.nodes["billing"].deps["db"] is graph.nodes["db"]
    assert ids(graph.resources()) == ["kernel.logger", "shop", "db", "billing", "server"]


# --- cycles -------------------------------------------------------------------------------


def cyclic(order: list[str], edges: dict[str, list[str]]) -> list[object]:
    """Resources (and tasks for ids starting with t) registered in ``order``."""
    made: dict[str, Any] = {}

    def deps_of(id: str) -> Callable[[], dict[str, Any]]:
        return lambda: {f"d{n}": made[target] for n, target in enumerate(edges.get(id, []))}

    for id in order:
        make = tsk if id.startswith("t") else res
        made[id] = make(id, deps=deps_of(id))
    return [made[id] for id in order]


def test_a_cycle_is_reported_with_its_path() -> None:
    app = App("shop", register=cyclic(["a", "b", "c"], {"a": ["b"], "b": ["c"], "c": ["a"]}))
    with pytest.raises(CircularDependencyError) as info:
        build_graph(app)
    assert str(info.value) == "circular dependency: a -> b -> c -> a"
    assert info.value.cycle == ["a", "b", "c", "a"]


def test_a_cycle_starts_at_its_earliest_registered_member() -> None:
    # The DFS enters at x, walks x -> b -> c -> a -> b; the cycle is b, c, a; c came first.
    edges = {"x": ["b"], "b": ["c"], "c": ["a"], "a": ["b"]}
    app = App("shop", register=cyclic(["x", "c", "a", "b"], edges))
    with pytest.raises(CircularDependencyError) as info:
        build_graph(app)
    assert info.value.cycle == ["c", "a", "b", "c"]


def test_a_self_dependency_is_a_cycle() -> None:
    app = App("shop", register=cyclic(["a"], {"a": ["a"]}))
    with pytest.raises(CircularDependencyError, match=r"^circular dependency: a -> a$"):
        build_graph(app)


def test_cycles_through_tasks_and_apps_count() -> None:
    app = App("shop", register=cyclic(["r", "t1"], {"r": ["t1"], "t1": ["r"]}))
    with pytest.raises(CircularDependencyError, match=r"^circular dependency: r -> t1 -> r$"):
        build_graph(app)
    refs: dict[str, Any] = {}
    inner = App("inner", deps=lambda: {"r": refs["r"]})
    refs["r"] = res("r", deps={"inner": inner})
    with pytest.raises(CircularDependencyError, match=r"^circular dependency: inner -> r -> "):
        build_graph(App("shop", register=[inner, refs["r"]]))


def test_the_first_cycle_found_in_registration_order_is_reported() -> None:
    edges = {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]}
    app = App("shop", register=cyclic(["c", "d", "a", "b"], edges))
    with pytest.raises(CircularDependencyError) as info:
        build_graph(app)
    assert info.value.cycle == ["c", "d", "c"]


def test_diamonds_and_event_dependencies_are_not_cycles() -> None:
    edges = {"a": ["b", "c"], "b": ["d"], "c": ["d"]}
    placed = kernel.event("placed")
    items = cyclic(["a", "b", "c", "d"], edges)
    emitter = res("emitter", deps={"placed": placed})
    graph = build_graph(App("shop", register=[*items, placed, emitter, hk("h", on=placed)]))
    assert ids(graph.resources()) == ["kernel.logger", "shop", "d", "b", "c", "a", "emitter"]


# --- overrides ----------------------------------------------------------------------------


def test_an_override_replaces_the_registered_definition_everywhere() -> None:
    db = res("db")
    fake = res("fake_db")
    server = res("server", deps={"db": db})
    app = App("shop", register=[db, server], overrides=[kernel.override(db, fake)])
    graph = build_graph(app)
    node = graph.nodes["db"]
    assert node.definition.id == "db"
    assert fn_of(node) is fake.fn
    assert node.place == "app 'shop' (overridden in app 'shop')"
    assert graph.nodes["server"].deps["db"] is node


def test_overrides_from_nested_apps_apply_and_the_outermost_wins() -> None:
    db = res("db")
    inner_fake, outer_fake = res("inner_fake"), res("outer_fake")
    billing = App("billing", register=[db], overrides=[kernel.override(db, inner_fake)])
    graph = build_graph(App("shop", register=[billing]))
    assert fn_of(graph.nodes["db"]) is inner_fake.fn
    assert graph.nodes["db"].place == (
        "app 'shop' > app 'billing' (overridden in app 'shop' > app 'billing')"
    )
    test_app = App("test", register=[App("shop", register=[billing])],
                   overrides=[kernel.override(db, outer_fake)])  # fmt: skip
    graph = build_graph(test_app)
    assert fn_of(graph.nodes["db"]) is outer_fake.fn
    assert graph.nodes["db"].place.endswith("(overridden in app 'test')")


def test_an_override_of_an_unregistered_id_is_an_error() -> None:
    db = res("db")
    app = App("shop", register=[App("inner", overrides=[kernel.override(db, res("x"))])])
    with pytest.raises(GraphError, match=r"^app 'shop' > app 'inner' overrides 'db', which is not"):
        build_graph(app)


def test_two_overrides_of_one_id_at_the_same_depth_conflict() -> None:
    db = res("db")
    app = App(
        "shop",
        register=[db],
        overrides=[kernel.override(db, res("a")), kernel.override(db, res("b"))],
    )
    with pytest.raises(GraphError) as info:
        build_graph(app)
    assert str(info.value) == (
        "conflicting overrides of 'db': in app 'shop' and in app 'shop'; "
        "override it once, or in an outer App"
    )

    # Siblings conflicting deeper down are fine once an App nearer the root decides.
    left = App("left", overrides=[kernel.override(db, res("l"))])
    right = App("right", overrides=[kernel.override(db, res("r"))])
    with pytest.raises(GraphError, match="in app 'shop' > app 'left' and in app 'shop' > app"):
        build_graph(App("shop", register=[db, left, right]))
    decider = res("decider")
    app = App("shop", register=[db, left, right], overrides=[kernel.override(db, decider)])
    assert fn_of(build_graph(app).nodes["db"]) is decider.fn


def test_an_override_must_match_the_kind_registered_under_the_id() -> None:
    lookalike = tsk("db")
    app = App("shop", register=[res("db")], overrides=[kernel.override(lookalike, tsk("fake"))])
    with pytest.raises(GraphError) as info:
        build_graph(app)
    assert str(info.value) == (
        "app 'shop' overrides 'db' with a task, but 'db' is a resource (registered in app 'shop')"
    )


@attrs.frozen
class DbConfig:
    url: str
    pool: int = 5


def test_an_override_does_not_keep_the_configuration() -> None:
    db = res("db", config=DbConfig)
    app = App(
        "shop",
        register=[db.with_config({"url": "postgres://"})],
        overrides=[kernel.override(db, res("fake", config=DbConfig))],
    )
    with pytest.raises(ConfigError, match=r"^resource 'db': config: required; register db\."):
        build_graph(app)
    fake = res("fake", config=DbConfig).with_config({"url": "sqlite://"})
    app = App("shop", register=app.register, overrides=[kernel.override(db, fake)])
    assert build_graph(app).nodes["db"].config == DbConfig("sqlite://")


def test_builtins_can_be_overridden() -> None:
    silent = res("silent")
    graph = build_graph(App("t", overrides=[kernel.override(kernel.logger, silent)]))
    assert fn_of(graph.nodes["kernel.logger"]) is silent.fn
    assert graph.nodes["kernel.logger"].place == "kernel (overridden in app 't')"


def test_overridden_hooks_are_checked_against_events() -> None:
    placed = kernel.event("placed")
    original = hk("h", on=placed)
    replacement = hk("h2", on=kernel.event("ghost"))
    app = App(
        "shop", register=[placed, original], overrides=[kernel.override(original, replacement)]
    )
    with pytest.raises(UnknownEventError, match="'h' listens to event 'ghost'"):
        build_graph(app)


# --- forks, tags, config ------------------------------------------------------------------


def test_forks_are_independent_nodes_with_their_own_config() -> None:
    db = res("db", config=DbConfig)
    primary = db.fork("db.primary").with_config({"url": "pg://primary"})
    replica = db.fork("db.replica").with_config({"url": "pg://replica", "pool": 2})
    reader = res("reader", deps={"primary": primary, "replica": db.fork("db.replica")})
    graph = build_graph(App("shop", register=[primary, replica, reader]))
    assert graph.nodes["db.primary"].config == DbConfig("pg://primary")
    assert graph.nodes["db.replica"].config == DbConfig("pg://replica", 2)
    assert fn_of(graph.nodes["db.primary"]) is fn_of(graph.nodes["db.replica"])
    deps = graph.nodes["reader"].deps
    assert deps["replica"] is graph.nodes["db.replica"]
    assert deps["replica"].definition is replica  # the registered, configured copy


def test_find_lists_nodes_carrying_a_tag_with_its_config() -> None:
    @attrs.frozen
    class Route:
        path: str

    public = kernel.tag("public")
    http = kernel.tag("http", config=Route)
    a = res("a", tags=[public])
    b = tsk("b", tags=[http.with_config({"path": "/b"}), public])
    c = tsk("c", tags=[kernel.tag("http", config=Route).with_config({"path": "/c"})])
    graph = build_graph(App("shop", register=[a, b, c, res("d")]))
    assert [(n.id, cfg) for n, cfg in graph.find(public)] == [("a", None), ("b", None)]
    assert [(n.id, cfg) for n, cfg in graph.find(http)] == [("b", Route("/b")), ("c", Route("/c"))]
    assert graph.find(kernel.tag("nobody")) == []
    with pytest.raises(TypeError, match=r"^Graph.find: expected a kernel.tag\(\.\.\.\), got 'x'$"):
        graph.find("x")  # type: ignore[arg-type]


def test_config_is_structured_from_a_dict() -> None:
    db = res("db", config=DbConfig)
    graph = build_graph(App("shop", register=[db.with_config({"url": "pg://"})]))
    assert graph.nodes["db"].config == DbConfig("pg://", 5)
    instance = DbConfig("x")
    graph = build_graph(App("shop", register=[db.with_config(instance)]))
    assert graph.nodes["db"].config is instance
    assert graph.nodes["kernel.logger"].config is None
    assert graph.root.config is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"url": "x", "pool": "many"}, "config.pool: expected int, got str"),
        ({"pool": 1}, "config.url: required field missing"),
        (7, "config: expected a mapping of DbConfig's fields, got int"),
    ],
)
def test_config_errors_name_the_resource_and_the_field_path(value: object, problem: str) -> None:
    db = res("db", config=DbConfig)
    with pytest.raises(ConfigError) as info:
        build_graph(App("shop", register=[db.with_config(value)]))
    assert str(info.value) == f"resource 'db': {problem}"
    assert info.value.owner == "resource 'db'"


def test_config_defaults_apply_when_nothing_is_registered() -> None:
    @attrs.frozen
    class Defaults:
        retries: int = 3

    @attrs.frozen
    class Checked:
        level: int = attrs.field(default=-1, validator=attrs.validators.ge(0))

    graph = build_graph(App("shop", register=[res("r", config=Defaults)]))
    assert graph.nodes["r"].config == Defaults(3)
    assert graph.nodes["r"].definition.config is UNSET  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as info:
        build_graph(App("shop", register=[res("r", config=Checked)]))
    assert str(info.value) == "resource 'r': config: required; register r.with_config(...)"


# --- queries ------------------------------------------------------------------------------


def test_resources_come_in_init_order_through_tasks_and_registration() -> None:
    db = res("db")
    lookup = tsk("lookup", deps={"db": db})
    cache = res("cache", deps={"lookup": lookup})
    metrics = res("metrics")
    graph = build_graph(App("shop", register=[cache, lookup, metrics, db]))
    assert ids(graph.resources()) == ["kernel.logger", "shop", "metrics", "db", "cache"]
    assert ids(graph.init_levels()[0]) == ["kernel.logger", "shop", "metrics", "db"]
    assert [ids(level) for level in graph.init_levels()[1:]] == [["cache"]]
    assert ids(graph.tasks()) == ["lookup"]
    assert ids(graph.events()) == BUILTIN_IDS[1:]
    assert graph.hooks() == []


def test_init_levels_group_independent_resources() -> None:
    edges = {"c": ["a"], "d": ["b", "c"], "e": ["t1"], "t1": ["t2"], "t2": ["d"]}
    graph = build_graph(App("shop", register=cyclic(["a", "b", "c", "d", "t1", "t2", "e"], edges)))
    assert [ids(level) for level in graph.init_levels()] == [
        ["kernel.logger", "shop", "a", "b"],
        ["c"],
        ["d"],
        ["e"],
    ]
    # Mutating the returned lists does not change the graph.
    graph.resources().clear()
    graph.init_levels()[0].clear()
    assert len(graph.resources()) == 7
    assert len(graph.init_levels()[0]) == 4


def test_node_looks_up_by_id_or_definition() -> None:
    db = res("db", config=DbConfig)
    configured = db.with_config({"url": "x"})
    graph = build_graph(App("shop", register=[configured]))
    assert graph.node("db") is graph.nodes["db"]
    assert graph.node(db) is graph.nodes["db"]  # by id: the unconfigured original works too
    assert graph.node(configured).definition is configured
    with pytest.raises(KeyError, match="'ghost' is not registered in app 'shop'"):
        graph.node("ghost")
    with pytest.raises(KeyError, match="'ghost' is not registered in app 'shop'"):
        graph.node(res("ghost"))
    with pytest.raises(KeyError, match="expected a definition or an id, got 3"):
        graph.node(3)


def test_reprs_are_short() -> None:
    graph = build_graph(App("shop", register=[res("db")]))
    assert repr(graph.nodes["db"]) == "<Node resource 'db'>"
    assert repr(graph) == "<Graph of app 'shop': 6 nodes>"


def test_nodes_and_their_deps_are_read_only() -> None:
    db = res("db")
    graph = build_graph(App("shop", register=[db, res("s", deps={"db": db})]))
    with pytest.raises(TypeError):
        graph.nodes["x"] = graph.root  # type: ignore[index]
    with pytest.raises(TypeError):
        graph.nodes["s"].deps["db"] = None  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        graph.nodes["s"].id = "t"  # type: ignore[misc]


# --- render -------------------------------------------------------------------------------


def shop() -> App:
    db = res("db", config=DbConfig)
    placed = kernel.event("order.placed")
    checkout = tsk(
        "checkout",
        deps={"db": db, "placed": placed},
        middleware=[kernel_passthrough(), kernel_passthrough()],
    )
    server = res(
        "server",
        deps={"checkout": checkout, "log": kernel.logger, "cache": kernel.optional(res("cache"))},
    )
    notify = hk("notify", on=placed, order=5, deps={"db": db})
    audit = hk("audit", on="*")
    return App(
        "shop",
        register=[server, checkout, db.with_config({"url": "pg://"}), placed, notify, audit],
    )


def kernel_passthrough() -> Any:
    async def passthrough(call: Any, next: Any) -> Any:
        return await next(call)

    return passthrough


SHOP_TEXT = """\
app 'shop' (resources: 3, apps: 1, tasks: 1, events: 4, hooks: 2)

resources and apps, in init order:
  kernel.logger  [kernel]
  shop  [root] (app)
  db  [app 'shop']  config: DbConfig
  server  [app 'shop']
      checkout -> checkout (task)
      log -> kernel.logger (resource)
      cache -> None (optional 'cache' is not registered)

tasks:
  checkout  [app 'shop']  middleware: 2
      db -> db (resource)
      placed -> order.placed (event)

events, with their hooks in run order:
  kernel.ready  [kernel]
      audit (order 0, every event)
  kernel.disposing  [kernel]
      audit (order 0, every event)
  kernel.disposed  [kernel]
      audit (order 0, every event)
  order.placed  [app 'shop']
      audit (order 0, every event)
      notify (order 5)

hooks:
  notify  [app 'shop']  on: order.placed
      db -> db (resource)
  audit  [app 'shop']  on: *"""


def test_render_text_lists_resources_tasks_events_and_hooks() -> None:
    graph = build_graph(shop())
    assert graph.render() == SHOP_TEXT
    assert graph.render("text") == SHOP_TEXT


SHOP_MERMAID = """\
graph TD
  %% shapes: resource rectangle, app subroutine, task stadium, event hexagon, hook flag
  n0["kernel.logger"]
  n1{{"kernel.ready"}}
  n2{{"kernel.disposing"}}
  n3{{"kernel.disposed"}}
  n4[["shop"]]
  n5["server"]
  n6(["checkout"])
  n7["db"]
  n8{{"order.placed"}}
  n9>"notify"]
  n10>"audit"]
  any_event{{"* (every event)"}}
  n5 --> n6
  n5 --> n0
  n6 --> n7
  n6 --> n8
  n9 --> n7
  n8 -.-> n9
  any_event -.-> n10"""


def test_render_mermaid_draws_nodes_by_kind_and_edges_to_dependencies() -> None:
    assert build_graph(shop()).render("mermaid") == SHOP_MERMAID


def test_render_mermaid_without_wildcard_hooks_has_no_any_event_node() -> None:
    placed = kernel.event("placed")
    out = build_graph(App("a", register=[placed, hk("h", on=placed)])).render("mermaid")
    assert "any_event" not in out
    assert out.endswith('\n  n5{{"placed"}}\n  n6>"h"]\n  n5 -.-> n6')


def test_render_mermaid_escapes_labels() -> None:
    # Ids from the decorators are safe; a hand-built definition may hold anything.
    weird = Event('odd"id#<b>', None)
    out = build_graph(App("a", register=[weird])).render("mermaid")
    assert '  n5{{"odd#quot;id#35;#lt;b#gt;"}}' in out.splitlines()


def test_render_an_unknown_format_lists_the_formats() -> None:
    graph = build_graph(App("a"))
    with pytest.raises(ValueError, match=r"^Graph.render: format must be one of 'text', "
                       r"'mermaid', got 'dot'$"):  # fmt: skip
        graph.render("dot")
