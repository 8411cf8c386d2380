"""The packet-level network: switches, ports and NICs wired after a topology graph."""

from __future__ import annotations

from typing import Callable

import simpy

from pktsim.packet.buffered_ports import BufferedPort
from pktsim.packet.switch_buffer import SwitchBuffer
from pktsim.packet.nic import Flow, Nic, NicBase
from pktsim.fabric.fabric import Fabric
from pktsim.fabric.hashing import stable_hash
from pktsim.fabric.selectors import LoadBalancing, make_selector
from pktsim.scenario import Scenario
from pktsim.packet.ports import Port
from pktsim.packet.switch import Switch
from pktsim.traces import PortLog
from pktsim.packet.transport import RdmaFlow, RdmaNic, dropped
from pktsim.units import PS_PER_NS, ns_to_ps


def uses_transport_model(scenario: Scenario) -> bool:
    """True when the scenario needs event-driven ports and the transport NIC (anything beyond the
    ideal fabric: ACKs, finite buffers, PFC or ECN); the ideal fabric keeps the one-event-per-hop
    ports of :mod:`pktsim.packet.ports`."""
    sw = scenario.switch
    return scenario.nic.transport != "ideal" or sw.finite or sw.pfc.enabled or sw.ecn is not None


def base_rtt_ps(scenario: Scenario) -> int:
    """Round trip of the longest path (4 links in a leaf-spine, 6 in a fat-tree) without queueing:
    propagation and switch latency both ways, an MTU serialised per hop out, an ACK back."""
    topo = scenario.topology
    links = 4 if topo.kind == "leaf_spine" else 6
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
        graph = fabric.graph
        self.lb = LoadBalancing.from_spec(scenario.lb)
        self.port_log = PortLog()
        self.ports: list[Port] = []
        interval = scenario.traces.queue_interval_ns
        seed = scenario.seed
        self.host_names = fabric.hosts
        self.host_index = fabric.host_index
        self.switches: dict[str, Switch] = {}
        switch_names = fabric.switches
        self.transport_model = uses_transport_model(scenario)
        for i, name in enumerate(switch_names):
            self.switches[name] = Switch(env, i, name, fabric.salts[name], make_selector(self.lb, seed, name))
        self.switch_names = switch_names
        self.buffers = {name: SwitchBuffer(env, scenario) for name in switch_names} if self.transport_model else {}

        # One egress port per direction of every link.
        self.port_of: dict[tuple[str, str], Port | BufferedPort] = {}
        for u, v, data in sorted(graph.edges(data=True)):
            for a, b in ((u, v), (v, u)):
                down = graph.nodes[b]["tier"] < graph.nodes[a]["tier"]
                # A switch's forwarding latency is modelled on the links into it (EgressPort).
                latency = scenario.switch.latency_ns if b in self.switches else 0
                if self.transport_model:
                    port = BufferedPort(
                        env, len(self.ports), a, b, data["gbps"], data["delay_ns"], interval, self.port_log, down,
                        self.buffers.get(a), scenario.switch.ecn if a in self.switches else None,
                        stable_hash("ecn", seed, a, b), switch_latency_ns=latency,
                    )
                    port.on_drop = dropped
                else:
                    port = Port(env, len(self.ports), a, b, data["gbps"], data["delay_ns"], interval, self.port_log,
                                down, switch_latency_ns=latency)
                self.ports.append(port)
                self.port_of[a, b] = port

        self.nics: list[NicBase] = []
        rtt_ps = base_rtt_ps(scenario)
        for i, h in enumerate(self.host_names):
            port = self.port_of[h, fabric.tor_of[h]]
            nic_seed = stable_hash("nic", seed, h)
            if self.transport_model:
                nic = RdmaNic(env, i, h, port, scenario.nic, self.lb.entropy_per_packet, nic_seed, port.gbps, rtt_ps,
                              on_flow_done, on_flow_closed)
            else:
                nic = Nic(env, i, h, port, scenario.nic.mtu_bytes, scenario.nic.header_bytes,
                          self.lb.entropy_per_packet, nic_seed, on_flow_done)
            self.nics.append(nic)

        self.host_ports: list[Port | BufferedPort] = []
        """The ports of the links into hosts (every packet's last hop)."""
        for (a, b), port in self.port_of.items():
            if b in self.switches:
                target = self.switches[b].on_arrival
            else:
                self.host_ports.append(port)
                nic = self.nics[self.host_index[b]]
                if not self.transport_model:
                    port.deliver = nic.deliver
                    continue
                target = nic.on_arrival
            if self.transport_model:
                port.wire.arrival_callbacks = (target,)
            else:
                port.arrival_callbacks = (target,)

        # Forwarding tables: per switch, per destination host, the equal-cost egress ports.
        tor_of = [fabric.tor_of[h] for h in self.host_names]
        for name, sw in self.switches.items():
            groups: dict[str, tuple[Port, ...]] = {
                tor: tuple(self.port_of[name, n] for n in nbrs) for tor, nbrs in fabric.next_hops[name].items()
            }
            sw.fib = [
                (self.port_of[name, h],) if tor_of[i] == name else groups[tor_of[i]]
                for i, h in enumerate(self.host_names)
            ]

    def close(self) -> None:
        """Flush every port's last sampling intervals into ``port_log``."""
        for port in self.ports:
            port.close()
