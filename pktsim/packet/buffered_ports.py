"""Egress ports with finite buffers, priorities, PFC and ECN marking.

The ideal fabric's :class:`~pktsim.packet.ports.Port` knows a packet's departure when it is enqueued,
because nothing can stop a link once it has work. With PFC a link can be paused, with priorities a
later control packet can overtake queued data, and with finite buffers a packet can be refused, so
here the end of a transmission is an event whenever something waits behind it: a
:class:`BufferedPort` starts its next packet when the previous one has been serialised (one event
per packet-hop when packets do not queue, as on the ideal fabric; two when they do). A port serves

1. the control class (ACK, NACK, CNP) first: strict priority, never paused, never dropped;
2. the data FIFO, unless PFC has paused it;
3. or, at a NIC, the NIC itself (``source``): the NIC hands over its next packet only when the
   link is free, so a paused NIC stops sending and congestion control decides what goes next.

A :class:`Wire` holds the packets in flight on the link, in order, with its head packet's arrival
as the SimPy event (like the ideal port's FIFO), as the port is the event of the end of its current
transmission: both are :class:`~pktsim.packet.engine.HeapEvent`. The wire is also the ingress of the
next switch: PFC counts the bytes each ingress brought into the switch's buffer there. A switch's
forwarding latency is part of the delay of the links into it, as on the ideal fabric (see
:mod:`pktsim.packet.ports`).

A :class:`~pktsim.packet.switch_buffer.SwitchBuffer` is the shared packet memory of one switch:
admission (shared capacity, static per-port limits, Broadcom-style dynamic thresholds), drops, and
PFC pause/resume per ingress link, with the pause frame crossing the link in the reverse direction.

Occupancy is logged exactly as the ideal port does (see :class:`~pktsim.traces.PortLog`): the
backlog jumps by a packet's serialisation time when it joins the port and drains linearly while the
link transmits; it stands still while the port is paused.

Faults (:mod:`pktsim.fabric.faults`) cost nothing on the per-packet path of a healthy port: a link
that goes down turns its port into a :class:`_Down` port (its class is swapped: ``send`` loses the
packet, nothing starts), and a link that is down or lossy swaps its wire's arrival callback for
:meth:`Wire._faulty_arrival`; :meth:`BufferedPort.go_down`, :meth:`~BufferedPort.go_up`,
:meth:`~BufferedPort.set_rate` and :meth:`~BufferedPort.set_loss` run once per fault. Every packet
a fault loses (data or control) counts in its port's ``fault_drops``; data packets also in their
flow's (``on_fault_drop``).
"""

from __future__ import annotations

import random
from collections import deque
from heapq import heappush
from itertools import islice
from typing import TYPE_CHECKING, Callable

import simpy

from pktsim.packet.engine import NORMAL, HeapEvent
from pktsim.packet.packet import RdmaPacket
from pktsim.packet.ports import EgressPort
from pktsim.scenario import EcnSpec
from pktsim.traces import PortLog

if TYPE_CHECKING:
    from pktsim.packet.switch_buffer import SwitchBuffer


