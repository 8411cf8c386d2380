"""``pktsim diagnose RUN_DIR``: which components of the fabric are most likely at fault, from the
run's traces alone (after C4's C4D, arXiv 2406.04594: collective traffic is regular, so a component
that breaks the regularity stands out).

What it reads. Only what an operator's monitoring would show: the ``messages``, ``flows``,
``collectives``, ``queues`` and ``links`` tables, the fabric's design (topology and provisioned port
speeds: ``topology`` in the scenario metadata) and the sampling interval. It never reads the
``faults`` table, the scenario's ``faults`` and ``routing`` sections (dropped as soon as the metadata
is parsed), the fault keys of ``summary.json`` (it reads its ``backend`` only), ``links.gbps`` (a
degraded link's column shows its lowered rate: that is the fault itself, which the diagnosis must
find from behaviour) nor ``links.utilization`` (time the port was transmitting: with the bytes it
gives the port's true serialisation rate, the same reading). It does read ``queues.fault_drops``: a
per-port count of packets lost on the wire is what a switch's error counters (CRC, FEC
uncorrectable, discards) show an operator, and ``diagnose --no-counters`` leaves it out to measure
what behaviour alone finds.

Evidence, each a *strength* (1 = at the alarm threshold; thresholds calibrated on fault-free runs
of many seeds, schemes, workloads, transports and both backends: ``diagnose --evaluate``):

- **rate** (queues + links, packet runs): a FIFO port is work-conserving, so a backlog whose mean
  over an interval is ``m`` and maximum ``M`` kept the port busy at least ``m / M`` of it, and a
  healthy port sent at least ``C x (interval x m / M - paused_ns)`` bytes (``C`` its provisioned
  speed, PFC pause time taken out). ECMP collisions and ordinary congestion meet the bound (the
  colliding link sends at full speed); a degraded link does not: with a standing queue it sends at
  its lowered rate. Statistic: the median ratio of the bytes sent to the bound over the port's
  intervals below ``RATE_RATIO`` (0.8); strength ``(1 - ratio) / 0.2`` with at least 3 such
  intervals (2.5 at half speed). Fault-free runs never had a port below 0.8 of the bound.
- **loss** (``queues.fault_drops``, packet runs): packets lost on the port, ``1 + log10(n)``.
- **silence** (``flows.path``/``spine_bytes`` per connection, links): connections that moved off a
  link, nothing crossing it afterwards, those moves being most (``SILENCE_SHARE``) of the route
  changes around that time: a dead link the switches routed around. A scheme that moves
  connections by itself (adaptive, flowlet, spray: ``lb.scheme`` is part of the fabric's design)
  needs two connections for strength 1, the others one.
- **retransmits** (flows): tomography of the flows that resent lost data (resends minus the spurious
  ones minus go-back-N's discards: what the endpoints count; flows whose path crossed a port with
  congestion drops, ``queues.drops``, are explained): per link, the share of its flows since its
  first lossy one that resent data minus that share among all other flows (``RETX_CONTRAST``).
- **throughput** (flows; both backends, the only link evidence of a fluid run): a flow is
  unexplained when it ran slow while no link of its path carried ``THROUGHPUT_SAT`` (0.75) of its
  provisioned speed (link load: the delivered rates of the flows on it, integrated over time) and no
  port of its path ECN-marked or was paused (congestion control slowed it for congestion it met).
  A healthy flow is held back by a saturated link (its NIC, a collision); under max-min sharing
  always. Per link: the share of its bytes in unexplained flows minus that share elsewhere
  (``THROUGHPUT_CONTRAST``). With port counters (packet runs) it only corroborates (capped at 0.9):
  ideal-transport senders keep their link busy while the data waits at a degraded port, and
  congestion control slows flows in ways the flows table cannot tell from a fault.
- **straggler** (messages + collectives): an iteration's first messages are ready a compute gap
  after the previous iteration ended, the same gap for every rank (measured from
  ``collectives.end_ns``); a host whose gap is ``STRAGGLER_FACTOR`` (1.05) times its peers' median
  and 200 ns longer in at least half the iterations is a straggler (strength up to 4 at 1.4x).

Tomography (retransmits, throughput) counts a flow on every link it crossed and on every link its
connection's earlier flows crossed (after a route change the copies it lost went the old way; the
flows table records where the delivered bytes went). It names the links of the bad flows' paths alike, so it is
capped at ``TOMOGRAPHY_CAP`` (2) while a port's own counters go higher. Then, as in boolean
tomography, explaining away: the best suspect accounts for the bad flows crossing it and the others
are judged on the rest; suspects tied with it stay as alternatives, ordered by the contrast of the
whole cable (both directions: a host's cable carries the host's other direction too, which a fabric
cable's fault leaves alone).

A suspect's score is its strongest evidence plus a quarter of the others (each capped at 3); a run
has a fault when a score reaches 1. Links are reported once per cable (``[a, b]``, with the
direction that showed it or ``both``), hosts by name.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pktsim.errors import InputError
from pktsim.units import format_ns

# ---------------------------------------------------------------------------------------------
# Thresholds (calibrated on fault-free runs: see :mod:`pktsim.experiments.diagnosis_evaluation` and the module docstring)

RATE_RATIO = 0.8
"""A backlogged interval is short of its port speed when it sent less than this fraction of the
work-conserving bound."""
RATE_MIN_INTERVALS = 3
"""Short intervals a port needs before the rate evidence counts in full."""
RATE_MIN_BUSY = 0.25
"""Intervals where the backlog kept the port busy less than this fraction of the time say little."""
LOSS_FULL = 1
"""fault_drops on a port: strength 1 at this many packets, +1 per factor of 10."""
THROUGHPUT_SAT = 0.75
"""A flow is explained when a link of its path ran at least this fraction of its port speed ..."""
THROUGHPUT_SAT_FLOWS_ONLY = 0.95
"""... 0.95 without port counters (fluid runs: a max-min bottleneck runs at its speed exactly) ..."""
THROUGHPUT_FAIR = 0.8
"""... and the flow got at least this fraction of the link's mean rate per flow."""
THROUGHPUT_MIN_PACKETS = 16
"""Flows shorter than this many packets are too short to judge their rate."""
THROUGHPUT_CONTRAST = 0.5
"""Share of a link's bytes (since its first unexplained flow) in unexplained flows, minus that share
among the other links' flows, for strength 1."""
THROUGHPUT_MIN_FLOWS = 3
"""Unexplained flows a link needs for the throughput evidence in full, with port counters (packet
runs: transports and congestion control make single flows noisy) ..."""
THROUGHPUT_MIN_FLOWS_FLOWS_ONLY = 1
"""... and without them (fluid runs: under max-min sharing every healthy flow has a saturated link,
and fault-free fluid runs of every scheme show no unexplained flow at all)."""
THROUGHPUT_CAP_WITH_COUNTERS = 0.9
"""Where the queues and links tables exist (packet runs) the throughput evidence only corroborates:
transports and congestion control slow flows in ways the flows table cannot tell from a fault."""
RETX_CONTRAST = 0.15
"""Share of a link's flows (since its first lossy one) that resent lost data, minus that share among
the other flows, for strength 1."""
RETX_MIN_FLOWS = 2
SILENCE_MIN_CONNECTIONS = 1
"""Connections that moved off a link (and nothing came back) for strength 1 ..."""
SILENCE_MIN_CONNECTIONS_SELF_ROUTING = 2
"""... under a scheme that moves connections by itself (``SELF_ROUTING``), ..."""
SELF_ROUTING = ("adaptive", "flowlet", "spray", "spray_switch")
"""Schemes whose paths change with the fabric's state or at random (lb.scheme, part of the fabric's
design): a route change there is no sign of a fault by itself."""
SILENCE_SHARE = 0.8
"""... when they were at least this share of the route changes from SILENCE_WINDOW before the first
to SILENCE_WINDOW after the last (a fraction of the makespan)."""
SILENCE_WINDOW = 0.02
STRAGGLER_FACTOR = 1.05
"""A host's compute gap at least this many times its peers' (median) ..."""
STRAGGLER_MIN_NS = 200
"""... and at least this much longer (ns; rounding is 1 ns)."""
STRAGGLER_MIN_SHARE = 0.5
"""Share of a job's iterations (after the first) in which the host was late."""
TOMOGRAPHY_CAP = 2.0
"""Path-level evidence (throughput, retransmits) names every link of the bad flows' paths alike and
tops out here; a port's own counters (rate, loss) go higher: 1 + log10(lost packets), or 2.5 for a
port at half speed and 3.75 at a quarter."""
CORROBORATION = 0.25
ALARM = 1.0
MAX_SUSPECTS = 10

