"""ns.py baseline for the pktsim benchmark: the same scenario, simulated with ns.py (PyPI ``ns-py``).

What is modelled, packet by packet, with ns.py's own elements (SimPy underneath):

* Leaf-spine fabric: 4 spines, 8 leaves, 4 hosts per leaf (hosts h0..h31, host i under leaf i//4).
  Every switch and every host is an ``ns.switch.SimplePacketSwitch``: a ``FIBDemux`` (flow id ->
  output port) in front of one FIFO ``ns.port.port.Port`` per link, unlimited buffer
  (``qlimit=None``).  Every link direction is that Port (100 Gbit/s serialisation) followed by an
  ``ns.port.wire.Wire`` (1 us propagation) whose ``out`` is the next device.  A host is a 1-port
  switch: its port is the NIC egress queue; the destination host's demux hands the flow's packets
  to a ``PacketSink`` through ``demux.ends`` (as in ns.py's fat-tree example).
* Traffic: cross-leaf permutation, host i sends one flow of F bytes to host (i + 4) % 32.  Each
  flow is a ``DistPacketGenerator`` with constant inter-arrival = one 4096-byte serialisation time
  (line rate, back to back), ceil(F / 4032) packets of 4096 bytes (4032 payload + 64 header).
* Routing: per-flow ECMP at the source leaf, spine = crc32(seed, flow id) % 4, written into the
  FIBs (ns.py routes on ``packet.flow_id``); spines forward to the destination leaf, leaf to host.
* Measured: wall seconds of ``env.run()`` only (building excluded), packet-hops (packets x 4
  links), packets received at the sinks (checked against packets sent) and the simulated time of
  the last delivery.  Time unit: nanoseconds (Port rates are given in bits per ns).
"""

from __future__ import annotations

import argparse
import math
import time
import zlib

N_SPINES, N_LEAVES, HOSTS_PER_LEAF = 4, 8, 4
N_HOSTS = N_LEAVES * HOSTS_PER_LEAF
LINK_BITS_PER_NS = 100.0          # 100 Gbit/s
PROP_NS = 1000.0                  # 1 us
PKT_BYTES, PAYLOAD_BYTES = 4096, 4032
HOPS_PER_PACKET = 4               # host->leaf, leaf->spine, spine->leaf, leaf->host


def _import_ns():
    try:
        import simpy
        from ns.packet.dist_generator import DistPacketGenerator
        from ns.packet.sink import PacketSink
        from ns.port.wire import Wire
        from ns.switch.switch import SimplePacketSwitch
    except ImportError as exc:
        raise ImportError(f"ns.py is not installed (pip install ns-py): {exc}") from exc
    return simpy, DistPacketGenerator, PacketSink, Wire, SimplePacketSwitch


def ecmp_spine(flow_id: int, seed: int) -> int:
    """Deterministic per-flow ECMP choice of spine."""
    return zlib.crc32(f"{seed}:{flow_id}".encode()) % N_SPINES


