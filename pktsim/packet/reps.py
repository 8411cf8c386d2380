"""NIC-side entropy policies: how a sending queue pair chooses the entropy (RoCEv2's UDP source
port, which the switches hash) of each data packet from what its acknowledgements echo back.

A load-balancing scheme names one in :attr:`~pktsim.fabric.selectors.LoadBalancing.entropy_source`
(``None``: the NIC's fixed or per-packet random entropy, :meth:`pktsim.packet.nic.NicBase.packet_key`).
The reliable transport (:class:`~pktsim.packet.transport.RdmaNic`) opens one
:class:`EntropySource` per queue pair, asks it for every data packet's entropy
(:meth:`~EntropySource.next_entropy`, first copies and resends alike), carries the entropy in the
packet (``RdmaPacket.ev``), and the receiver echoes in each ACK or NACK the entropy of the data
packet that triggered it and whether that packet arrived ECN-marked (``ev``, ``ev_marked``), which
the sender hands back (:meth:`~EntropySource.on_ack`). With ``nic.ack_every`` > 1 an ACK echoes
the latest packet it acknowledges only: the entropies of the packets coalesced before it are not
echoed (they are not recycled, as if marked). Such an ACK travels on the reverse 5-tuple with the
echoed entropy (``flow_key(receiver, sender, entropy)``, as a reply to the data packet's source
port would), not on the connection's fixed reverse path as other schemes' ACKs do: a dead link on
that one path would otherwise starve the connection of every echo (measured on the dead-link case
of ``tests/test_reps.py``: 993 data packets lost and 5.2 ms with the fixed ACK path, 51 and 186 us
with this one).

``reps`` (:class:`Reps`): Recycled Entropy Packet Spraying (Bonato et al., "REPS: Recycling
Entropies for Packet Spraying to Adaptively Explore Paths and Mitigate Failures", arXiv
2407.21625, 2024, proposed for Ultra Ethernet). The sender keeps a small FIFO of the entropies that
recently came back acknowledged without an ECN mark and sends each next packet on the oldest of
them (each clean acknowledgement pays for one reuse); when it is empty (a connection's first round
trip, or after marks and losses) it explores with a fresh random entropy. An entropy whose packet
was marked, or lost (its acknowledgement never comes), is not recycled: traffic drifts away from
congested and failed paths without any switch support. The paper's optional *freezing* mode
(stop exploring after a detected failure) is not modelled.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable

from pktsim.registry import Registry
from pktsim.units import PS_PER_NS

if TYPE_CHECKING:
    from pktsim.scenario import LbSpec

RandomBits = Callable[[int], int]
"""``getrandbits(k)`` of the NIC's seeded generator: where fresh entropies come from."""


class EntropySource:
    """The entropy policy of one queue pair, as the transport drives it."""

    __slots__ = ()

    @classmethod
    def factory(cls, lb: LbSpec, bdp_packets: int) -> Callable[[RandomBits], EntropySource]:
        """What a NIC opens one source per queue pair with (called with the NIC's generator),
        from the scenario's ``lb`` section and the fabric's bandwidth-delay product in packets
        (:func:`bdp_packets`)."""
        return lambda rand: cls()

    def next_entropy(self) -> int:
        """The 16-bit entropy of the next data packet sent (a first copy or a resend)."""
        raise NotImplementedError

    def on_ack(self, entropy: int, ecn_marked: bool) -> None:
        """An ACK or NACK echoes ``entropy``, the entropy of the data packet that triggered it,
        which arrived with an ECN mark if ``ecn_marked``."""


ENTROPY_SOURCES: Registry[type[EntropySource]] = Registry("entropy source")
"""``LoadBalancing.entropy_source`` -> the class of a queue pair's entropy policy."""


def bdp_packets(line_gbps: float, rtt_ps: int, mtu_bytes: int) -> int:
    """Full packets in one bandwidth-delay product: ``line_gbps`` over a round trip of ``rtt_ps``
    (the same product as DCTCP's initial window, :mod:`pktsim.packet.cc`), rounded up."""
    return max(1, -(-int(line_gbps / 8 * rtt_ps / PS_PER_NS) // mtu_bytes))


@ENTROPY_SOURCES.register("reps")
class Reps(EntropySource):
    """REPS: a FIFO of at most ``size`` entropies acknowledged clean (unmarked), each reused once,
    oldest first; a fresh random entropy whenever it is empty. A full FIFO forgets its oldest
    entry for a new one (the paper's circular buffer overwriting). ``explored`` counts the fresh
    entropies drawn, ``recycled`` the packets sent on an echoed one."""

    __slots__ = ("buffer", "rand", "explored", "recycled")

    def __init__(self, size: int, rand: RandomBits) -> None:
        self.buffer: deque[int] = deque(maxlen=size)
        self.rand = rand
        self.explored = 0
        self.recycled = 0

    @classmethod
    def factory(cls, lb: LbSpec, bdp_packets: int) -> Callable[[RandomBits], Reps]:
        size = lb.reps_buffer if lb.reps_buffer is not None else bdp_packets
        return lambda rand: cls(size, rand)

    def next_entropy(self) -> int:
        buffer = self.buffer
        if buffer:
            self.recycled += 1
            return buffer.popleft()
        self.explored += 1
        return self.rand(16)

    def on_ack(self, entropy: int, ecn_marked: bool) -> None:
        if not ecn_marked:
            self.buffer.append(entropy)
