"""Switches and their egress ports.

A :class:`Port` is a FIFO egress queue feeding one link: serialisation at the link rate, then
propagation. Because the rate is fixed, a packet's departure is known when it is enqueued
(``depart = max(now, busy_until) + size / rate``), so each packet costs one scheduled event per hop:
its arrival at the next switch. Packets queued or on the wire wait in the port's FIFO, stamped with
their arrival time, and only the head is in SimPy's event heap (the port itself is that event), so
the heap stays as small as the number of busy links. Arrivals at a host need no event at all: the
last port hands the packet to the receiving NIC with its arrival time (all packets to a host cross
that one port, so they reach the NIC in the order the port sends them).

A switch's forwarding latency (``switch.latency_ns``) is modelled in one place for both port
models (this one and :class:`~pktsim.packet.buffered_ports.BufferedPort`): on the link into the
switch, whose egress port adds it to the propagation delay (``delay_ps``). A packet so reaches the
switch, and joins its egress queue, once it has crossed the link and been forwarded.

The SimPy event machinery (the port as its own event) is :class:`~pktsim.packet.engine.HeapEvent`.

Occupancy is exact, not sampled: the backlog (bytes not yet serialised, the packet on the wire
included) jumps by a packet's size at enqueue and drains linearly at the link rate, so its maximum
and time average over each sampling interval are closed-form sums, updated once per enqueue.
"""

from __future__ import annotations

from collections import deque
from heapq import heappush
from typing import Callable

import simpy

from pktsim.packet.engine import NORMAL, HeapEvent
from pktsim.packet.packet import Packet
from pktsim.traces import PortLog
from pktsim.units import ns_to_ps, ps_per_byte