CHANNELS = ("rate", "loss", "silence", "retransmits", "throughput", "straggler")


# ---------------------------------------------------------------------------------------------
# Reading a run


@dataclass
class Run:
    """The tables of one run directory, as an operator's monitoring would have them."""

    path: Path
    backend: str
    scenario: object  # pktsim.scenario.Scenario without its faults
    fabric: object  # pktsim.fabric.fabric.Fabric (healthy: the design)
    interval_ns: int
    mtu: int
    header: int
    messages: dict[str, np.ndarray]
    flows: dict[str, list]
    collectives: dict[str, list]
    queues: pa.Table | None
    links: pa.Table | None
    notes: list[str] = field(default_factory=list)


def check_run_dir(run_dir: Path) -> None:
    """Raise :class:`InputError` (one line) unless ``run_dir`` is a complete run directory."""
    from pktsim.rundir import MARKER

    where = str(run_dir)
    if not run_dir.is_dir():
        raise InputError(where, "", "not a run directory (no such directory)")
    marker = run_dir / MARKER
    if marker.exists():
        lines = marker.read_text(errors="replace").strip().splitlines()
        raise InputError(where, "", f"incomplete run ({MARKER}: {lines[0] if lines else 'no reason given'}): "
                                    "rerun it to the end")
    missing = [t for t in ("messages", "flows", "collectives") if not (run_dir / t).is_dir()]
    if missing:
        raise InputError(where, "", f"not a run directory (no {', '.join(missing)} table)")
    if not (run_dir / "summary.json").is_file():
        raise InputError(where, "", "incomplete run (no summary.json): rerun it to the end")


def read_table(run_dir: Path, name: str, columns: list[str] | None = None) -> pa.Table | None:
    path = run_dir / name
    if not path.is_dir():
        return None
    try:
        return pads.dataset(path, format="parquet").to_table(columns=columns)
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        raise InputError(str(run_dir), name, f"unreadable table ({type(e).__name__}: {e})") from None


def load_run(run_dir: Path | str) -> Run:
    """Read a complete run directory (see the module's docstring for what is and is not read)."""
    from pktsim.fabric.fabric import Fabric
    from pktsim.fabric.topology import build_graph
    from pktsim.scenario import Scenario

    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        backend = str(summary.get("backend", "packet"))
    except (ValueError, OSError) as e:
        raise InputError(str(run_dir), "summary.json", f"unreadable ({e})") from None
    try:
        meta = pads.dataset(run_dir / "messages", format="parquet").schema.metadata or {}
        scenario_json = json.loads(meta[b"pktsim.scenario"])
    except (KeyError, ValueError, pa.ArrowInvalid) as e:
        raise InputError(str(run_dir), "messages", f"no scenario in the table's metadata ({e})") from None
    # The fault list and the fabric's reaction times are what the diagnosis must find: drop them.
    scenario_json.pop("faults", None)
    scenario_json.pop("routing", None)
    try:
        scenario = Scenario.model_validate(scenario_json)
    except Exception as e:  # pydantic ValidationError: a run of another version
        raise InputError(str(run_dir), "messages", f"scenario metadata not understood ({str(e).splitlines()[0]})") from None
    fabric = Fabric(build_graph(scenario.topology), scenario.seed, scenario.switch.latency_ns)

    m = read_table(run_dir, "messages")
    messages = {name: m[name].to_numpy(zero_copy_only=False) for name in
                ("msg_id", "job", "iteration", "step", "channel", "src", "dst", "bytes", "ready_ns",
                 "start_ns", "end_ns", "fct_ns")}
    f = read_table(run_dir, "flows", ["flow_id", "msg_id", "subflow", "src", "dst", "bytes", "start_ns", "end_ns",
                                  "packets", "retransmits", "spurious_retransmits", "discarded", "entropy", "path",
                                  "spine_bytes"])
    flows = {name: f[name].to_pylist() for name in f.column_names}
    c = read_table(run_dir, "collectives", ["job", "iteration", "start_ns", "end_ns"])
    collectives = {name: c[name].to_pylist() for name in c.column_names}
    queues = read_table(run_dir, "queues")
    links = read_table(run_dir, "links", ["time_ns", "src", "dst", "bytes"])
    notes = []
    if queues is None or links is None or queues.num_rows == 0 or links.num_rows == 0:
        queues = links = None
        notes.append(f"no queues/links rows ({backend} backend): port counters unavailable, "
                     "links judged from the flows alone")
    return Run(run_dir, backend, scenario, fabric, scenario.traces.queue_interval_ns, scenario.nic.mtu_bytes,
               scenario.nic.header_bytes, messages, flows, collectives, queues, links, notes)


