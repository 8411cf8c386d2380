"""The reliable RDMA transport: ACKs and NACKs as real packets, the loss recovery of
:mod:`pktsim.packet.recovery` (go-back-N or selective repeat), a retransmission timeout, and the
congestion control of :mod:`pktsim.packet.cc`.

Sequence numbers (PSNs) run per queue pair across the messages it carries, as in RoCE. The sender
keeps, per queue pair, ``snd_una`` (first unacknowledged PSN), ``snd_nxt`` (next to send) and
``snd_max`` (one past the highest ever sent); anything sent below ``snd_max`` is a retransmission.
The receiver's state for the connection (:class:`Responder`) holds the next PSN expected and, for
selective repeat, the PSNs received beyond it.

- ``gbn`` (RoCE go-back-N): the receiver accepts only the expected PSN; anything later is
  discarded and answered by one NACK for the expected PSN; the sender rewinds ``snd_nxt`` to it.
- ``sr`` (selective repeat, IRN-style): the receiver keeps out-of-order packets, acknowledges
  each with a selective ACK and reports duplicates (DSACK: a ``sack`` below the cumulative PSN);
  the sender detects losses with RACK-TLP (RFC 8985): a missing PSN is resent once it is a
  reordering window later than it would have arrived with the round trip of the most recently
  sent packet delivered, the window adapting to the reordering the connection sees, and a tail
  loss probe resends the last packet two smoothed RTTs after the last progress (with
  ``nic.reorder_adaptive: false``: the fixed ``reorder_window_ns`` and no probe).
- both: one timer per queue pair (not per packet) for every deadline: after ``rto_ns`` without
  progress the sender resends from ``snd_una`` (``sr``: every PSN not selectively acknowledged);
  ``sr`` also has its reordering deadline and its probe deadline on it.

``ideal`` keeps today's behaviour on this NIC: no ACKs, every packet sent once. The NIC hands its
packets to its port only when the link is free (:class:`pktsim.packet.buffered_ports.BufferedPort`
pulls them), so PFC pauses and congestion control act on what is sent next. A receiver counts a
packet whose data it already has as a spurious retransmission; a flow's row is written once it is
acknowledged and none of its copies is still in the network, so its counts are final.

The NIC drives its congestion control (:class:`~pktsim.packet.cc.CongestionControl`, one per
connection, named by ``nic.cc``) and its loss recovery (:class:`~pktsim.packet.recovery.LossRecovery`,
one per NIC, named by ``nic.transport``) through their interfaces only.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable

import simpy

from pktsim.fabric.hashing import flow_key
from pktsim.packet.buffered_ports import BufferedPort, Wire
from pktsim.packet.cc import CONGESTION_CONTROLS, CcParams, CongestionControl
from pktsim.packet.nic import Flow, NicBase, QueuePair
from pktsim.packet.packet import CNP, DATA, NACK, RdmaPacket
from pktsim.packet.recovery import LOSS_RECOVERIES
from pktsim.units import ns_to_ps

if TYPE_CHECKING:
    from pktsim.packet.reps import EntropySource
    from pktsim.scenario import NicSpec


class RdmaFlow(Flow):
    """A flow with the transport's counts (packets, not bytes)."""

    __slots__ = ("first_psn", "tx_packets", "retransmits", "spurious", "discarded", "dropped", "fault_dropped",
                 "inflight", "acked", "closed")

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.first_psn = 0
        self.tx_packets = 0     # data packets put on the wire, retransmissions included
        self.retransmits = 0    # ... of which retransmissions
        self.spurious = 0       # copies that reached a receiver which already had their data
        self.discarded = 0      # out-of-order arrivals a go-back-N receiver threw away
        self.dropped = 0        # copies dropped by a full buffer
        self.fault_dropped = 0  # copies lost to a fault (dead or lossy link)
        self.inflight = 0       # copies still in the network
        self.acked = False
        self.closed = False


