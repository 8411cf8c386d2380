"""Load balancing: how a (sub)flow's packets get their entropy, and how a switch picks a next hop.

One mechanism: every packet carries a 5-tuple hash ``key`` that includes an
entropy value chosen by the sending NIC; a switch picks among its equal-cost next hops with a
per-switch salted hash of that key. The schemes differ only in their parameters:

=============  ==========================  =====================  ==================
scheme         subflows per message        entropy                switch choice
=============  ==========================  =====================  ==================
ecmp           1                           fixed per connection   salted hash
split          ``lb.subflows``             fixed per subflow      salted hash
spray          1                           new per packet         salted hash
spray_switch   1                           fixed per connection   uniform random
adaptive       1                           fixed per connection   least backlog
flowlet        1                           fixed per connection   random per flowlet
reps           1                           recycled per packet    salted hash
=============  ==========================  =====================  ==================

``reps`` (Recycled Entropy Packet Spraying) sprays like ``spray``, but the NIC reuses the
entropies its ACKs echo back unmarked and draws fresh ones only when it has none
(:mod:`pktsim.packet.reps`, named by :attr:`LoadBalancing.entropy_source`); it needs the reliable
transport (ACKs).

``adaptive`` and ``flowlet`` are switch-local (:class:`AdaptiveSelect`, :class:`FlowletSelect`):
the switch, not the NIC, decides, from state only it has (its egress backlogs, when it last saw
the flow).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from pktsim.fabric.hashing import salted_hash, stable_hash, switch_salt
from pktsim.registry import Registry
from pktsim.units import ns_to_ps

if TYPE_CHECKING:
    from pktsim.scenario import LbSpec

Selector = Callable[[object, Sequence], object]
"""A switch's next-hop policy: ``select(pkt, group)`` returns one port of the equal-cost group."""
SelectorFactory = Callable[[int, str], Selector]
"""Builds a switch's selector from the scenario seed and the switch's name."""


@dataclass(frozen=True, slots=True)
class LoadBalancing:
    """What a scheme asks of NICs, switches and the flow planner."""

    subflows: int = 1
    """Subflows each message is cut into, each on its own connection and entropy."""
    entropy_per_packet: bool = False
    """The NIC draws a new entropy for every packet (spraying)."""
    selector: SelectorFactory | None = None
    """The switches' next-hop policy; None: the salted hash, memoised per key by the switch, which
    is right when keys are fixed per connection."""
    spreads: bool = False
    """A flow's packets spread evenly (on average) over every equal-cost path."""
    queue_aware: bool = False
    """Switches choose from their queues' state (no flow-level model can follow them)."""

    @property
    def varying_paths(self) -> bool:
        """A connection's packets or messages may take other paths (spreading, or switches
        choosing from their queues)."""
        return self.spreads or self.queue_aware
    flow_plan: str | None = None
    """A plan decided before the run pins (pieces of) messages to paths: ``split_minimal`` or
    ``planned`` (see :mod:`pktsim.planning.flow_plan`)."""
    entropy_source: str | None = None
    """The NIC-side entropy policy (:data:`pktsim.packet.reps.ENTROPY_SOURCES`): each data packet's
    entropy is chosen per queue pair from what its ACKs echo (``reps``). None: fixed per connection,
    or random per packet with :attr:`entropy_per_packet`."""
    reroute: str = "switches"
    """How the scheme's traffic reacts to a link going down (:mod:`pktsim.fabric.faults`):
    ``switches`` (the switches' tables change after detection, then convergence), ``local`` (the
    switch at a dead port's end avoids it at once), ``planner`` (pinned paths stay until the
    planner re-plans)."""

    @classmethod
    def from_spec(cls, lb: LbSpec) -> LoadBalancing:
        return SCHEMES[lb.scheme](lb)


SCHEMES: Registry[Callable[[LbSpec], LoadBalancing]] = Registry("load-balancing scheme")
"""``lb.scheme`` -> what the scheme asks of NICs, switches and the planner (see the table above)."""


