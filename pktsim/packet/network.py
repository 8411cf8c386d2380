"""The packet-level network: switches, ports and NICs wired after the fabric."""

from __future__ import annotations

from typing import Callable

import simpy

from pktsim.packet.buffered_ports import BufferedPort
from pktsim.packet.switch_buffer import SwitchBuffer
from pktsim.packet.nic import Flow, Nic, NicBase
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.faults import Fault, NextHops
from pktsim.fabric.hashing import stable_hash
from pktsim.fabric.selectors import LoadBalancing, make_selector
from pktsim.experiment import needs_transport_model
from pktsim.scenario import Scenario
from pktsim.packet.ports import Port
from pktsim.packet.switch import Switch
from pktsim.traces import PortLog
from pktsim.packet.reps import ENTROPY_SOURCES, bdp_packets
from pktsim.packet.transport import RdmaFlow, RdmaNic, dropped, fault_dropped
from pktsim.units import PS_PER_NS, ns_to_ps


def base_rtt_ps(scenario: Scenario) -> int:
    """Round trip of the longest path without queueing: propagation and switch latency both ways,
    an MTU serialised per hop out, an ACK back."""
    topo = scenario.topology
    links = topo.max_path_links
    gbps = min(topo.link_gbps, topo.host_gbps)
    one_way = ns_to_ps(links * (topo.max_link_delay_ns + scenario.switch.latency_ns))
    # 8 * PS_PER_NS / gbps: ps per byte at gbps, as a float (rounded once, for the whole sum)
    return 2 * one_way + round(links * (scenario.nic.mtu_bytes + scenario.nic.ack_bytes) * 8 * PS_PER_NS / gbps)


