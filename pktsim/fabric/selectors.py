"""Load balancing: how a (sub)flow's packets get their entropy, and how a switch picks a next hop.

One mechanism (DESIGN.md principle 2): every packet carries a 5-tuple hash ``key`` that includes an
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
=============  ==========================  =====================  ==================

The last two are switch-local (:class:`AdaptiveSelect`, :class:`FlowletSelect`): the switch, not
the NIC, decides, from state only it has (its egress backlogs, when it last saw the flow).
"""

from __future__ import annotations


from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from pktsim.scenario import LbSpec
from pktsim.units import PS_PER_NS
from pktsim.fabric.hashing import salted_hash, stable_hash, switch_salt


@dataclass(frozen=True, slots=True)
class LoadBalancing:
    """What a scheme asks of NICs and switches."""

    subflows: int
    entropy_per_packet: bool
    switch_random: bool
    switch_local: str | None = None
    """``"adaptive"`` or ``"flowlet"``: a switch-local next-hop policy; None: hash (or random)."""
    adaptive_choices: int = 0
    flowlet_gap_ps: int = 0

    @classmethod
    def from_spec(cls, lb: LbSpec) -> LoadBalancing:
        return cls(
            subflows=lb.subflows if lb.scheme == "split" else 1,
            entropy_per_packet=lb.scheme == "spray",
            switch_random=lb.scheme == "spray_switch",
            switch_local=lb.scheme if lb.scheme in ("adaptive", "flowlet") else None,
            adaptive_choices=lb.adaptive_choices,
            flowlet_gap_ps=lb.flowlet_gap_ns * PS_PER_NS,
        )


class HashSelect:
    """The salted hash, computed for every packet (for keys that change per packet: spraying)."""

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

    A port's backlog at time t is ``max(0, busy_until - t)`` picoseconds of serialisation
    (DESIGN.md principle 3: a FIFO at a fixed rate knows it without an event); in a group whose
    rates differ it is compared in bytes (divided by the port's ps per byte). The time is the
    packet's arrival at the switch (``pkt.t``); the packet joins the queue ``switch.latency_ns``
    later, which shifts every backlog alike and so keeps their order. Ties go to the first port
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
        """Per group (by id; groups live in the switch's FIB for the run): all ports at one rate?"""

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
    one gap, and pruning never changes a choice.
    """

    TABLE_SIZE = 65_536

    __slots__ = ("gap", "random", "table", "limit")

    def __init__(self, seed: int, gap_ps: int) -> None:
        self.gap = gap_ps
        self.random = random.Random(seed).random
        self.table: dict[int, list] = {}
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


def make_selector(
    lb: LoadBalancing, seed: int, switch: str
) -> HashSelect | RandomSelect | AdaptiveSelect | FlowletSelect | None:
    """A switch's next-hop policy. None: the salted hash, memoised per key by the switch, which
    is right when keys are fixed per connection (ecmp, split)."""
    if lb.switch_local == "adaptive":
        return AdaptiveSelect(switch_salt(seed, switch), lb.adaptive_choices, stable_hash("adaptive", seed, switch))
    if lb.switch_local == "flowlet":
        return FlowletSelect(stable_hash("flowlet", seed, switch), lb.flowlet_gap_ps)
    if lb.switch_random:
        return RandomSelect(stable_hash("random", seed, switch))
    if lb.entropy_per_packet:
        return HashSelect(switch_salt(seed, switch))
    return None
