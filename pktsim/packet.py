"""The packet: what a NIC puts on the wire and switches forward."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .nic import Flow


class Packet:
    """One packet of a flow. ``size`` is bytes on the wire (header included), ``payload`` the
    message bytes it carries. ``key`` is the hash of its 5-tuple, entropy included (RoCEv2's UDP
    source port): switches hash it with their salt to pick a next hop. ``via`` is the switch where
    the packet turned from going up to going down (its spine in a leaf-spine); ``record`` collects
    the node names of the path on the first packet of a flow only.

    ``t`` is the time (ps) the packet reaches the far end of the link it is queued on.
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