class EgressPort(HeapEvent):
    """What every egress port has: the link it feeds (rate as exact picoseconds per byte,
    propagation delay plus the forwarding latency of the switch at its far end), its place in
    SimPy's event heap (it is a :class:`HeapEvent`), and its occupancy log. Times in ps.

    ``switch_latency_ns`` is the forwarding latency of the switch the link leads into (0 toward a
    host): the one place a switch's latency is modelled, for both port models."""

    __slots__ = (
        "port_id", "owner", "peer", "gbps", "delay_ps", "ppb_num", "ppb_den", "down",
        "interval_ps", "log", "iv_end", "iv_max", "iv_area2", "iv_busy", "packets", "peak", "peak_t",
    )

    def __init__(
        self, env: simpy.Environment, port_id: int, owner: str, peer: str, gbps: float, delay_ns: int,
        interval_ns: int, log: PortLog, down: bool, switch_latency_ns: int = 0,
    ) -> None:
        super().__init__(env)
        self.port_id = port_id
        self.owner = owner
        self.peer = peer
        self.gbps = gbps
        self.delay_ps = ns_to_ps(delay_ns + switch_latency_ns)
        """From the end of a packet's serialisation to its arrival at the far end, forwarded by the
        switch there if there is one: propagation plus that switch's forwarding latency."""
        ppb = ps_per_byte(gbps)  # exact: 8e6 / (Mbit/s)
        self.ppb_num, self.ppb_den = ppb.numerator, ppb.denominator
        self.down = down
        """True when the link goes down the tree (toward hosts)."""
        self.interval_ps = ns_to_ps(interval_ns)
        self.log = log
        self.iv_end = self.interval_ps
        self.iv_max = 0      # largest backlog in the interval, in ps of serialisation
        self.iv_area2 = 0    # twice the integral of the backlog in the interval, ps * ps
        self.iv_busy = 0     # time the link transmitted in the interval, ps
        self.packets = 0     # packets sent through this port (packet-hops)
        self.peak = 0        # largest backlog so far (ps of serialisation) and when (ps)
        self.peak_t = 0

    def serialisation_ps(self, size: int) -> int:
        """Time to put ``size`` bytes on the wire, rounded up to a whole picosecond."""
        return -(-size * self.ppb_num // self.ppb_den)

    def peak_bytes(self) -> float:
        """The largest backlog seen in any closed sampling interval, in bytes."""
        return self.peak * self.ppb_den / self.ppb_num

    def _set_rate_fields(self, gbps: float) -> None:
        """The link's rate is ``gbps`` from now on (``link_degrade``): what every later
        serialisation, the occupancy log's ``ps_per_byte`` and the adaptive selector read."""
        self.gbps = gbps
        ppb = ps_per_byte(gbps)
        self.ppb_num, self.ppb_den = ppb.numerator, ppb.denominator

    def _log_interval(self, start: int, area2: float, busy: int, drops: int = 0, marks: int = 0,
                      paused: int = 0, fault_drops: int = 0) -> None:
        """Append the row of the interval starting at ``start`` (its maximum is ``iv_max``)."""
        log = self.log
        log.start_ps.append(start)
        log.port_id.append(self.port_id)
        log.max_ps.append(self.iv_max)
        log.area2.append(area2)
        log.busy_ps.append(busy)
        log.drops.append(drops)
        log.fault_drops.append(fault_drops)
        log.marks.append(marks)
        log.paused_ps.append(paused)
        log.ps_per_byte.append(self.ppb_num / self.ppb_den)
        if self.iv_max > self.peak:
            self.peak, self.peak_t = self.iv_max, start


class Port(EgressPort):
    """Egress port of ``owner`` onto the link to ``peer`` on the ideal fabric (FIFO, unlimited
    buffer, never paused): a packet's departure is known when it is enqueued."""

    __slots__ = ("busy_until", "fifo", "deliver", "arrival_callbacks")

    def __init__(
        self, env: simpy.Environment, port_id: int, owner: str, peer: str, gbps: float, delay_ns: int,
        interval_ns: int, log: PortLog, down: bool, switch_latency_ns: int = 0,
    ) -> None:
        super().__init__(env, port_id, owner, peer, gbps, delay_ns, interval_ns, log, down, switch_latency_ns)
        self.busy_until = 0
        self.fifo: deque[Packet] = deque()
        """Packets sent on this link and not yet arrived at a switch, in order."""
        self.arrival_callbacks: tuple = ()
        """The next switch's ``on_arrival(port)``, run when the head packet reaches it."""
        self.deliver: Callable[[Packet, int], None] | None = None
        """Receiving NIC's ``deliver(pkt, arrival_ps)``, called at enqueue (no event)."""

    def feed(self, on_arrival: Callable[[Port], None]) -> None:
        """The link ends at a switch: ``on_arrival(port)`` runs when the head packet reaches it."""
        self.arrival_callbacks = (on_arrival,)

    def feed_host(self, nic) -> None:
        """The link ends at a host: its NIC is handed each packet at enqueue, with its arrival
        time (every packet to a host crosses this one port, so they arrive in order)."""
        self.deliver = nic.deliver

    def send(self, pkt: Packet, t: int) -> None:
        """Enqueue ``pkt`` at time ``t`` (>= now, in ps)."""
        if t >= self.iv_end:
            self._roll(t)
        rem = self.busy_until - t  # backlog just before the packet, in ps of serialisation
        if rem < 0:
            rem = 0
        ser = -(-pkt.size * self.ppb_num // self.ppb_den)
        rem += ser
        if rem > self.iv_max:
            self.iv_max = rem
        # The packet adds ser while it waits and (depart - t') while on the wire: twice its
        # integral is ser * (2 * rem - ser); _roll moves what lies beyond an interval's end.
        self.iv_area2 += ser * (2 * rem - ser)
        self.iv_busy += ser
        self.packets += 1
        self.busy_until = t + rem
        arrival = t + rem + self.delay_ps
        if self.deliver is not None:
            self.deliver(pkt, arrival)
        else:
            pkt.t = arrival
            fifo = self.fifo
            fifo.append(pkt)
            if len(fifo) == 1:  # the port is the event of its head packet's arrival
                # HeapEvent.schedule inlined on purpose: the hottest line of the simulator
                self.callbacks = self.arrival_callbacks
                heappush(self.heap, (arrival, NORMAL, next(self.eid), self))

    def _roll(self, t: int) -> None:
        """Close every sampling interval that ends at or before ``t`` and log the non-idle ones.

        Packets book their whole backlog integral and serialisation time in the interval of their
        enqueue; what lies beyond the interval's end is exactly the drain of the backlog R left
        there (R^2 / 2 of integral, R of busy time, as the FIFO empties linearly), carried over.
        """
        iv = self.interval_ps
        while self.iv_end <= t:
            end = self.iv_end
            rem = self.busy_until - end
            if rem < 0:
                rem = 0
            area2, busy = self.iv_area2 - rem * rem, self.iv_busy - rem
            if busy:
                self._log_interval(end - iv, area2, busy)
            start = end if rem else (t // iv) * iv
            self.iv_end = start + iv
            self.iv_max = rem
            self.iv_area2 = rem * rem
            self.iv_busy = rem

    def set_rate(self, gbps: float) -> None:
        """``link_degrade``: packets enqueued from now on serialise at ``gbps``; those already
        queued keep the departure computed at their enqueue (a packet's departure is fixed when it
        joins the FIFO). Arrival order stays FIFO: a later packet departs after ``busy_until``,
        whatever the rate. The log converts busy time to bytes at the rate when an interval closes,
        so the rows the change spans (the one open now, those the old backlog drains in) are
        approximate in bytes; their times are exact."""
        now = self.now()
        if now >= self.iv_end:
            self._roll(now)
        self._set_rate_fields(gbps)

    def close(self) -> None:
        """Log the intervals up to the end of the last transmission."""
        self._roll(self.busy_until + self.interval_ps)