class _Reads:
    """An ``lb`` that notes which of its fields are read."""

    def __init__(self, lb: LbSpec) -> None:
        self._lb = lb
        self.names: set[str] = set()

    def __getattr__(self, name: str):
        self.names.add(name)
        return getattr(self._lb, name)


def fields_read(scheme: str, lb: LbSpec) -> set[str]:
    """The ``lb`` fields the entry of ``scheme`` in :data:`SCHEMES` reads (it is built once from
    ``lb`` to find out): so the scenario can refuse a field set for a scheme that ignores it,
    without a second list of which scheme takes which field."""
    reads = _Reads(lb)
    SCHEMES[scheme](reads)
    return reads.names


class HashSelect:
    """The salted hash, computed for every packet (for keys that change per packet: spraying).
    The packet switch computes it inlined (:meth:`pktsim.packet.switch.Switch.on_arrival`, with
    this ``salt``); this call is the reference it is tested against."""

    __slots__ = ("salt",)

    def __init__(self, salt: int) -> None:
        self.salt = salt

    def __call__(self, pkt, group: Sequence):
        return group[salted_hash(pkt.key, self.salt) % len(group)]


class RandomSelect:
    """Per-packet uniformly random next hop (switch-side spraying), from a seeded generator."""

    __slots__ = ("random",)

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed).random

    def __call__(self, pkt, group: Sequence):
        return group[int(self.random() * len(group))]


class AdaptiveSelect:
    """Adaptive routing: the equal-cost next hop with the least backlog when the packet arrives.

    A port's backlog at time t is ``max(0, busy_until - t)`` picoseconds of serialisation (a FIFO
    at a fixed rate knows its backlog without an event: ``busy_until`` is set at enqueue); in a
    group whose rates differ it is compared in bytes (divided by the port's ps per byte). The time
    is ``pkt.t``, when the packet is forwarded and joins the egress queue (the switch's latency is
    modelled on the link into it, see :class:`pktsim.packet.ports.EgressPort`). Ties go to the first port
    in the group rotated by the salted hash of the packet's key, so equal ports (idle fabric) are
    spread over flows as ECMP would and the choice stays deterministic.

    With ``choices = d`` (2 <= d < group size) the switch samples d distinct ports with its seeded
    generator and takes the less loaded (power-of-d choices; ties to the first sampled).
    """

    __slots__ = ("salt", "choices", "random", "sample", "uniform")

    def __init__(self, salt: int, choices: int, seed: int) -> None:
        self.salt = salt
        self.choices = choices
        rng = random.Random(seed)
        self.random = rng.random
        self.sample = rng.sample
        self.uniform: dict[int, bool] = {}
        """Per group (by id; groups live in the switch's FIB until a fault changes it): all ports at
        one rate?"""

    def reset(self) -> None:
        """The switch's groups, or the rates of their ports, changed (a fault): forget the groups."""
        self.uniform.clear()

    rates_changed = reset

    def __call__(self, pkt, group: Sequence):
        n = len(group)
        d = self.choices
        if 2 <= d < n:
            if d == 2:
                i = int(self.random() * n)
                j = int(self.random() * (n - 1))
                cand = (group[i], group[j + (j >= i)])
            else:
                cand = [group[i] for i in self.sample(range(n), d)]
        else:
            h = salted_hash(pkt.key, self.salt) % n
            cand = group[h:] + group[:h] if h else group
        uniform = self.uniform.get(id(group))
        if uniform is None:
            uniform = self.uniform[id(group)] = len({(p.ppb_num, p.ppb_den) for p in group}) == 1
        t = pkt.t
        best = None
        least = 0
        for port in cand:
            load = port.busy_until - t
            if load <= 0:
                return port  # idle: nothing can be less loaded
            if not uniform:
                load = load * port.ppb_den / port.ppb_num  # bytes
            if best is None or load < least:
                best, least = port, load
        return best


