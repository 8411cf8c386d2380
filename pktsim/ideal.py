"""Closed forms for the ideal case: a message alone on an idle fabric."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

PS_PER_NS = 1000


@dataclass(frozen=True)
class Hop:
    """One link of a path: its rate (Gbit/s), propagation delay (ns) and the fixed latency (ns)
    of the switch the packet crosses before it (0 for the first hop)."""

    gbps: float
    delay_ns: int
    switch_latency_ns: int = 0


def _ser_ps(size: int, gbps: float) -> int:
    ppb = Fraction(8_000_000) / Fraction(round(gbps * 1000))
    return -(-size * ppb.numerator // ppb.denominator)


def message_fct_ps(payload_bytes: int, mtu_bytes: int, header_bytes: int, hops: list[Hop]) -> int:
    """Completion time (ps) of a message sent alone at line rate along ``hops``: first byte on the
    first link to last byte received, with store-and-forward at every switch.

    Packets are ``mtu_bytes`` on the wire but the last, which carries the remainder. The departure
    of packet i from hop j is D[j][i] = max(D[j][i-1], D[j-1][i] + delay[j-1]) + ser[j](i); for the
    n-1 equal full packets this has the closed form D[j][1] + (i-1) * max(ser[1..j]) (they queue
    behind the slowest link so far), and the last packet follows by the recurrence.
    """
    payload = mtu_bytes - header_bytes
    n_full, rest = divmod(payload_bytes, payload)
    if rest == 0:
        n_full, rest = n_full - 1, payload
    last_size = rest + header_bytes
    slowest = 0  # largest full-packet serialisation time so far
    arrive_first = arrive_last = t_first = 0
    for j, hop in enumerate(hops):
        full, short = _ser_ps(mtu_bytes, hop.gbps), _ser_ps(last_size, hop.gbps)
        lat = hop.switch_latency_ns * PS_PER_NS
        if n_full:
            slowest = max(slowest, full)
            t_first = arrive_first + lat + full
            t_full_last = t_first + (n_full - 1) * slowest
            t_last = max(t_full_last, arrive_last + lat) + short
        else:
            t_last = arrive_last + lat + short
        d = hop.delay_ns * PS_PER_NS
        arrive_first, arrive_last = t_first + d, t_last + d
    return arrive_last