class Network:
    """Every element of the fabric, indexed for the simulation and the recorder.

    ``ports[i]`` has ``port_id == i``; ``nics[h]`` is the NIC of host ``h<h>``; ``switches``
    follow the graph's node order. ``port_log`` receives the ports' occupancy samples.
    ``on_flow_closed`` receives each flow once its transport counts are final (transport model).
    """

    def __init__(
        self, env: simpy.Environment, fabric: Fabric, scenario: Scenario, on_flow_done: Callable[[Flow, int], None],
        on_flow_closed: Callable[[RdmaFlow], None] | None = None,
    ) -> None:
        self.env = env
        self.fabric = fabric
        self.lb = LoadBalancing.from_spec(scenario.lb)
        self.port_log = PortLog()
        self.host_names = fabric.hosts
        self.host_index = fabric.host_index
        self.switch_names = fabric.switches
        self.transport_model = needs_transport_model(scenario)
        self.seed = seed = scenario.seed
        self.switches: dict[str, Switch] = {
            name: Switch(env, i, name, fabric.salts[name], make_selector(self.lb, seed, name))
            for i, name in enumerate(self.switch_names)
        }
        self.buffers = {name: SwitchBuffer(env, scenario) for name in self.switch_names} if self.transport_model else {}
        make_port = self._buffered_port if self.transport_model else self._ideal_port

        # One egress port per direction of every link, numbered as the fabric numbers links.
        self.ports: list[Port | BufferedPort] = [make_port(i, a, b, scenario) for i, (a, b) in enumerate(fabric.links)]
        self.port_of: dict[tuple[str, str], Port | BufferedPort] = dict(zip(fabric.links, self.ports))

        rtt_ps = base_rtt_ps(scenario)
        entropy_source = (ENTROPY_SOURCES[self.lb.entropy_source].factory(
            scenario.lb, bdp_packets(scenario.topology.host_gbps, rtt_ps, scenario.nic.mtu_bytes))
            if self.lb.entropy_source is not None else None)
        self.nics: list[NicBase] = []
        for i, h in enumerate(self.host_names):
            port = self.port_of[h, fabric.tor_of[h]]
            nic_seed = stable_hash("nic", seed, h)
            if self.transport_model:
                nic = RdmaNic(env, i, h, port, scenario.nic, self.lb.entropy_per_packet, nic_seed, port.gbps, rtt_ps,
                              on_flow_done, on_flow_closed, entropy_source)
            else:
                nic = Nic(env, i, h, port, scenario.nic.mtu_bytes, scenario.nic.header_bytes,
                          self.lb.entropy_per_packet, nic_seed, on_flow_done)
            self.nics.append(nic)

        for (a, b), port in self.port_of.items():
            if b in self.switches:
                port.feed(self.switches[b].on_arrival)
            else:
                port.feed_host(self.nics[self.host_index[b]])

        self.set_next_hops(fabric.next_hops)

    def set_next_hops(self, next_hops: NextHops) -> None:
        """Forwarding tables: per switch, per destination host, the egress ports of the equal-cost
        next hops ``next_hops[switch][tor]`` (the fabric's; after a fault, the surviving ones). A
        switch whose groups change forgets its memoised choices and its selector's state."""
        tor_of = [self.fabric.tor_of[h] for h in self.host_names]
        for name, sw in self.switches.items():
            groups: dict[str, tuple[Port, ...]] = {
                tor: tuple(self.port_of[name, n] for n in nbrs) for tor, nbrs in next_hops[name].items()
            }
            fib = [
                (self.port_of[name, h],) if tor_of[i] == name else groups[tor_of[i]]
                for i, h in enumerate(self.host_names)
            ]
            if fib == sw.fib:  # unchanged (ports compare by identity): keep its state
                continue
            sw.fib = fib
            sw.memo.clear()
            reset = getattr(sw.select, "reset", None)
            if reset is not None:
                reset()

    def apply(self, fault: Fault) -> None:
        """A link fault takes effect now on the egress ports of its directed links."""
        act = self.FAULT_ACTIONS[fault.kind]
        for a, b in fault.links:
            act(self, a, b, fault)

    def _down(self, a: str, b: str, fault: Fault) -> None:
        self.port_of[a, b].go_down()

    def _up(self, a: str, b: str, fault: Fault) -> None:
        self.port_of[a, b].go_up()

    def _degrade(self, a: str, b: str, fault: Fault) -> None:
        self.port_of[a, b].set_rate(fault.value)
        sw = self.switches.get(a)
        changed = getattr(sw.select, "rates_changed", None) if sw is not None else None
        if changed is not None:  # a selector that compares ports by their rates re-learns them
            changed()

    def _lossy(self, a: str, b: str, fault: Fault) -> None:
        self.port_of[a, b].set_loss(fault.value, stable_hash("loss", self.seed, a, b))

    FAULT_ACTIONS = {"link_down": _down, "link_up": _up, "link_degrade": _degrade, "link_loss": _lossy}
    """Link fault kind -> what it does to the egress port of each of its directed links."""

    def _ideal_port(self, port_id: int, a: str, b: str, scenario: Scenario) -> Port:
        f = self.fabric
        # A switch's forwarding latency is modelled on the links into it (EgressPort).
        return Port(self.env, port_id, a, b, f.link_gbps(a, b), f.link_delay_ns(a, b),
                    scenario.traces.queue_interval_ns, self.port_log, f.goes_down(a, b),
                    switch_latency_ns=scenario.switch.latency_ns if f.is_switch(b) else 0)

    def _buffered_port(self, port_id: int, a: str, b: str, scenario: Scenario) -> BufferedPort:
        f = self.fabric
        at_switch = f.is_switch(a)
        buffer = self.buffers.get(a)
        port = BufferedPort(
            self.env, port_id, a, b, f.link_gbps(a, b), f.link_delay_ns(a, b), scenario.traces.queue_interval_ns,
            self.port_log, f.goes_down(a, b), None if buffer is None or buffer.transparent else buffer,
            scenario.switch.ecn if at_switch else None,
            stable_hash("ecn", scenario.seed, a, b),
            switch_latency_ns=scenario.switch.latency_ns if f.is_switch(b) else 0,
        )
        port.on_drop = dropped
        port.on_fault_drop = fault_dropped
        return port

    def close(self) -> None:
        """Flush every port's last sampling intervals into ``port_log``."""
        for port in self.ports:
            port.close()
