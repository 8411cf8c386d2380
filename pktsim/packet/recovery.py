"""Loss recovery of the reliable transport: what a receiver does with each data packet, and how a
sender learns of losses and what it resends. ``nic.transport`` names one in
:data:`LOSS_RECOVERIES`:

- ``ideal`` (:class:`NoRecovery`): no ACKs, every packet sent once and accepted as it comes (the
  transport model's ports with the ideal transport).
- ``gbn`` (:class:`GoBackN`, RoCE go-back-N): the receiver accepts only the expected PSN; anything
  later is discarded and answered by one NACK for the expected PSN; the sender rewinds ``snd_nxt``
  to it, and on a timeout to ``snd_una``.
- ``sr`` (:class:`SelectiveRepeat`, IRN-style): the receiver keeps out-of-order packets,
  acknowledges each with a selective ACK and reports a duplicate back (DSACK). The sender detects
  losses with RACK-TLP (RFC 8985, :class:`Rack`): a PSN sent before the most recently sent packet
  delivered is lost once it is that packet's round trip plus a reordering window old; the window
  is a multiple of a quarter of the connection's minimum RTT, grown by DSACKs and by the lateness
  of packets delivered out of order, reverting after 16 loss recoveries without a DSACK; a tail
  loss probe two smoothed RTTs after the last progress resends the last packet. On a timeout it
  resends every PSN not selectively acknowledged. ``nic.reorder_adaptive: false`` keeps the
  fixed ``reorder_window_ns`` rule instead.

One recovery object per NIC holds the rules; the state is per connection, on the sender's
:class:`~pktsim.packet.transport.RdmaQueuePair` (PSNs, the PSNs queued for resending ``lost``,
selective repeat's ``sacked``, ``sent_at``, the fixed rule's ``rack_high`` and ``rack_rtt``, and
RACK-TLP's :class:`Rack` as ``rack``) and the receiver's
:class:`~pktsim.packet.transport.Responder`. The NIC sends what is queued in ``lost`` first, then
from ``snd_nxt`` while the window is open (or once past it, for a loss probe: ``qp.probe``), so a
recovery decides what goes next by queuing PSNs (selective repeat) or by moving ``snd_nxt`` back
(go-back-N). The NIC keeps the one timer per connection (retransmission timeout, reordering
deadline, probe deadline). Times in ps.

A DSACK needs no field of its own: an ACK's ``sack`` below its cumulative PSN reports a duplicate
(:meth:`LossRecovery.on_dsack`), and a ``sack`` the sender has had already reports a duplicate of a
PSN held beyond a gap.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from pktsim.packet.packet import ACK, NACK
from pktsim.registry import Registry
from pktsim.units import ns_to_ps

if TYPE_CHECKING:
    from pktsim.packet.packet import RdmaPacket
    from pktsim.packet.transport import RdmaFlow, RdmaNic, RdmaQueuePair
    from pktsim.scenario import NicSpec


class LossRecovery:
    """The interface, driven by :class:`~pktsim.packet.transport.RdmaNic`. PSNs are per queue pair;
    ``qp`` is always the sending queue pair (for the receiver too: its ``rx`` is the receiver's
    state of the connection)."""

    __slots__ = ("nic",)

    def __init__(self, nic: RdmaNic) -> None:
        self.nic = nic

    def open(self) -> Rack | None:
        """The per-connection state this recovery keeps beyond the queue pair's (None: none)."""
        return None

    # -- receiver ----------------------------------------------------------------------------------

    def on_data(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        """A data packet of ``flow`` arrives: accept its data (``nic.accept``) or not, and
        acknowledge."""
        raise NotImplementedError

    # -- sender ------------------------------------------------------------------------------------

    def on_sent(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        """``psn`` has just been put on the wire (first copy or resend)."""

    def on_cumulative_ack(self, qp: RdmaQueuePair, una: int, cum: int, now_ps: int) -> None:
        """``snd_una`` has moved from ``una`` to ``cum``: every PSN below is acknowledged."""

    def on_nack(self, qp: RdmaQueuePair, psn: int) -> bool:
        """The receiver asks for ``psn`` and what follows again; True if this is a loss the
        congestion control should react to."""
        return False

    def on_selective_ack(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        """The receiver has ``psn`` (at or beyond ``snd_una``), beyond a gap."""

    def on_dsack(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        """The receiver reports ``psn`` (below the cumulative ACK) again: a copy was spurious."""

    def on_timeout(self, qp: RdmaQueuePair) -> None:
        """No progress for ``nic.rto_ns``: queue what to resend."""

    def detect_losses(self, qp: RdmaQueuePair, now_ps: int) -> int | None:
        """The connection's reordering deadline is due: queue the PSNs now overdue for resending;
        returns the next deadline (None: none)."""
        return None

    def on_probe_timeout(self, qp: RdmaQueuePair, now_ps: int) -> None:
        """The connection's loss probe deadline (``qp.tlp_deadline``) is due."""


LOSS_RECOVERIES: Registry[type[LossRecovery]] = Registry("loss recovery")
"""``nic.transport`` -> the class of a NIC's loss recovery (built with the NIC)."""


@LOSS_RECOVERIES.register("ideal")
class NoRecovery(LossRecovery):
    """No ACKs and nothing resent: every packet is accepted as it comes, in any order, and a flow
    counts as acknowledged once received."""

    __slots__ = ()

    def on_data(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        self.nic.accept(flow, pkt, now_ps)
        if flow.rx_bytes == flow.bytes:  # no ACK will come
            flow.acked = True


class Acknowledged(LossRecovery):
    """What go-back-N and selective repeat share. The receiver accepts the expected PSN (and
    with it the run of PSNs held beyond it, if any), acknowledges every ``nic.ack_every`` in-order
    packets, the last packet of each flow, at once a packet that fills a gap, and at once a
    duplicate; an out-of-order PSN is the subclass's. The sender arms the retransmission timer
    when a packet goes out and none is pending."""

    __slots__ = ("ack_every",)

    def __init__(self, nic: RdmaNic) -> None:
        super().__init__(nic)
        self.ack_every = nic.spec.ack_every

    def on_data(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        rx = qp.rx
        psn = pkt.psn
        if psn == rx.expected:
            rx.expected += 1
            gap = bool(rx.ooo)  # this packet fills a gap: acknowledge at once what it completes
            if gap:
                while rx.expected in rx.ooo:
                    rx.ooo.remove(rx.expected)
                    rx.expected += 1
            self.nic.accept(flow, pkt, now_ps)
            rx.unacked += 1
            if rx.unacked >= self.ack_every or pkt.seq == flow.packets - 1 or gap:
                self.nic.ack(qp, ACK, -1)
        elif psn > rx.expected:
            self.on_out_of_order(qp, flow, pkt, now_ps)
        else:
            self.on_duplicate(qp, flow, pkt, now_ps)

    def on_duplicate(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        """A data packet below the expected PSN arrives again: acknowledge at once."""
        flow.spurious += 1
        self.nic.ack(qp, ACK, -1)

    def on_out_of_order(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        """A data packet beyond the expected PSN arrives."""
        raise NotImplementedError

    def on_sent(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        if qp.rto_deadline is None:
            self.nic.arm(qp, now_ps + self.nic.rto_ps)


@LOSS_RECOVERIES.register("gbn")
class GoBackN(Acknowledged):
    """RoCE's go-back-N: out-of-order packets are discarded and answered by one NACK for the
    expected PSN; the sender goes back to the PSN a NACK asks for, and to ``snd_una`` on a
    timeout."""

    __slots__ = ()

    def on_out_of_order(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        rx = qp.rx
        flow.discarded += 1
        if rx.nack_for != rx.expected:  # one NACK per gap
            rx.nack_for = rx.expected
            self.nic.ack(qp, NACK, -1)

    def on_nack(self, qp: RdmaQueuePair, psn: int) -> bool:
        if psn < qp.snd_nxt:  # go back to the expected PSN
            qp.snd_nxt = psn
            return True
        return False

    def on_timeout(self, qp: RdmaQueuePair) -> None:
        qp.snd_nxt = qp.snd_una


DUPTHRESH = 3
"""RACK (RFC 8985 6.2 step 4): while no reordering has been seen, the window is zero once this many
PSNs beyond a hole are selectively acknowledged (the classic three duplicate ACKs)."""

RECOVERIES_TO_RESET = 16
"""RFC 8985: the window's multiplier reverts to 1 after this many loss recoveries without a DSACK."""


class RackParams:
    """What every connection's :class:`Rack` is built from (one per NIC, from ``nic``)."""

    __slots__ = ("fraction", "mult_max", "headroom", "probe", "persist")

    def __init__(self, fraction: float = 0.25, mult_max: int = 255, headroom: float = 2.0, probe: bool = True,
                 persist: int = RECOVERIES_TO_RESET) -> None:
        self.fraction = fraction
        """The window's unit, a fraction of the connection's minimum RTT (RFC 8985: 1/4)."""
        self.mult_max = mult_max
        """The most units the window grows to."""
        self.headroom = headroom
        """The window grows to at least this many times the lateness of a packet delivered out of
        order (0: only DSACKs grow it, as in RFC 8985)."""
        self.probe = probe
        """Tail loss probes on."""
        self.persist = persist
        """Loss recoveries without a DSACK after which the multiplier reverts to 1."""

    @classmethod
    def of(cls, spec: NicSpec) -> RackParams:
        return cls(spec.reorder_min_rtt_fraction, spec.reorder_mult_max, spec.reorder_headroom, spec.loss_probe)


class Rack:
    """RACK-TLP state of one selective-repeat connection (RFC 8985), times in ps, and the rules
    that update its reordering window.

    The round trips are measured from ACKs: a packet's round trip is the time from its last
    copy's send time (kept by the sender, ``qp.sent_at``) to the ACK that reports it. ``xmit``
    and ``rtt`` are the send time and round trip of the most recently sent packet delivered
    (RACK.xmit_ts, RACK.rtt). The reordering window is ``mult`` units of ``fraction`` x the
    minimum RTT (RFC: starts at min_RTT / 4); ``mult`` grows by one per round trip in which a
    DSACK arrives and reverts to 1 after 16 loss recoveries without one (RFC 8985 6.2 step 4),
    and, beyond the RFC, grows to cover ``headroom`` x the lateness of every packet delivered out
    of order (how much later than ``rtt`` after its send time it arrived), so a window can follow
    reordering that grows without first resending what it delays."""

    __slots__ = ("p", "order", "resent", "min_rtt", "srtt", "xmit", "rtt", "fack", "reordering_seen",
                 "mult", "persist", "dsack_round", "rec_point", "tlp_end", "tlp_psn", "dsacks", "probes",
                 "repairs", "losses")

    def __init__(self, params: RackParams) -> None:
        self.p = params
        self.order: deque[tuple[int, int]] = deque()
        """(send time, PSN) of every copy sent, oldest first. Entries of PSNs delivered, queued for
        resending or sent again since are stale; a scan drops them as it meets them."""
        self.resent: dict[int, int] = {}
        """Outstanding PSNs sent more than once -> their first send time."""
        self.min_rtt: int | None = None
        self.srtt: int | None = None
        self.xmit = -1            # send time of the most recently sent packet delivered (RACK.xmit_ts)
        self.rtt = 0              # ... and its round trip (RACK.rtt)
        self.fack = -1            # highest PSN delivered (RACK.fack)
        self.reordering_seen = False
        self.mult = 1             # window = mult x fraction x min RTT (RACK.reo_wnd_mult)
        self.persist = 0          # loss recoveries left before mult reverts to 1 (RACK.reo_wnd_persist)
        self.dsack_round: int | None = None  # mult grows at most once until snd_una reaches this
        self.rec_point: int | None = None    # in loss recovery until snd_una reaches this
        self.tlp_end: int | None = None      # a probe's episode lasts until an ACK goes beyond this
        self.tlp_psn = -1                    # ... the PSN it resent (-1: it sent new data)
        self.dsacks = 0           # duplicates reported (spurious copies the sender learnt of)
        self.probes = 0           # loss probes sent
        self.repairs = 0          # ... of which resent a packet that had been lost (no DSACK came)
        self.losses = 0           # RACK detections (each queues one or more PSNs)

    def unit(self) -> float:
        """One unit of the window, ps."""
        return self.p.fraction * self.min_rtt

    def delivered(self, sent_ps: int, first_ps: int | None, now_ps: int) -> None:
        """A packet whose last copy was sent at ``sent_ps`` is reported delivered now; ``first_ps``
        is its first copy's send time if it was sent more than once (else None). RFC 8985 6.2
        step 2: a resent packet whose round trip is below the minimum RTT was delivered by an
        earlier copy, and is no RACK sample (below half the minimum RTT, the copy was surely the
        first, and its lateness counts); the round
        trip and the smoothed RTT (RFC 6298, gain 1/8) are measured from packets sent once only
        (Karn)."""
        rtt = now_ps - sent_ps
        if first_ps is not None:
            if self.min_rtt is None or rtt < self.min_rtt:
                # surely the first copy: it was late (no minimum RTT yet: no sample, nothing to compare)
                if self.min_rtt is not None and 2 * rtt < self.min_rtt and first_ps < self.xmit:
                    self.reordered(now_ps - first_ps - self.rtt)
                return
        else:
            if self.min_rtt is None or rtt < self.min_rtt:
                self.min_rtt = rtt
            self.srtt = rtt if self.srtt is None else self.srtt + (rtt - self.srtt) // 8
        if sent_ps > self.xmit:
            self.xmit = sent_ps
            self.rtt = rtt
        elif first_ps is None:
            self.reordered(rtt - self.rtt)

    def reordered(self, late_ps: int) -> None:
        """A packet sent before the most recently sent packet delivered arrived ``late_ps`` later
        than that packet's round trip after its own send time: the window grows to cover
        ``headroom`` x that."""
        self.reordering_seen = True
        if self.p.headroom and late_ps > 0:
            need = late_ps * self.p.headroom
            unit = self.unit()
            if need > self.mult * unit:
                self.mult = min(self.p.mult_max, int(need / unit) + 1)

    def reo_wnd(self, sacked: int) -> int:
        """The reordering window, ps (RFC 8985 6.2 step 4, ``RACK_reo_wnd``): zero while no
        reordering has been seen if in loss recovery or with ``DUPTHRESH`` PSNs selectively
        acknowledged (``sacked``); else ``mult`` units. (The RFC also caps it at the smoothed
        RTT; not here: sprayed packets are reordered by queues longer than the mean RTT.)"""
        if not self.reordering_seen and (self.rec_point is not None or sacked >= DUPTHRESH):
            return 0
        return int(self.mult * self.unit())

    def update_reo_wnd(self, dsack: bool, snd_una: int, snd_max: int, exiting_recovery: bool) -> None:
        """An ACK arrives (RFC 8985 6.2 step 4, ``RACK_update_reo_wnd``); ``dsack``: it reports a
        duplicate. The multiplier grows by one per round trip in which a DSACK arrives (the round
        ends once ``snd_una`` passes what had been sent when it grew), up to ``mult_max``; after
        ``persist`` loss recoveries without one it reverts to 1."""
        if self.dsack_round is not None and snd_una >= self.dsack_round:
            self.dsack_round = None
        if self.dsack_round is None and dsack:
            self.dsack_round = snd_max
            if self.mult < self.p.mult_max:
                self.mult += 1
            self.persist = self.p.persist
        elif exiting_recovery:
            self.persist -= 1
            if self.persist <= 0:
                self.mult = 1

    def pto(self) -> int | None:
        """The probe timeout, ps (RFC 8985 7.2): two smoothed RTTs (None before a sample). The
        receiver never delays an ACK by time, so nothing is added for a flight of one packet."""
        return None if self.srtt is None else 2 * self.srtt


@LOSS_RECOVERIES.register("sr")
class SelectiveRepeat(Acknowledged):
    """Selective repeat, IRN-style: out-of-order packets are kept and selectively acknowledged,
    and a duplicate is reported back (a DSACK: a selective ACK below the cumulative one, or one
    the sender has had already). The sender detects losses with RACK-TLP (:class:`Rack`): a
    missing PSN sent before the most recently sent packet delivered is resent once it is that
    packet's round trip plus the reordering window old, the window adapting to the reordering
    the connection sees; a probe after two smoothed RTTs without progress resends the last
    packet; a timeout resends everything not selectively acknowledged.

    With ``nic.reorder_adaptive: false`` the window is the fixed ``nic.reorder_window_ns``,
    overdue is measured against the highest PSN selectively acknowledged (``qp.rack_high``,
    ``qp.rack_rtt``), and there is no probe: the rule before RACK-TLP."""

    __slots__ = ("reorder_ps", "adaptive", "params")

    def __init__(self, nic: RdmaNic) -> None:
        super().__init__(nic)
        spec = nic.spec
        self.reorder_ps = ns_to_ps(spec.reorder_window_ns)
        self.adaptive = spec.reorder_adaptive
        self.params = RackParams.of(spec)

    def open(self) -> Rack | None:
        return Rack(self.params) if self.adaptive else None

    # -- receiver ----------------------------------------------------------------------------------

    def on_out_of_order(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        rx = qp.rx
        psn = pkt.psn
        if psn in rx.ooo:
            flow.spurious += 1  # reported again: the sender, which has it selectively acknowledged, sees a DSACK
        else:
            rx.ooo.add(psn)
            self.nic.accept(flow, pkt, now_ps)
        self.nic.ack(qp, ACK, psn)

    def on_duplicate(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        flow.spurious += 1
        self.nic.ack(qp, ACK, pkt.psn)  # DSACK: a selective ACK below the cumulative one

    # -- sender ------------------------------------------------------------------------------------

    def on_sent(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        r = qp.rack
        sent_at = qp.sent_at
        if r is None:
            sent_at[psn] = now_ps
            super().on_sent(qp, psn, now_ps)
            return
        before = sent_at.get(psn)  # None: never sent (PSNs acknowledged are never resent)
        if before is not None and psn not in r.resent:
            r.resent[psn] = before
        sent_at[psn] = now_ps
        r.order.append((now_ps, psn))
        nic = self.nic
        if qp.rto_deadline is None:
            qp.rto_deadline = now_ps + nic.rto_ps
        if qp.probe:  # this is the probe
            qp.probe = False
        elif before is None:
            self.arm_probe(qp, r, now_ps)  # new data restarts the probe timeout
        nic.schedule_timer(qp)

    def on_cumulative_ack(self, qp: RdmaQueuePair, una: int, cum: int, now_ps: int) -> None:
        # PSNs below snd_una are never resent or reported again
        sent_at, sacked = qp.sent_at, qp.sacked
        r = qp.rack
        if r is None:
            for psn in range(una, cum):
                sent_at.pop(psn, None)
                sacked.discard(psn)
            if qp.recover is not None and cum >= qp.recover:
                qp.recover = None  # the fixed rule's loss recovery has ended
        else:
            # RACK's sample is the most recently sent of the PSNs this ACK delivers (those not
            # selectively acknowledged before); a PSN sent once and delivered below the highest
            # PSN delivered so far arrived out of order
            resent = r.resent
            t_last = -1
            first_last = None
            low = -1
            for psn in range(una, cum):
                t = sent_at.pop(psn, None)
                first = resent.pop(psn, None) if resent else None
                if psn in sacked:
                    sacked.discard(psn)
                    continue
                if first is None and low < 0:
                    low = psn
                if t is not None and t > t_last:
                    t_last, first_last = t, first
            if 0 <= low < r.fack:
                r.reordering_seen = True
            if cum - 1 > r.fack:
                r.fack = cum - 1
            if t_last >= 0:
                r.delivered(t_last, first_last, now_ps)
        lost, lost_set = qp.lost, qp.lost_set
        while lost and lost[0] < cum:
            lost_set.discard(lost.popleft())
        if r is not None:
            if lost and min(lost) < cum:  # RACK queues in send order, not PSN order
                for psn in [p for p in lost if p < cum]:
                    lost_set.discard(psn)
                qp.lost = deque(p for p in lost if p >= cum)
            exiting = r.rec_point is not None and cum >= r.rec_point
            if exiting:
                r.rec_point = None
            r.update_reo_wnd(False, cum, qp.snd_max, exiting)
            if r.tlp_end is not None:
                self.end_probe_episode(qp, r, cum)
            qp.reo_deadline = self.detect_losses(qp, now_ps)
            self.arm_probe(qp, r, now_ps)
            self.nic.schedule_timer(qp)

    def on_selective_ack(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        """``psn`` arrived beyond a gap: the loss detection runs (see :meth:`detect_losses`)."""
        r = qp.rack
        sacked = qp.sacked
        if r is None:
            sacked.add(psn)
            sent = qp.sent_at.get(psn)
            if sent is not None and psn > qp.rack_high:
                qp.rack_high = psn
                qp.rack_rtt = now_ps - sent
            qp.reo_deadline = self.detect_losses(qp, now_ps)
            self.nic.schedule_timer(qp)
            return
        if psn in sacked:  # reported again: the copy that arrived second was spurious
            self.on_dsack(qp, psn, now_ps)
            return
        sacked.add(psn)
        t = qp.sent_at.get(psn)
        if t is not None:
            first = r.resent.get(psn)
            if psn > r.fack:
                r.fack = psn
            elif first is None:
                r.reordering_seen = True
            r.delivered(t, first, now_ps)
        r.update_reo_wnd(False, qp.snd_una, qp.snd_max, False)
        qp.reo_deadline = self.detect_losses(qp, now_ps)
        qp.tlp_deadline = None  # a hole: RACK's deadline covers it, no probe (RFC 8985 7.2)
        self.nic.schedule_timer(qp)

    def on_dsack(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        r = qp.rack
        if r is None:
            return
        r.dsacks += 1
        r.reordering_seen = True  # the first copy was only late
        if r.tlp_end is not None and psn == r.tlp_psn:
            r.tlp_end = None  # the probe was spurious
        r.update_reo_wnd(True, qp.snd_una, qp.snd_max, False)

    def on_timeout(self, qp: RdmaQueuePair) -> None:
        for psn in range(qp.snd_una, qp.snd_max):
            if psn not in qp.sacked and psn not in qp.lost_set:
                qp.lost.append(psn)
                qp.lost_set.add(psn)
        r = qp.rack
        if r is None:
            qp.recover = qp.snd_max  # RTO recovery (the timeout has told the congestion control)
        else:
            r.rec_point = qp.snd_max  # RTO recovery
            r.tlp_end = None
            qp.tlp_deadline = None

    def detect_losses(self, qp: RdmaQueuePair, now_ps: int) -> int | None:
        """Queue the missing PSNs now overdue for resending; returns when the next one falls due.

        Adaptive (RACK, RFC 8985 6.2 step 5): a PSN whose last copy was sent before the most
        recently sent packet delivered is lost once now >= its send time + ``Rack.rtt`` + the
        reordering window. The PSNs are scanned in the order they were sent, so the first one not
        yet due gives the next deadline and the scan stops there.

        Fixed: a PSN missing below the highest one selectively acknowledged is lost once it is
        ``reorder_window_ns`` later than it would have arrived with that acknowledgement's round
        trip."""
        r = qp.rack
        sacked, lost_set, sent_at = qp.sacked, qp.lost_set, qp.sent_at
        if r is None:
            next_due = None
            slack = qp.rack_rtt + self.reorder_ps
            marked = False
            for p in range(qp.snd_una, qp.rack_high):
                if p in sacked or p in lost_set or p not in sent_at:
                    continue
                due = sent_at[p] + slack
                if due <= now_ps:
                    qp.lost.append(p)
                    lost_set.add(p)
                    marked = True
                elif next_due is None or due < next_due:
                    next_due = due
            if marked and qp.recover is None:  # once per recovery, as below
                qp.recover = qp.snd_max
                qp.cc.on_loss()
            return next_due
        xmit = r.xmit
        if xmit < 0:
            return None
        order = r.order
        una = qp.snd_una
        slack = -1
        marked = False
        next_due = None
        while order:
            t, p = order[0]
            if p < una or p in sacked or p in lost_set or sent_at.get(p) != t:
                order.popleft()  # stale
                continue
            if t >= xmit:
                break  # sent after every packet delivered: a later delivery will tell
            if slack < 0:
                slack = r.rtt + r.reo_wnd(len(sacked))
            due = t + slack
            if due > now_ps:
                next_due = due
                break
            order.popleft()
            qp.lost.append(p)
            lost_set.add(p)
            marked = True
        if marked:
            r.losses += 1
            if r.rec_point is None:  # loss recovery until everything sent so far is acknowledged
                r.rec_point = qp.snd_max
                r.tlp_end = None
                qp.tlp_deadline = None
                # the congestion control hears of it once per recovery, as TCP reduces once per
                # window of losses (RFC 6675, RFC 8985 9.3); a timeout's recovery was told already
                qp.cc.on_loss()
        return next_due

    # -- tail loss probe (RFC 8985 7) ---------------------------------------------------------------

    def end_probe_episode(self, qp: RdmaQueuePair, r: Rack, cum: int) -> None:
        """A cumulative ACK up to ``cum`` during a probe's episode (RFC 8985 7.4). A probe of new
        data ends once acknowledged. A resent probe's episode ends at the first ACK beyond
        everything sent before it (``tlp_end``) with no DSACK for the probe received by then
        (:meth:`on_dsack` ends it as spurious): the probe repaired a loss, which the congestion
        control hears of as of a loss recovery's (Linux's ``tcp_process_tlp_ack`` likewise). A
        loss recovery or a timeout started in the meantime ends the episode, having told it."""
        if r.tlp_psn < 0:
            if cum >= r.tlp_end:
                r.tlp_end = None  # another probe may follow
        elif cum > r.tlp_end:
            r.tlp_end = None
            r.repairs += 1
            qp.cc.on_loss()

    def arm_probe(self, qp: RdmaQueuePair, r: Rack, now_ps: int) -> None:
        """(Re)start the probe timeout if a probe may be sent (RFC 8985 7.2): data outstanding, no
        hole in the scoreboard, not in loss recovery, no probe outstanding, and the PTO falls
        before the retransmission timeout (which caps it); else no probe is pending."""
        pto = r.pto()
        if (pto is None or not self.params.probe or r.rec_point is not None or r.tlp_end is not None
                or qp.sacked or qp.snd_una >= qp.snd_max):
            qp.tlp_deadline = None
            return
        deadline = now_ps + pto
        rto = qp.rto_deadline
        qp.tlp_deadline = deadline if rto is None or deadline < rto else None

    def on_probe_timeout(self, qp: RdmaQueuePair, now_ps: int) -> None:
        """A PTO without progress (RFC 8985 7.3): send one new packet if there is one (past a
        closed window), else resend the highest PSN sent and not acknowledged; then only the
        retransmission timeout is armed, from now."""
        r = qp.rack
        if qp.snd_una >= qp.snd_max:
            return
        if qp.snd_nxt < qp.psn_end:
            qp.probe = True
            r.tlp_psn = -1
            r.tlp_end = qp.snd_nxt + 1
        else:
            sacked, lost_set = qp.sacked, qp.lost_set
            p = qp.snd_max - 1
            while p >= qp.snd_una and (p in sacked or p in lost_set):
                p -= 1
            if p < qp.snd_una:
                return
            qp.lost.append(p)
            lost_set.add(p)
            r.tlp_psn = p
            r.tlp_end = qp.snd_max
        r.probes += 1
        qp.rto_deadline = now_ps + self.nic.rto_ps