class Wire(HeapEvent):
    """The packets in flight on one link, in arrival order; the head's arrival is the event. As
    the ingress of a switch it carries PFC's count of the bytes it brought into that switch."""

    __slots__ = ("port", "fifo", "arrival_callbacks", "held", "pause_sent", "healthy", "doomed", "loss",
                 "loss_rand")

    def __init__(self, port: BufferedPort) -> None:
        super().__init__(port.env)
        self.port = port
        """The egress port that feeds this link (the one PFC pauses)."""
        self.fifo: deque[RdmaPacket] = deque()
        self.arrival_callbacks: tuple = ()
        """The next switch's (or NIC's) ``on_arrival(wire)``, run when the head packet arrives."""
        self.held = 0
        """Bytes that arrived on this link and sit in the next switch's buffer."""
        self.pause_sent = False
        self.healthy: tuple = ()
        """The arrival callbacks of the healthy link (``arrival_callbacks`` unless faulty)."""
        self.doomed = 0
        """Packets at the head of ``fifo`` lost when the link went down (counted then): they are
        discarded as they arrive, since the head's entry in the event heap cannot be removed."""
        self.loss = 0.0
        """``link_loss``: the probability each arriving packet is lost (0: none)."""
        self.loss_rand: Callable[[], float] | None = None

    def pop(self) -> RdmaPacket:
        """Take the head packet, which has just arrived, and make the next one the event."""
        fifo = self.fifo
        pkt = fifo.popleft()
        if fifo:  # HeapEvent.schedule inlined on purpose (once per packet-hop)
            self.callbacks = self.arrival_callbacks
            heappush(self.heap, (fifo[0].t, NORMAL, next(self.eid), self))
        return pkt

    # -- faults (once per fault, never on the path of a healthy link) -----------------------------

    def feed(self, on_arrival: Callable[[Wire], None]) -> None:
        """``on_arrival(wire)`` runs when the head packet reaches the far end of the healthy link."""
        self.healthy = self.arrival_callbacks = (on_arrival,)

    def doom(self) -> list[RdmaPacket]:
        """The link went down: every packet on it is lost. Returns those not lost before (the
        caller counts them). They stay in the FIFO, whose head is in the event heap, and are
        discarded as they arrive; packets sent after the link comes back up queue behind them."""
        fifo = self.fifo
        lost = list(islice(fifo, self.doomed, None))
        self.doomed = len(fifo)
        self._set_arrival()
        return lost

    def set_loss(self, rate: float, seed: int) -> None:
        """``link_loss``: from now on each arriving packet is lost with probability ``rate``, drawn
        from this link's own generator (seeded by ``seed``)."""
        self.loss = rate
        self.loss_rand = random.Random(seed).random
        self._set_arrival()

    def _set_arrival(self) -> None:
        callbacks = (self._faulty_arrival,) if self.doomed or self.loss else self.healthy
        self.arrival_callbacks = callbacks
        if self.fifo:  # the head's arrival is in the heap: SimPy reads callbacks when it fires
            self.callbacks = callbacks

    def _faulty_arrival(self, _event: Wire) -> None:
        """The head packet of a faulty link arrives: discarded if it was on the link when the link
        went down, lost with probability ``loss``, else handed to the far end."""
        if self.doomed:
            self.pop()
            self.doomed -= 1
            if not self.doomed:
                self._set_arrival()
        elif self.loss_rand() < self.loss:
            self.port.fault_drop(self.pop())
        else:
            self.healthy[0](self)


