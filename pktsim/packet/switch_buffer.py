"""The shared packet memory of a switch: admission to egress queues (shared capacity, static
per-port limits, dynamic thresholds), where a packet is dropped; and PFC per ingress link, where
a link is paused and resumed by frames crossing it in the reverse direction."""

from __future__ import annotations

import simpy

from pktsim.packet.packet import RdmaPacket
from pktsim.scenario import PAUSE_FRAME_BYTES, Scenario, pfc_headroom_bytes
from pktsim.packet.buffered_ports import BufferedPort


class SwitchBuffer:
    """The shared packet memory of one switch: admission of data packets to its egress queues,
    and PFC per ingress link. Sizes in bytes."""

    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        spec = scenario.switch
        self.env = env
        self.capacity = spec.buffer_bytes if spec.buffer_bytes is not None else float("inf")
        self.port_limit = spec.port_buffer_bytes if spec.port_buffer_bytes is not None else float("inf")
        self.alpha = spec.dt_alpha
        self.used = 0
        self.pfc = spec.pfc.enabled
        self.xoff = spec.pfc.xoff_bytes
        self.xon = spec.pfc.xon_bytes
        headroom = spec.pfc.headroom_bytes
        self.headroom = headroom if headroom is not None else pfc_headroom_bytes(scenario)
        self.pauses = 0
        """Pause frames this switch sent."""
        self.over_headroom = 0
        """Packets admitted to an ingress beyond xoff + headroom (zero when PFC is sized right)."""

    @property
    def transparent(self) -> bool:
        """True when the buffer admits every packet and sends no pause: unlimited, no per-port
        limit, no PFC. Its ports then skip it (two calls per packet-hop saved)."""
        return self.capacity == float("inf") and self.port_limit == float("inf") and not self.pfc

    def admit(self, port: BufferedPort, pkt: RdmaPacket) -> bool:
        size = pkt.size
        if self.used + size > self.capacity:
            return False
        queue = port.data_bytes + size
        if queue > self.port_limit:
            return False
        if self.alpha is not None and queue > self.alpha * (self.capacity - self.used):
            return False
        self.used += size
        if self.pfc:
            ingress = pkt.ingress
            held = ingress.held = ingress.held + size
            if held > self.xoff and not ingress.pause_sent:
                ingress.pause_sent = True
                self.pauses += 1
                self._signal(ingress.port, True)
            if held > self.xoff + self.headroom:
                self.over_headroom += 1
        return True

    def release(self, pkt: RdmaPacket) -> None:
        """``pkt`` leaves its egress queue: for the link, or lost with it (``link_down``)."""
        self.used -= pkt.size
        if self.pfc:
            ingress = pkt.ingress
            ingress.held -= pkt.size
            if ingress.pause_sent and ingress.held <= self.xon:
                ingress.pause_sent = False
                self._signal(ingress.port, False)

    def _signal(self, upstream: BufferedPort, pause: bool) -> None:
        """Send a PAUSE (or RESUME) frame up the link: it takes effect at the upstream port after
        its serialisation and the link's propagation delay."""
        delay = upstream.delay_ps + upstream.serialisation_ps(PAUSE_FRAME_BYTES)
        self.env.timeout(delay, pause).callbacks.append(lambda event: upstream.set_paused(event.value))