def run_nspy(flow_bytes: int = 64 * 2**20, seed: int = 1) -> dict:
    """Returns {'packet_hops': int, 'wall_s': float, 'hops_per_s': float, 'packets': int, 'sim_time_ns': float}."""
    simpy, DistPacketGenerator, PacketSink, Wire, SimplePacketSwitch = _import_ns()
    if flow_bytes <= 0:
        raise ValueError("flow_bytes must be positive")
    env = simpy.Environment()
    n_pkts = math.ceil(flow_bytes / PAYLOAD_BYTES)

    def switch(name, nports):
        return SimplePacketSwitch(env, nports, LINK_BITS_PER_NS, None, element_id=name)

    # Port numbering: host port 0 -> its leaf; leaf ports 0..3 -> its hosts, 4..7 -> spines;
    # spine port l -> leaf l.
    hosts = [switch(f"h{i}", 1) for i in range(N_HOSTS)]
    leaves = [switch(f"leaf{l}", HOSTS_PER_LEAF + N_SPINES) for l in range(N_LEAVES)]
    spines = [switch(f"spine{s}", N_LEAVES) for s in range(N_SPINES)]
    for dev in hosts + leaves + spines:
        dev.demux.fib = {}

    wires = []

    def link(port, dst_device):
        """One link direction: the egress Port serialises, a Wire adds propagation delay."""
        wire = Wire(env, lambda: PROP_NS, wire_id=len(wires))
        wire.out = dst_device
        port.out = wire
        wires.append(wire)

    for i, h in enumerate(hosts):
        leaf = leaves[i // HOSTS_PER_LEAF]
        link(h.ports[0], leaf)
        link(leaf.ports[i % HOSTS_PER_LEAF], h)
    for l, leaf in enumerate(leaves):
        for s, spine in enumerate(spines):
            link(leaf.ports[HOSTS_PER_LEAF + s], spine)
            link(spine.ports[l], leaf)

    # Flows: one per host, flow id = source host index.
    gap_ns = PKT_BYTES * 8 / LINK_BITS_PER_NS
    gens, sinks = [], []
    for fid in range(N_HOSTS):
        dst = (fid + HOSTS_PER_LEAF) % N_HOSTS
        src_leaf, dst_leaf = fid // HOSTS_PER_LEAF, dst // HOSTS_PER_LEAF
        assert src_leaf != dst_leaf
        spine = ecmp_spine(fid, seed)
        hosts[fid].demux.fib[fid] = 0
        leaves[src_leaf].demux.fib[fid] = HOSTS_PER_LEAF + spine
        spines[spine].demux.fib[fid] = dst_leaf
        leaves[dst_leaf].demux.fib[fid] = dst % HOSTS_PER_LEAF
        sink = PacketSink(env, rec_arrivals=True, rec_waits=False)
        hosts[dst].demux.ends[fid] = sink
        gen = DistPacketGenerator(env, f"h{fid}", lambda: gap_ns, lambda: PKT_BYTES,
                                  size=n_pkts * PKT_BYTES, flow_id=fid)
        gen.out = hosts[fid]
        gens.append(gen)
        sinks.append(sink)

    t0 = time.perf_counter()
    env.run()
    wall = time.perf_counter() - t0

    sent = sum(g.packets_sent for g in gens)
    received = sum(sum(s.packets_received.values()) for s in sinks)
    if sent != N_HOSTS * n_pkts or received != sent:
        raise RuntimeError(f"ns.py run lost packets: expected {N_HOSTS * n_pkts}, "
                           f"sent {sent}, received {received}")
    for fid, s in enumerate(sinks):  # sinks[fid] sits at flow fid's destination host
        if dict(s.packets_received) != {fid: n_pkts}:
            raise RuntimeError(f"sink of flow {fid} got {dict(s.packets_received)}")
    sim_time = max(max(s.last_arrival.values()) for s in sinks)
    hops = received * HOPS_PER_PACKET
    return {"packet_hops": hops, "wall_s": wall, "hops_per_s": hops / wall if wall > 0 else float("inf"),
            "packets": received, "sim_time_ns": float(sim_time)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Leaf-spine permutation benchmark simulated with ns.py.")
    ap.add_argument("--mib", type=float, default=64, help="flow size per host in MiB (default 64)")
    ap.add_argument("--seed", type=int, default=1, help="salt of the ECMP hash (default 1)")
    args = ap.parse_args(argv)
    try:
        result = run_nspy(int(args.mib * 2**20), args.seed)
    except ImportError as exc:
        raise SystemExit(f"ns.py not installed, skipped ({exc})")
    spines = [ecmp_spine(f, args.seed) for f in range(N_HOSTS)]
    print(f"# ECMP spine per flow: {spines}")
    print(result)


if __name__ == "__main__":
    main()