class BufferedPort(EgressPort):
    """Egress port of ``owner`` onto the link to ``peer``: control class first, then the data FIFO
    (pausable by PFC), serialised one packet at a time. Times are integer picoseconds."""

    __slots__ = (
        "wire", "ctrl", "data", "data_bytes", "tx_end", "pending", "paused", "source", "buffer", "ecn", "rand",
        "on_drop", "done_callbacks", "b", "last_t", "iv_drops", "iv_marks", "iv_paused", "drops", "marks",
        "paused_ps", "on_fault_drop", "iv_fault_drops", "fault_drops",
    )

    def __init__(
        self, env: simpy.Environment, port_id: int, owner: str, peer: str, gbps: float, delay_ns: int,
        interval_ns: int, log: PortLog, down: bool, buffer: SwitchBuffer | None, ecn: EcnSpec | None, seed: int,
        switch_latency_ns: int = 0,
    ) -> None:
        super().__init__(env, port_id, owner, peer, gbps, delay_ns, interval_ns, log, down, switch_latency_ns)
        self.wire = Wire(self)
        self.ctrl: deque[RdmaPacket] = deque()
        self.data: deque[RdmaPacket] = deque()
        self.data_bytes = 0
        """Bytes of data packets waiting (the one being serialised excluded)."""
        self.tx_end = 0
        """When the packet being serialised has left (ps); the link is free from then on."""
        self.pending = False
        """True while the end of the current transmission is in the event heap."""
        self.paused = False
        self.source: Callable[[int], RdmaPacket | None] | None = None
        """At a NIC: returns the NIC's next data packet at time t, or None."""
        self.buffer = buffer
        self.ecn = (ecn.kmin_bytes, ecn.kmax_bytes, ecn.pmax) if ecn is not None else None
        self.rand = random.Random(seed).random
        self.on_drop: Callable[[RdmaPacket], None] | None = None
        self.done_callbacks = (self._tx_done,)
        # Occupancy: backlog b (ps of serialisation) at time last_t; the open interval's counts.
        self.b = 0
        self.last_t = 0
        self.iv_drops = self.iv_marks = self.iv_paused = 0
        self.drops = self.marks = self.paused_ps = 0
        self.on_fault_drop: Callable[[RdmaPacket], None] | None = None
        """Accounts a packet lost to a fault with its flow (see :func:`pktsim.packet.transport.fault_dropped`)."""
        self.iv_fault_drops = self.fault_drops = 0

    def feed(self, on_arrival: Callable[[Wire], None]) -> None:
        """The link ends at a switch: ``on_arrival(wire)`` runs when the head packet reaches it."""
        self.wire.feed(on_arrival)

    def feed_host(self, nic) -> None:
        """The link ends at a host: the NIC's ``on_arrival(wire)`` runs when a packet reaches it."""
        self.wire.feed(nic.on_arrival)

    # -- what the rest of the simulator reads --------------------------------------------------

    @property
    def busy_until(self) -> int:
        """When the backlog would be gone if the link kept transmitting (the adaptive selector's
        load signal, as for the ideal port)."""
        now = self.now()
        self._advance(now)
        return now + self.b

    # -- packets ----------------------------------------------------------------------------------

    def send(self, pkt: RdmaPacket, t: int) -> None:
        """Enqueue ``pkt`` now (``t`` is the current time in ps)."""
        self._advance(t)
        if pkt.kind:
            self.ctrl.append(pkt)
        else:
            size = pkt.size
            if self.buffer is not None and not self.buffer.admit(self, pkt):
                self.iv_drops += 1
                self.drops += 1
                self.on_drop(pkt)
                return
            ecn = self.ecn
            if ecn is not None and not pkt.ecn:
                q = self.data_bytes
                kmin, kmax, pmax = ecn
                if q >= kmax or (q > kmin and self.rand() < pmax * (q - kmin) / (kmax - kmin)):
                    pkt.ecn = True
                    self.iv_marks += 1
                    self.marks += 1
            self.data.append(pkt)
            self.data_bytes += size
        ser = pkt.ser = -(-pkt.size * self.ppb_num // self.ppb_den)
        b = self.b = self.b + ser
        if b > self.iv_max:
            self.iv_max = b
        # _wake inlined on purpose (once per packet-hop)
        if not self.pending:
            if t >= self.tx_end:
                self._start(t)
            else:
                self._schedule_done()

    def kick(self) -> None:
        """The source may have something to send."""
        now = self.env._now
        if self.pending and now < self.iv_end:
            # The end of the current transmission will ask the source (once per ACK at a busy
            # NIC): nothing to do now, and the backlog's integral is the same taken later.
            return
        self._advance(now)
        self._wake(now)

    def set_paused(self, paused: bool) -> None:
        """PFC pause (True) or resume (False) of the data class, effective now."""
        now = self.now()
        self._advance(now)
        self.paused = paused
        if not paused:
            self._wake(now)

    def _wake(self, now: int) -> None:
        """Start now if the link is free, else make sure the end of the current packet is an event."""
        if self.pending:
            return
        if now >= self.tx_end:
            self._start(now)
        else:
            self._schedule_done()

    def _schedule_done(self) -> None:
        self.pending = True
        self.schedule(self.tx_end, self.done_callbacks)

    def _start(self, now: int) -> None:
        """Begin serialising the next packet, if there is one the port may send. The end of its
        transmission becomes an event only if something may follow it (one event per hop when
        packets do not queue)."""
        ctrl = self.ctrl
        if ctrl:
            pkt = ctrl.popleft()
        elif self.paused:
            return
        elif self.data:
            pkt = self.data.popleft()
            self.data_bytes -= pkt.size
            if self.buffer is not None:
                self.buffer.release(pkt)
        elif self.source is not None:
            pkt = self.source(now)
            if pkt is None:
                return
            pkt.ser = -(-pkt.size * self.ppb_num // self.ppb_den)
            b = self.b = self.b + pkt.ser
            if b > self.iv_max:
                self.iv_max = b
        else:
            return
        done = self.tx_end = now + pkt.ser
        self.packets += 1
        # Onto the wire (its head's arrival is the wire's event), then the end of this transmission
        # as the port's event if something may follow: both inlined on purpose (once per packet-hop)
        wire = self.wire
        arrival = pkt.t = done + self.delay_ps
        pkt.ingress = wire
        fifo = wire.fifo
        fifo.append(pkt)
        if len(fifo) == 1:
            wire.callbacks = wire.arrival_callbacks
            heappush(wire.heap, (arrival, NORMAL, next(wire.eid), wire))
        if ctrl or (not self.paused and (self.data or self.source is not None)):
            self.pending = True
            self.callbacks = self.done_callbacks
            heappush(self.heap, (done, NORMAL, next(self.eid), self))

    def _tx_done(self, _event: BufferedPort) -> None:
        self.pending = False
        now = self.env._now
        if self.source is not None or now >= self.iv_end:
            self._advance(now)
        # else (a switch's port, no interval ends): the backlog is the same before and after the
        # next packet starts, and the link transmits on without a gap, so its integral from
        # last_t is the same taken at the next touch, over the new packet's tx_end.
        self._start(now)

    # -- faults (once per fault; a healthy port never runs these) ---------------------------------

    def fault_drop(self, pkt: RdmaPacket) -> None:
        """A fault on this port's link lost ``pkt`` now: count it here (in the open interval) and
        with its flow."""
        self._advance(self.now())
        self.iv_fault_drops += 1
        self.fault_drops += 1
        self.on_fault_drop(pkt)

    def go_down(self) -> None:
        """``link_down``: the packets on the link (the one being serialised included) and those
        queued for it (both classes) are lost; from now on packets sent here are lost at enqueue
        and the port starts nothing, so a NIC whose host link is down stops pulling packets. Data
        packets leave the switch's buffer (releasing their PFC accounting at their ingress). The
        transmission in progress keeps the link until its end (``tx_end``), so packets sent once
        the link is up again cannot overtake the lost ones on the wire."""
        assert not isinstance(self, _Down), f"{self.owner}->{self.peer} is already down"
        now = self.now()
        self._advance(now)
        self.__class__ = _down_class(type(self))  # what the accounting below triggers finds it down
        ctrl, data = self.ctrl, self.data
        self.ctrl, self.data, self.data_bytes = deque(), deque(), 0
        for pkt in self.wire.doom():
            self.fault_drop(pkt)
        for pkt in ctrl:
            self.b -= pkt.ser
            self.fault_drop(pkt)
        for pkt in data:
            self.b -= pkt.ser
            if self.buffer is not None:
                self.buffer.release(pkt)
            self.fault_drop(pkt)

    def go_up(self) -> None:
        """``link_up``: the port carries packets again."""
        cls = type(self)
        assert issubclass(cls, _Down), f"{self.owner}->{self.peer} is not down"
        self.__class__ = cls.__bases__[1]
        self.kick()

    def set_rate(self, gbps: float) -> None:
        """``link_degrade``: the packet being serialised finishes at the old rate; the packets
        queued behind it (the backlog) are serialised at ``gbps``. (The open interval's row
        converts its busy time to bytes at the new rate.)"""
        now = self.now()
        self._advance(now)
        self._set_rate_fields(gbps)
        b = self.tx_end - now
        if b < 0:
            b = 0
        for queue in (self.ctrl, self.data):
            for pkt in queue:
                pkt.ser = self.serialisation_ps(pkt.size)
                b += pkt.ser
        self.b = b
        if b > self.iv_max:
            self.iv_max = b

    def set_loss(self, rate: float, seed: int) -> None:
        """``link_loss``: each packet (data or control) that crosses the link from now on is lost
        with probability ``rate``, from a generator of its own (``seed``); it is counted when it
        would have reached the far end, where a receiver drops a corrupted frame."""
        self._advance(self.now())
        self.wire.set_loss(rate, seed)

    # -- occupancy log ----------------------------------------------------------------------------

    def _advance(self, t: int) -> None:
        """Integrate the backlog from ``last_t`` to ``t``, closing sampling intervals on the way.

        The common case (no interval ends by ``t``) is :meth:`_integrate` inlined on purpose: it
        runs at every touch of the port, several times per packet-hop."""
        last = self.last_t
        if t == last:
            return
        if t >= self.iv_end:
            self._advance_intervals(t)
            return
        b = self.b
        if b:  # a backlog drains while the link transmits (until tx_end), then stands still
            dt = t - last
            tx = self.tx_end - last
            if tx > 0:
                if tx > dt:
                    tx = dt
                rest = self.b = b - tx
                self.iv_busy += tx
                self.iv_area2 += 2 * dt * rest + tx * tx  # = (2b - tx) tx + 2 rest (dt - tx)
            else:
                self.iv_area2 += 2 * b * dt
        if self.paused:
            self.iv_paused += t - last
            self.paused_ps += t - last
        self.last_t = t

    def _advance_intervals(self, t: int) -> None:
        """:meth:`_advance` across the end of at least one sampling interval."""
        last = self.last_t
        while t >= self.iv_end:
            end = self.iv_end
            self._integrate(last, end - last)
            last = end
            self._close_interval(end)
            if not (self.b or self.paused):  # idle: jump to t's interval
                self.iv_end = (t // self.interval_ps + 1) * self.interval_ps
                last = t
        self._integrate(last, t - last)
        self.last_t = t

    def _integrate(self, t0: int, dt: int) -> None:
        """The backlog over [t0, t0 + dt): it drains while the link transmits (until ``tx_end``),
        then stands still (queued packets wait for a pause to end or for their start event)."""
        if dt <= 0:
            return
        b = self.b
        tx = self.tx_end - t0
        if tx <= 0:
            tx = 0
        elif tx > dt:
            tx = dt
        if tx:
            self.iv_area2 += (2 * b - tx) * tx
            b = self.b = b - tx
            self.iv_busy += tx
        if dt > tx:
            self.iv_area2 += 2 * b * (dt - tx)
        if self.paused:
            self.iv_paused += dt
            self.paused_ps += dt

    def _close_interval(self, end: int) -> None:
        iv = self.interval_ps
        if self.iv_busy or self.iv_max or self.iv_drops or self.iv_paused or self.iv_fault_drops:
            self._log_interval(end - iv, self.iv_area2, self.iv_busy, self.iv_drops, self.iv_marks, self.iv_paused,
                               self.iv_fault_drops)
        self.iv_end = end + iv
        self.iv_max = self.b
        self.iv_area2 = self.iv_busy = self.iv_drops = self.iv_marks = self.iv_paused = self.iv_fault_drops = 0

    def close(self) -> None:
        """Log the intervals up to now (the run has ended: every queue is empty)."""
        self._advance(self.now())
        self._close_interval(self.iv_end)


class _Down:
    """What a :class:`BufferedPort` becomes while its link is down (:meth:`BufferedPort.go_down`
    swaps its class, so a healthy port pays nothing for this): every packet sent to it is lost,
    and it starts no transmission (a NIC behind it is never asked for a packet)."""

    __slots__ = ()

    def send(self, pkt: RdmaPacket, t: int) -> None:
        self._advance(t)
        self.fault_drop(pkt)

    def _start(self, now: int) -> None:
        return


_DOWN: dict[type, type] = {}


def _down_class(cls: type) -> type:
    """``cls`` (a :class:`BufferedPort` class) with its link down: same layout, so an instance's
    class can be swapped both ways."""
    if cls not in _DOWN:
        _DOWN[cls] = type(f"Down{cls.__name__}", (_Down, cls), {"__slots__": ()})
    return _DOWN[cls]