class FlowletSelect:
    """Flowlet switching, LetFlow-style: a flow (packet key) keeps its next hop while its packets
    arrive less than ``gap_ps`` apart; the first packet after a longer idle gap (or the first
    ever) starts a new flowlet on a next hop drawn uniformly from the switch's seeded generator.

    LetFlow (NSDI'17) showed the random pick does about as well as CONGA's congestion-aware one,
    because flowlets shrink on congested paths by themselves. State is (last arrival, port) per
    key. An entry idle for more than the gap is the same as no entry, so the table is pruned of
    those whenever it doubles past ``TABLE_SIZE``: memory is bounded by the flows active within
    one gap, and pruning never changes a choice. When a fault changes the switch's groups the table
    is cleared (:meth:`reset`): every flow's next packet there starts a new flowlet, re-picked
    among the surviving next hops.
    """

    TABLE_SIZE = 65_536

    __slots__ = ("gap", "random", "table", "limit")

    def __init__(self, seed: int, gap_ps: int) -> None:
        self.gap = gap_ps
        self.random = random.Random(seed).random
        self.table: dict[int, list] = {}
        self.limit = self.TABLE_SIZE

    def reset(self) -> None:
        """The switch's groups changed (a fault): no flowlet keeps a port it may no longer use."""
        self.table.clear()
        self.limit = self.TABLE_SIZE

    def __call__(self, pkt, group: Sequence):
        t = pkt.t
        entry = self.table.get(pkt.key)
        if entry is not None:
            if t - entry[0] <= self.gap:
                entry[0] = t
                return entry[1]
            port = entry[1] = group[int(self.random() * len(group))]
            entry[0] = t
            return port
        table = self.table
        if len(table) >= self.limit:
            cut = t - self.gap
            self.table = table = {k: e for k, e in table.items() if e[0] >= cut}
            self.limit = max(self.TABLE_SIZE, 2 * len(table))
        port = group[int(self.random() * len(group))]
        table[pkt.key] = [t, port]
        return port


def make_selector(lb: LoadBalancing, seed: int, switch: str) -> Selector | None:
    """A switch's next-hop policy, or None for the memoised salted hash."""
    return lb.selector(seed, switch) if lb.selector is not None else None


def _hash_per_packet(seed: int, switch: str) -> Selector:
    return HashSelect(switch_salt(seed, switch))


def _random(seed: int, switch: str) -> Selector:
    return RandomSelect(stable_hash("random", seed, switch))


def _adaptive(choices: int) -> SelectorFactory:
    return lambda seed, switch: AdaptiveSelect(switch_salt(seed, switch), choices, stable_hash("adaptive", seed, switch))


def _flowlet(gap_ps: int) -> SelectorFactory:
    return lambda seed, switch: FlowletSelect(stable_hash("flowlet", seed, switch), gap_ps)


SCHEMES.add("ecmp", lambda lb: LoadBalancing())
SCHEMES.add("spray", lambda lb: LoadBalancing(entropy_per_packet=True, selector=_hash_per_packet, spreads=True))
SCHEMES.add("spray_switch", lambda lb: LoadBalancing(selector=_random, spreads=True))
SCHEMES.add("split", lambda lb: LoadBalancing(subflows=lb.subflows))
SCHEMES.add("split_minimal", lambda lb: LoadBalancing(flow_plan="split_minimal", reroute="planner"))
SCHEMES.add("planned", lambda lb: LoadBalancing(subflows=lb.subflows, flow_plan="planned", reroute="planner"))
SCHEMES.add("adaptive", lambda lb: LoadBalancing(selector=_adaptive(lb.adaptive_choices), queue_aware=True,
                                                 reroute="local"))
SCHEMES.add("flowlet", lambda lb: LoadBalancing(selector=_flowlet(ns_to_ps(lb.flowlet_gap_ns)), queue_aware=True,
                                                reroute="local"))
SCHEMES.add("reps", lambda lb: LoadBalancing(entropy_source="reps", selector=_hash_per_packet, spreads=True))
