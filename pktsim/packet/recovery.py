"""Loss recovery of the reliable transport: what a receiver does with each data packet, and how a
sender learns of losses and what it resends. ``nic.transport`` names one in
:data:`LOSS_RECOVERIES`:

- ``ideal`` (:class:`NoRecovery`): no ACKs, every packet sent once and accepted as it comes (the
  transport model's ports with the ideal transport).
- ``gbn`` (:class:`GoBackN`, RoCE go-back-N): the receiver accepts only the expected PSN; anything
  later is discarded and answered by one NACK for the expected PSN; the sender rewinds ``snd_nxt``
  to it, and on a timeout to ``snd_una``.
- ``sr`` (:class:`SelectiveRepeat`, IRN-style): the receiver keeps out-of-order packets and
  acknowledges each with a selective ACK; the sender resends a missing PSN once a packet sent at
  least ``reorder_window_ns`` after it has been acknowledged (RACK's time-based rule), so
  reordering shorter than the window costs no retransmission; on a timeout it resends every PSN
  not selectively acknowledged.

One recovery object per NIC holds the rules; the state is per connection, on the sender's
:class:`~pktsim.packet.transport.RdmaQueuePair` (PSNs, the PSNs queued for resending ``lost``,
selective repeat's ``sacked``, ``sent_at``, ``rack_high``, ``rack_rtt``) and the receiver's
:class:`~pktsim.packet.transport.Responder`. The NIC sends what is queued in ``lost`` first, then
from ``snd_nxt`` while the window is open, so a recovery decides what goes next by queuing PSNs
(selective repeat) or by moving ``snd_nxt`` back (go-back-N). The NIC keeps the one timer per
connection (retransmission timeout and the reordering deadline). Times in ps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pktsim.packet.packet import ACK, NACK
from pktsim.registry import Registry
from pktsim.units import ns_to_ps

if TYPE_CHECKING:
    from pktsim.packet.packet import RdmaPacket
    from pktsim.packet.transport import RdmaFlow, RdmaNic, RdmaQueuePair


class LossRecovery:
    """The interface, driven by :class:`~pktsim.packet.transport.RdmaNic`. PSNs are per queue pair;
    ``qp`` is always the sending queue pair (for the receiver too: its ``rx`` is the receiver's
    state of the connection)."""

    __slots__ = ("nic",)

    def __init__(self, nic: RdmaNic) -> None:
        self.nic = nic

    # -- receiver ----------------------------------------------------------------------------------

    def on_data(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        """A data packet of ``flow`` arrives: accept its data (``nic.accept``) or not, and
        acknowledge."""
        raise NotImplementedError

    # -- sender ------------------------------------------------------------------------------------

    def on_sent(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        """``psn`` has just been put on the wire (first copy or resend)."""

    def on_cumulative_ack(self, qp: RdmaQueuePair, una: int, cum: int) -> None:
        """``snd_una`` has moved from ``una`` to ``cum``: every PSN below is acknowledged."""

    def on_nack(self, qp: RdmaQueuePair, psn: int) -> bool:
        """The receiver asks for ``psn`` and what follows again; True if this is a loss the
        congestion control should react to."""
        return False

    def on_selective_ack(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        """The receiver has ``psn`` (at or beyond ``snd_una``), beyond a gap."""

    def on_timeout(self, qp: RdmaQueuePair) -> None:
        """No progress for ``nic.rto_ns``: queue what to resend."""

    def detect_losses(self, qp: RdmaQueuePair, now_ps: int) -> int | None:
        """The connection's reordering deadline is due: queue the PSNs now overdue for resending;
        returns the next deadline (None: none)."""
        return None


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


@LOSS_RECOVERIES.register("sr")
class SelectiveRepeat(Acknowledged):
    """Selective repeat, IRN-style: out-of-order packets are kept and selectively acknowledged;
    a missing PSN is resent by RACK's rule (see :meth:`on_selective_ack`), or on a timeout."""

    __slots__ = ("reorder_ps",)

    def __init__(self, nic: RdmaNic) -> None:
        super().__init__(nic)
        self.reorder_ps = ns_to_ps(nic.spec.reorder_window_ns)

    def on_out_of_order(self, qp: RdmaQueuePair, flow: RdmaFlow, pkt: RdmaPacket, now_ps: int) -> None:
        rx = qp.rx
        psn = pkt.psn
        if psn in rx.ooo:
            flow.spurious += 1
        else:
            rx.ooo.add(psn)
            self.nic.accept(flow, pkt, now_ps)
        self.nic.ack(qp, ACK, psn)

    def on_sent(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        qp.sent_at[psn] = now_ps
        super().on_sent(qp, psn, now_ps)

    def on_cumulative_ack(self, qp: RdmaQueuePair, una: int, cum: int) -> None:
        # PSNs below snd_una are never resent or reported again
        for psn in range(una, cum):
            qp.sent_at.pop(psn, None)
            qp.sacked.discard(psn)
        while qp.lost and qp.lost[0] < cum:
            qp.lost_set.discard(qp.lost.popleft())

    def on_selective_ack(self, qp: RdmaQueuePair, psn: int, now_ps: int) -> None:
        """``psn`` arrived beyond a gap. RACK's rule: a PSN still missing below the highest one
        selectively acknowledged is lost once it is ``reorder_window`` later than it would have
        arrived with that acknowledgement's round trip; until then it may just be reordered."""
        qp.sacked.add(psn)
        sent = qp.sent_at.get(psn)
        if sent is not None and psn > qp.rack_high:
            qp.rack_high = psn
            qp.rack_rtt = now_ps - sent
        qp.reo_deadline = self.detect_losses(qp, now_ps)
        self.nic.schedule_timer(qp)

    def on_timeout(self, qp: RdmaQueuePair) -> None:
        for psn in range(qp.snd_una, qp.snd_max):
            if psn not in qp.sacked and psn not in qp.lost_set:
                qp.lost.append(psn)
                qp.lost_set.add(psn)

    def detect_losses(self, qp: RdmaQueuePair, now_ps: int) -> int | None:
        """Queue the missing PSNs now overdue for resending; returns when the next one falls due."""
        next_due = None
        slack = qp.rack_rtt + self.reorder_ps
        sacked, lost_set, sent_at = qp.sacked, qp.lost_set, qp.sent_at
        for p in range(qp.snd_una, qp.rack_high):
            if p in sacked or p in lost_set or p not in sent_at:
                continue
            due = sent_at[p] + slack
            if due <= now_ps:
                qp.lost.append(p)
                lost_set.add(p)
            elif next_due is None or due < next_due:
                next_due = due
        return next_due
