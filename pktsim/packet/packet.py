"""The packet: what a NIC puts on the wire and switches forward."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pktsim.packet.nic import Flow


class Packet:
    """One packet of a flow. ``size`` is bytes on the wire (header included), ``payload`` the
    message bytes it carries. ``key`` is the hash of its 5-tuple, entropy included (RoCEv2's UDP
    source port): switches hash it with their salt to pick a next hop. ``via`` is the switch where
    the packet turned from going up to going down (its spine in a leaf-spine); ``record`` collects
    the node names of the path on the first packet of a flow only.

    ``t`` is the time (ps) the packet reaches the far end of the link it is queued on (forwarded
    by the switch there, whose latency is part of the link's delay).
    """

    __slots__ = ("flow", "seq", "size", "payload", "dst", "key", "via", "record", "t")

    def __init__(self, flow: Flow, seq: int, size: int, payload: int, dst: int, key: int, record: list | None):
        self.flow = flow
        self.seq = seq
        self.size = size
        self.payload = payload
        self.dst = dst
        self.key = key
        self.via = -1
        self.record = record


DATA, ACK, NACK, CNP = 0, 1, 2, 3
"""Packet kinds of the reliable transport. ACK, NACK and CNP are control packets: they travel on
the strict-priority control class, which PFC never pauses and buffers never drop."""


class RdmaPacket(Packet):
    """A packet of the reliable transport (:mod:`pktsim.packet.transport`). ``qp`` is the sending queue
    pair (for ACKs: the one acknowledged), ``psn`` its packet sequence number (for ACKs and NACKs:
    the next sequence number expected), ``sack`` the out-of-order sequence number a selective ACK
    reports (-1: none), ``ecn`` the congestion-experienced mark, ``echo`` the ECN-marked payload
    bytes an ACK reports, ``ingress`` the link that brought it into the current switch (for PFC),
    ``ser`` its serialisation time (ps) at the port it waits in, set when it joins that port (so
    the port computes it once, and again only if ``link_degrade`` changes the rate).

    With an entropy policy (``lb.scheme: reps``, :mod:`pktsim.packet.reps`) ``ev`` is a data
    packet's entropy, and an ACK's or NACK's the entropy of the data packet that triggered it, with
    ``ev_marked`` whether that one arrived ECN-marked. Other schemes never set nor read them (no
    work per packet; two more slots, 16 bytes per packet object)."""

    __slots__ = ("kind", "qp", "psn", "sack", "ecn", "echo", "ingress", "ser", "ev", "ev_marked")

    def __init__(
        self, flow: Flow | None, seq: int, size: int, payload: int, dst: int, key: int, record: list | None,
        kind: int, qp, psn: int,
    ) -> None:
        super().__init__(flow, seq, size, payload, dst, key, record)
        self.kind = kind
        self.qp = qp
        self.psn = psn
        self.sack = -1
        self.ecn = False
        self.echo = 0
        self.ingress = None