# ---------------------------------------------------------------------------------------------
# Evidence per directed link


@dataclass
class Evidence:
    strength: float
    text: str
    detail: dict


def _link_ids(run: Run, src: pa.Array, dst: pa.Array) -> np.ndarray:
    """Directed link index (the fabric's numbering) of every (src, dst) row; -1 if unknown."""
    key = pc.binary_join_element_wise(src, dst, "\x00")
    enc = pc.dictionary_encode(key).combine_chunks()
    lookup = np.array([run.fabric.link_index.get(tuple(k.split("\x00")), -1)
                       for k in enc.dictionary.to_pylist()], dtype=np.int64)
    return lookup[enc.indices.to_numpy()] if len(lookup) else np.zeros(0, dtype=np.int64)


def _gbps(run: Run) -> np.ndarray:
    """Provisioned speed of every directed link (the design, not the links table's gbps)."""
    return np.array([run.fabric.link_gbps(u, v) for u, v in run.fabric.links], dtype=np.float64)


def rate_evidence(run: Run, skip_counters: bool = False) -> tuple[dict[int, Evidence], dict[int, Evidence]]:
    """``rate`` and ``loss`` evidence per directed link from the queues and links tables."""
    rate: dict[int, Evidence] = {}
    loss: dict[int, Evidence] = {}
    if run.queues is None:
        return rate, loss
    q, ln = run.queues, run.links
    nl = len(run.fabric.links)
    q_id = _link_ids(run, q["node"], q["port"])
    l_id = _link_ids(run, ln["src"], ln["dst"])
    iv = run.interval_ns
    q_key = q["time_ns"].to_numpy() // iv * nl + q_id
    l_key = ln["time_ns"].to_numpy() // iv * nl + l_id
    order = np.argsort(l_key, kind="stable")
    l_sorted = l_key[order]
    pos = np.searchsorted(l_sorted, q_key)
    pos = np.minimum(pos, len(l_sorted) - 1)
    found = (l_sorted[pos] == q_key) & (q_id >= 0)
    sent = np.where(found, ln["bytes"].to_numpy()[order][pos], 0).astype(np.float64)
    gbps = _gbps(run)
    cap = gbps[np.maximum(q_id, 0)] / 8.0  # bytes per ns
    mean = q["mean_bytes"].to_numpy().astype(np.float64)
    mx = q["max_bytes"].to_numpy().astype(np.float64)
    paused = q["paused_ns"].to_numpy().astype(np.float64)
    busy = np.where(mx > 0, iv * mean / np.maximum(mx, 1.0), 0.0) - paused  # ns the port surely worked
    bound = cap * busy
    ok = found & (busy >= RATE_MIN_BUSY * iv)
    ratio = np.where(ok, sent / np.maximum(bound, 1e-9), np.inf)
    short = ok & (ratio < RATE_RATIO)
    times = q["time_ns"].to_numpy()
    if short.any():
        ids = q_id[short]
        for lid in np.unique(ids):
            sel = short & (q_id == lid)
            n = int(sel.sum())
            judged = int((ok & (q_id == lid)).sum())
            med = float(np.median(ratio[sel]))
            first = int(times[sel].min())
            support = min(1.0, n / RATE_MIN_INTERVALS)
            strength = support * (1.0 - med) / (1.0 - RATE_RATIO)
            u, v = run.fabric.links[lid]
            rate[int(lid)] = Evidence(strength, f"{u}->{v} held a backlog yet sent {med:.2f}x of what a port "
                                      f"of its speed drains, in {n} of {judged} intervals from {format_ns(first)}",
                                      {"intervals": n, "judged": judged, "median_ratio": round(med, 4),
                                       "from_ns": first})
    if not skip_counters and "fault_drops" in q.column_names:
        drops = q["fault_drops"].to_numpy()
        hit = (drops > 0) & (q_id >= 0)
        if hit.any():
            totals = np.bincount(q_id[hit], weights=drops[hit], minlength=nl)
            pkts = np.bincount(np.maximum(l_id, 0), weights=ln["bytes"].to_numpy() / run.mtu, minlength=nl)
            for lid in np.nonzero(totals)[0]:
                n = int(totals[lid])
                first = int(times[hit & (q_id == lid)].min())
                share = n / max(pkts[lid] + n, 1.0)
                u, v = run.fabric.links[lid]
                loss[int(lid)] = Evidence(1.0 + math.log10(n / LOSS_FULL) if n >= LOSS_FULL else n / LOSS_FULL,
                                          f"{u}->{v} lost {n:,} packets on the wire (~{100 * share:.2g}% of "
                                          f"its packets) from {format_ns(first)}",
                                          {"fault_drops": n, "loss_share": round(share, 6), "from_ns": first})
    return rate, loss


