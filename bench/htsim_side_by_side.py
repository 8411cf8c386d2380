"""htsim on the benchmark's scenario, for ``bench_core.py --htsim DIR``: inputs, runs, parsing.

htsim (https://github.com/ultraethernet/uet-htsim, the UEC fork of Mark Handley's htsim) is not
part of pktsim and nothing of it is copied here: this module writes its input files, runs its
binaries (``htsim_uec``, ``htsim_roce``, built from that repository) and reads their stdout.

The scenario, as pktsim's ``--topology bench --workload permutation``:

* 4 spines x 8 leaves x 4 hosts = 32 hosts, every link 100 Gb/s with 1 us propagation, no switch
  latency: for htsim_uec an htsim FatTree topology file with 2 tiers (tier 0: 4 hosts down, 4
  uplinks; tier 1: 8 leaves down), see :func:`write_topology`; htsim_roce builds the same fabric
  from ``-tiers 2 -nodes 32`` (see :func:`_roce`);
* a permutation, host i sends one flow to host (i + 4) % 32 (always another leaf: 4 hops each
  way), all starting at 0: an htsim connection matrix, see :func:`write_matrix`;
* 4096-byte packets on the wire, 4032 bytes of payload, 64-byte ACKs (htsim_uec's ``-mtu`` is the
  wire size; htsim_roce's is the payload: it adds its 64-byte header).

Packet-hops: htsim does not count them, so they are counted from what it prints. Every packet of
this scenario crosses 4 queues (host NIC, source leaf uplink, spine downlink, destination leaf
downlink) and the buffers are large enough that none is trimmed or dropped, so

* data hops = 4 x data packets sent (htsim_uec: ``New`` + ``Rtx`` of its totals; htsim_roce: the
  packets of the flows' "finished" lines, see :func:`run_htsim`);
* control hops = 4 x control packets: htsim_uec's ``ACKs`` + ``NACKs`` + ``Pulls`` (counted where
  they arrive, at the sender); htsim_roce acknowledges every in-order packet (one ACK per data
  packet delivered in order: all of them, as nothing is lost or reordered here), plus one NACK per
  "Wrong seqno" line and one CNP per "CNP received" line. PFC pause frames are not counted (nor
  are they in pktsim's packet-hops).

Times: htsim's wall time is taken from its stdout as it is printed (each line is flushed), from
"Starting simulation" to the last flow's "finished" line: the event loop only, as pktsim's
``wall_s``; the process's own wall time and peak RSS (``os.wait4``) are reported too. htsim
reports a flow finished when its sender receives the last ACK; pktsim's CCT is the arrival of the
last byte, so one ACK's return path (4 x (64 B at 100 Gb/s + 1 us) = 4.02 us) is subtracted.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

N_SPINES, N_LEAVES, HOSTS_PER_LEAF = 4, 8, 4
N_HOSTS = N_LEAVES * HOSTS_PER_LEAF
SHIFT = 4                 # host i -> host (i + SHIFT) % N_HOSTS
HOPS = 4                  # host -> leaf -> spine -> leaf -> host
LINK_GBPS, PROP_NS = 100, 1000
WIRE_BYTES, HEADER_BYTES, ACK_BYTES = 4096, 64, 64
PAYLOAD_BYTES = WIRE_BYTES - HEADER_BYTES
ACK_RETURN_NS = HOPS * (ACK_BYTES * 8 / LINK_GBPS + PROP_NS)
DCQCN_K_PACKETS = 13
"""htsim's DCQCN marks every packet dequeued while its queue holds more than K packets (one
threshold); pktsim's roce profile marks with RED (kmin 5 KB, kmax 200 KB, pmax 1%). 13 packets
(53 KB) is where RED's probability (0.25%) marks about one packet per 50 us CNP interval of a flow
at a third of line rate, the ECMP collisions' share."""


def write_topology(path: Path) -> Path:
    """The 4 x 8 x 4 leaf-spine as an htsim FatTree topology file (the repository's
    ``datacenter/topologies/leaf_spine_tiny.topo`` syntax)."""
    path.write_text(
        f"Nodes {N_HOSTS}\nTiers 2\nPodsize {N_HOSTS}\n\n"
        f"Tier 0\nDownlink_speed_Gbps {LINK_GBPS}\nRadix_Down {HOSTS_PER_LEAF}\nRadix_Up {N_SPINES}\n"
        f"Downlink_Latency_ns {PROP_NS}\nSwitch_Latency_ns 0\nOversubscribed 1\n\n"
        f"Tier 1\nDownlink_speed_Gbps {LINK_GBPS}\nRadix_Down {N_LEAVES}\n"
        f"Downlink_Latency_ns {PROP_NS}\nSwitch_Latency_ns 0\n")
    return path


