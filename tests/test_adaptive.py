"""Switch-local load balancing (``adaptive``, ``flowlet``) checked against independent numbers:
least-backlog choice against hand-made port states, a cross-leaf permutation against its closed-form
ideal and ECMP's collision arithmetic, flowlets against the workload's idle gaps and the binomial
odds of a random re-pick, conservation and reproducibility.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run

from pktsim.errors import InputError
from pktsim.fabric.hashing import salted_hash
from pktsim.fabric.selectors import AdaptiveSelect, FlowletSelect
from pktsim.scenario import load_scenario

MIB = 2**20


def _port(name: str, busy_until: int, gbps: int = 100) -> SimpleNamespace:
    # ps per byte = 8000 / Gb/s, as an exact fraction num/den
    return SimpleNamespace(name=name, busy_until=busy_until, ppb_num=8000, ppb_den=gbps)


def _perm(lb: str, extra: list[str] = (), nbytes: str = "4MiB") -> object:
    return load_scenario(topology="bench", workload="permutation", lb=lb,
                         overrides=[f"workload.jobs.0.bytes={nbytes}", *extra])


def _spines(flow: dict) -> list[str]:
    return [s["node"] for s in flow["spine_bytes"]]


# ---------------------------------------------------------------------------------------------
# The selectors on hand-made port states


def test_adaptive_picks_least_backlog() -> None:
    sel = AdaptiveSelect(salt=12345, choices=0, seed=1)
    t = 1_000_000
    group = (_port("a", t + 5000), _port("b", t + 700), _port("c", t + 3000), _port("d", t + 701))
    for key in range(200):
        assert sel(SimpleNamespace(key=key, t=t), group).name == "b"
    # Backlog that drained before now counts as zero: an idle port wins.
    group = (_port("a", t + 5000), _port("b", t - 10_000), _port("c", t + 1))
    assert sel(SimpleNamespace(key=7, t=t), group).name == "b"


def test_adaptive_compares_bytes_when_rates_differ() -> None:
    sel = AdaptiveSelect(salt=1, choices=0, seed=1)
    t = 0
    # 400G port: 1000 ps of work = 50 bytes; 100G port: 1600 ps = 20 bytes. Fewer bytes wins.
    fast, slow = _port("fast", 1000, gbps=400), _port("slow", 1600, gbps=100)
    for key in range(50):
        assert sel(SimpleNamespace(key=key, t=t), (fast, slow)).name == "slow"


def test_adaptive_ties_follow_the_salted_hash() -> None:
    # On an idle fabric adaptive routing makes ECMP's choice: group[salted_hash(key, salt) % n].
    salt = 0xDEADBEEF
    sel = AdaptiveSelect(salt=salt, choices=0, seed=1)
    group = tuple(_port(str(i), 0) for i in range(4))
    counts = Counter()
    for key in range(4000):
        got = sel(SimpleNamespace(key=key, t=10), group)
        assert got is group[salted_hash(key, salt) % 4]
        counts[got.name] += 1
    assert all(900 <= c <= 1100 for c in counts.values())  # 1000 +- 3.5 sd of Binomial(4000, 1/4)


def test_power_of_two_choices() -> None:
    sel = AdaptiveSelect(salt=1, choices=2, seed=9)
    t = 0
    group = (_port("hot", 10**6), _port("x", 100), _port("y", 100), _port("z", 100))
    counts = Counter(sel(SimpleNamespace(key=0, t=t), group).name for _ in range(3000))
    # Two distinct samples: the hot port loses every comparison, so it is never taken; by symmetry
    # the other three share the 3000 packets: 1000 each, sd ~26.
    assert counts["hot"] == 0
    assert all(850 <= counts[n] <= 1150 for n in "xyz")


def test_flowlet_selector_gap_and_pruning() -> None:
    class Small(FlowletSelect):
        TABLE_SIZE = 4

    group = tuple(_port(str(i), 0) for i in range(8))
    ref, small = FlowletSelect(seed=3, gap_ps=100), Small(seed=3, gap_ps=100)
    # Keys come and go; pruning (every few packets in Small) must never change a choice.
    t = 0
    for step in range(2000):
        key = (step * 7) % 13 if step % 3 else step  # a few recurring keys and many one-off keys
        t += 17 if step % 50 else 1000
        pkt = SimpleNamespace(key=key, t=t)
        assert ref(pkt, group) is small(pkt, group)
    assert len(small.table) < len(ref.table)
    # Within the gap the port is kept, after it re-drawn (and the draw is what the seed says).
    sel = FlowletSelect(seed=5, gap_ps=100)
    first = sel(SimpleNamespace(key=1, t=0), group)
    assert all(sel(SimpleNamespace(key=1, t=t), group) is first for t in range(100, 10_000, 100))


# ---------------------------------------------------------------------------------------------
# Whole runs on the bench fabric


def test_adaptive_permutation_reaches_the_ideal(tmp_path: Path) -> None:
    """32 hosts send 4 MiB each to the host 4 further on (the next leaf): every leaf's 4 senders
    share its 4 uplinks, so a perfect balancer runs each at line rate and the permutation takes
    its ideal time. ECMP with the default seed hashes 3 flows onto one uplink: at least 3x.

    Tolerance for adaptive (exact least backlog): a packet joins the least-backlogged uplink, so
    uplink backlogs never differ by more than one packet and no uplink idles while another holds
    two packets; the last byte leaves the leaf at most about one packet time after the fluid ideal,
    and at the destination leaf each host's packets (100G from one NIC) can bunch by at most one
    packet per spine. 8 packet times is a generous bound (~1% of the run). Power-of-two choices
    does not see every uplink, so backlogs random-walk; it gets 5%."""
    sc = _perm("ecmp")
    mtu = sc.nic.mtu_bytes
    pkt_ns = mtu * 8 / sc.topology.link_gbps
    ecmp = run(sc, tmp_path / "ecmp").summary["jobs"][0]
    ideal = ecmp["ideal_cct_ns"][0]
    payload_ns = 4 * MIB * 8 / sc.topology.link_gbps
    assert ideal >= payload_ns
    assert ecmp["cct_ns"][0] >= 3 * payload_ns  # 3 flows share one 100G uplink

    r = run(_perm("adaptive"), tmp_path / "adaptive")
    cct = r.summary["jobs"][0]["cct_ns"][0]
    assert r.summary["jobs"][0]["ideal_cct_ns"][0] == ideal
    assert ideal <= cct <= ideal + 8 * pkt_ns
    flows = r.rows("flows")
    assert len(flows) == 32
    per_leaf: dict[int, Counter] = {}
    for f in flows:
        assert f["bytes"] == sum(s["bytes"] for s in f["spine_bytes"]) == 4 * MIB
        leaf = per_leaf.setdefault(int(f["src"][1:]) // sc.topology.hosts_per_leaf, Counter())
        for s in f["spine_bytes"]:
            leaf[s["node"]] += s["bytes"]
    # Each leaf's 16 MiB leave evenly over its 4 uplinks (to within the bound above).
    for spines in per_leaf.values():
        assert len(spines) == 4
        assert max(spines.values()) - min(spines.values()) <= 8 * mtu

    r2 = run(_perm("adaptive", ["lb.adaptive_choices=2"]), tmp_path / "p2")
    cct2 = r2.summary["jobs"][0]["cct_ns"][0]
    assert ideal <= cct2 <= 1.05 * ideal
    for f in r2.rows("flows"):
        assert f["bytes"] == sum(s["bytes"] for s in f["spine_bytes"])


def _iterated(gap_ns: int) -> object:
    # 4 iterations of a 256 KiB permutation, 50 us of compute between them: each message is sent
    # back to back (packets ~330 ns apart at the leaf), messages of a connection are >= 50 us apart.
    return _perm("flowlet", ["workload.jobs.0.iterations=4", "workload.jobs.0.compute_gap_ns=50000",
                             f"lb.flowlet_gap_ns={gap_ns}"], nbytes="256KiB")


def _spine_per_message(r) -> dict[tuple[str, str], list[str]]:
    msgs = {m["msg_id"]: m for m in r.rows("messages")}
    by_conn: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for f in r.rows("flows"):
        assert f["bytes"] == sum(s["bytes"] for s in f["spine_bytes"])
        spines = _spines(f)
        assert len(spines) == 1, "a flowlet re-pick inside a back-to-back message"
        m = msgs[f["msg_id"]]
        by_conn.setdefault((f["src"], f["dst"]), []).append((m["start_ns"], spines[0]))
    return {c: [s for _, s in sorted(v)] for c, v in by_conn.items()}


def test_flowlets_move_between_messages_not_within(tmp_path: Path) -> None:
    conns = _spine_per_message(run(_iterated(10_000), tmp_path / "small_gap"))
    assert len(conns) == 32 and all(len(v) == 4 for v in conns.values())
    # Every message starts a flowlet on a uniformly random one of 4 spines: consecutive messages
    # of a connection change spine with probability 3/4. 96 transitions: mean 72, sd 4.2.
    moves = sum(a != b for v in conns.values() for a, b in zip(v, v[1:]))
    assert 72 - 4 * 4.25 <= moves <= 72 + 4 * 4.25

    # A gap longer than the run: one flowlet per connection, one spine for all its messages.
    conns = _spine_per_message(run(_iterated(10**9), tmp_path / "huge_gap"))
    assert all(len(set(v)) == 1 for v in conns.values())


@pytest.mark.parametrize("lb,extra", [("adaptive", ["lb.adaptive_choices=2"]), ("adaptive", []),
                                      ("flowlet", ["lb.flowlet_gap_ns=300"])],
                         ids=["adaptive2", "adaptive", "flowlet"])
def test_deterministic(lb: str, extra: list[str], tmp_path: Path) -> None:
    runs = [run(_perm(lb, extra, nbytes="1MiB"), tmp_path / str(i)) for i in range(2)]
    for table in ("messages", "flows", "collectives", "links", "queues"):
        a, b = (r.table(table) for r in runs)
        assert a.equals(b), table
    for f in runs[0].rows("flows"):
        assert f["bytes"] == sum(s["bytes"] for s in f["spine_bytes"])
    assert runs[0].summary["jobs"] == runs[1].summary["jobs"]


@pytest.mark.parametrize("field,value", [("lb.flowlet_gap_ns", 0), ("lb.adaptive_choices", -1),
                                         ("lb.scheme", "letflow")])
def test_bad_options_are_input_errors(field: str, value: object) -> None:
    with pytest.raises(InputError) as e:
        load_scenario(topology="bench", workload="permutation", overrides=[f"{field}={value}"])
    assert field.split(".")[-1] in str(e.value)