@dataclass
class FlowLinks:
    """Every measurable flow's directed links (the fabric's numbering) and the share of its bytes on
    each (1 on a single path; the per-spine split of a sprayed flow)."""

    flow: np.ndarray  # flow row of each incidence
    link: np.ndarray
    weight: np.ndarray
    per_flow: list[list[tuple[int, float]]]
    mflow: np.ndarray
    """Membership incidence (flow row, link) for tomography: the flow's links and every link its
    connection's earlier flows took (after a route change the copies it lost may have gone the old
    way, where the flows table does not record them)."""
    mlink: np.ndarray


def flow_links(run: Run) -> FlowLinks:
    fab = run.fabric
    li = fab.link_index
    fl = run.flows
    per_flow: list[list[tuple[int, float]]] = []
    cache: dict = {}
    for src, dst, path, spines in zip(fl["src"], fl["dst"], fl["path"], fl["spine_bytes"]):
        if path:
            key = tuple(path)
            if key not in cache:
                cache[key] = [(li[(a, b)], 1.0) for a, b in zip(path, path[1:]) if (a, b) in li]
            per_flow.append(cache[key])
            continue
        a, b = fab.tor_of.get(src), fab.tor_of.get(dst)
        total = sum(s["bytes"] for s in spines or ()) or 1
        acc: dict[int, float] = defaultdict(float)
        for s in spines or ():
            nodes = [src, *fab.via(a, b, s["node"]), dst] if s["node"] not in (a, b) else [src, a, dst]
            for u, v in zip(nodes, nodes[1:]):
                if (u, v) in li:
                    acc[li[(u, v)]] += s["bytes"] / total
        per_flow.append(sorted(acc.items()))
    rows = [(i, lid, w) for i, pl in enumerate(per_flow) for lid, w in pl]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    conns: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(fl["src"], fl["dst"], fl["subflow"], fl["entropy"])):
        conns[key].append(i)
    member = [{lid for lid, _ in pl} for pl in per_flow]
    extended = [set(m) for m in member]
    start = fl["start_ns"]
    for idx in conns.values():
        idx.sort(key=start.__getitem__)
        seen = set(member[idx[0]])
        for cur in idx[1:]:
            extended[cur] |= seen  # every way the connection went before (usually the same links)
            seen |= member[cur]
    mrows = [(i, lid) for i, m in enumerate(extended) for lid in sorted(m)]
    marr = np.array(mrows, dtype=np.int64).reshape(-1, 2)
    return FlowLinks(arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2], per_flow,
                     marr[:, 0], marr[:, 1])


def throughput_evidence(run: Run, fls: FlowLinks) -> Tomography | None:
    """``throughput`` evidence: links whose flows were slow with no saturated link to blame."""
    fl = run.flows
    n = len(fl["src"])
    if n == 0 or len(fls.link) == 0:
        return None
    start = np.array(fl["start_ns"], dtype=np.float64)
    end = np.array(fl["end_ns"], dtype=np.float64)
    nbytes = np.array(fl["bytes"], dtype=np.float64)
    packets = np.array(fl["packets"], dtype=np.float64)
    wire = nbytes + packets * run.header
    gbps = _gbps(run)
    fab = run.fabric
    # Latency of an idle path: propagation, switch latency and one packet's serialisation per hop.
    lat = np.zeros(n)
    for i, pl in enumerate(fls.per_flow):
        if pl:
            hops = fab.path_hops(fl["src"][i], fl["dst"][i])
            lat[i] = sum(h.delay_ns + h.switch_latency_ns + run.mtu * 8 / h.gbps for h in hops)
    dur = end - start
    active = np.maximum(dur - lat, 0.25 * dur)
    rate = np.where(active > 0, wire * 8 / np.maximum(active, 1e-9), 0.0)  # Gbit/s delivered
    # Per link: the sum of the delivered rates of the flows on it, and their number, integrated over
    # time; per incidence, their means over the incidence's flow lifetime.
    load = np.zeros(len(fls.link))  # mean load (fraction of the link's provisioned speed)
    count = np.zeros(len(fls.link))  # mean number of flows (weighted by their share of the flow's bytes)
    order = np.argsort(fls.link, kind="stable")
    links_sorted = fls.link[order]
    bounds = np.searchsorted(links_sorted, np.arange(len(gbps) + 1))
    for lid in range(len(gbps)):
        a, b = bounds[lid], bounds[lid + 1]
        if a == b:
            continue
        idx = order[a:b]
        fi = fls.flow[idx]
        span = np.maximum(end[fi] - start[fi], 1e-9)
        t = np.concatenate([start[fi], end[fi]])
        o = np.argsort(t, kind="stable")
        t = t[o]
        for out, w in ((load, fls.weight[idx] * rate[fi] / gbps[lid]), (count, fls.weight[idx])):
            d = np.concatenate([w, -w])[o]
            level = np.cumsum(d)
            cum = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])  # integral at each event time
            out[idx] = (np.interp(end[fi], t, cum) - np.interp(start[fi], t, cum)) / span
    util = np.zeros(n)
    np.maximum.at(util, fls.flow, load)
    # A flow is held back by a link (its bottleneck, as in max-min sharing) when the link ran near its
    # speed and the flow got at least about the link's mean rate per flow: a flow slowed elsewhere
    # shares a busy NIC with faster flows, which is no explanation of its slowness.
    fair = load * gbps[fls.link] / np.maximum(count, 1e-9)
    sat = THROUGHPUT_SAT if run.queues is not None else THROUGHPUT_SAT_FLOWS_ONLY
    held = (load >= sat) & (rate[fls.flow] >= THROUGHPUT_FAIR * fair)
    explained = np.zeros(n, dtype=bool)
    explained[fls.flow[held]] = True
    measurable = (packets >= THROUGHPUT_MIN_PACKETS) & (dur > 0)
    unexplained = measurable & ~explained & ~_signalled(run, fls, start, end)
    if not unexplained.any():
        return None
    capped = run.queues is not None

    def evidence(lid: int, t: dict, bad: np.ndarray) -> Evidence:
        k, onset, p_on, p_off = t["bad"], t["onset"], t["p_on"], t["p_off"]
        on = np.nonzero(_on(fls, [lid], bad))[0]
        mine = on[bad[on]]
        slow = float(np.average(util[mine], weights=wire[mine]))
        support = min(1.0, k / (THROUGHPUT_MIN_FLOWS if capped else THROUGHPUT_MIN_FLOWS_FLOWS_ONLY))
        strength = min(TOMOGRAPHY_CAP, support * max(0.0, p_on - p_off) / THROUGHPUT_CONTRAST
                       * max(0.0, min(1.0, (1 - slow) / (1 - sat))))
        if capped:  # with port counters this only corroborates (see the docstring)
            strength = min(strength, THROUGHPUT_CAP_WITH_COUNTERS)
        u, v = fab.links[lid]
        return Evidence(strength, f"{u}->{v}: {_plural(k, 'slow flow')} since {format_ns(onset)} ({100 * p_on:.0f}% "
                        f"of its bytes, {100 * p_off:.0f}% elsewhere) held back by no saturated link of their path "
                        f"(the busiest at {slow:.2f}x its speed)",
                        {"flows": k, "share_on": round(p_on, 4), "share_elsewhere": round(p_off, 4),
                         "path_load": round(slow, 4), "from_ns": int(onset)})

    return Tomography(fls, unexplained, measurable, wire, start, end, evidence)


