"""The NIC: RDMA-style segmentation, line-rate transmission round-robin over queue pairs, and the
receiver's byte counting.

A queue pair (connection) between two ranks persists across the messages they exchange, as NCCL's
do, so its entropy (RoCEv2's UDP source port) and hence its ECMP path stay fixed unless the
load-balancing scheme says otherwise. Each message is handed to the NIC as one or more
:class:`Flow` objects (one per subflow); a flow is one message's transfer on one queue pair.

The transport is the part that decides *what* to send next and what to do with what arrives; this
"ideal" transport sends every byte once at line rate and the receiver completes a flow when its
last byte arrives, in any order. A reliable transport (ACKs, retransmission, congestion control)
replaces :meth:`Nic._transmit` and :meth:`Nic.deliver`.
"""

from __future__ import annotations

import random
from collections import deque
from heapq import heappush
from typing import Callable

import simpy
from simpy.core import NORMAL

from pktsim.packet.packet import Packet
from pktsim.fabric.hashing import flow_key
from pktsim.packet.ports import Port


class QueuePair:
    """A connection from this NIC to one destination; its flows are sent in order (FIFO)."""

    __slots__ = ("key", "dst", "entropy", "fkey", "flows")

    def __init__(self, key: tuple, dst: int, entropy: int, fkey: int) -> None:
        self.key = key
        self.dst = dst
        self.entropy = entropy
        self.fkey = fkey
        self.flows: deque[Flow] = deque()


class Flow:
    """One message's transfer on one queue pair: a row of the ``flows`` table. Times in ps."""

    __slots__ = (
        "flow_id", "msg", "subflow", "src", "dst", "bytes", "packets", "entropy", "sent", "next_seq",
        "rx_bytes", "start_ps", "end_ps", "via_bytes", "path",
    )

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


class Nic:
    """A host's NIC: one egress port onto its link, queue pairs served round-robin, one packet at
    a time at line rate, and the receive side for packets addressed to this host."""

    flow_class = Flow

    def __init__(
        self, env: simpy.Environment, index: int, name: str, port: Port, mtu_bytes: int, header_bytes: int,
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
        self.on_flow_done = on_flow_done
        self.qps: dict[tuple, QueuePair] = {}
        self.active: deque[QueuePair] = deque()
        self.busy = False
        # The NIC is itself the SimPy event of its wake-up when a packet has been serialised (as a
        # port is of its head packet's arrival): one heap entry per packet sent, no allocation.
        self.callbacks: tuple | None = None
        self.wake_callbacks = (self._transmit,)
        self.heap = env._queue
        self.eid = env._eid

    _ok = True  # read by simpy.Environment.step

    def open_queue_pair(self, key: tuple, dst: int, entropy: int) -> QueuePair:
        """Open the connection ``key`` to host index ``dst`` with the given entropy."""
        qp = self.qps[key] = QueuePair(key, dst, entropy, flow_key(self.index, dst, entropy))
        return qp

    def post(self, qp: QueuePair, flow: Flow) -> None:
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
        key = flow_key(self.index, qp.dst, self.rand16(16)) if self.entropy_per_packet else qp.fkey
        port = self.port
        port.send(Packet(flow, seq, size, payload, qp.dst, key, record), now)
        self.busy = True
        self.callbacks = self.wake_callbacks
        heappush(self.heap, (port.busy_until, NORMAL, next(self.eid), self))

    def deliver(self, pkt: Packet, t_ps: int) -> None:
        """Receive ``pkt`` at time ``t_ps`` (the future, at most one link ahead of now)."""
        flow = pkt.flow
        flow.rx_bytes += pkt.payload
        via = flow.via_bytes
        via[pkt.via] = via.get(pkt.via, 0) + pkt.payload
        if pkt.record is not None:
            pkt.record.append(self.name)
            flow.path = pkt.record
        if flow.rx_bytes == flow.bytes:
            flow.end_ps = t_ps
            self.on_flow_done(flow, t_ps)