class Responder:
    """The receiving side of one connection: the next PSN expected, the PSNs held beyond it
    (selective repeat), the expected PSN a NACK was last sent for (go-back-N: one per gap), the
    in-order packets not yet acknowledged, and DCQCN's last CNP; with an entropy policy
    (:mod:`pktsim.packet.reps`), the entropy of the latest data packet and its ECN mark, for the
    next ACK to echo (-1: none)."""

    __slots__ = ("expected", "ooo", "nack_for", "unacked", "echo", "last_cnp_ps", "ev", "ev_marked")

    def __init__(self) -> None:
        self.expected = 0
        self.ooo: set[int] = set()
        self.nack_for = -1
        self.unacked = 0
        self.echo = 0           # ECN-marked payload bytes not yet reported
        self.last_cnp_ps = None
        self.ev = -1
        self.ev_marked = False


class RdmaQueuePair(QueuePair):
    """A connection with its sender state (PSNs, window, congestion control, timer, and the state
    of the NIC's loss recovery)."""

    __slots__ = ("nic", "src", "rev_key", "segs", "psn_end", "snd_nxt", "snd_una", "snd_max", "active",
                 "cc", "next_send_ps", "rto_deadline", "reo_deadline", "tlp_deadline", "timer_at", "timer_gen", "lost",
                 "lost_set", "sacked", "sent_at", "rack_high", "rack_rtt", "recover", "rack", "probe", "rx", "timeouts",
                 "ents")

    def __init__(self, nic: RdmaNic, key: tuple, dst: int, entropy: int) -> None:
        super().__init__(key, nic.index, dst, entropy)
        self.nic = nic
        self.src = nic.index
        self.rev_key = flow_key(dst, nic.index, entropy)
        """The 5-tuple hash of the reverse direction: ACKs follow their own ECMP path."""
        self.segs: deque[RdmaFlow] = deque()
        """Flows posted and not yet fully acknowledged, in PSN order."""
        self.psn_end = 0
        self.snd_nxt = self.snd_una = self.snd_max = 0
        self.active = False
        self.cc: CongestionControl = nic.cc_class.open(nic.cc_params, nic.env.now)
        self.next_send_ps = 0
        self.rto_deadline: int | None = None   # when the retransmission timeout falls due
        self.reo_deadline: int | None = None   # sr: when the next missing PSN becomes overdue
        self.tlp_deadline: int | None = None   # sr: when the tail loss probe falls due
        self.timer_at: int | None = None       # when the pending timer event fires
        self.timer_gen = 0
        self.lost: deque[int] = deque()    # PSNs to resend before new data, oldest first (sr)
        self.lost_set: set[int] = set()
        self.sacked: set[int] = set()       # sr: PSNs above snd_una the receiver has
        self.sent_at: dict[int, int] = {}   # sr: last send time of each outstanding PSN
        self.rack_high = 0                  # sr: highest PSN selectively acknowledged ...
        self.rack_rtt = 0                   # ... and the round trip that acknowledgement measured
        self.recover: int | None = None     # sr, fixed window: in loss recovery until snd_una reaches it
        self.rack = nic.recovery.open()     # sr: RACK-TLP's state (None: fixed reordering window)
        self.probe = False                  # sr: the loss probe may send one new packet past the window
        self.rx = Responder()
        self.timeouts = 0
        self.ents = nic.entropy_source(nic.rand16) if nic.entropy_source is not None else None
        """The connection's entropy policy (:mod:`pktsim.packet.reps`); None: ``packet_key``."""

    def flow_at(self, psn: int) -> RdmaFlow:
        for f in self.segs:
            if psn < f.first_psn + f.packets:
                return f
        raise AssertionError(f"PSN {psn} belongs to no outstanding flow")