@dataclass
class Tomography:
    """Flows judged ``bad`` (slow, or resending lost data) and, per link they crossed, how much more
    often the flows crossing it are bad than those elsewhere. ``evidence(lid, stats, bad)`` words it."""

    fls: FlowLinks
    bad: np.ndarray
    considered: np.ndarray
    size: np.ndarray
    start: np.ndarray
    end: np.ndarray
    evidence: object

    def links(self, explained: np.ndarray | None = None, only: set[int] | None = None) -> dict[int, Evidence]:
        """Evidence per link; flows in ``explained`` (bad flows a stronger suspect accounts for) are
        left out of the comparison, good or bad; ``only``: just these links."""
        bad, considered = self.bad, self.considered
        if explained is not None:
            bad, considered = bad & ~explained, considered & ~explained
        stats = _tomography(self.fls, bad, considered, self.size, self.start, self.end, only)
        return {lid: self.evidence(lid, t, bad) for lid, t in stats.items()}

    def cable(self, lids, explained: np.ndarray | None = None) -> float:
        """The contrast (share of bad flows on the cable minus elsewhere) of the flows crossing any
        of ``lids`` (a cable's two directions), a tie-break between links the same bad flows
        crossed alike: a host's cable also carries the host's other direction, which a fabric
        cable's fault leaves alone."""
        bad, considered = self.bad, self.considered
        if explained is not None:
            bad, considered = bad & ~explained, considered & ~explained
        on = _on(self.fls, lids, bad)
        t = _contrast(on, bad & considered, considered, self.size, self.start, self.end)
        return max(0.0, t["p_on"] - t["p_off"])

    def flows_on(self, lids) -> np.ndarray:
        """Bad flows crossing any of ``lids``."""
        return _on(self.fls, lids, self.bad) & self.bad


def _tomography(fls: FlowLinks, bad: np.ndarray, considered: np.ndarray, size: np.ndarray, start: np.ndarray,
                end: np.ndarray, only: set[int] | None = None) -> dict[int, dict]:
    """For every link some ``bad`` flow crossed (any share of its bytes): from the first bad flow on
    it (``onset``) on, the share of ``size`` in bad flows among the ``considered`` flows crossing it
    (``p_on``) and among those that do not (``p_off``). A faulty link has p_on near 1 and p_off near
    0; a healthy link on the path of bad flows has its own good flows (lower p_on), and the bad flows
    of the faulty link elsewhere (higher p_off)."""
    out: dict[int, dict] = {}
    bad = bad & considered
    for lid in np.unique(fls.mlink[bad[fls.mflow]]):
        if only is not None and int(lid) not in only:
            continue
        out[int(lid)] = _contrast(_on(fls, [lid], bad), bad, considered, size, start, end)
    return out


def _on(fls: FlowLinks, lids, bad: np.ndarray) -> np.ndarray:
    """Flows on any of ``lids``: those that crossed one, and the bad ones whose connection crossed
    one before (what they lost or waited for may have gone that way; a good flow is counted only
    where it went)."""
    on = np.zeros(len(bad), dtype=bool)
    on[fls.flow[np.isin(fls.link, list(lids))]] = True
    ext = np.zeros(len(bad), dtype=bool)
    ext[fls.mflow[np.isin(fls.mlink, list(lids))]] = True
    return on | (ext & bad)


def _contrast(on: np.ndarray, bad: np.ndarray, considered: np.ndarray, size: np.ndarray, start: np.ndarray,
              end: np.ndarray) -> dict:
    """The statistics of :func:`_tomography` for the flows ``on`` a component (``bad`` within
    ``considered``)."""
    if not (on & bad).any():
        return {"bad": 0, "of": int((on & considered).sum()), "onset": 0.0, "p_on": 0.0, "p_off": 0.0}
    onset = start[on & bad].min()
    live = considered & (end > onset)
    s_on, s_off = size[live & on], size[live & ~on]
    b_on, b_off = size[live & on & bad], size[live & ~on & bad]
    p_on = float(b_on.sum() / s_on.sum()) if s_on.sum() > 0 else 0.0
    p_off = float(b_off.sum() / s_off.sum()) if s_off.sum() > 0 else 0.0
    return {"bad": int((live & on & bad).sum()), "of": int((live & on).sum()), "onset": float(onset),
            "p_on": p_on, "p_off": p_off}


