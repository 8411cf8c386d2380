"""The packet-level network: switches, ports and NICs wired after a topology graph."""

from __future__ import annotations

from typing import Callable

import networkx as nx
import simpy

from .nic import Flow, Nic
from .routing import LoadBalancing, make_selector, stable_hash, switch_salt
from .scenario import Scenario
from .switch import Port, PortLog, Switch
from .topology import host_tor, hosts, next_hops


class Network:
    """Every element of the fabric, indexed for the simulation and the recorder.

    ``ports[i]`` has ``port_id == i``; ``nics[h]`` is the NIC of host ``h<h>``; ``switches``
    follow the graph's node order. ``port_log`` receives the ports' occupancy samples.
    """

    def __init__(
        self, env: simpy.Environment, graph: nx.Graph, scenario: Scenario, on_flow_done: Callable[[Flow, int], None]
    ) -> None:
        self.env = env
        self.graph = graph
        self.lb = LoadBalancing.from_spec(scenario.lb)
        self.port_log = PortLog()
        self.ports: list[Port] = []
        interval = scenario.traces.queue_interval_ns
        seed = scenario.seed
        self.host_names = hosts(graph)
        self.host_index = {h: i for i, h in enumerate(self.host_names)}
        self.switches: dict[str, Switch] = {}
        switch_names = [n for n, d in graph.nodes(data=True) if d["kind"] == "switch"]
        for i, name in enumerate(switch_names):
            self.switches[name] = Switch(
                env, i, name, switch_salt(seed, name), make_selector(self.lb, seed, name), scenario.switch.latency_ns
            )
        self.switch_names = switch_names

        # One egress port per direction of every link.
        self.port_of: dict[tuple[str, str], Port] = {}
        for u, v, data in sorted(graph.edges(data=True)):
            for a, b in ((u, v), (v, u)):
                down = graph.nodes[b]["tier"] < graph.nodes[a]["tier"]
                port = Port(env, len(self.ports), a, b, data["gbps"], data["delay_ns"], interval, self.port_log, down)
                self.ports.append(port)
                self.port_of[a, b] = port

        self.nics: list[Nic] = []
        for i, h in enumerate(self.host_names):
            port = self.port_of[h, host_tor(graph, h)]
            nic = Nic(
                env, i, h, port, scenario.nic.mtu_bytes, scenario.nic.header_bytes,
                self.lb.entropy_per_packet, stable_hash("nic", seed, h), on_flow_done,
            )
            self.nics.append(nic)

        for (a, b), port in self.port_of.items():
            if b in self.switches:
                port.arrival_callbacks = (self.switches[b].on_arrival,)
            else:
                port.deliver = self.nics[self.host_index[b]].deliver

        # Forwarding tables: per switch, per destination host, the equal-cost egress ports.
        hops = next_hops(graph)
        tor_of = [host_tor(graph, h) for h in self.host_names]
        for name, sw in self.switches.items():
            groups: dict[str, tuple[Port, ...]] = {
                tor: tuple(self.port_of[name, n] for n in nbrs) for tor, nbrs in hops[name].items()
            }
            sw.fib = [
                (self.port_of[name, h],) if tor_of[i] == name else groups[tor_of[i]]
                for i, h in enumerate(self.host_names)
            ]

    def close(self) -> None:
        """Flush every port's last sampling intervals into ``port_log``."""
        for port in self.ports:
            port.close()
