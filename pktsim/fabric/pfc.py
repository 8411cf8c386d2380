"""PFC headroom physics: how many bytes can still arrive on a link after a switch pauses it.

The scenario's validation uses these to refuse PFC thresholds that cannot be lossless; the switch
buffer model (:mod:`pktsim.packet.switch_buffer`) uses them for its default headroom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pktsim.units import ns_to_ps, ps_per_byte

if TYPE_CHECKING:
    from pktsim.scenario import Scenario

PAUSE_FRAME_BYTES = 64
"""Size of a PFC pause (or resume) frame on the wire."""


def pfc_headroom_bytes(scenario: Scenario) -> int:
    """Bytes that can still reach a switch on one link after it decides to pause that link: the
    pause frame's flight and the upstream's reaction (a round trip of the fastest, longest link and
    its switch latency at line rate), the packet being serialised upstream and the one crossing
    xoff, and the pause frame itself."""
    topo = scenario.topology
    gbps = max(topo.link_gbps, topo.host_gbps)
    rtt_ps = ns_to_ps(2 * (topo.max_link_delay_ns + scenario.switch.latency_ns))
    ppb = ps_per_byte(gbps)
    in_flight = -(-rtt_ps * ppb.denominator // ppb.numerator)  # bytes arriving in rtt_ps, rounded up
    return in_flight + 2 * scenario.nic.mtu_bytes + PAUSE_FRAME_BYTES

