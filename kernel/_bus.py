"""The event bus: runs the hooks listening to an emitted event, in order.

The runtime builds one `EventBus` at boot from the registered events and the hooks (each
bound to its resolved deps as a `HookBinding`). Everything an emission needs is computed
then: for each event id, the tuple of hooks to run (its listeners and the ``"*"`` hooks,
sorted by ``order``, ties broken by registration). An emission is a dict lookup, a context
variable push and a loop.

Nested emissions (a hook emitting an event) are tracked in a context variable holding the
chain of event ids being handled; past ``max_depth`` the bus raises `EmissionCycleError`
instead of recursing forever. trio copies context variables into child tasks, so an emit
from a task that a hook spawned counts as nested in that hook's emission.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Final, Literal, TypeAlias

import attrs

from kernel._definitions import Event
from kernel._errors import EmissionCycleError, UnknownEventError
from kernel._structure import structure

__all__ = ["Delivery", "Emission", "EmitReport", "EventBus", "HookBinding", "Relay"]

FailureMode = Literal["fail_fast", "aggregate"]

_FAILURE_MODES: Final = ("fail_fast", "aggregate")

_new: Final = object.__new__

#: Ids of the events being handled in this context, outermost first. Shared by every bus,
#: so hooks of one app emitting into another still count towards the depth limit.
_chain: ContextVar[tuple[str, ...]] = ContextVar("kernel_emission_chain", default=())


@attrs.frozen
class Delivery:
    """How an event lane delivered an emission (`Emission.delivery`; ``None`` for a local
    emit): the stream entry's ``message_id``, the same for every attempt, and ``attempt``
    (1 for the first delivery), so that a hook can stay idempotent."""

    message_id: str
    attempt: int


#: What an event lane puts in the place of an event's hooks: ``relay(event, payload,
#: source)`` sends the validated payload on (see `EventBus.relay`).
Relay: TypeAlias = Callable[[Event, Any, "str | None"], Awaitable[None]]


@attrs.define(eq=False)
class Emission:
    """One emission of an event, as hooks receive it.

    ``payload`` is the validated payload (an instance of the event's payload type when it
    declares one), ``source`` the id of whoever emitted (``None`` when not given). A hook
    calling `stop_propagation` prevents every later hook from running. ``delivery`` says
    which lane message this is (`Delivery`), ``None`` for a local emit.
    """

    event: Event
    payload: Any
    source: str | None
    propagation_stopped: bool = attrs.field(default=False, init=False)
    delivery: Delivery | None = attrs.field(default=None, kw_only=True)

    def stop_propagation(self) -> None:
        """Run no further hook for this emission (the current one finishes normally)."""
        self.propagation_stopped = True


@attrs.frozen
class EmitReport:
    """What one emission did: hooks that ran (in order, failed ones included), the
    failures, and the hook that stopped propagation (``None`` when none did)."""

    event_id: str
    ran: tuple[str, ...]
    failed: tuple[tuple[str, Exception], ...]
    stopped_by: str | None


@attrs.frozen
class HookBinding:
    """A hook ready to run: ``call(emission)`` runs its body with its deps already bound.

    ``listens`` holds the ids of its events, ``None`` for a wildcard (``"*"``) hook.
    ``index`` is the registration index, which breaks ties between equal ``order``.
    """

    id: str
    order: int
    index: int
    listens: frozenset[str] | None
    call: Callable[[Emission], Awaitable[Any]]


#: Per event id, precomputed: the registered event, its payload type, ``(event_id,)`` (to
#: extend the chain), the hooks' calls and the hooks themselves, in running order.
_Route: TypeAlias = tuple[
    Event,
    "type[Any] | None",
    tuple[str],
    tuple[Callable[[Emission], Awaitable[Any]], ...],
    tuple[HookBinding, ...],
]


@attrs.define(eq=False, init=False)
class EventBus:
    """Runs hooks for emitted events; see the module docstring.

    Raises `UnknownEventError` at construction when a hook listens to an event that is not
    in ``events``. ``max_depth`` (>= 1) bounds the nesting of emissions: that many nested
    emissions run, one more raises `EmissionCycleError`.
    """

    _routes: dict[str, _Route]
    _max_depth: int
    _relays: dict[str, Relay]

    def __init__(
        self, events: Iterable[Event], hooks: Iterable[HookBinding], *, max_depth: int = 32
    ) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int):
            raise TypeError(f"EventBus: max_depth must be an int, got {max_depth!r}")
        if max_depth < 1:
            raise ValueError(f"EventBus: max_depth must be >= 1, got {max_depth!r}")
        registered: dict[str, Event] = {}
        for event in events:
            known = registered.setdefault(event.id, event)
            if known is not event:
                raise ValueError(f"EventBus: two different events share the id {event.id!r}")
        bindings = sorted(hooks, key=lambda binding: (binding.order, binding.index))
        for binding in bindings:
            for event_id in sorted(binding.listens or ()):
                if event_id not in registered:
                    raise UnknownEventError(binding.id, event_id)
        self._routes = {}
        for event_id, event in registered.items():
            listeners = tuple(b for b in bindings if b.listens is None or event_id in b.listens)
            calls = tuple(binding.call for binding in listeners)
            self._routes[event_id] = (event, event.payload, (event_id,), calls, listeners)
        self._max_depth = max_depth
        self._relays = {}

    def relay(self, event_id: str, relay: Relay | None) -> None:
        """From now on an emission of ``event_id`` validates its payload and awaits
        ``relay(event, payload, source)`` instead of running the hooks (an event lane
        sends it to other processes, which deliver it); ``None`` runs the hooks again.
        Raises `UnknownEventError` when the event is not registered, `ValueError` when
        another relay has it already."""
        if event_id not in self._routes:
            raise _not_registered(event_id, "an event lane")
        if relay is None:
            self._relays.pop(event_id, None)
        elif self._relays.setdefault(event_id, relay) is not relay:
            raise ValueError(f"EventBus: event {event_id!r} is relayed already")

    def rebind(self, calls: Mapping[str, Callable[[Emission], Awaitable[Any]]]) -> None:
        """Replace the calls of the hooks named in ``calls`` (by hook id), keeping order.

        The runtime binds hooks lazily while resources start, then rebinds them here to
        direct calls once every dependency is up.
        """
        for event_id, (event, payload_type, link, _, bindings) in self._routes.items():
            rebound = tuple(
                attrs.evolve(b, call=calls[b.id]) if b.id in calls else b for b in bindings
            )
            calls_now = tuple(binding.call for binding in rebound)
            self._routes[event_id] = (event, payload_type, link, calls_now, rebound)

    async def emit(
        self,
        event: Event,
        payload: Any = None,
        *,
        source: str | None = None,
        failure_mode: FailureMode = "fail_fast",
        report: bool = False,
        delivery: Delivery | None = None,
    ) -> EmitReport | None:
        """Run the hooks of ``event`` one after the other, in order.

        ``payload`` is checked against the event's payload type when it declares one (an
        instance passes, a dict is structured into it; anything else raises `ConfigError`
        naming the field paths); without a type it is passed through unchanged. The hooks
        receive the emission registered under ``event.id``, so an overriding event's payload
        type applies.

        ``failure_mode="fail_fast"`` re-raises the first hook exception unchanged; later
        hooks do not run. ``"aggregate"`` runs every hook, then raises an `ExceptionGroup` of
        the failures -- or, with ``report=True``, returns them in the `EmitReport` instead.
        With ``report=True`` the report is returned; otherwise ``None``.

        Raises `UnknownEventError` when the event is not registered, `EmissionCycleError`
        (before any hook runs) when emissions are nested deeper than ``max_depth``.

        A relayed event (`relay`) runs no hook here: once its payload is valid, the relay
        sends it on, and the report (with ``report=True``) lists no hook. ``delivery``: a
        relay's message arriving, whose hooks run here (with ``emission.delivery`` set).

        Not a checkpoint itself: it checkpoints only where the hooks (or a relay) do (so
        with no hook it never does). Cancellation and every other non-`Exception` raised by a hook
        propagate at once, never collected, and stop the emission.
        """
        try:
            registered, payload_type, link, calls, bindings = self._routes[event.id]
        except KeyError:
            raise _not_registered(event.id, source) from None
        reporting = report or failure_mode != "fail_fast"
        if reporting and failure_mode not in _FAILURE_MODES:
            raise ValueError(
                f"EventBus.emit: failure_mode must be one of {_FAILURE_MODES}, got {failure_mode!r}"
            )
        if payload_type is not None:
            payload = structure(
                payload, payload_type, owner=f"event {registered.id!r}", path="payload"
            )
        if self._relays and delivery is None and registered.id in self._relays:
            await self._relays[registered.id](registered, payload, source)
            calls = ()
        if not calls:
            return EmitReport(registered.id, (), (), None) if report else None
        chain = _chain.get()
        if len(chain) >= self._max_depth:
            raise EmissionCycleError(chain + link, self._max_depth)
        token = _chain.set(chain + link)
        try:
            # Emission(registered, payload, source) without the __init__ call (~100 ns here).
            emission = _new(Emission)
            emission.event = registered
            emission.payload = payload
            emission.source = source
            emission.propagation_stopped = False
            emission.delivery = delivery
            if reporting:
                return await _run_reporting(emission, bindings, failure_mode, report)
            for call in calls:
                await call(emission)
                if emission.propagation_stopped:
                    break
            return None
        finally:
            _chain.reset(token)


def _not_registered(event_id: str, source: str | None) -> UnknownEventError:
    by = f" (emitted by {source!r})" if source is not None else ""
    return UnknownEventError(
        source or "emit", event_id, f"event {event_id!r} is not registered in this app{by}"
    )


async def _run_reporting(
    emission: Emission,
    bindings: tuple[HookBinding, ...],
    failure_mode: FailureMode,
    report: bool,
) -> EmitReport | None:
    """The slower loop: records who ran and, in aggregate mode, collects failures."""
    ran: list[str] = []
    failed: list[tuple[str, Exception]] = []
    stopped_by: str | None = None
    for binding in bindings:
        ran.append(binding.id)
        try:
            await binding.call(emission)
        except Exception as exc:
            if failure_mode == "fail_fast":
                raise
            failed.append((binding.id, exc))
        if emission.propagation_stopped:
            stopped_by = binding.id
            break
    event_id = emission.event.id
    if failed and not report:
        raise ExceptionGroup(
            f"{len(failed)} hook(s) failed on event {event_id!r}", [exc for _, exc in failed]
        )
    if not report:
        return None
    return EmitReport(event_id, tuple(ran), tuple(failed), stopped_by)
