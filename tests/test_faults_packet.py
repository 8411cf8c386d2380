"""Faults on the packet backend (issue 12): dead, degraded and lossy links, routing changes,
re-planning and stragglers, each checked against a number that does not come from the code under
test: the closed form of a message alone on one path (:func:`pktsim.analysis.ideal.message_fct_ps`,
with the degraded rate on its hop), the time a lost packet needs to be resent after detection,
a chi-square test of ECMP's spread over the surviving next hops, a binomial test of a lossy
link's drops, the run itself repeated, packet conservation, and the exact delay a straggler adds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pyarrow.dataset as pads
import pytest
from scipy.stats import binomtest, chisquare

from pktsim.analysis.ideal import message_fct_ps
from pktsim.experiment import prepare
from pktsim.packet.backend import PacketBackend, Simulation
from pktsim.scenario import Scenario, load_scenario
from pktsim.traces import Recorder

from conftest import HEADER, MTU, PAYLOAD, leaf_spine, one_message, ser_ps

US = 1_000_000  # ps


def scenario(topology: dict, jobs: list[dict], *, faults: list[dict] = (), transport: str = "sr", lb: str = "ecmp",
             routing: dict | None = None, seed: int = 1, interval_ns: int = 10_000, switch: dict | None = None,
             **nic) -> Scenario:
    """A micro-scenario (1100-byte packets) with ``faults``; no congestion control, no PFC unless
    ``switch`` says so."""
    return Scenario.model_validate({
        "name": "faults", "seed": seed, "topology": topology,
        "nic": {"mtu_bytes": MTU, "header_bytes": HEADER, "transport": transport, **nic},
        "switch": switch or {},
        "lb": {"scheme": lb}, "workload": {"jobs": jobs}, "faults": list(faults),
        "routing": routing or {"detect_ns": 20_000, "converge_ns": 50_000, "replan_ns": 80_000},
        "traces": {"queue_interval_ns": interval_ns},
    })


def run(sc: Scenario, out: Path | None = None) -> Simulation:
    sim = Simulation(prepare(sc), keep_flows=True)
    sim.summary = sim.run(Recorder(out, sc.model_dump(mode="json"), sc.traces.part_rows) if out else None)
    return sim


def table(out: Path, name: str) -> list[dict]:
    return pads.dataset(out / name).to_table().to_pylist()


def check_conservation(sim: Simulation) -> None:
    """Every data copy sent was delivered first, delivered again, discarded out of order, dropped
    by a buffer or lost to a fault; every byte arrived once; nothing is left in the network."""
    flows = sim.closed_flows
    assert len(flows) == sim.flows_started
    assert sim.dag.messages_done == len(sim.workload.messages)
    for f in flows:
        assert f.rx_bytes == f.bytes and f.inflight == 0, f.flow_id
        assert f.tx_packets == f.packets + f.spurious + f.discarded + f.dropped + f.fault_dropped, f.flow_id
        assert f.tx_packets == f.packets + f.retransmits, f.flow_id
    ports = sim.net.ports
    assert sum(f.dropped for f in flows) == sum(p.drops for p in ports)
    # the ports also count the control packets (ACKs, NACKs) the faults lost
    assert sum(f.fault_dropped for f in flows) <= sum(p.fault_drops for p in ports)
    assert sim.summary["transport"]["fault_drops"] == sum(p.fault_drops for p in ports)
    # what the faults took out of the switches' buffers was released there (and at its ingress)
    assert all(b.used == 0 for b in sim.net.buffers.values())
    assert all(p.wire.held == 0 and not p.wire.pause_sent and not p.paused for p in ports)


def path_of(sim: Simulation, src: str, dst: str) -> list[str]:
    """The healthy ECMP path of the (only) connection from ``src`` to ``dst``."""
    exp = sim.experiment
    m = next(m for m in exp.workload.messages if (m.src, m.dst) == (src, dst))
    (_, entropy), = exp.flow_plan.subflows(m)
    return exp.fabric.path(src, dst, entropy)


# ---------------------------------------------------------------------------------------------
# link_degrade: the closed form with the new rate on the degraded hop


@pytest.mark.parametrize("transport", ["ideal", "sr"])
def test_a_lone_flow_over_a_degraded_link_takes_the_closed_form_at_the_new_rate(transport: str) -> None:
    nbytes = 40 * PAYLOAD + 500
    faults = [{"kind": "link_degrade", "at_ns": 0, "link": ["leaf0", "spine0"], "direction": "up", "gbps": 40}]
    sc = scenario(leaf_spine(spines=1), one_message("h0", "h2", nbytes), faults=faults, transport=transport)
    sim = run(sc)
    hops = sim.experiment.fabric.path_hops("h0", "h2")
    assert [h.gbps for h in hops] == [100] * 4
    slow = [hops[0], replace(hops[1], gbps=40), *hops[2:]]
    fct = sim.dag.end_ps[0] - sim.dag.start_ps[0]
    assert fct == message_fct_ps(nbytes, MTU, HEADER, slow)
    assert fct > message_fct_ps(nbytes, MTU, HEADER, hops)
    # 40 full packets queue behind the 40 Gb/s hop: 220 ns each, instead of 88 ns
    assert fct >= 40 * ser_ps(MTU, 40)
    port = sim.net.port_of["leaf0", "spine0"]
    assert port.gbps == 40 and sim.net.port_of["spine0", "leaf0"].gbps == 100


def test_degrading_a_busy_buffered_port_converts_its_backlog_to_the_new_rate() -> None:
    """Two senders into h1's link, which halves its rate at t_f: the packet being serialised then
    finishes at 100 Gb/s, the 155 queued behind it go at 50 Gb/s."""
    jobs = [{"name": "job0", "collective": "incast", "ranks": 3, "receiver": 0, "placement": ["h1", "h0", "h2"],
             "bytes": 100 * PAYLOAD}]
    t_f = 5 * US
    faults = [{"kind": "link_degrade", "at_ns": t_f // 1000, "link": ["leaf0", "h1"], "direction": "down",
               "gbps": 50}]
    sim = run(scenario(leaf_spine(spines=1), jobs, faults=faults))
    check_conservation(sim)
    port = sim.net.port_of["leaf0", "h1"]
    assert port.gbps == 50 and port.packets == 200  # no loss, no resend
    fast, slow = ser_ps(MTU, 100), ser_ps(MTU, 50)
    # h0's packets reach leaf0 back to back from t0 and h2's join them: the port never idles.
    t0 = fast + US
    done = (t_f - t0) // fast  # packets serialised before t_f; the next one is on the wire
    assert done == 44
    assert max(sim.dag.end_ps) == t0 + (done + 1) * fast + (200 - done - 1) * slow + US


def test_degrading_an_ideal_port_slows_only_the_packets_enqueued_after() -> None:
    """The same incast on the ideal fabric: a packet's departure is fixed at its enqueue, so the
    65 packets that reached leaf0 before t_f (45 of h0's from 1.088 us, 20 of h2's from 3.264 us,
    one every 88 ns each) keep 100 Gb/s and the other 135 go at 50 Gb/s."""
    jobs = [{"name": "job0", "collective": "incast", "ranks": 3, "receiver": 0, "placement": ["h1", "h0", "h2"],
             "bytes": 100 * PAYLOAD}]
    t_f = 5 * US
    faults = [{"kind": "link_degrade", "at_ns": t_f // 1000, "link": ["leaf0", "h1"], "direction": "down",
               "gbps": 50}]
    sim = run(scenario(leaf_spine(spines=1), jobs, faults=faults, transport="ideal"))
    fast, slow = ser_ps(MTU, 100), ser_ps(MTU, 50)
    t0, t2 = fast + US, 3 * (fast + US)  # first arrivals at leaf0 from h0 and from h2
    before = (t_f - t0) // fast + 1 + (t_f - t2) // fast + 1
    assert before == 65
    assert max(sim.dag.end_ps) == t0 + before * fast + (200 - before) * slow + US


# ---------------------------------------------------------------------------------------------
# link_down


def test_a_link_dead_and_detected_before_the_flow_starts_is_avoided_at_no_cost() -> None:
    nbytes = 40 * PAYLOAD
    jobs = one_message("h0", "h2", nbytes)
    healthy = run(scenario(leaf_spine(spines=2), jobs))
    spine = path_of(healthy, "h0", "h2")[2]
    jobs[0]["start_ns"] = 60_000  # after detection (20 us) and convergence (50 us)
    faults = [{"kind": "link_down", "at_ns": 0, "link": ["leaf0", spine]}]
    sim = run(scenario(leaf_spine(spines=2), jobs, faults=faults))
    check_conservation(sim)
    (flow,) = sim.closed_flows
    assert spine not in flow.path and flow.fault_dropped == 0 and flow.retransmits == 0
    hops = sim.experiment.fabric.path_hops("h0", "h2")
    assert sim.dag.end_ps[0] - sim.dag.start_ps[0] == message_fct_ps(nbytes, MTU, HEADER, hops)
    assert sum(p.fault_drops for p in sim.net.ports) == 0


def test_a_link_that_fails_mid_flow_loses_packets_that_are_resent_after_detection(tmp_path: Path) -> None:
    nbytes = 400 * PAYLOAD  # 400 packets, 35.2 us at 100 Gb/s
    jobs = one_message("h0", "h2", nbytes)
    spine = path_of(run(scenario(leaf_spine(spines=2), jobs)), "h0", "h2")[2]
    t_f, detect = 10 * US, 20 * US
    faults = [{"kind": "link_down", "at_ns": t_f // 1000, "link": ["leaf0", spine]}]
    sc = scenario(leaf_spine(spines=2), jobs, faults=faults)
    exp = prepare(sc)
    sim = Simulation(exp, keep_flows=True)
    lost: set[int] = set()
    dead = sim.net.port_of["leaf0", spine]
    account = dead.on_fault_drop

    def noting(pkt) -> None:
        if not pkt.kind:
            lost.add(pkt.psn)
        account(pkt)
    dead.on_fault_drop = noting
    out = tmp_path / "run"
    sim.summary = sim.run(Recorder(out, sc.model_dump(mode="json"), sc.traces.part_rows))
    check_conservation(sim)
    (flow,) = sim.closed_flows
    assert sim.dag.messages_done == 1 and flow.packets == 400 and flow.rx_bytes == nbytes
    assert lost and flow.fault_dropped >= len(lost) and dead.fault_drops >= flow.fault_dropped
    # every lost packet is resent after detection, one after another on h0's link, and crosses 4 links
    start, end = sim.dag.start_ps[0], sim.dag.end_ps[0]
    assert end >= t_f + detect + len(lost) * ser_ps(MTU, 100) + 4 * US
    assert end - start >= t_f - start + detect + len(lost) * ser_ps(MTU, 100)
    # the trace: the fault drops on that port, the row of the rerouted flow
    queues = [r for r in table(out, "queues") if (r["node"], r["port"]) == ("leaf0", spine)]
    assert sum(r["fault_drops"] for r in queues) == dead.fault_drops > 0
    # packets sent there until detection are lost at enqueue; after detection none is sent there
    assert all(r["time_ns"] < (t_f + detect) // 1000 for r in queues)
    assert any(r["fault_drops"] for r in queues if r["time_ns"] >= t_f // 1000 + 10_000)
    (row,) = table(out, "flows")
    assert row["fault_drops"] == flow.fault_dropped and row["retransmits"] == flow.retransmits
    assert row["path"] is None  # its packets crossed two spines
    assert len(row["spine_bytes"]) == 2 and sum(s["bytes"] for s in row["spine_bytes"]) == nbytes
    faults_rows = table(out, "faults")
    assert faults_rows == [{"fault_id": 0, "at_ns": t_f // 1000, "kind": "link_down", "target": f"leaf0-{spine}",
                            "value": None, "detected_ns": (t_f + detect) // 1000, "converged_ns": 60_000,
                            "replanned_ns": None}]
    assert sim.summary["faults"] == faults_rows


def test_links_table_shows_no_bytes_on_a_dead_link_and_bytes_again_after_link_up(tmp_path: Path) -> None:
    nbytes = 200 * PAYLOAD
    t_down, t_up = 5 * US, 100 * US
    faults = [{"kind": "link_down", "at_ns": t_down // 1000, "link": ["leaf0", "spine0"]},
              {"kind": "link_up", "at_ns": t_up // 1000, "link": ["leaf0", "spine0"]}]
    sc = scenario(leaf_spine(spines=1), one_message("h0", "h2", nbytes), faults=faults, interval_ns=5_000)
    out = tmp_path / "run"
    sim = run(sc, out)
    check_conservation(sim)
    rows = [r for r in table(out, "links") if (r["src"], r["dst"]) == ("leaf0", "spine0")]
    assert rows and all(r["bytes"] == 0 for r in rows if t_down // 1000 + 5_000 <= r["time_ns"] < t_up // 1000)
    assert sum(r["bytes"] for r in rows if r["time_ns"] >= t_up // 1000) > 0
    assert sim.dag.end_ps[0] >= t_up + 3 * US


def test_a_flap_shorter_than_the_wire_loses_what_was_on_it_and_the_rest_follows() -> None:
    """leaf0-spine0 is down for 300 ns, less than its 1 us propagation delay and than detection:
    the routing never reacts; what was on the link then is lost while it is still "arriving", and
    the packets sent once it is up follow those on the same wire."""
    nbytes = 400 * PAYLOAD
    faults = [{"kind": "link_down", "at_ns": 10_000, "link": ["leaf0", "spine0"]},
              {"kind": "link_up", "at_ns": 10_300, "link": ["leaf0", "spine0"]}]
    sim = run(scenario(leaf_spine(spines=1), one_message("h0", "h2", nbytes), faults=faults))
    check_conservation(sim)
    assert sim.faults.route_changes == []
    port = sim.net.port_of["leaf0", "spine0"]
    # on the wire: the packet being serialised and those within 1 us behind it; sent while down: 4
    assert 0 < port.fault_drops <= 1 + US // ser_ps(MTU, 100) + 4
    assert port.wire.doomed == 0 and port.packets > 400


def test_a_nic_whose_host_link_is_down_stops_sending_until_it_is_up() -> None:
    """h0's own link dies for 50 us mid-flow: only what was on the wire then is lost (at most the
    packet being serialised and those within one propagation delay, 1 us / 88 ns), not the 570
    packets the link could have carried meanwhile; the flow completes after the link is back."""
    nbytes = 400 * PAYLOAD
    t_down, t_up = 10 * US, 60 * US
    faults = [{"kind": "link_down", "at_ns": t_down // 1000, "link": ["h0", "leaf0"]},
              {"kind": "link_up", "at_ns": t_up // 1000, "link": ["h0", "leaf0"]}]
    sim = run(scenario(leaf_spine(spines=1), one_message("h0", "h2", nbytes), faults=faults))
    check_conservation(sim)
    up = sim.net.port_of["h0", "leaf0"]
    assert 0 < up.fault_drops <= 1 + US // ser_ps(MTU, 100) + 1
    assert sim.net.port_of["leaf0", "h0"].fault_drops >= 1  # ACKs on their way back
    (flow,) = sim.closed_flows
    assert flow.fault_dropped <= up.fault_drops and flow.tx_packets < 400 + 2 * up.fault_drops + 10
    assert sim.dag.end_ps[0] >= t_up + 3 * US


def test_unsupported_without_a_transport_that_resends() -> None:
    faults = [{"kind": "link_degrade", "at_ns": 0, "link": ["leaf0", "spine0"], "gbps": 50},
              {"kind": "link_loss", "at_ns": 0, "link": ["leaf0", "spine1"], "drop_rate": 0.1}]
    sc = scenario(leaf_spine(), one_message("h0", "h2", 1000), faults=faults, transport="ideal")
    problem = PacketBackend().unsupported(sc)
    assert problem is not None and problem.field == "faults[1].kind"
    assert str(problem) == ("scenario: faults[1].kind: link_loss loses packets and nic.transport: ideal never "
                            "resends them: use nic.transport: sr or gbn (or --profile roce)")
    with pytest.raises(type(problem)):
        Simulation(prepare(sc))
    drawn = load_scenario(overrides=["faults={random: {kinds: [link_degrade, link_down]}}"])
    assert PacketBackend().unsupported(drawn).field == "faults.random.kinds"
    assert PacketBackend().unsupported(scenario(leaf_spine(), one_message("h0", "h2", 1000),
                                                faults=faults[:1], transport="ideal")) is None
    assert PacketBackend().unsupported(scenario(leaf_spine(), one_message("h0", "h2", 1000), faults=faults)) is None


# ---------------------------------------------------------------------------------------------
# routing changes: ECMP over the surviving next hops


def test_after_a_spine_link_fails_ecmp_spreads_uniformly_over_the_surviving_spines(tmp_path: Path) -> None:
    """8 spines x 8 leaves x 8 hosts, a cross-leaf permutation on 4 channels (256 connections), two
    iterations; leaf0-spine0 dies during the first. The second starts after convergence: the 64
    connections to or from leaf0 hash uniformly over spines 1..7 (chi-square), none crosses
    spine0, and no packet is sent onto the dead link after detection."""
    t_f, detect, converge = 5 * US, 20 * US, 50 * US
    jobs = [{"name": "job0", "collective": "permutation", "ranks": 64, "shift": 8, "channels": 4,
             "bytes": 16 * PAYLOAD, "iterations": 2, "compute_gap_ns": 100_000}]
    faults = [{"kind": "link_down", "at_ns": t_f // 1000, "link": ["leaf0", "spine0"]}]
    sc = scenario(leaf_spine(spines=8, leaves=8, hosts_per_leaf=8), jobs, faults=faults, seed=3,
                  routing={"detect_ns": detect // 1000, "converge_ns": converge // 1000, "replan_ns": 80_000})
    out = tmp_path / "run"
    sim = run(sc, out)
    check_conservation(sim)
    fabric, msgs = sim.experiment.fabric, sim.workload.messages
    assert min(sim.dag.ready_ps[m.msg_id] for m in msgs if m.iteration == 1) > t_f + converge
    spines = sim.net.switch_names
    touching: Counter = Counter()
    others: Counter = Counter()
    for f in sim.closed_flows:
        m = msgs[f.msg]
        if m.iteration != 1:
            continue
        (via,) = f.via_bytes  # one path per flow once the fabric has converged
        leaf0 = "leaf0" in (fabric.tor_of[m.src], fabric.tor_of[m.dst])
        (touching if leaf0 else others)[spines[via]] += 1
    assert sum(touching.values()) == 64 and sum(others.values()) == 192
    assert touching["spine0"] == 0 and others["spine0"] > 0
    assert chisquare([touching[f"spine{s}"] for s in range(1, 8)]).pvalue > 0.01
    assert chisquare([others[f"spine{s}"] for s in range(8)]).pvalue > 0.01
    queues = {(r["node"], r["port"], r["time_ns"]): r for r in table(out, "queues")}
    links = table(out, "links")
    # leaf0 stops sending onto the dead link at detection, every other switch at convergence
    for (a, b), after in ((("leaf0", "spine0"), t_f + detect), (("spine0", "leaf0"), t_f + converge)):
        rows = [r for k, r in queues.items() if k[:2] == (a, b)]
        assert sum(r["fault_drops"] for r in rows) == sim.net.port_of[a, b].fault_drops
        assert all(r["fault_drops"] == 0 for r in rows if r["time_ns"] * 1000 >= after)
        assert all(r["bytes"] == 0 for r in links if (r["src"], r["dst"]) == (a, b)
                   and r["time_ns"] * 1000 >= t_f + 10 * US)
    assert sim.net.port_of["leaf0", "spine0"].fault_drops > 0


# ---------------------------------------------------------------------------------------------
# link_loss


def test_a_lossy_link_loses_a_binomial_share_of_the_packets_that_cross_it(tmp_path: Path) -> None:
    p = 0.03
    faults = [{"kind": "link_loss", "at_ns": 0, "link": ["leaf0", "spine0"], "drop_rate": p}]
    jobs = [{"name": "job0", "collective": "permutation", "ranks": 4, "shift": 2, "bytes": 1000 * PAYLOAD}]
    sc = scenario(leaf_spine(spines=1), jobs, faults=faults)
    out = tmp_path / "run"
    sim = run(sc, out)
    check_conservation(sim)
    lossy = [sim.net.port_of["leaf0", "spine0"], sim.net.port_of["spine0", "leaf0"]]
    for port in lossy:  # data one way, ACKs the other: every packet serialised either arrived or was lost
        assert port.packets > 2000 and not port.wire.fifo
        assert binomtest(port.fault_drops, port.packets, p).pvalue > 0.001
    assert all(p.fault_drops == 0 for p in sim.net.ports if p not in lossy)
    data_lost = sum(f.fault_dropped for f in sim.closed_flows)
    assert 0 < data_lost <= sum(p.fault_drops for p in lossy)
    rows = [r for r in table(out, "queues") if (r["node"], r["port"]) in (("leaf0", "spine0"), ("spine0", "leaf0"))]
    assert sum(r["fault_drops"] for r in rows) == sum(p.fault_drops for p in lossy)
    flows = table(out, "flows")
    assert sum(r["fault_drops"] for r in flows) == data_lost


# ---------------------------------------------------------------------------------------------
# determinism and conservation


FAULTS = [
    {"kind": "link_down", "at_ns": 4_000, "link": ["leaf0", "spine0"]},
    {"kind": "link_loss", "at_ns": 2_000, "link": ["leaf1", "spine1"], "drop_rate": 0.02},
    {"kind": "link_degrade", "at_ns": 6_000, "link": ["leaf2", "spine1"], "gbps": 50},
    {"kind": "link_up", "at_ns": 90_000, "link": ["leaf0", "spine0"]},
]


def faulty(lb: str, transport: str, switch: dict | None = None) -> Scenario:
    """Two iterations of a cross-leaf permutation on 2 spines x 4 leaves x 3 hosts (3 flows from
    each leaf to the next: split_minimal cuts one of them in two) through all four faults."""
    jobs = [{"name": "job0", "collective": "permutation", "ranks": 12, "shift": 3, "bytes": 60 * PAYLOAD,
             "iterations": 2, "compute_gap_ns": 20_000}]
    return scenario(leaf_spine(spines=2, leaves=4, hosts_per_leaf=3), jobs, faults=FAULTS, lb=lb,
                    transport=transport, switch=switch)


def test_a_run_with_faults_is_deterministic(tmp_path: Path) -> None:
    sc = faulty("flowlet", "sr")
    run(sc, tmp_path / "a")
    run(sc, tmp_path / "b")
    for name in ("messages", "flows", "queues", "links", "faults", "collectives"):
        a, b = (pads.dataset(tmp_path / d / name).to_table() for d in "ab")
        assert a.num_rows and a.equals(b), name


@pytest.mark.parametrize("transport", ["sr", "gbn"])
@pytest.mark.parametrize("lb", ["ecmp", "spray", "adaptive", "planned", "split_minimal"])
def test_every_copy_is_accounted_for_through_faults(lb: str, transport: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sim = run(faulty(lb, transport), out)
    check_conservation(sim)
    assert sim.summary["transport"]["fault_drops"] > 0
    for r in table(out, "flows"):
        assert r["retransmits"] == r["spurious_retransmits"] + r["discarded"] + r["drops"] + r["fault_drops"]
    if lb in ("planned", "split_minimal"):  # re-planned 80 us after the link went down, and came up
        assert [f["replanned_ns"] for f in sim.summary["faults"]] == [84_000, None, None, 170_000]
    if lb == "split_minimal":
        assert sim.flows_started > len(sim.workload.messages)


@pytest.mark.parametrize("transport", ["sr", "gbn"])
def test_with_pfc_what_a_dead_link_held_in_the_buffers_is_released(transport: str) -> None:
    """An incast into h1 with small PFC thresholds: when h1's link dies, the packets queued for it
    at leaf0 are lost and leave the switch's buffer and their ingress counts, so every pause is
    resumed and the buffers end empty."""
    pfc = {"buffer_bytes": 256 * MTU, "pfc": {"enabled": True, "xoff_bytes": 8 * MTU, "xon_bytes": 4 * MTU}}
    jobs = [{"name": "job0", "collective": "incast", "ranks": 4, "receiver": 0,
             "placement": ["h1", "h0", "h2", "h3"], "bytes": 200 * PAYLOAD}]
    faults = [{"kind": "link_down", "at_ns": 8_000, "link": ["leaf0", "h1"]},
              {"kind": "link_up", "at_ns": 30_000, "link": ["leaf0", "h1"]}]
    sc = scenario(leaf_spine(spines=1), jobs, faults=faults, transport=transport, switch=pfc)
    sim = Simulation(prepare(sc), keep_flows=True)
    port = sim.net.port_of["leaf0", "h1"]
    queued = []
    sim.env.timeout(8_000_000 - 1).callbacks.append(lambda _: queued.append(len(port.data)))
    sim.summary = sim.run()
    check_conservation(sim)
    assert queued[0] >= 8  # PFC kept the queue near xoff: those were lost from leaf0's buffer
    assert port.fault_drops >= queued[0]
    assert sum(b.pauses for b in sim.net.buffers.values()) > 0


def test_replanned_messages_avoid_the_dead_link() -> None:
    """planned: messages posted after the re-plan get entropies whose paths avoid the dead link
    (new connections); those posted before keep theirs."""
    jobs = [{"name": "job0", "collective": "permutation", "ranks": 8, "shift": 2, "bytes": 60 * PAYLOAD,
             "iterations": 2, "compute_gap_ns": 100_000}]
    faults = [{"kind": "link_down", "at_ns": 4_000, "link": ["leaf0", "spine0"]}]
    sc = scenario(leaf_spine(spines=2, leaves=4), jobs, faults=faults, lb="planned")
    exp = prepare(sc)
    planned = [exp.flow_plan.subflows(m) for m in exp.workload.messages]
    sim = Simulation(exp, keep_flows=True)
    sim.summary = sim.run()
    check_conservation(sim)
    assert [exp.flow_plan.subflows(m) for m in exp.workload.messages] == planned  # the run re-planned its own copy
    fabric, msgs = sim.experiment.fabric, sim.workload.messages
    second = [f for f in sim.closed_flows if msgs[f.msg].iteration == 1]
    assert min(sim.dag.ready_ps[f.msg] for f in second) > 84 * US
    for f in second:
        m = msgs[f.msg]
        if "leaf0" in (fabric.tor_of[m.src], fabric.tor_of[m.dst]):
            assert f.path is not None and "spine0" not in f.path, f.path
    first = {(msgs[f.msg].src, msgs[f.msg].dst): f.entropy for f in sim.closed_flows if msgs[f.msg].iteration == 0}
    moved = [f for f in second if f.entropy != first[msgs[f.msg].src, msgs[f.msg].dst]]
    assert moved and all("spine0" not in f.path for f in moved)


# ---------------------------------------------------------------------------------------------
# stragglers


def test_a_straggler_posts_its_next_iteration_f_minus_one_gaps_later() -> None:
    gap_ns, factor = 10_000, 2.5
    jobs = [{"name": "job0", "collective": "ring_allreduce", "ranks": 4, "bytes": 8 * PAYLOAD, "iterations": 2,
             "compute_gap_ns": gap_ns}]
    topo = leaf_spine(spines=2, leaves=2, hosts_per_leaf=2)
    base = run(scenario(topo, jobs, transport="ideal"))
    slow = run(scenario(topo, jobs, transport="ideal",
                        faults=[{"kind": "straggler", "at_ns": 0, "host": "h2", "compute_factor": factor}]))
    msgs = base.workload.messages
    roots = [m.msg_id for m in msgs if m.iteration == 1 and m.after_op >= 0]
    assert roots and any(msgs[i].src == "h2" for i in roots)
    first = [m.msg_id for m in msgs if m.iteration == 0]
    assert [slow.dag.ready_ps[i] for i in first] == [base.dag.ready_ps[i] for i in first]
    for i in roots:
        delay = slow.dag.ready_ps[i] - base.dag.ready_ps[i]
        assert delay == ((factor - 1) * gap_ns * 1000 if msgs[i].src == "h2" else 0), msgs[i]
