"""The engine seam: the one class that relies on SimPy's internals.

SimPy's public way to wake something at time t allocates an event (``env.timeout``) and goes
through ``Environment.schedule``: a call and an object per packet-hop. The simulator's busiest
objects (the egress ports, the wires of the transport model, the ideal NIC) instead *are* their own
SimPy event and push themselves onto SimPy's heap exactly as ``Environment.schedule`` would, so a
packet-hop costs one heap entry and nothing else. What that takes from SimPy is stated once, in
:class:`HeapEvent`, and checked against the installed SimPy by ``tests/test_engine.py``.

The run loop, :func:`step_events`, is ``Environment.step`` inlined: the same pop, the same
callbacks, the same failure check, without a call per event (about a tenth of a packet run's time
went to that call).

Everything else uses SimPy's public API (``env.timeout``, ``env.now``).
"""

from __future__ import annotations

from heapq import heappop, heappush
from itertools import count
from typing import Callable

import simpy
from simpy.core import NORMAL

__all__ = ["NORMAL", "HeapEvent", "step_events"]

Callbacks = tuple[Callable[["HeapEvent"], None], ...]


class HeapEvent:
    """An object that is its own SimPy event, scheduled again and again without allocation.

    The SimPy 4 contract this relies on (``tests/test_engine.py`` fails, naming the part, if the
    installed SimPy breaks it):

    - ``env._queue`` is the event heap, one list for the environment's life: entries
      ``(time, priority, eid, event)`` ordered by :mod:`heapq`, so events at one time and priority
      fire in eid order; ``env._eid`` is the iterator (``itertools.count``) SimPy draws eids from;
    - ``Environment.step`` pops the smallest entry, sets ``env._now`` to its time, takes
      ``event.callbacks`` and sets it to None, calls each callback with the event, and then raises
      if ``not event._ok`` and the event has no ``_defused`` attribute;
    - ``env._now`` is the current time (what ``env.now`` returns).

    So a subclass sets ``callbacks`` (a tuple of callables, each taking the event) and pushes
    ``(t, NORMAL, next(self.eid), self)`` onto ``self.heap``, which is what
    ``Environment.schedule`` does, at the priority SimPy's timeouts use (so ties with them go in
    scheduling order too). ``_ok`` is always True: such an event never fails. The object must be in
    the heap at most once at a time (``callbacks`` is reset when it fires) and must set
    ``callbacks`` again before each push. The hot paths inline :meth:`schedule` (one push per
    packet-hop; the call would cost more than the push). Times are integer picoseconds.
    """

    __slots__ = ("env", "heap", "eid", "callbacks")

    _ok = True  # read by simpy.Environment.step after the callbacks

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.heap: list = env._queue
        """SimPy's event heap (the same list for the environment's life)."""
        self.eid: count = env._eid
        """SimPy's event-id counter: an entry's eid breaks ties at one time, in push order."""
        self.callbacks: Callbacks | None = None
        """What SimPy calls when this event fires; None once it has fired."""

    def now(self) -> int:
        """The current simulated time (ps)."""
        return self.env._now

    def schedule(self, t: int, callbacks: Callbacks) -> None:
        """Fire at time ``t`` (ps, at least now), calling each of ``callbacks`` with this object."""
        self.callbacks = callbacks
        heappush(self.heap, (t, NORMAL, next(self.eid), self))


def step_events(env: simpy.Environment, limit: int) -> int:
    """Process up to ``limit`` events, as ``limit`` calls of ``env.step()`` would; returns how many
    were processed (fewer only when the heap ran empty).

    Inlined on purpose (the simulator's outermost loop): ``Environment.step`` pops the earliest
    entry, sets the time, takes and clears the callbacks, calls each with the event, and raises if
    the event failed and nobody defused it (the contract :class:`HeapEvent` states). The packet
    backend never stops the simulation from a callback (``StopSimulation``), so that branch of
    ``step`` has no counterpart here."""
    heap = env._queue
    for n in range(limit):
        if not heap:
            return n
        env._now, _, _, event = heappop(heap)
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
    return limit