def write_matrix(path: Path, flow_bytes: int) -> Path:
    """The permutation as an htsim connection matrix (``connection_matrices/perm_32n_32c_2MB.cm``)."""
    lines = [f"Nodes {N_HOSTS}", f"Connections {N_HOSTS}"]
    lines += [f"{i}->{(i + SHIFT) % N_HOSTS} id {i + 1} start 0 size {flow_bytes}" for i in range(N_HOSTS)]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class HtsimCase:
    """One htsim configuration: which binary, with which flags (besides topology, matrix, end)."""

    binary: str
    flags: tuple[str, ...]
    label: str
    topo_file: bool = True
    """Pass the topology file (htsim_roce cannot read one, see :func:`_roce`)."""


def _uec(paths: int, sack_bytes: int) -> HtsimCase:
    return HtsimCase("htsim_uec", (
        "-sender_cc_algo", "constant", "-cwnd", "2000", "-load_balancing_algo", "oblivious",
        "-q", "100000", "-paths", str(paths), "-mtu", str(WIRE_BYTES), "-sack_threshold", str(sack_bytes),
    ), f"htsim_uec constant cwnd, oblivious, {'ECMP' if paths == 1 else f'{paths} paths'}")


def _roce(dcqcn: bool) -> HtsimCase:
    """htsim_roce builds the same fabric itself from ``-tiers 2 -nodes 32`` (a 2-tier FatTree of K = 8:
    8 ToRs of 4 hosts, 4 spines; links 100 Gb/s, 1 us, its defaults). It cannot load a topology file:
    ``main_roce.cpp`` never sets the queue sizes of a loaded topology, which exits with "Missing
    queue_up for tier 0"."""
    flags = ("-tiers", "2", "-nodes", str(N_HOSTS), "-strat", "ecmp_host", "-paths", "1",
             "-pfc_thresholds", "56", "64", "-q", "10000", "-mtu", str(PAYLOAD_BYTES))
    if dcqcn:
        flags += ("-dcqcn", str(DCQCN_K_PACKETS))
    return HtsimCase("htsim_roce", flags, f"htsim_roce PFC{f' + DCQCN K={DCQCN_K_PACKETS}' if dcqcn else ''}, ECMP",
                     topo_file=False)


DCQCN_UNUSABLE = ("htsim_roce -dcqcn does not finish here: each extra wake-up of its DCQCN source (CNP, rate "
                  "timer) starts another self-rescheduling send chain, so its events grow without bound (1 MiB "
                  "flows: 9 of 32 unfinished after 20 s at 0.4 ms simulated; 4 MiB: 9.4 GB RSS)")


def htsim_cases(sack_bytes: int = WIRE_BYTES, dcqcn: bool = False) -> dict[str, HtsimCase | None]:
    """The htsim peer of each pktsim case of bench_core.py (None: no usable peer, see
    :data:`DCQCN_UNUSABLE`; ``dcqcn``: try htsim_roce -dcqcn anyway). ``sack_bytes``: htsim_uec
    acknowledges every this many received bytes (its default 16384 is every 4 packets; 4096: every
    packet, as pktsim's ``ack_every: 1``)."""
    ecmp, spray = _uec(1, sack_bytes), _uec(8192, sack_bytes)
    return {"ecmp": ecmp, "spray": spray, "sr_ecmp": ecmp, "sr_spray": spray,
            "roce_pfc": _roce(False), "roce_dcqcn": _roce(True) if dcqcn else None}


def find_binary(root: Path, name: str) -> Path:
    """``name`` under ``root``: the build directory (``build/datacenter/name``), the source's
    ``datacenter/`` (where htsim's build leaves symlinks) or ``root`` itself."""
    for cand in (root / name, root / "datacenter" / name, root / "build" / "datacenter" / name,
                 root / "htsim" / "sim" / "build" / "datacenter" / name):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError(f"{name} not found under {root} (looked in ., datacenter/, build/datacenter/)")


_FINISHED = re.compile(rb"^Flow (\S+) .*finished at ([0-9.eE+-]+) (?:total messages \d+ total packets|total bytes) (\d+)")
_UEC_TOTALS = re.compile(rb"^New: (\d+) Rtx: (\d+) RTS: (\d+) Bounced: (\d+) ACKs: (\d+) NACKs: (\d+) Pulls: (\d+)")


