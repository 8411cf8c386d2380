"""Closed forms for the ideal case: a message alone on an idle fabric."""

from __future__ import annotations

from pktsim.fabric.fabric import Fabric, Hop
from pktsim.scenario import Scenario
from pktsim.workload.collectives import critical_path
from pktsim.units import ns_to_ps, serialisation_ps
from pktsim.workload.dag import Workload


def wire_bytes(payload: int, mtu_bytes: int, header_bytes: int) -> int:
    """Bytes on the wire for ``payload`` bytes: one header per (mtu - header) bytes of payload."""
    return payload + -(-payload // (mtu_bytes - header_bytes)) * header_bytes


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
        full, short = serialisation_ps(mtu_bytes, hop.gbps), serialisation_ps(last_size, hop.gbps)
        lat = ns_to_ps(hop.switch_latency_ns)
        if n_full:
            slowest = max(slowest, full)
            t_first = arrive_first + lat + full
            t_full_last = t_first + (n_full - 1) * slowest
            t_last = max(t_full_last, arrive_last + lat) + short
        else:
            t_last = arrive_last + lat + short
        d = ns_to_ps(hop.delay_ns)
        arrive_first, arrive_last = t_first + d, t_last + d
    return arrive_last


def ideal_times(fabric: Fabric, scenario: Scenario, workload: Workload) -> tuple[list[int], list[int]]:
    """Ideal times (ps) on an idle fabric: per message, its FCT alone (:func:`message_fct_ps`); per
    collective op, a lower bound on its duration: the larger of its critical path with every message
    at its ideal FCT and the time every host's NIC needs to serialise the wire bytes it sends (or
    receives) in the op."""
    nic = scenario.nic
    cache: dict[tuple, int] = {}
    fct = []
    for m in workload.messages:
        hops = fabric.path_hops(m.src, m.dst)
        key = (id(hops), m.bytes)
        if key not in cache:
            cache[key] = message_fct_ps(m.bytes, nic.mtu_bytes, nic.header_bytes, hops)
        fct.append(cache[key])
    chain = critical_path(workload, lambda m: fct[m.msg_id])
    ops = []
    for op, cp in zip(workload.collectives, chain):
        nic_bytes: dict[tuple[str, str], int] = {}
        for i in op.msg_ids:
            m = workload.messages[i]
            wire = wire_bytes(m.bytes, nic.mtu_bytes, nic.header_bytes)
            for end in ((m.src, "tx"), (m.dst, "rx")):
                nic_bytes[end] = nic_bytes.get(end, 0) + wire
        nic_bound = max(
            serialisation_ps(b, fabric.host_link_gbps(host)) for (host, _), b in nic_bytes.items()
        )
        ops.append(max(int(cp), nic_bound))
    return fct, ops