def _signalled(run: Run, fls: FlowLinks, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Flows that crossed a port that ECN-marked or was paused by PFC while they ran: congestion
    control or flow control slowed them for congestion they met, not for a fault."""
    n = len(start)
    out = np.zeros(n, dtype=bool)
    q = run.queues
    if q is None:
        return out
    marks = q["ecn_marks"].to_numpy() if "ecn_marks" in q.column_names else np.zeros(q.num_rows)
    paused = q["paused_ns"].to_numpy() if "paused_ns" in q.column_names else np.zeros(q.num_rows)
    hot = (marks > 0) | (paused > 0)
    if not hot.any():
        return out
    ids = _link_ids(run, q["node"], q["port"])[hot]
    times = q["time_ns"].to_numpy()[hot]
    iv = run.interval_ns
    for lid in np.unique(ids):
        if lid < 0:
            continue
        t = np.sort(times[ids == lid])
        inc = fls.link == lid
        fi = fls.flow[inc]
        # a hot interval [t, t + iv) overlapping [start, end]
        k = np.searchsorted(t, end[fi], side="right")  # intervals starting at or before the end
        ok = k > 0
        last = np.where(ok, t[np.maximum(k - 1, 0)], -np.inf)
        out[fi[ok & (last + iv > start[fi])]] = True
    # Congestion control keeps a connection's lowered rate after the marks stop (DCQCN recovers over
    # milliseconds): a connection once slowed explains its later flows too.
    fl = run.flows
    since: dict[tuple, float] = {}
    for i in np.nonzero(out)[0]:
        key = (fl["src"][i], fl["dst"][i], fl["subflow"][i], fl["entropy"][i])
        since[key] = min(since.get(key, math.inf), start[i])
    if since:
        for i in range(n):
            t = since.get((fl["src"][i], fl["dst"][i], fl["subflow"][i], fl["entropy"][i]))
            if t is not None and end[i] >= t:
                out[i] = True
    return out


def retransmit_evidence(run: Run, fls: FlowLinks) -> Tomography | None:
    """``retransmits`` evidence: links that most connections resending lost data have in common."""
    fl = run.flows
    n = len(fl["src"])
    if n == 0 or len(fls.link) == 0:
        return None
    # Copies resent = spurious (the receiver had them) + discarded out of order (go-back-N) + lost
    # in the network: what the endpoints count (D-SACK, the receiver's discards) leaves the losses.
    lost = np.maximum(np.array(fl["retransmits"], dtype=np.float64)
                      - np.array(fl["spurious_retransmits"], dtype=np.float64)
                      - np.array(fl["discarded"], dtype=np.float64), 0.0)
    if not lost.any():
        return None
    start = np.array(fl["start_ns"], dtype=np.float64)
    end = np.array(fl["end_ns"], dtype=np.float64)
    # Resends explained by a buffer's congestion drops on the path (queues.drops: a full buffer,
    # ordinary congestion) are no evidence against a link.
    congested = set()
    if run.queues is not None and "drops" in run.queues.column_names:
        d = run.queues["drops"].to_numpy()
        if d.any():
            ids = _link_ids(run, run.queues["node"], run.queues["port"])
            congested = set(int(x) for x in np.unique(ids[(d > 0) & (ids >= 0)]))
    explained = np.zeros(n, dtype=bool)
    if congested:
        for i, pl in enumerate(fls.per_flow):
            explained[i] = any(lid in congested for lid, _ in pl)
    lossy = (lost > 0) & ~explained
    if not lossy.any():
        return None

    def evidence(lid: int, t: dict, bad: np.ndarray) -> Evidence:
        k, of, onset, p_on, p_off = t["bad"], t["of"], t["onset"], t["p_on"], t["p_off"]
        on = np.nonzero(_on(fls, [lid], bad))[0]
        resent = int(lost[on[bad[on]]].sum())
        strength = min(TOMOGRAPHY_CAP, min(1.0, k / RETX_MIN_FLOWS) * max(0.0, p_on - p_off) / RETX_CONTRAST)
        u, v = run.fabric.links[lid]
        return Evidence(strength, f"{u}->{v}: {k} of its {of} flows since {format_ns(onset)} resent lost "
                        f"data ({resent:,} packets; {100 * p_off:.0f}% of the other flows did)",
                        {"flows": k, "of": of, "resent": resent, "share_on": round(p_on, 4),
                         "share_elsewhere": round(p_off, 4), "from_ns": int(onset)})

    return Tomography(fls, lossy, np.ones(n, dtype=bool), np.ones(n), start, end, evidence)


def silence_evidence(run: Run, fls: FlowLinks, explained_nodes: frozenset = frozenset()) -> dict[int, Evidence]:
    """``silence`` evidence: connections moved off a link, nothing crossed it afterwards, and those
    moves were most of the route changes of their time (a dead link moves every connection that
    crossed it at once; a scheme that picks paths as it goes, such as flowlet switching, moves
    connections all over the fabric all the time). Moves of connections whose old path crossed a
    node of ``explained_nodes`` (the ends of a dead link already named: the switches there re-hash
    every connection over their surviving ports) are left out."""
    fl = run.flows
    out: dict[int, Evidence] = {}
    conns: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(fl["src"], fl["dst"], fl["subflow"], fl["entropy"])):
        conns[key].append(i)
    start = fl["start_ns"]
    moves: list[tuple[float, frozenset, frozenset]] = []  # (time, links the connection left, joined)
    for rows in conns.values():
        if len(rows) < 2:
            continue
        rows.sort(key=start.__getitem__)
        prev = {lid for lid, w in fls.per_flow[rows[0]] if w > 0}
        for i in rows[1:]:
            cur = {lid for lid, w in fls.per_flow[i] if w > 0}
            if cur and prev - cur and not (explained_nodes and any(
                    n in explained_nodes for lid in prev for n in run.fabric.links[lid])):
                moves.append((float(start[i]), frozenset(prev - cur), frozenset(cur - prev)))
            prev = cur or prev
    if not moves:
        return out
    moves.sort(key=lambda m: m[0])
    fab = run.fabric
    left: dict[int, list[tuple[float, float]]] = defaultdict(list)  # link -> (time, weight) of departures
    gone_cables = []
    for t, gone, _ in moves:
        gone_cables.append({cable_of(fab, lid) for lid in gone})
        for lid in gone:
            left[lid].append((t, 1.0))
    move_times = np.array([t for t, _, _ in moves])
    need = (SILENCE_MIN_CONNECTIONS_SELF_ROUTING if run.scenario.lb.scheme in SELF_ROUTING
            else SILENCE_MIN_CONNECTIONS)
    makespan = float(np.max(fl["end_ns"])) if fl["end_ns"] else 0.0
    window = SILENCE_WINDOW * makespan
    last_use: dict[int, float] = defaultdict(lambda: -1.0)
    for i, pl in enumerate(fls.per_flow):
        for lid, w in pl:
            if w > 0:
                last_use[lid] = max(last_use[lid], start[i])
    link_last = {}
    if run.links is not None:
        ids = _link_ids(run, run.links["src"], run.links["dst"])
        t = run.links["time_ns"].to_numpy()
        b = run.links["bytes"].to_numpy()
        big = b > 2 * run.mtu  # more than an ACK trickle
        for lid in left:
            sel = (ids == lid) & big
            link_last[lid] = float(t[sel].max()) if sel.any() else -1.0
    for lid, deps in left.items():
        times = [t for t, _ in deps]
        first, t_move = min(times), max(times)
        if last_use[lid] >= first:  # a connection came (back) onto it: a route choice, not a dead link
            continue
        if lid in link_last and link_last[lid] > t_move + run.interval_ns:
            continue
        # The share of the route changes around that time that left this cable: a dead link's
        # connections all move within the fabric's reaction time; a scheme that picks paths as it
        # goes (flowlet, adaptive) moves connections everywhere all the time.
        cable = cable_of(fab, lid)
        a = int(np.searchsorted(move_times, first - window, side="left"))
        b = int(np.searchsorted(move_times, t_move + window, side="right"))
        share = sum(cable in g for g in gone_cables[a:b]) / max(b - a, 1)
        n = len(deps)
        u, v = fab.links[lid]
        strength = min(2.0, n / need) * min(1.0, share / SILENCE_SHARE)
        out[int(lid)] = Evidence(strength, f"{u}->{v}: {_plural(n, 'connection')} moved off it by {format_ns(t_move)} "
                                 f"({100 * share:.0f}% of the route changes then) and nothing crossed it after",
                                 {"connections": n, "share_of_moves": round(share, 4), "from_ns": int(first)})
    return out


# ---------------------------------------------------------------------------------------------
# Stragglers


def straggler_evidence(run: Run) -> dict[str, Evidence]:
    """Hosts whose compute gap before an iteration's first messages is longer than their peers'."""
    m = run.messages
    out: dict[str, Evidence] = {}
    ends = {(j, it): e for j, it, e in zip(run.collectives["job"], run.collectives["iteration"],
                                           run.collectives["end_ns"])}
    late: dict[tuple[str, str], list[float]] = defaultdict(list)  # (job, host) -> gap factor per iteration
    excess: dict[tuple[str, str], list[float]] = defaultdict(list)
    iters: dict[str, int] = defaultdict(int)
    groups: dict[tuple, dict[str, float]] = defaultdict(dict)
    first_step: dict[tuple, int] = {}
    job, it, step, src, ready = m["job"], m["iteration"], m["step"], m["src"], m["ready_ns"]
    for k in range(len(job)):
        key = (job[k], int(it[k]))
        if key[1] == 0:
            continue
        s = int(step[k])
        if key not in first_step or s < first_step[key]:
            first_step[key] = s
    for k in range(len(job)):
        key = (job[k], int(it[k]))
        if key not in first_step or int(step[k]) != first_step[key]:
            continue
        g = groups[key]
        g[src[k]] = min(g.get(src[k], math.inf), float(ready[k]))
    for (j, i), g in groups.items():
        prev = ends.get((j, i - 1))
        if prev is None or len(g) < 2:
            continue
        gaps = {h: r - prev for h, r in g.items()}
        med = float(np.median(list(gaps.values())))
        iters[j] += 1
        for h, gap in gaps.items():
            extra = gap - med
            if med > 0 and gap >= STRAGGLER_FACTOR * med and extra >= STRAGGLER_MIN_NS:
                late[(j, h)].append(gap / med)
                excess[(j, h)].append(extra)
    for (j, h), factors in late.items():
        share = len(factors) / max(iters[j], 1)
        if share < STRAGGLER_MIN_SHARE / 2:
            continue
        f = float(np.median(factors))
        strength = min(1.0, share / STRAGGLER_MIN_SHARE) * min(4.0, (f - 1.0) / (STRAGGLER_FACTOR - 1.0) / 2)
        strength = max(strength, min(1.0, share / STRAGGLER_MIN_SHARE))
        prev = out.get(h)
        if prev is not None and prev.strength >= strength:
            continue
        out[h] = Evidence(strength, f"{h} ({j}) starts iterations late: compute gap {f:.2f}x its peers' "
                          f"(+{format_ns(float(np.median(excess[(j, h)])))}) in {len(factors)}/{iters[j]} iterations",
                          {"job": j, "gap_factor": round(f, 4), "late_iterations": len(factors),
                           "iterations": iters[j]})
    return out


# ---------------------------------------------------------------------------------------------
# The diagnosis


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def cable_of(fabric, lid: int) -> tuple[str, str]:
    u, v = fabric.links[lid]
    if (fabric.tier[u], u) > (fabric.tier[v], v):
        u, v = v, u
    return u, v


def diagnose(run_dir: Path | str, counters: bool = True) -> dict:
    """The diagnosis of one run directory (what ``diagnosis.json`` holds)."""
    run = load_run(run_dir)
    return diagnose_run(run, counters)


def diagnose_run(run: Run, counters: bool = True) -> dict:
    fls = flow_links(run)
    rate, loss = rate_evidence(run, skip_counters=not counters)
    fixed = {"rate": rate, "loss": loss}
    silence_nodes: set[str] = set()
    tomos = {c: t for c, t in (("retransmits", retransmit_evidence(run, fls)),
                                ("throughput", throughput_evidence(run, fls))) if t is not None}
    fab = run.fabric
    explained = {c: np.zeros(len(t.bad), dtype=bool) for c, t in tomos.items()}

    def cable_evidence(only: set[int] | None) -> dict:
        per = {c: dict(ev) for c, ev in fixed.items()}
        per["silence"] = silence_evidence(run, fls, frozenset(silence_nodes))
        for c, t in tomos.items():
            per[c] = t.links(explained[c], only)
        out: dict = defaultdict(lambda: defaultdict(list))
        for channel, ev in per.items():
            for lid, e in ev.items():
                if only is None or lid in only:
                    out[cable_of(fab, lid)][channel].append((lid, e))
        return out

    first = {c: t.links() for c, t in tomos.items()}
    first["silence"] = silence_evidence(run, fls)
    strongest = {c: 0.0 for c in CHANNELS}
    strongest.update({c: round(max((e.strength for e in ev.values()), default=0.0), 4)
                      for c, ev in {**fixed, **first}.items()})
    # Explaining away (greedy, as in boolean tomography): the best suspect accounts for the slow or
    # lossy flows crossing it; the other links are judged on the flows it does not explain. Suspects
    # tied with it (links every one of those flows crossed alike) stay as alternatives.
    remaining = set(cable_evidence(None))
    suspects: list[dict] = []
    while remaining:
        only = {lid for c in remaining for lid in (fab.link_index.get(c), fab.link_index.get(c[::-1]))
                if lid is not None}
        ev = cable_evidence(only)
        scored = [_link_suspect(fab, cab, ev[cab]) for cab in remaining if cab in ev]
        for s in scored:
            lids = _cable_links(fab, tuple(s["link"]))
            s["tiebreak"] = round(sum(t.cable(lids, explained[c]) for c, t in tomos.items()), 4)
        scored.sort(key=lambda s: (-s["score"], -s["tiebreak"], s["link"]))
        if not scored:
            break
        best = scored[0]["score"]
        if best < ALARM or len(suspects) >= MAX_SUSPECTS:
            suspects += scored
            break
        tied = [s for s in scored if s["score"] >= best - 1e-6 * max(1.0, best)]
        suspects += tied
        for s in tied:
            cab = tuple(s["link"])
            remaining.discard(cab)
            for c, t in tomos.items():
                explained[c] |= t.flows_on(_cable_links(fab, cab))
            if "silence" in s["strengths"]:  # a dead link: its ends re-hashed their connections
                silence_nodes.update(cab)
    stragglers = straggler_evidence(run)
    for h, e in stragglers.items():
        suspects.append(_suspect({"kind": "host", "host": h}, {"straggler": e.strength},
                                 [f"straggler: {e.text}"], {"straggler": {h: {"strength": round(e.strength, 4), **e.detail}}}))
    strongest["straggler"] = round(max((e.strength for e in stragglers.values()), default=0.0), 4)
    suspects = [s for s in suspects if s["score"] > 0]
    suspects.sort(key=lambda s: (-s["score"], -s.get("tiebreak", 0.0), s.get("host") or "", s.get("link") or []))
    found = [s for s in suspects if s["score"] >= ALARM]
    return {
        "fault_found": bool(found),
        "suspects": found[:MAX_SUSPECTS],
        "below_threshold": [s for s in suspects if s["score"] < ALARM][:5],
        "run": str(run.path),
        "backend": run.backend,
        "counters": counters,
        "alarm_score": ALARM,
        "strongest": strongest,
        "notes": run.notes,
        "method": "C4D-style: per-port rate under backlog, loss counters, route changes, flow tomography of "
                  "slow and retransmitting flows, compute-gap outliers (pktsim/analysis/diagnose.py)",
    }


def _cable_links(fab, cable: tuple[str, str]) -> list[int]:
    return [lid for lid in (fab.link_index.get(cable), fab.link_index.get(cable[::-1])) if lid is not None]


def _link_suspect(fab, cable: tuple[str, str], chans: dict) -> dict:
    strengths, texts, dirs, detail = {}, [], set(), {}
    for channel in CHANNELS:
        items = sorted(chans.get(channel, ()), key=lambda x: -x[1].strength)
        if not items or items[0][1].strength <= 0:
            continue
        strengths[channel] = items[0][1].strength
        for lid, e in items:
            if e.strength >= 0.2 * items[0][1].strength:
                dirs.add(fab.links[lid])
        texts.append(f"{channel}: {items[0][1].text}")
        detail[channel] = {f"{fab.links[lid][0]}->{fab.links[lid][1]}": {"strength": round(e.strength, 4), **e.detail}
                           for lid, e in items}
    if not strengths:
        return {"kind": "link", "link": list(cable), "direction": "-", "score": 0.0, "evidence": "", "strengths": {},
                "detail": {}}
    direction = "both" if len(dirs) > 1 else "->".join(next(iter(dirs)))
    return _suspect({"kind": "link", "link": list(cable), "direction": direction}, strengths, texts, detail)


def _suspect(head: dict, strengths: dict[str, float], texts: list[str], detail: dict) -> dict:
    best = max(strengths.values())
    rest = sum(min(s, 3.0) for s in strengths.values()) - min(best, 3.0)
    score = best + CORROBORATION * rest
    return {**head, "score": round(score, 4), "evidence": "; ".join(texts),
            "strengths": {k: round(v, 4) for k, v in strengths.items()}, "detail": detail}


def write_diagnosis(run_dir: Path | str, report: dict) -> Path:
    from pktsim.rundir import write_atomic

    path = Path(run_dir) / "diagnosis.json"
    write_atomic(path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


def print_diagnosis(report: dict) -> None:
    """A short table (80 columns): the suspects, best first, or "no fault found"."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from pktsim.report import WIDTH

    console = Console()
    console.width = min(console.width, WIDTH) if console.is_terminal else WIDTH
    for note in report.get("notes") or ():
        console.print(f"note: {note}")
    if not report["fault_found"]:
        console.print(f"diagnose {report['run']}: no fault found")
        return
    table = Table(title=f"diagnose: {len(report['suspects'])} suspect(s), best first", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("suspect", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("evidence", overflow="fold")
    for i, s in enumerate(report["suspects"], 1):
        name = s["host"] if s["kind"] == "host" else (s["direction"] if s["direction"] != "both"
                                                       else f"{s['link'][0]}<->{s['link'][1]}")
        table.add_row(str(i), name, f"{s['score']:.2f}", s["evidence"])
    console.print(table)