def run_htsim(root: Path, case: HtsimCase, flow_bytes: int, workdir: Path, end_us: int,
              timeout_s: float = 600.0) -> dict:
    """Run ``case`` on the scenario with flows of ``flow_bytes``; returns its figures (see the
    module's docstring). Raises if a flow did not finish by ``end_us`` of simulated time.

    htsim_roce is stopped (SIGTERM) once its last flow has finished: its sources keep scheduling
    themselves at the packet spacing until ``-end`` once done (DCQCN's print a line each time, gigabytes
    of them), and the totals it prints at the end are not kept (``New`` is always 0), so its packets
    are counted from the flows' "finished" lines: ``total bytes`` there is the last ACK's number, in
    packets. Go-back-N resends only after a NACK; none is expected here (lossless, in order), and
    a run with NACKs is reported with its resends unknown (counted as 0, ``nacks`` says how many).
    A run still going after ``timeout_s`` of wall time is stopped and raises ``TimeoutError``."""
    binary = find_binary(root, case.binary)
    tm = write_matrix(workdir / f"perm_{N_HOSTS}n_{flow_bytes}B.cm", flow_bytes)
    topo = ["-topo", str(write_topology(workdir / "bench_4x8x4.topo"))] if case.topo_file else []
    cmd = [str(binary), *topo, "-tm", str(tm), "-end", str(end_us), "-o", str(workdir / "logout.dat"), *case.flags]
    finished: dict[bytes, tuple[float, int]] = {}
    t_start = t_last = None
    totals = None
    nacks = cnps = 0
    tail: list[bytes] = []
    rest = b""
    stop_when_done = case.binary == "htsim_roce"
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    fd = child.stdout.fileno()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        now = time.perf_counter()
        if now - t0 > timeout_s:
            child.kill()
            child.wait()
            raise TimeoutError(f"{' '.join(cmd)}: stopped after {timeout_s:.0f} s, "
                               f"{len(finished)} of {N_HOSTS} flows finished")
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if t_start is None:
                if line.startswith(b"Starting simulation"):
                    t_start = now
                tail = (tail + [line])[-20:]
            elif line.startswith(b"Flow "):
                if m := _FINISHED.match(line):
                    finished[m.group(1)] = (float(m.group(2)), int(m.group(3)))
                    t_last = now
            elif b"CNP received" in line:
                cnps += 1
            elif line.startswith(b"Wrong seqno"):
                nacks += 1
            elif m := _UEC_TOTALS.match(line):
                totals = [int(x) for x in m.groups()]
            elif not line.startswith((b"Adding ", b"At ", b"PAUSE", b"Source ")):
                tail = (tail + [line])[-20:]
        if stop_when_done and len(finished) == N_HOSTS:
            child.terminate()
            break
    child.stdout.close()
    _, status, usage = os.wait4(child.pid, 0)
    process_s = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    output = b"".join(x + b"\n" for x in tail).decode(errors="replace")
    if len(finished) != N_HOSTS:
        if code == 0:
            raise RuntimeError(f"only {len(finished)} of {N_HOSTS} htsim flows finished by {end_us} us "
                               f"(raise -end): {' '.join(cmd)}")
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}:\n{output}")
    if not stop_when_done and (code or totals is None):
        raise RuntimeError(f"{' '.join(cmd)} exited with {code} (no totals):\n{output}")
    if totals is not None:
        new, rtx, _rts, _bounced, acks, nacks, pulls = totals
        control = acks + nacks + pulls
    else:
        new, rtx, pulls = sum(n for _, n in finished.values()), 0, 0
        acks = new   # one ACK per packet delivered in order (no loss, no reordering here)
        control = acks + nacks + cnps
    data_hops, all_hops = HOPS * (new + rtx), HOPS * (new + rtx + control)
    wall = t_last - t_start
    last_ack_us = max(t for t, _ in finished.values())
    return {
        "binary": case.binary, "label": case.label, "cmd": cmd, "wall_s": wall, "process_s": process_s,
        "peak_rss_mib": usage.ru_maxrss / 1024, "data_packets": new + rtx, "retransmits": rtx,
        "acks": acks, "nacks": nacks, "cnps": cnps, "pulls": pulls,
        "data_hops": data_hops, "packet_hops": all_hops,
        "packet_hops_per_s": all_hops / wall, "data_hops_per_s": data_hops / wall,
        "last_ack_ns": last_ack_us * 1e3, "cct_ns": last_ack_us * 1e3 - ACK_RETURN_NS,
    }
