"""The packet backend against closed forms: store-and-forward latency of a lone message, a ring
AllReduce's completion time with and without pipelining, and an incast's completion times and
bottleneck queue. Every expected number is derived here, in the comments, from the link rates,
the propagation delays and the packet sizes; none comes from pktsim.ideal.

Notation: t = serialisation time of a full packet (MTU bytes) on a 100 Gb/s link, d = propagation
delay of a link, L = switch forwarding latency, h = links on the path, n = packets of a message.
With the micro NIC of conftest (1100-byte packets carrying 1000 bytes) t = 88 ns exactly.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from conftest import (
    HEADER, MTU, PAYLOAD, PS_PER_NS, fat_tree, fifo_samples, leaf_spine, make_scenario, ns, one_message,
    ps_per_byte, ser_ps,
)

from pktsim.scenario import EcnSpec

T = ser_ps(MTU, 100)  # 88_000 ps
D = 1000 * PS_PER_NS  # 1 us links

# (topology, src, dst, expected node tiers of the path) for paths of h = 2, 4 and 6 links.
PATHS = {
    2: (leaf_spine(spines=2, leaves=2, hosts_per_leaf=2), "h0", "h1", ["h", "leaf", "h"]),
    4: (leaf_spine(spines=2, leaves=2, hosts_per_leaf=2), "h0", "h2", ["h", "leaf", "spine", "leaf", "h"]),
    6: (fat_tree(k=4), "h0", "h4", ["h", "edge", "agg", "core", "agg", "edge", "h"]),
}


def _event_driven_ports(sc):
    """The same scenario on the transport model's event-driven ports and NIC (ECN on with
    thresholds no queue reaches, so nothing else changes): the physics must not change either."""
    return sc.model_copy(update={"switch": sc.switch.model_copy(
        update={"ecn": EcnSpec(kmin_bytes=10**12, kmax_bytes=10**12)})})


def _tier(name: str) -> str:
    return name.rstrip("0123456789")


def _check_lone_message(r, src: str, dst: str, nbytes: int, n_packets: int, expected_ps: int, tiers: list[str],
                        ideal_ps: int | None = None):
    """The messages and flows rows of a one-message run agree with the expected FCT (ps). The lower
    bound ``ideal_fct_ns`` is ``ideal_ps`` when given, else the expected FCT itself (whole packets:
    no other cut into packets, no spreading over paths does better than the NIC's)."""
    exp_ns = (expected_ps + PS_PER_NS // 2) // PS_PER_NS  # nearest ns (no ties occur here)
    (m,) = r.rows("messages")
    assert (m["src"], m["dst"], m["bytes"]) == (src, dst, nbytes)
    assert m["ready_ns"] == 0 and m["start_ns"] == 0
    assert m["end_ns"] == exp_ns
    assert m["end_ns"] - m["start_ns"] == exp_ns
    assert m["fct_ns"] == exp_ns
    assert m["single_path_fct_ns"] == exp_ns, "single_path_fct_ns is the same message alone on one path"
    ideal_ns = exp_ns if ideal_ps is None else (ideal_ps + PS_PER_NS // 2) // PS_PER_NS
    assert m["ideal_fct_ns"] == ideal_ns <= exp_ns, "ideal_fct_ns bounds every scheme, this one included"
    (f,) = r.rows("flows")
    assert f["packets"] == n_packets and f["bytes"] == nbytes
    assert (f["start_ns"], f["end_ns"]) == (0, exp_ns)
    assert [_tier(x) for x in f["path"]] == tiers and f["path"][0] == src and f["path"][-1] == dst
    assert r.summary["packets"] == n_packets
    assert r.summary["packet_hops"] == n_packets * (len(tiers) - 1)
    (job,) = r.summary["jobs"]
    assert job["cct_ns"] == [exp_ns]


def _best_cut_ps(nbytes: int, payload: int, header: int, first: Fraction, later: Fraction, h: int) -> int:
    """The lower bound of a lone message whose first link is its slowest (``first`` ps per byte;
    ``later``: the other links' ps per byte, summed): n packets put B + n*header bytes on that link
    and the largest of them, at least B/n + header bytes, crosses every later link after it; for
    the fluid model's near-equal subflows B/n rounds down. Best n, plus the h propagation delays."""
    n0 = -(-nbytes // payload)
    best = min((nbytes + n * header) * first + (nbytes // n + header) * later for n in range(n0, nbytes + 1))
    return int(best) + h * D


# ---------------------------------------------------------------------------------------------
# 1. A lone message: serialisation at the first link + (h-1) store-and-forward delays + h delays


@pytest.mark.parametrize("h", [2, 4, 6])
def test_lone_message_whole_packets(h: int, run_in) -> None:
    # n full packets leave the NIC back to back; the last one finishes serialising at n*t. Every
    # later link has the same rate, so nothing queues: each switch stores the last packet (t) and
    # forwards it, and every link adds d. FCT = n*t + (h-1)*t + h*d.
    topo, src, dst, tiers = PATHS[h]
    n = 100
    r = run_in(make_scenario(topo, one_message(src, dst, n * PAYLOAD)))
    expected = n * T + (h - 1) * T + h * D
    assert expected % PS_PER_NS == 0
    _check_lone_message(r, src, dst, n * PAYLOAD, n, expected, tiers)


@pytest.mark.parametrize("h", [2, 4, 6])
def test_lone_message_short_last_packet(h: int, run_in) -> None:
    # n-1 full packets and a last one of 400 + 100 header = 500 bytes (tl = 40 ns). On the first link
    # the last packet ends at (n-1)*t + tl. At every switch it arrives tl after packet n-1 but must wait
    # for packet n-1 to be serialised (t > tl): it leaves each switch exactly tl behind packet n-1.
    # Packet n-1 (a full packet) reaches the host at (n-1)*t + (h-1)*t + h*d, so
    # FCT = (n-1)*t + (h-1)*t + tl + h*d  (and not n*t + (h-1)*tl + ..., which ignores the queueing).
    # Cut into 50 equal packets of 988 bytes instead (same wire bytes), it would take 12 bytes' time
    # less on every link after the first: the bound is that best cut (one path or several alike).
    topo, src, dst, tiers = PATHS[h]
    n, rest = 50, 400
    tl = ser_ps(rest + HEADER, 100)
    nbytes = (n - 1) * PAYLOAD + rest
    r = run_in(make_scenario(topo, one_message(src, dst, nbytes)))
    expected = (n - 1) * T + (h - 1) * T + tl + h * D
    ideal = _best_cut_ps(nbytes, PAYLOAD, HEADER, ps_per_byte(100), (h - 1) * ps_per_byte(100), h)
    assert ideal == (n * MTU - 12 * n + (h - 1) * (MTU - 12)) * ps_per_byte(100) + h * D
    _check_lone_message(r, src, dst, nbytes, n, expected, tiers, ideal)


@pytest.mark.parametrize("h", [2, 6])
def test_lone_single_packet_message(h: int, run_in) -> None:
    # One 500-byte packet: h serialisations and h propagation delays. Smaller packets would pipeline
    # better (two of 300 bytes: 600 + (h-1)*300 bytes' time): the bound is the best cut.
    topo, src, dst, tiers = PATHS[h]
    r = run_in(make_scenario(topo, one_message(src, dst, 400)))
    expected = h * (ser_ps(500, 100) + D)
    ideal = _best_cut_ps(400, PAYLOAD, HEADER, ps_per_byte(100), (h - 1) * ps_per_byte(100), h)
    assert ideal < expected
    _check_lone_message(r, src, dst, 400, 1, expected, tiers, ideal)


@pytest.mark.parametrize("ports", ["ideal", "event-driven"])
@pytest.mark.parametrize("h", [2, 4, 6])
def test_lone_message_switch_latency(h: int, ports: str, run_in) -> None:
    # Each of the h-1 switches holds every packet L before its egress queue; the pipeline is otherwise
    # unchanged: FCT = n*t + (h-1)*(t + L) + h*d.
    topo, src, dst, tiers = PATHS[h]
    n, lat_ns = 64, 300
    sc = make_scenario(topo, one_message(src, dst, n * PAYLOAD), latency_ns=lat_ns)
    r = run_in(_event_driven_ports(sc) if ports == "event-driven" else sc)
    expected = n * T + (h - 1) * (T + lat_ns * PS_PER_NS) + h * D
    _check_lone_message(r, src, dst, n * PAYLOAD, n, expected, tiers)


def test_lone_message_faster_fabric(run_in) -> None:
    # Hosts at 100 Gb/s, fabric at 400 Gb/s, h = 4. Packet i leaves the NIC at i*t, crosses the two
    # fabric links in t/4 each and the last link in t with no queueing (one packet per t arrives):
    # FCT = n*t + t/4 + t/4 + t + 4*d.
    topo = leaf_spine(spines=2, leaves=2, hosts_per_leaf=2, gbps=400, host_gbps=100)
    n = 40
    r = run_in(make_scenario(topo, one_message("h0", "h2", n * PAYLOAD)))
    expected = n * T + 2 * ser_ps(MTU, 400) + T + 4 * D
    _check_lone_message(r, "h0", "h2", n * PAYLOAD, n, expected, PATHS[4][3])


def test_lone_message_short_last_packet_faster_fabric(run_in) -> None:
    # As above with n-1 full packets and a 500-byte last one (tl = 40 ns at 100 Gb/s, tl/4 on the
    # 400 Gb/s fabric). In the fabric the last packet arrives tl after packet n-1, which is gone after
    # t/4 < tl, so it never waits. Packet n-1 reaches the dst leaf at (n-1)*t + t/2 + 3*d and holds
    # its 100 Gb/s port for t; the last packet arrives at (n-1)*t + tl + tl/2 + 3*d, before that port
    # is free (1.5*tl < 1.5*t), so it leaves tl after packet n-1: FCT = (n-1)*t + 1.5*t + tl + 4*d.
    topo = leaf_spine(spines=2, leaves=2, hosts_per_leaf=2, gbps=400, host_gbps=100)
    n, rest = 40, 400
    tl = ser_ps(rest + HEADER, 100)
    nbytes = (n - 1) * PAYLOAD + rest
    r = run_in(make_scenario(topo, one_message("h0", "h2", nbytes)))
    expected = (n - 1) * T + 2 * ser_ps(MTU, 400) + T + tl + 4 * D
    ideal = _best_cut_ps(nbytes, PAYLOAD, HEADER, ps_per_byte(100), 2 * ps_per_byte(400) + ps_per_byte(100), 4)
    _check_lone_message(r, "h0", "h2", nbytes, n, expected, PATHS[4][3], ideal)


def test_lone_message_short_last_packet_slower_fabric(run_in) -> None:
    # Hosts at 400 Gb/s (t/4 per packet), fabric at 100 Gb/s. The NIC outruns the leaf uplink, so
    # packets queue there: full packet i leaves it at t/4 + d + i*t, the spine at t/4 + 2d + (i+1)*t.
    # The last packet (tl at 100 Gb/s) reaches the leaf long before the uplink is free, leaves it
    # at t/4 + d + (n-1)*t + tl and the spine at t/4 + 2d + n*t + tl (behind packet n-1 again).
    # At the dst leaf packet n-1 needs only t/4 < tl, so the last packet goes straight through:
    # FCT = t/4 + n*t + tl + tl/4 + 4*d.
    topo = leaf_spine(spines=2, leaves=2, hosts_per_leaf=2, gbps=100, host_gbps=400)
    n, rest = 40, 400
    tl = ser_ps(rest + HEADER, 100)
    nbytes = (n - 1) * PAYLOAD + rest
    r = run_in(make_scenario(topo, one_message("h0", "h2", nbytes)))
    expected = ser_ps(MTU, 400) + n * T + tl + ser_ps(rest + HEADER, 400) + 4 * D
    # The bound spreads the message over both spines: the two uplinks carry B + n*h bytes at 200 Gb/s
    # together, after the first packet's serialisation at 400 Gb/s and before the last's on a
    # downlink (100) and the host link (400); from one packet more than the NIC's on (n = 41) it
    # charges those two the smallest packet there can be (h + 1 bytes).
    ideal = (nbytes + 41 * HEADER) * ps_per_byte(200) + (HEADER + 1) * (2 * ps_per_byte(400) + ps_per_byte(100)) + 4 * D
    _check_lone_message(r, "h0", "h2", nbytes, n, expected, PATHS[4][3], ideal)
    # The leaf uplink is the only queue. It is busy until t/4 + d + i*t once full packet i has been
    # enqueued (at i*t/4 + d), so the backlog then is t/4 + i*(t - t/4); the short last packet,
    # enqueued at (n-1)*t/4 + tl/4 + d, raises it to t/4 + (n-1)*(t - t/4) + tl - tl/4: the peak.
    q = max(x["max_bytes"] for x in r.rows("queues") if x["node"] == "leaf0" and x["port"].startswith("spine"))
    t4, tl4 = ser_ps(MTU, 400), ser_ps(rest + HEADER, 400)
    expected_peak_ps = t4 + (n - 1) * (T - t4) + tl - tl4
    assert q == expected_peak_ps / ps_per_byte(100)


def test_lone_message_start_time(run_in) -> None:
    # A job that starts at 12.345 us: the message is ready and starts then; its FCT is unchanged.
    topo, src, dst, _ = PATHS[4]
    n, start = 30, 12_345
    jobs = one_message(src, dst, n * PAYLOAD)
    jobs[0]["start_ns"] = start
    r = run_in(make_scenario(topo, jobs))
    fct = ns(n * T + 3 * T + 4 * D)
    (m,) = r.rows("messages")
    assert (m["ready_ns"], m["start_ns"], m["end_ns"], m["fct_ns"]) == (start, start, start + fct, fct)
    (c,) = r.rows("collectives")
    assert (c["start_ns"], c["end_ns"], c["duration_ns"]) == (start, start + fct, fct)


@pytest.mark.parametrize("h", [2, 4])
def test_lone_message_default_mtu(h: int, run_in) -> None:
    # The default NIC (4096-byte packets, 64-byte header, 4032 bytes of payload) and a 1 MiB message:
    # 260 full packets and one of 256 + 64 = 320 bytes. t = 327.68 ns, not a whole ns: the tables
    # round to the nearest ns.
    topo, src, dst, tiers = PATHS[h]
    nbytes = 2**20
    n_full, rest = divmod(nbytes, 4032)
    assert (n_full, rest) == (260, 256)
    t, tl = ser_ps(4096, 100), ser_ps(rest + 64, 100)
    r = run_in(make_scenario(topo, one_message(src, dst, nbytes), mtu=4096, header=64))
    expected = n_full * t + (h - 1) * t + tl + h * D
    ideal = _best_cut_ps(nbytes, 4032, 64, ps_per_byte(100), (h - 1) * ps_per_byte(100), h)  # 261 packets of ~4017 B
    _check_lone_message(r, src, dst, nbytes, n_full + 1, expected, tiers, ideal)


# ---------------------------------------------------------------------------------------------
# 2. Ring AllReduce under one leaf


N_RING = 8
STEP_PACKETS = 256  # packets per rank per step without slicing
# A NIC with a 1% header so that the payload bandwidth bound is within a few % of the wire one:
# 4000-byte packets carrying 3960 bytes, tr = 320 ns at 100 Gb/s.
RING_MTU, RING_HEADER = 4000, 40
RING_PAYLOAD = RING_MTU - RING_HEADER
TR = ser_ps(RING_MTU, 100)


def _ring(slices: int) -> dict:
    return {"name": "ring", "collective": "ring_allreduce", "ranks": N_RING, "placement": "packed",
            "bytes": N_RING * STEP_PACKETS * RING_PAYLOAD, "slices": slices}


def _ring_scenario(slices: int):
    topo = leaf_spine(spines=1, leaves=2, hosts_per_leaf=N_RING)
    return make_scenario(topo, [_ring(slices)], mtu=RING_MTU, header=RING_HEADER)


def test_ring_allreduce_iterations_and_compute_gap(run_in) -> None:
    # Two iterations separated by a 5 us compute gap: the second starts exactly gap after the first
    # ends and lasts as long (the fabric is idle again).
    sc = _ring_scenario(1)
    jobs = [dict(_ring(1), iterations=2, compute_gap_ns=5000, start_ns=700)]
    r = run_in(make_scenario(sc.topology.model_dump(), jobs, mtu=RING_MTU, header=RING_HEADER))
    cct = ns(2 * (N_RING - 1) * (STEP_PACKETS * TR + TR + 2 * D))
    c0, c1 = sorted(r.rows("collectives"), key=lambda c: c["iteration"])
    assert (c0["start_ns"], c0["end_ns"]) == (700, 700 + cct)
    assert (c1["start_ns"], c1["end_ns"]) == (700 + cct + 5000, 700 + 2 * cct + 5000)
    assert r.summary["jobs"][0]["cct_ns"] == [cct, cct]


def test_ring_allreduce_unsliced_is_2n_minus_2_steps(run_in) -> None:
    # Ranks 0..7 on one leaf; rank r sends to r+1 over two links (host -> leaf -> host). In a step every
    # host uplink and every leaf downlink carries exactly one message, so nothing interferes, and a
    # step's messages all start together (each waits for the previous step's message into its
    # sender, and they all end together). Each step lasts the lone-message FCT of S/N bytes over h = 2:
    # T_step = n*t + t + 2*d; the AllReduce lasts 2(N-1) * T_step.
    r = run_in(_ring_scenario(1))
    t_step = STEP_PACKETS * TR + TR + 2 * D
    cct = 2 * (N_RING - 1) * t_step
    (c,) = r.rows("collectives")
    assert (c["ranks"], c["bytes"]) == (N_RING, N_RING * STEP_PACKETS * RING_PAYLOAD)
    assert c["start_ns"] == 0 and c["duration_ns"] == ns(cct) and c["end_ns"] == ns(cct)
    assert c["ideal_ns"] == ns(cct), "with no contention the ideal is achieved exactly"
    assert r.summary["jobs"][0]["cct_ns"] == [ns(cct)]
    msgs = r.rows("messages")
    assert len(msgs) == 2 * (N_RING - 1) * N_RING
    for m in msgs:
        assert m["ready_ns"] == m["start_ns"] == m["step"] * ns(t_step)
        assert m["fct_ns"] == m["ideal_fct_ns"] == ns(t_step)


def test_ring_allreduce_slicing_approaches_bandwidth_bound(run_in) -> None:
    # With P slices, each step's chunk is P pieces of m = n/P packets (serialisation time tp = m*t).
    # Rank r's NIC sends its pieces back to back, piece p of step k during [(kP+p)*tp, (kP+p+1)*tp],
    # provided piece p of step k-1 reached r by then: it was sent by r-1 in the same slot one step
    # earlier and arrives T_piece = tp + t + 2*d after it started, so the NIC never idles iff
    # T_piece <= P*tp. Then the last piece starts at (2(N-1)P - 1)*tp and lands T_piece later:
    #   CCT = 2(N-1)*P*tp + t + 2*d = 2(N-1)/N * S_wire * 8 / rate + t + 2*d,
    # which is the bandwidth bound (every rank must serialise 2(N-1)/N of the buffer, headers
    # included) plus one packet and two propagation delays.
    p = 32
    m = STEP_PACKETS // p
    tp = m * TR
    assert tp + TR + 2 * D <= p * tp  # the pipeline stays full
    sliced = run_in(_ring_scenario(p), "sliced")
    unsliced = run_in(_ring_scenario(1), "unsliced")
    expected = 2 * (N_RING - 1) * p * tp + TR + 2 * D
    wire_bound = 2 * (N_RING - 1) * STEP_PACKETS * TR  # 2(N-1)/N * S_wire * 8 / rate, in ps
    (c,) = sliced.rows("collectives")
    assert c["duration_ns"] == ns(expected)
    assert sliced.summary["jobs"][0]["cct_ns"] == [ns(expected)]
    assert len(sliced.rows("messages")) == 2 * (N_RING - 1) * N_RING * p
    # The idle-fabric lower bound in the table is the larger of the NIC bound and the critical path.
    assert c["ideal_ns"] == ns(max(wire_bound, 2 * (N_RING - 1) * (tp + TR + 2 * D)))
    # Within a few % of 2(N-1)/N * S * 8 / rate (payload only), and strictly closer than without slicing.
    s_bytes = N_RING * STEP_PACKETS * RING_PAYLOAD
    bound_ns = 2 * (N_RING - 1) / N_RING * s_bytes * 8 / 100
    assert bound_ns < wire_bound / PS_PER_NS <= c["duration_ns"] < 1.02 * bound_ns
    u = unsliced.rows("collectives")[0]["duration_ns"]
    assert c["duration_ns"] - bound_ns < u - bound_ns


# ---------------------------------------------------------------------------------------------
# 3. Incast


def _incast(k: int, n: int, hosts: list[str]) -> list[dict]:
    return [{"name": "incast", "collective": "incast", "ranks": k + 1, "receiver": 0, "placement": hosts,
             "bytes": n * PAYLOAD}]


def _queue_rows(r, node: str, port: str) -> list[dict]:
    return sorted((q for q in r.rows("queues") if q["node"] == node and q["port"] == port),
                  key=lambda q: q["time_ns"])


def _check_queue_against_model(rows: list[dict], arrivals_ps: list[int], interval_ns: int) -> None:
    """The sampled queue rows equal the reference FIFO fed with full packets at ``arrivals_ps``."""
    ppb = ps_per_byte(100)
    model = fifo_samples([(a, T) for a in arrivals_ps], interval_ns * PS_PER_NS)
    assert [q["time_ns"] for q in rows] == [a // PS_PER_NS for a in model]
    for q, (mx, area) in zip(rows, model.values()):
        assert q["max_bytes"] == mx / ppb
        assert q["mean_bytes"] == pytest.approx(float(area / (interval_ns * PS_PER_NS) / ppb), rel=1e-9)


@pytest.mark.parametrize("ports", ["ideal", "event-driven"])
@pytest.mark.parametrize("k,interval_ns", [(4, 1000), (6, 3000), (8, 10**6)])
def test_incast_same_leaf(k: int, interval_ns: int, ports: str, run_in) -> None:
    # k senders and the receiver h0 under one leaf, n packets each, all starting at 0. Every sender's
    # packet i reaches the leaf at i*t + d, so k packets arrive together every t into a port that
    # serves one per t. The port is busy from t + d on, without a gap, until it has sent all k*n
    # packets; the last of them reaches h0 at (k*n + 1)*t + 2*d = single-flow FCT + (k-1)*n*t.
    # The k last packets (one per flow) arrive at the leaf together, after every other packet, so
    # they are the last k to leave: the flows end exactly one packet time apart.
    # Backlog (packet on the wire included) right after round i is enqueued: k*i*t sent into the port
    # minus (i-1)*t served = ((k-1)*i + 1)*t, largest at i = n: ((k-1)*n + 1) * MTU bytes, i.e.
    # (k-1)/k of all the wire bytes plus one packet.
    n = 50
    hosts = [f"h{i}" for i in range(k + 1)]
    topo = leaf_spine(spines=1, leaves=2, hosts_per_leaf=k + 1)
    sc = make_scenario(topo, _incast(k, n, hosts), queue_interval_ns=interval_ns)
    r = run_in(_event_driven_ports(sc) if ports == "event-driven" else sc)
    assert r.sim.net.transport_model == (ports == "event-driven")
    single = n * T + T + 2 * D
    last = (k * n + 1) * T + 2 * D
    assert last == single + (k - 1) * n * T
    ends = sorted(m["end_ns"] for m in r.rows("messages"))
    assert ends == [ns(last - j * T) for j in reversed(range(k))]
    assert sorted(f["end_ns"] for f in r.rows("flows")) == ends
    assert all(m["ideal_fct_ns"] == ns(single) for m in r.rows("messages"))
    assert r.summary["jobs"][0]["cct_ns"] == [ns(last)]

    rows = _queue_rows(r, "leaf0", "h0")
    assert max(q["max_bytes"] for q in rows) == ((k - 1) * n + 1) * MTU
    arrivals = [i * T + D for i in range(1, n + 1) for _ in range(k)]
    _check_queue_against_model(rows, arrivals, interval_ns)
    # Every sender's uplink and the leaf's port to it never hold more than the packet on the wire.
    for h in hosts[1:]:
        assert max(q["max_bytes"] for q in _queue_rows(r, h, "leaf0")) == MTU
    assert r.summary["largest_queue"]["node"] == "leaf0" and r.summary["largest_queue"]["port"] == "h0"
    assert r.summary["largest_queue"]["max_bytes"] == ((k - 1) * n + 1) * MTU
    # The bottleneck link carried every wire byte.
    links = [x for x in r.rows("links") if x["src"] == "leaf0" and x["dst"] == "h0"]
    assert sum(x["bytes"] for x in links) == k * n * MTU


@pytest.mark.parametrize("ports", ["ideal", "event-driven"])
@pytest.mark.parametrize("spines", [1, 2])
def test_incast_across_leaves(spines: int, ports: str, run_in) -> None:
    # k = 4 senders, each alone under its own leaf, to h0 on leaf0. Hosts at 100 Gb/s, fabric at
    # 400 Gb/s (tf = t/4), so the fabric never limits: whatever spines ECMP picks, a spine port gets
    # at most k = 4 packets per t and serves them in k*tf <= t. Sender packet i reaches its spine at
    # i*t + tf + 2*d; the j-th packet of round i sent by a spine (j = 0..m-1 for the m flows on it)
    # reaches leaf0 at i*t + tf + 3*d + (j+1)*tf. The first reaches it at tau0 = 1.5*t + 3*d and from
    # then on at least one packet per t is waiting, so leaf0 -> h0 is busy until tau0 + k*n*t; the
    # round-n packets arrive after every other packet, so the flows end at
    #   tau0 + (k*n - j)*t + d, j = 0..k-1  (the last: single-flow FCT + (k-1)*n*t).
    # With one spine, round i reaches leaf0 at tau0 + (i-1)*t + j*tf, j = 0..3, and the backlog peaks
    # after the last packet of round n: ((k-1)*n + 1 - (k-1)*tf/t) * t.
    k, n = 4, 50
    tf = ser_ps(MTU, 400)
    assert 4 * tf == T
    hosts = ["h0"] + [f"h{2 * s}" for s in range(1, k + 1)]  # h2 on leaf1, h4 on leaf2, ...
    topo = leaf_spine(spines=spines, leaves=k + 1, hosts_per_leaf=2, gbps=400, host_gbps=100)
    sc = make_scenario(topo, _incast(k, n, hosts), queue_interval_ns=1000)
    r = run_in(_event_driven_ports(sc) if ports == "event-driven" else sc)
    tau0 = T + 2 * tf + 3 * D
    single = n * T + 2 * tf + T + 4 * D
    ends = sorted(m["end_ns"] for m in r.rows("messages"))
    assert ends == [ns(tau0 + (k * n - j) * T + D) for j in reversed(range(k))]
    assert ends[-1] == ns(single + (k - 1) * n * T)
    assert all(m["ideal_fct_ns"] == ns(single) for m in r.rows("messages"))

    rows = _queue_rows(r, "leaf0", "h0")
    peak = max(q["max_bytes"] for q in rows)
    low = ((k - 1) * n + 1) * MTU - (k - 1) * MTU * tf // T
    if spines == 1:
        assert peak == low
        arrivals = [tau0 + (i - 1) * T + j * tf for i in range(1, n + 1) for j in range(k)]
        _check_queue_against_model(rows, arrivals, 1000)
    else:
        assert low <= peak <= ((k - 1) * n + 1) * MTU
    # No fabric port ever holds more than the 4 packets of one round.
    for q in r.rows("queues"):
        if q["node"].startswith("spine"):
            assert q["max_bytes"] <= k * MTU
