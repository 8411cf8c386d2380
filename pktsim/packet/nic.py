"""The NIC: queue pairs, RDMA-style segmentation and the receiver's byte counting, shared by the
two ways a NIC sends (:class:`NicBase`):

- :class:`Nic`, the ideal fabric's (push model): line-rate transmission round-robin over queue
  pairs, one packet per turn, handed to its port whenever the previous one has been serialised;
  the NIC wakes on its own engine event. This "ideal" transport sends every byte once and the
  receiver completes a flow when its last byte arrives, in any order.
- :class:`~pktsim.packet.transport.RdmaNic`, the transport model's (pull model): its
  :class:`~pktsim.packet.buffered_ports.BufferedPort` asks it for the next packet whenever the link
  is free (``next_packet``), so PFC pauses and congestion control act on what is sent next.

A queue pair (connection) between two ranks persists across the messages they exchange, as NCCL's
do, so its entropy (RoCEv2's UDP source port) and hence its ECMP path stay fixed unless the
load-balancing scheme says otherwise. Each message is handed to the NIC as one or more
:class:`Flow` objects (one per subflow); a flow is one message's transfer on one queue pair.
"""

from __future__ import annotations

import random
from collections import deque
from heapq import heappush
from typing import Callable

import simpy

from pktsim.fabric.hashing import MASK32, entropy_mixes, flow_key, flow_key_parts, sprayed_key
from pktsim.packet.engine import NORMAL, HeapEvent
from pktsim.packet.packet import Packet
from pktsim.packet.ports import EgressPort, Port


class QueuePair:
    """A connection from host ``src`` to host ``dst`` (indices): its 5-tuple hash ``fkey`` (from
    the entropy) is the key of every packet it sends unless entropy changes per packet, when
    ``key_parts`` make each packet's key (:func:`~pktsim.fabric.hashing.sprayed_key`)."""

    __slots__ = ("key", "dst", "entropy", "fkey", "key_parts")

    def __init__(self, key: tuple, src: int, dst: int, entropy: int) -> None:
        self.key = key
        self.dst = dst
        self.entropy = entropy
        self.fkey = flow_key(src, dst, entropy)
        self.key_parts = flow_key_parts(src, dst)


class LineRateQueuePair(QueuePair):
    """A queue pair of the ideal NIC; its flows are sent in order (FIFO), each byte once."""

    __slots__ = ("flows",)

    def __init__(self, key: tuple, src: int, dst: int, entropy: int) -> None:
        super().__init__(key, src, dst, entropy)
        self.flows: deque[Flow] = deque()
        """Flows posted and not yet sent in full."""


class Flow:
    """One message's transfer on one queue pair: a row of the ``flows`` table. Times in ps."""

    __slots__ = (
        "flow_id", "msg", "subflow", "src", "dst", "bytes", "packets", "entropy", "sent", "next_seq",
        "rx_bytes", "start_ps", "end_ps", "via_bytes", "path",
    )

    retransmits = 0
    """Copies resent (the ideal transport never resends; the reliable one counts them per flow)."""
    spurious = 0
    """Resent copies the receiver already had."""
    discarded = dropped = fault_dropped = 0
    """Copies thrown away out of order, dropped by a full buffer, lost to a fault (transport model)."""

    def __init__(
        self, flow_id: int, msg: int, subflow: int, src: int, dst: int, nbytes: int, packets: int, entropy: int
    ) -> None:
        self.flow_id = flow_id
        self.msg = msg
        self.subflow = subflow
        self.entropy = entropy
        self.src = src
        self.dst = dst
        self.bytes = nbytes
        self.packets = packets
        self.sent = 0           # payload bytes handed to the wire
        self.next_seq = 0
        self.rx_bytes = 0       # payload bytes received
        self.start_ps = -1
        self.end_ps = -1
        self.via_bytes: dict[int, int] = {}
        """Payload bytes per turning-point switch index (the spine in a leaf-spine)."""
        self.path: list[str] | None = None


