"""The engine seam: the SimPy 4 contract that :class:`pktsim.packet.engine.HeapEvent` relies on,
checked against the installed SimPy. A failure here names the part of the contract that changed;
the ports, wires and ideal NIC (every packet-hop) depend on it."""

from __future__ import annotations

import pytest
import simpy

from pktsim.packet.engine import NORMAL, HeapEvent, step_events

SIMPY = f"SimPy {simpy.__version__}"


def contract(ok: bool, what: str) -> None:
    """Fail with a message naming the broken part of HeapEvent's SimPy contract."""
    if not ok:
        pytest.fail(f"{SIMPY} no longer {what}; pktsim.packet.engine.HeapEvent relies on it (see its docstring)",
                    pytrace=False)


class Probe(HeapEvent):
    """A HeapEvent that logs (now, label, callbacks seen while firing) each time it fires."""

    __slots__ = ("label", "log", "fired")

    def __init__(self, env: simpy.Environment, label: str, log: list) -> None:
        super().__init__(env)
        self.label = label
        self.log = log
        self.fired = (self._fire,)

    def at(self, t: int) -> None:
        self.schedule(t, self.fired)

    def _fire(self, event: HeapEvent) -> None:
        self.log.append((self.env.now, self.label, event is self, self.callbacks))


def run(env: simpy.Environment) -> None:
    while True:
        try:
            env.step()
        except simpy.core.EmptySchedule:
            return


def test_environment_has_the_heap_and_counter_heap_events_use() -> None:
    env = simpy.Environment()
    contract(isinstance(getattr(env, "_queue", None), list), "keeps its event heap as a list in env._queue")
    contract(hasattr(getattr(env, "_eid", None), "__next__"), "draws event ids from an iterator in env._eid")
    contract(getattr(env, "_now", None) == env.now == 0, "keeps the current time in env._now")
    probe = Probe(env, "p", [])
    contract(probe.heap is env._queue and probe.eid is env._eid, "exposes env._queue and env._eid")
    contract(NORMAL == simpy.events.NORMAL, "schedules timeouts at priority simpy.events.NORMAL")


def test_heap_events_and_timeouts_fire_in_time_order_ties_in_scheduling_order() -> None:
    env = simpy.Environment()
    log: list = []
    a, b, c = Probe(env, "a", log), Probe(env, "b", log), Probe(env, "c", log)
    a.at(5)
    env.timeout(3).callbacks.append(lambda e: log.append((env.now, "t3", None, None)))
    b.at(3)
    c.at(0)
    env.timeout(5).callbacks.append(lambda e: log.append((env.now, "t5", None, None)))
    run(env)
    order = [(t, label) for t, label, _, _ in log]
    contract(order == [(0, "c"), (3, "t3"), (3, "b"), (5, "a"), (5, "t5")],
             f"pops (time, priority, eid, event) entries in time then push order (got {order})")
    for t, label, is_self, callbacks in log:
        if is_self is not None:
            contract(is_self, "calls each callback with the event itself")
            contract(callbacks is None, "sets event.callbacks to None before calling the callbacks")
    contract(env.now == 5 and env._now == 5, "advances env._now (env.now) to the time of the event it pops")


def test_a_heap_event_can_be_scheduled_again_from_its_own_callback() -> None:
    env = simpy.Environment()
    log: list = []
    probe = Probe(env, "p", log)

    def again(event: HeapEvent) -> None:
        log.append(probe.now())
        if len(log) < 3:
            probe.schedule(probe.now() + 10, (again,))

    probe.schedule(7, (again,))
    queue = env._queue
    run(env)
    contract(log == [7, 17, 27], f"fires an event pushed again after it was popped (got {log})")
    contract(env._queue is queue, "keeps one heap list for the environment's life")


class Failed(Probe):
    """A heap event that has failed with ``RuntimeError("boom")``."""

    __slots__ = ("_value",)
    _ok = False


def failed_at(env: simpy.Environment, t: int) -> Failed:
    failed = Failed(env, "f", [])
    failed._value = RuntimeError("boom")
    failed.at(t)
    return failed


def test_step_reads_ok_and_raises_for_a_failed_event() -> None:
    """HeapEvent's ``_ok = True`` is what keeps step() from treating it as failed."""
    env = simpy.Environment()
    failed_at(env, 1)
    try:
        env.step()
        raised = None
    except RuntimeError as exc:
        raised = exc
    contract(raised is not None and str(raised) == "boom",
             "reads event._ok after the callbacks (an event with _ok False did not raise its _value)")
    ok = Probe(env, "ok", [])
    ok.at(2)
    env.step()
    contract(ok.log != [], "processes an event whose _ok is True without raising")


def _mixed_schedule(env: simpy.Environment, log: list) -> None:
    """Heap events and SimPy timeouts at shared times, one rescheduling itself."""
    a, b = Probe(env, "a", log), Probe(env, "b", log)
    a.at(5)
    b.at(3)
    env.timeout(3).callbacks.append(lambda e: log.append((env.now, "t3", None, None)))
    env.timeout(5).callbacks.append(lambda e: log.append((env.now, "t5", None, None)))

    def again(event: HeapEvent) -> None:
        log.append((env.now, "c", event is c, None))
        if env.now < 30:
            c.schedule(env.now + 5, (again,))

    c = Probe(env, "c", log)
    c.schedule(0, (again,))


def test_step_events_processes_what_step_would_in_the_same_order() -> None:
    """The backend's run loop (``step_events``, ``Environment.step`` inlined) against step()."""
    stepped, looped = [], []
    env1, env2 = simpy.Environment(), simpy.Environment()
    _mixed_schedule(env1, stepped)
    _mixed_schedule(env2, looped)
    run(env1)
    assert step_events(env2, 3) == 3 and len(looped) == 3 and env2.now == 3  # stops after the limit
    assert step_events(env2, 1000) == len(stepped) - 3  # fewer than the limit: the heap ran empty
    assert looped == stepped and env2.now == env1.now == 30
    assert step_events(env2, 10) == 0


def test_step_events_raises_for_a_failed_event_like_step() -> None:
    env = simpy.Environment()
    failed = failed_at(env, 1)
    with pytest.raises(RuntimeError, match="boom") as info:
        step_events(env, 10)
    assert info.value.__cause__ is failed._value  # a copy, chained to the event's own, as step() raises
