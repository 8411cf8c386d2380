"""A switch: forwards each arriving packet to the egress port chosen among its equal-cost next hops."""

from __future__ import annotations

from heapq import heappush

import simpy

from pktsim.fabric.hashing import MASK32, salted_hash
from pktsim.fabric.selectors import HashSelect
from pktsim.packet.engine import NORMAL
from pktsim.packet.ports import Port


class Switch:
    """Forwards each arriving packet to an egress port chosen among the equal-cost next hops
    toward its destination (``fib[dst_host]``): by default the salted hash of the packet's 5-tuple
    key (:func:`pktsim.fabric.hashing.salted_hash`), memoised per key since a connection's key is fixed;
    or a ``select(pkt, group)`` policy (the hash per packet for sprayed keys, random choice, ...).
    The hash per packet (:class:`~pktsim.fabric.selectors.HashSelect`) is computed here, inlined,
    with the selector's salt (``hash_salt``); other policies are called.

    Its forwarding latency (``switch.latency_ns``) is not applied here but on the links into it
    (:class:`~pktsim.packet.ports.EgressPort`), for both port models: a packet arrives once it
    has been forwarded, and goes straight into its egress queue."""

    __slots__ = ("env", "index", "name", "fib", "salt", "select", "hash_salt", "memo")

    MEMO_SIZE = 65_536
    """Keys remembered per switch before the memo starts afresh (bounds memory on huge all-to-alls)."""

    def __init__(self, env: simpy.Environment, index: int, name: str, salt: int, select) -> None:
        self.env = env
        self.index = index
        self.name = name
        self.fib: list[tuple[Port, ...]] = []
        self.salt = salt
        self.select = select
        self.hash_salt: int | None = select.salt if isinstance(select, HashSelect) else None
        """The salt of a :class:`HashSelect` policy, which :meth:`on_arrival` inlines; else None."""
        self.memo: dict[int, Port] = {}

    def on_arrival(self, link: Port) -> None:
        """The head packet of ``link`` (an upstream port) has arrived: forward it."""
        fifo = link.fifo
        pkt = fifo.popleft()
        if fifo:  # the link's next packet becomes the event (HeapEvent.schedule inlined on purpose)
            link.callbacks = link.arrival_callbacks
            heappush(link.heap, (fifo[0].t, NORMAL, next(link.eid), link))
        group = self.fib[pkt.dst]
        if len(group) == 1:
            port = group[0]
        elif self.select is None:
            port = self.memo.get(pkt.key)
            if port is None:
                port = self._hash_choice(pkt.key, group)
        elif self.hash_salt is not None:
            # HashSelect (salted_hash) inlined on purpose: spraying hashes every packet at every
            # multi-path hop, and calling the selector object costs a quarter of the hash itself.
            h = (pkt.key ^ self.hash_salt) & MASK32
            h ^= h >> 16
            h = (h * 0x85EBCA6B) & MASK32
            h ^= h >> 13
            h = (h * 0xC2B2AE35) & MASK32
            port = group[(h ^ (h >> 16)) % len(group)]
        else:
            port = self.select(pkt, group)
        if port.down and pkt.via < 0:
            pkt.via = self.index
        if pkt.record is not None:
            pkt.record.append(self.name)
        port.send(pkt, pkt.t)  # pkt.t: its arrival time (forwarding latency included), i.e. now

    def _hash_choice(self, key: int, group: tuple[Port, ...]) -> Port:
        if len(self.memo) >= self.MEMO_SIZE:
            self.memo.clear()
        port = self.memo[key] = group[salted_hash(key, self.salt) % len(group)]
        return port