class NicBase:
    """What every NIC has: its egress port, queue pairs (opened on first use, ``qps`` by key) and
    the round-robin list of those with something to send (``active``), segmentation of messages
    into packets of at most ``payload_max`` payload bytes plus ``header`` bytes, the packets'
    5-tuple keys, and the receiver's accounting of the data that arrives. Sizes in bytes, times in
    ps. Subclasses decide when packets go (push or pull) and what a queue pair holds."""

    flow_class: type[Flow] = Flow
    """What the backend makes of each (sub)flow it posts to this NIC."""

    def __init__(
        self, env: simpy.Environment, index: int, name: str, port: EgressPort, mtu_bytes: int, header_bytes: int,
        entropy_per_packet: bool, seed: int, on_flow_done: Callable[[Flow, int], None],
    ) -> None:
        self.env = env
        self.index = index
        self.name = name
        self.port = port
        self.mtu = mtu_bytes
        self.header = header_bytes
        self.payload_max = mtu_bytes - header_bytes
        self.entropy_per_packet = entropy_per_packet
        self.rand16 = random.Random(seed).getrandbits
        self.entropy_mixes: list[int] | None = entropy_mixes() if entropy_per_packet else None
        """When spraying: each 16-bit entropy's half of the packet key, by entropy
        (:func:`~pktsim.fabric.hashing.entropy_mixes`)."""
        self.on_flow_done = on_flow_done
        self.qps: dict[tuple, QueuePair] = {}
        self.active: deque[QueuePair] = deque()
        self.delivered = 0
        """Data packets received for the first time."""

    # -- sending ---------------------------------------------------------------------------------

    def open_queue_pair(self, key: tuple, dst: int, entropy: int) -> QueuePair:
        """Open the connection ``key`` to host index ``dst`` with the given entropy."""
        qp = self.qps[key] = self._new_queue_pair(key, dst, entropy)
        return qp

    def _new_queue_pair(self, key: tuple, dst: int, entropy: int) -> QueuePair:
        raise NotImplementedError

    def post(self, qp: QueuePair, flow: Flow) -> None:
        """Queue ``flow`` on ``qp`` and make sure the NIC will send it."""
        raise NotImplementedError

    def segment(self, remaining: int) -> tuple[int, int]:
        """Payload and size on the wire (bytes) of the next packet of a flow with ``remaining``
        payload bytes left from it: full packets first, the rest in the last one."""
        if remaining >= self.payload_max:  # full packet: share the int objects, don't make new ones
            return self.payload_max, self.mtu
        return remaining, remaining + self.header

    def packet_key(self, qp: QueuePair) -> int:
        """The 5-tuple hash of the next packet of ``qp``: the connection's, or with a new random
        entropy per packet when the scheme sprays."""
        if self.entropy_per_packet:
            return sprayed_key(qp.key_parts, self.entropy_mixes[self.rand16(16)])
        return qp.fkey

    # -- receiving -------------------------------------------------------------------------------

    def record_path(self, flow: Flow, pkt: Packet) -> None:
        """A flow's first packet has collected the nodes of its path: it ends here."""
        pkt.record.append(self.name)
        flow.path = pkt.record

    def accept(self, flow: Flow, pkt: Packet, t_ps: int) -> None:
        """The first copy of ``pkt``'s data reaches this receiver at ``t_ps``: count its bytes
        (per turning-point switch too); the flow is done when its last byte is in."""
        self.delivered += 1
        flow.rx_bytes += pkt.payload
        via = flow.via_bytes
        via[pkt.via] = via.get(pkt.via, 0) + pkt.payload
        if flow.rx_bytes == flow.bytes:
            flow.end_ps = t_ps
            self.on_flow_done(flow, t_ps)