class RdmaNic(NicBase):
    """A NIC running the reliable transport over a :class:`BufferedPort` (pull model: the port
    asks for the next packet when its link is free)."""

    flow_class = RdmaFlow

    def __init__(
        self, env: simpy.Environment, index: int, name: str, port: BufferedPort, spec: NicSpec,
        entropy_per_packet: bool, seed: int, line_gbps: float, base_rtt_ps: int,
        on_flow_done: Callable[[Flow, int], None], on_flow_closed: Callable[[RdmaFlow], None],
        entropy_source: Callable[[Callable[[int], int]], EntropySource] | None = None,
    ) -> None:
        super().__init__(env, index, name, port, spec.mtu_bytes, spec.header_bytes, entropy_per_packet, seed,
                         on_flow_done)
        self.spec = spec
        self.line_gbps = line_gbps
        self.max_inflight = (max(1, spec.window_bytes // spec.mtu_bytes) if spec.window_bytes is not None
                             else float("inf"))
        self.rto_ps = ns_to_ps(spec.rto_ns)
        self.cnp_interval_ps = ns_to_ps(spec.dcqcn.cnp_interval_ns)
        self.cc_class = CONGESTION_CONTROLS[spec.cc]
        self.cc_params = CcParams(spec, line_gbps, self.payload_max, base_rtt_ps)
        self.recovery = LOSS_RECOVERIES[spec.transport](self)
        self.on_flow_closed = on_flow_closed
        self.wake_t: int | None = None
        self.entropy_source = entropy_source
        """Opens each queue pair's entropy policy from the NIC's generator (None: none)."""
        port.source = self.next_packet

    # -- sending ---------------------------------------------------------------------------------

    def _new_queue_pair(self, key: tuple, dst: int, entropy: int) -> RdmaQueuePair:
        return RdmaQueuePair(self, key, dst, entropy)

    def post(self, qp: RdmaQueuePair, flow: RdmaFlow) -> None:
        """Queue ``flow`` on ``qp`` (its PSNs follow the previous flow's) and wake the link."""
        flow.first_psn = qp.psn_end
        qp.psn_end += flow.packets
        qp.segs.append(flow)
        self._activate(qp)

    def _activate(self, qp: RdmaQueuePair) -> None:
        if not qp.active:
            qp.active = True
            self.active.append(qp)
        self.port.kick()

    def next_packet(self, now: int) -> RdmaPacket | None:
        """The port's link is free: the next data packet, round-robin over the queue pairs that
        may send (something to send, window open, pacing time reached), or None. A queue pair
        sends the PSNs its loss recovery queued for resending first (window or not), then from
        ``snd_nxt``."""
        active = self.active
        wake = None
        for _ in range(len(active)):
            qp = active.popleft()
            if qp.lost:
                psn = qp.lost[0]
            elif qp.snd_nxt < qp.psn_end:
                psn = qp.snd_nxt
                inflight = psn - qp.snd_una
                if (inflight >= self.max_inflight or not qp.cc.window_open(inflight)) and not qp.probe:
                    active.append(qp)  # window closed: an ACK reopens it
                    continue
            else:
                qp.active = False
                continue
            if qp.next_send_ps > now:  # paced by the congestion control
                active.append(qp)
                if wake is None or qp.next_send_ps < wake:
                    wake = qp.next_send_ps
                continue
            active.append(qp)
            return self._data_packet(qp, psn, now)
        if wake is not None:
            self._wake_at(wake)
        return None

    def _data_packet(self, qp: RdmaQueuePair, psn: int, now: int) -> RdmaPacket:
        flow = qp.flow_at(psn)
        seq = psn - flow.first_psn
        payload, size = self.segment(flow.bytes - seq * self.payload_max)
        record = None
        if psn < qp.snd_max:
            flow.retransmits += 1
        elif seq == 0:
            flow.start_ps = now
            record = [self.name]
        if qp.lost and qp.lost[0] == psn:
            qp.lost.popleft()
            qp.lost_set.discard(psn)
        else:
            qp.snd_nxt = psn + 1
            if qp.snd_nxt > qp.snd_max:
                qp.snd_max = qp.snd_nxt
        flow.tx_packets += 1
        flow.inflight += 1
        ents = qp.ents
        if ents is None:
            pkt = RdmaPacket(flow, seq, size, payload, qp.dst, self.packet_key(qp), record, DATA, qp, psn)
        else:
            ev = ents.next_entropy()
            pkt = RdmaPacket(flow, seq, size, payload, qp.dst, flow_key(self.index, qp.dst, ev), record, DATA, qp,
                             psn)
            pkt.ev = ev
        qp.next_send_ps = qp.cc.on_sent(now, size)
        self.recovery.on_sent(qp, psn, now)
        return pkt

    def _wake_at(self, t: int) -> None:
        if self.wake_t is not None and self.wake_t <= t:
            return
        self.wake_t = t
        self.env.timeout(t - self.env.now, t).callbacks.append(self._on_wake)

    def _on_wake(self, event: simpy.Event) -> None:
        if event.value == self.wake_t:
            self.wake_t = None
            self.port.kick()

    def _send_ctrl(self, kind: int, qp: RdmaQueuePair, psn: int, key: int | None = None) -> RdmaPacket:
        """An ACK, NACK or CNP for ``qp`` back to its sender, on the control class, hashed on the
        connection's reverse 5-tuple (or on ``key``)."""
        pkt = RdmaPacket(None, 0, self.spec.ack_bytes, 0, qp.src, qp.rev_key if key is None else key, None, kind, qp,
                         psn)
        self.port.send(pkt, self.env.now)
        return pkt

    # -- the connection's timer: retransmission timeout and (sr) reordering and probe deadlines ---

    def arm(self, qp: RdmaQueuePair, deadline: int) -> None:
        """Set the retransmission deadline (the recovery may also set ``qp.reo_deadline`` and
        ``qp.tlp_deadline``, then call :meth:`schedule_timer`)."""
        qp.rto_deadline = deadline
        self.schedule_timer(qp)

    def schedule_timer(self, qp: RdmaQueuePair) -> None:
        """Make sure one timer event is pending at or before the earliest deadline. Deadlines that
        move later need no new event: the pending one wakes, finds nothing due and sleeps again."""
        due = qp.rto_deadline
        if qp.reo_deadline is not None and (due is None or qp.reo_deadline < due):
            due = qp.reo_deadline
        if qp.tlp_deadline is not None and (due is None or qp.tlp_deadline < due):
            due = qp.tlp_deadline
        if due is None or (qp.timer_at is not None and qp.timer_at <= due):
            return
        qp.timer_at = due
        qp.timer_gen += 1
        self.env.timeout(due - self.env.now, (qp, qp.timer_gen)).callbacks.append(self._on_timer)

    def _on_timer(self, event: simpy.Event) -> None:
        qp, gen = event.value
        if gen != qp.timer_gen:  # superseded by an earlier one
            return
        qp.timer_at = None
        now = self.env.now
        if qp.reo_deadline is not None and qp.reo_deadline <= now:
            qp.reo_deadline = self.recovery.detect_losses(qp, now)
        if qp.rto_deadline is not None and qp.rto_deadline <= now:
            self._timeout(qp, now)
        if qp.tlp_deadline is not None and qp.tlp_deadline <= now:
            qp.tlp_deadline = None
            self.recovery.on_probe_timeout(qp, now)
        self.schedule_timer(qp)
        if qp.lost or qp.snd_nxt < qp.psn_end:
            self._activate(qp)

    def _timeout(self, qp: RdmaQueuePair, now: int) -> None:
        """No progress for ``rto_ns``: the recovery queues what to resend (from ``snd_una``)."""
        qp.timeouts += 1
        self.recovery.on_timeout(qp)
        qp.cc.on_loss()
        qp.rto_deadline = now + self.rto_ps

    # -- receiving -------------------------------------------------------------------------------

    def on_arrival(self, wire: Wire) -> None:
        """The head packet of ``wire`` (the link from the ToR) has arrived."""
        pkt = wire.pop()
        kind = pkt.kind
        if kind == DATA:
            self._on_data(pkt)
        elif kind == CNP:
            pkt.qp.cc.on_cnp(self.env.now)
        else:
            self._on_ack(pkt)

    def _on_data(self, pkt: RdmaPacket) -> None:
        now = self.env.now
        qp: RdmaQueuePair = pkt.qp
        rx = qp.rx
        flow: RdmaFlow = pkt.flow
        flow.inflight -= 1
        if pkt.record is not None:
            self.record_path(flow, pkt)
        if pkt.ecn:
            rx.echo += pkt.payload
            if qp.cc.wants_cnp and (rx.last_cnp_ps is None or now - rx.last_cnp_ps >= self.cnp_interval_ps):
                rx.last_cnp_ps = now
                self._send_ctrl(CNP, qp, 0)
        if qp.ents is not None:  # the ACK this packet triggers echoes its entropy
            rx.ev = pkt.ev
            rx.ev_marked = pkt.ecn
        self.recovery.on_data(qp, flow, pkt, now)
        self._maybe_close(flow)

    def ack(self, qp: RdmaQueuePair, kind: int, sack: int) -> None:
        """Send an ACK (or NACK) for the next PSN expected, selectively acknowledging ``sack``
        (-1: none; below the PSN expected: a duplicate, DSACK), with the ECN-marked bytes received
        since the last one."""
        rx = qp.rx
        if qp.ents is None:
            pkt = self._send_ctrl(kind, qp, rx.expected)
        else:
            # an entropy policy: echo the entropy of the data packet that triggered this ACK (each
            # entropy once) and its mark; the ACK goes back on the reverse 5-tuple with that entropy
            ev = rx.ev
            pkt = self._send_ctrl(kind, qp, rx.expected, qp.rev_key if ev < 0 else flow_key(qp.dst, qp.src, ev))
            pkt.ev = ev
            pkt.ev_marked = rx.ev_marked
            rx.ev = -1
        pkt.sack = sack
        pkt.echo = rx.echo
        rx.echo = 0
        rx.unacked = 0

    def _on_ack(self, pkt: RdmaPacket) -> None:
        now = self.env.now
        qp: RdmaQueuePair = pkt.qp
        recovery = self.recovery
        cum = pkt.psn
        ents = qp.ents
        if ents is not None and pkt.ev >= 0:
            ents.on_ack(pkt.ev, pkt.ev_marked)
        newly = 0
        if cum > qp.snd_una:
            una = qp.snd_una
            newly = cum - una
            qp.snd_una = cum
            if qp.snd_nxt < cum:
                qp.snd_nxt = cum
            segs = qp.segs
            while segs and segs[0].first_psn + segs[0].packets <= cum:
                f = segs.popleft()
                f.acked = True
                self._maybe_close(f)
            qp.rto_deadline = now + self.rto_ps if qp.snd_una < qp.snd_max else None
            recovery.on_cumulative_ack(qp, una, cum, now)
        cc = qp.cc
        if pkt.kind == NACK and recovery.on_nack(qp, cum):
            cc.on_loss()
        if pkt.sack >= cum:
            recovery.on_selective_ack(qp, pkt.sack, now)
        elif pkt.sack >= 0:  # a duplicate reported below the cumulative ACK (DSACK)
            recovery.on_dsack(qp, pkt.sack, now)
        cc.on_ack(newly * self.payload_max, pkt.echo, qp.snd_una, qp.snd_nxt)
        if qp.lost or qp.snd_nxt < qp.psn_end:
            self._activate(qp)

    def _maybe_close(self, flow: RdmaFlow) -> None:
        if flow.acked and not flow.inflight and not flow.closed and flow.end_ps >= 0:
            flow.closed = True
            self.on_flow_closed(flow)


def dropped(pkt: RdmaPacket) -> None:
    """A buffer refused ``pkt``: account the copy as gone."""
    flow: RdmaFlow = pkt.flow
    flow.dropped += 1
    flow.inflight -= 1
    pkt.qp.nic._maybe_close(flow)


def fault_dropped(pkt: RdmaPacket) -> None:
    """A fault (a dead or lossy link) lost ``pkt``: a data copy is gone from its flow; a control
    packet (ACK, NACK, CNP) is counted by its port only."""
    if pkt.kind == DATA:
        flow: RdmaFlow = pkt.flow
        flow.fault_dropped += 1
        flow.inflight -= 1
        pkt.qp.nic._maybe_close(flow)