class Nic(NicBase, HeapEvent):
    """The ideal fabric's NIC: one egress :class:`~pktsim.packet.ports.Port` onto its link, queue
    pairs served round-robin, one packet at a time at line rate (push model), and the receive side
    for packets addressed to this host, handed over by the last port at enqueue (``deliver``).

    The NIC is itself the engine event of its wake-up when a packet has been serialised (as a port
    is of its head packet's arrival): one heap entry per packet sent, no allocation."""

    def __init__(
        self, env: simpy.Environment, index: int, name: str, port: Port, mtu_bytes: int, header_bytes: int,
        entropy_per_packet: bool, seed: int, on_flow_done: Callable[[Flow, int], None],
    ) -> None:
        NicBase.__init__(self, env, index, name, port, mtu_bytes, header_bytes, entropy_per_packet, seed,
                         on_flow_done)
        HeapEvent.__init__(self, env)
        self.busy = False
        """True while a packet is being serialised (the wake-up is in the heap)."""
        self.wake_callbacks = (self._transmit,)

    def _new_queue_pair(self, key: tuple, dst: int, entropy: int) -> LineRateQueuePair:
        return LineRateQueuePair(key, self.index, dst, entropy)

    def post(self, qp: LineRateQueuePair, flow: Flow) -> None:
        """Queue ``flow`` on ``qp`` and start sending if the NIC is idle."""
        if not qp.flows:
            self.active.append(qp)
        qp.flows.append(flow)
        if not self.busy:
            self._transmit(self)

    def _transmit(self, _event: Nic) -> None:
        """Put the next packet on the wire (round-robin over active queue pairs, one packet of the
        head flow per turn) and wake when it has been serialised."""
        active = self.active
        if not active:
            self.busy = False
            return
        qp = active.popleft()
        flow = qp.flows[0]
        # This is the per-packet path of the ideal fabric: HeapEvent.now, segment and packet_key
        # (with sprayed_key when spraying) are inlined on purpose (each call costs ~1% of the run).
        now = self.env._now
        payload = flow.bytes - flow.sent
        if payload >= self.payload_max:  # full packet: share the int objects, don't make new ones
            payload, size = self.payload_max, self.mtu
        else:
            size = payload + self.header
        seq = flow.next_seq
        flow.next_seq = seq + 1
        flow.sent += payload
        if seq == 0:
            flow.start_ps = now
            record = [self.name]
        else:
            record = None
        if flow.sent == flow.bytes:
            qp.flows.popleft()
        if qp.flows:
            active.append(qp)
        port = self.port
        if self.entropy_per_packet:  # sprayed_key(qp.key_parts, self.entropy_mixes[self.rand16(16)])
            high, mix = qp.key_parts
            h = ((mix ^ self.entropy_mixes[self.rand16(16)]) * 0x85EBCA6B) & MASK32
            h ^= h >> 13
            h = (h * 0xC2B2AE35) & MASK32
            key = high | (h ^ (h >> 16))
        else:
            key = qp.fkey
        port.send(Packet(flow, seq, size, payload, qp.dst, key, record), now)
        self.busy = True
        # HeapEvent.schedule inlined on purpose (once per packet sent)
        self.callbacks = self.wake_callbacks
        heappush(self.heap, (port.busy_until, NORMAL, next(self.eid), self))

    def deliver(self, pkt: Packet, t_ps: int) -> None:
        """Receive ``pkt`` at time ``t_ps`` (the future, at most one link ahead of now)."""
        flow = pkt.flow
        if pkt.record is not None:
            self.record_path(flow, pkt)
        # NicBase.accept inlined on purpose (once per packet received)
        self.delivered += 1
        flow.rx_bytes += pkt.payload
        via = flow.via_bytes
        via[pkt.via] = via.get(pkt.via, 0) + pkt.payload
        if flow.rx_bytes == flow.bytes:
            flow.end_ps = t_ps
            self.on_flow_done(flow, t_ps)
