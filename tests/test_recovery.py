"""Selective repeat's loss detection, RACK-TLP (issue 11): the reordering window's rules against
RFC 8985's (it starts at min_RTT / 4, grows by one unit per round trip with a DSACK, reverts after
16 loss recoveries without one; a packet is lost once it was sent before the most recently
delivered one and is that packet's RTT plus the window old; the probe timeout is 2 SRTT capped by
the RTO), and the targets on the fabric: the sprayed bench permutation without spurious resends,
one dropped packet recovered within about an RTT plus the window, a dropped last packet recovered
by the probe long before the retransmission timeout."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest

from pktsim.experiment import prepare
from pktsim.packet.backend import Simulation
from pktsim.packet.cc import NoCongestionControl
from pktsim.packet.recovery import RECOVERIES_TO_RESET, Rack, RackParams, SelectiveRepeat
from pktsim.scenario import NicSpec, load_scenario

from test_transport import check_conservation, incast, scenario

US = 1_000_000  # ps
PKT_PS = 4096 * 8 * 10  # a 4 KiB packet at 100 Gb/s


# ---------------------------------------------------------------------------------------------
# The window's rules (RFC 8985 6.2 step 4)


def rack(**params) -> Rack:
    """A connection's RACK state after one packet sent at 0 and delivered at 10 us (min RTT and
    smoothed RTT 10 us)."""
    r = Rack(RackParams(**params))
    r.delivered(0, None, 10 * US)
    return r


def test_window_starts_at_a_quarter_of_the_min_rtt_and_is_zero_before_reordering_in_recovery() -> None:
    r = rack()
    assert (r.min_rtt, r.srtt, r.xmit, r.rtt) == (10 * US, 10 * US, 0, 10 * US)
    assert r.reo_wnd(sacked=0) == 10 * US // 4
    # no reordering seen: DUPTHRESH PSNs selectively acknowledged, or loss recovery, mean no wait
    assert r.reo_wnd(sacked=3) == 0
    r.rec_point = 5
    assert r.reo_wnd(sacked=0) == 0
    r.reordering_seen = True
    assert r.reo_wnd(sacked=3) == 10 * US // 4


def test_a_dsack_grows_the_window_by_one_unit_once_per_round_trip() -> None:
    r = rack()
    r.update_reo_wnd(True, snd_una=0, snd_max=100, exiting_recovery=False)
    assert (r.mult, r.persist, r.dsack_round) == (2, RECOVERIES_TO_RESET, 100)
    r.update_reo_wnd(True, snd_una=50, snd_max=120, exiting_recovery=False)  # same round trip
    assert r.mult == 2
    r.update_reo_wnd(False, snd_una=100, snd_max=130, exiting_recovery=False)  # the round ends
    assert r.dsack_round is None and r.mult == 2
    r.update_reo_wnd(True, snd_una=100, snd_max=150, exiting_recovery=False)
    assert (r.mult, r.dsack_round) == (3, 150)
    assert r.reo_wnd(sacked=0) == 3 * 10 * US // 4


def test_the_window_reverts_after_16_loss_recoveries_without_a_dsack() -> None:
    r = rack()
    r.update_reo_wnd(True, 0, 10, False)
    r.update_reo_wnd(True, 10, 20, False)
    assert r.mult == 3
    for _ in range(RECOVERIES_TO_RESET - 1):
        r.update_reo_wnd(False, 20, 20, exiting_recovery=True)
        r.update_reo_wnd(False, 20, 20, exiting_recovery=False)  # ACKs outside recovery exits do not count
    assert r.mult == 3
    r.update_reo_wnd(True, 20, 30, exiting_recovery=True)  # a DSACK starts the count again
    assert (r.mult, r.persist) == (4, RECOVERIES_TO_RESET)
    for _ in range(RECOVERIES_TO_RESET - 1):
        r.update_reo_wnd(False, 30, 30, exiting_recovery=True)
    assert r.mult == 4
    r.update_reo_wnd(False, 30, 30, exiting_recovery=True)
    assert r.mult == 1


def test_the_multiplier_is_capped() -> None:
    r = rack(mult_max=4)
    for i in range(10):
        r.update_reo_wnd(True, 10 * i, 10 * i + 10, False)
    assert r.mult == 4


def test_round_trips_follow_karn_and_rfc_8985_on_resent_packets() -> None:
    r = rack()
    r.delivered(1 * US, None, 13 * US)  # 12 us: the smoothed RTT moves by 1/8 of the difference
    assert (r.min_rtt, r.srtt, r.xmit, r.rtt) == (10 * US, 10 * US + 2 * US // 8, 1 * US, 12 * US)
    srtt = r.srtt
    # resent at 20 us, reported at 24 us: below the minimum RTT, so an earlier copy arrived; no sample
    r.delivered(20 * US, 2 * US, 24 * US)
    assert (r.min_rtt, r.srtt, r.xmit, r.rtt) == (10 * US, srtt, 1 * US, 12 * US)
    # resent at 20 us, reported at 31 us: RACK's most recent delivery, but no RTT sample (Karn)
    r.delivered(20 * US, 2 * US, 31 * US)
    assert (r.min_rtt, r.srtt, r.xmit, r.rtt) == (10 * US, srtt, 20 * US, 11 * US)


@pytest.mark.parametrize("headroom", [0.0, 2.0])
def test_a_packet_delivered_late_grows_the_window_to_headroom_times_its_lateness(headroom: float) -> None:
    """Beyond the RFC: a packet sent at 5 us and delivered at 31 us, after one sent at 10 us that
    took 10 us, is 16 us late; the window grows to cover 2 x 16 us (headroom 0: the RFC, only
    DSACKs grow it)."""
    r = rack(headroom=headroom)
    r.delivered(10 * US, None, 20 * US)
    r.delivered(5 * US, None, 31 * US)
    assert r.reordering_seen
    assert (r.xmit, r.rtt) == (10 * US, 10 * US)
    if headroom:
        assert 2 * 16 * US <= r.reo_wnd(0) < 2 * 16 * US + r.unit()
    else:
        assert r.mult == 1


# ---------------------------------------------------------------------------------------------
# RACK's loss rule and the probe, on one connection driven by hand


def connection(psn_end: int = 5) -> tuple[SelectiveRepeat, SimpleNamespace]:
    nic = SimpleNamespace(spec=NicSpec(transport="sr"), rto_ps=1000 * US, schedule_timer=lambda qp: None)
    sr = SelectiveRepeat(nic)
    qp = SimpleNamespace(rack=sr.open(), sacked=set(), lost=deque(), lost_set=set(), sent_at={}, snd_una=0,
                         snd_nxt=0, snd_max=0, psn_end=psn_end, rto_deadline=None, reo_deadline=None,
                         tlp_deadline=None, probe=False, cc=NoCongestionControl())
    return sr, qp


def send(sr: SelectiveRepeat, qp: SimpleNamespace, psn: int, t: int) -> None:
    if psn == qp.snd_nxt:
        qp.snd_nxt = qp.snd_max = psn + 1
    sr.on_sent(qp, psn, t)


def test_rack_marks_lost_what_was_sent_before_the_latest_delivery_once_rtt_plus_window_old() -> None:
    sr, qp = connection()
    for psn in range(5):
        send(sr, qp, psn, psn * US)
    r = qp.rack
    r.reordering_seen = True  # the window is its units throughout
    sr.on_selective_ack(qp, 3, 13 * US)  # PSN 3 took 10 us; window 10 / 4 us
    assert (r.xmit, r.rtt, r.reo_wnd(1)) == (3 * US, 10 * US, 2_500_000)
    assert list(qp.lost) == [0]  # sent at 0: due at 12.5 us
    assert qp.reo_deadline == 1 * US + 12_500_000  # PSN 1 is next
    assert r.rec_point == 5  # loss recovery until PSN 4 is acknowledged
    assert sr.detect_losses(qp, qp.reo_deadline - 1) == qp.reo_deadline
    assert sr.detect_losses(qp, qp.reo_deadline) == 2 * US + 12_500_000
    assert list(qp.lost) == [0, 1]
    assert sr.detect_losses(qp, 100 * US) is None  # PSN 4, sent after PSN 3, is never due
    assert list(qp.lost) == [0, 1, 2]


def test_without_reordering_seen_loss_recovery_waits_no_window() -> None:
    sr, qp = connection()
    for psn in range(5):
        send(sr, qp, psn, psn * US)
    sr.on_selective_ack(qp, 3, 13 * US)  # the window is computed once per ACK: 2.5 us
    assert list(qp.lost) == [0] and qp.rack.rec_point == 5
    assert sr.detect_losses(qp, 13 * US) is None  # in recovery: PSNs 1 and 2 are RTT old
    assert list(qp.lost) == [0, 1, 2]


def test_probe_timeout_is_two_srtt_capped_by_the_rto_and_resends_the_last_packet() -> None:
    sr, qp = connection()
    for psn in range(5):
        send(sr, qp, psn, psn * US)
    r = qp.rack
    assert qp.tlp_deadline is None  # no round trip measured yet
    qp.sent_at.pop(0)
    qp.snd_una = 1
    r.delivered(0, None, 10 * US)
    now = 10 * US
    sr.arm_probe(qp, r, now)
    assert qp.tlp_deadline == now + 2 * 10 * US
    qp.rto_deadline = now + 15 * US  # the RTO comes first: no probe
    sr.arm_probe(qp, r, now)
    assert qp.tlp_deadline is None
    qp.rto_deadline = now + 1000 * US
    qp.sacked.add(3)  # a hole: RACK's own deadline covers it
    sr.arm_probe(qp, r, now)
    assert qp.tlp_deadline is None
    qp.sacked.clear()
    r.rec_point = 5  # in loss recovery
    sr.arm_probe(qp, r, now)
    assert qp.tlp_deadline is None
    r.rec_point = None
    sr.on_probe_timeout(qp, 30 * US)  # nothing new to send: the last PSN again
    assert list(qp.lost) == [4] and (r.tlp_psn, r.tlp_end, r.probes) == (4, 5, 1)
    assert qp.rto_deadline == 30 * US + 1000 * US
    sr.arm_probe(qp, r, 30 * US)  # one probe at a time
    assert qp.tlp_deadline is None


def test_probe_sends_new_data_past_a_closed_window() -> None:
    sr, qp = connection(psn_end=10)
    for psn in range(5):
        send(sr, qp, psn, psn * US)
    sr.on_probe_timeout(qp, 30 * US)
    assert qp.probe and not qp.lost and qp.rack.tlp_end == 6
    send(sr, qp, 5, 30 * US)
    assert not qp.probe


# ---------------------------------------------------------------------------------------------
# On the fabric


def bench_permutation(nbytes: str, *sets: str) -> Simulation:
    sc = load_scenario(topology="bench", workload="permutation",
                       overrides=["lb.scheme=spray", f"workload.jobs.0.bytes={nbytes}", *sets])
    return Simulation(keep_flows=True, experiment=prepare(sc))


def queue_pairs(sim: Simulation) -> list:
    return [qp for nic in sim.net.nics for qp in nic.qps.values()]


def racks(sim: Simulation) -> list[Rack]:
    return [qp.rack for qp in queue_pairs(sim)]


def test_sprayed_permutation_resends_nothing_reordering_delays() -> None:
    """The bench permutation, 8 MiB per flow, sprayed, selective repeat, no congestion control
    and unlimited buffers: nothing is lost, so every resend is spurious. The sprayed queues
    reorder packets by up to ~50 us at this size (and more on longer runs), beyond a fixed 20 us
    window (8% of the packets resent, 1.21x the ideal CCT). The adaptive window follows them:
    spurious resends below 0.1% of the packets sent, and CCT within 5% of the same spray with
    the ideal transport (no ACKs, nothing resent). Against the closed-form ideal it is ~1.075x,
    what a window that never resends gives too: the 64-byte ACKs, strict priority on ECMP-hashed
    reverse paths, load downlinks already at 1.0 (with 1-byte ACKs it is the ideal transport's
    1.04x). Every duplicate the receivers saw reached its sender as a DSACK."""
    sim = bench_permutation("8MiB", "nic.transport=sr")
    summary = sim.run()
    t = summary["transport"]
    assert t["spurious_retransmits"] < 0.001 * t["data_packets_sent"]
    assert t["retransmits"] == t["spurious_retransmits"] and t["timeouts"] == 0
    assert sum(r.dsacks for r in racks(sim)) == t["spurious_retransmits"]
    assert max(r.reo_wnd(0) for r in racks(sim)) > 20_000_000  # beyond the old fixed window
    check_conservation(sim)
    ideal = bench_permutation("8MiB").run()
    cct, ideal_cct = summary["jobs"][0]["cct_ns"][0], ideal["jobs"][0]["cct_ns"][0]
    assert cct <= 1.05 * ideal_cct, (cct, ideal_cct)


def test_spraying_over_unequal_paths_learns_the_reordering() -> None:
    """The unequal spines of tests/test_transport.py (packets reordered by up to 4 us, 1 MiB per
    sender): the window starts at a quarter of the minimum RTT (~2.5 us) and, until reordering is
    seen, at zero once three packets beyond a hole are in; the first packets of the slow spines
    are resent, then every window covers the reordering (the fixed 20 us window resends none)."""
    sim = Simulation(keep_flows=True, experiment=prepare(scenario(
        "permutation", nic__transport="sr", nic__cc="none", lb__scheme="spray", workload__jobs__0__bytes="1MiB",
        topology__spine_delay_ns="[1000, 2000, 1000, 3000]")))
    t = sim.run()["transport"]
    assert 0 < t["spurious_retransmits"] < 0.02 * t["data_packets_sent"]
    assert t["retransmits"] == t["spurious_retransmits"] and t["timeouts"] == 0
    assert all(r.reo_wnd(0) > 4 * US for r in racks(sim))
    check_conservation(sim)


class DropAt:
    """A switch buffer that refuses one data packet (by PSN) once and notes when."""

    def __init__(self, inner, psn: int, env) -> None:
        self.inner, self.psn, self.env, self.at = inner, psn, env, None

    def admit(self, port, pkt) -> bool:
        if self.at is None and pkt.psn == self.psn:
            self.at = self.env.now
            return False
        return self.inner.admit(port, pkt)

    def release(self, pkt) -> None:
        self.inner.release(pkt)


def drop_one(psn: int, **sets) -> tuple[Simulation, int, int]:
    """A lone 1 MiB message h4 -> h0 (261 packets) with ``psn`` dropped at the last hop; returns
    the run, when the packet was dropped and when its data reached h0."""
    sim = Simulation(keep_flows=True, experiment=prepare(scenario(
        **incast(["h4"], nbytes="1MiB"), nic__transport="sr", nic__cc="none", **sets)))
    port = sim.net.port_of["leaf0", "h0"]
    port.buffer = drop = DropAt(port.buffer, psn, sim.env)
    receiver = sim.net.nics[0]
    got = {}
    accept = receiver.accept

    def noting(flow, pkt, t):
        if pkt.psn == psn:
            got["t"] = t
        accept(flow, pkt, t)

    receiver.accept = noting
    sim.run()
    check_conservation(sim)
    return sim, drop.at, got["t"]


@pytest.mark.parametrize("lb", ["ecmp", "spray"])
def test_one_drop_is_recovered_within_about_an_rtt_plus_the_window(lb: str) -> None:
    """PSN 100 is dropped at the last hop. Its loss is detected once packets sent after it are
    acknowledged and it is RACK's RTT plus the window old, so its resent copy arrives about an
    RTT plus the window after the original would have (one path, no reordering: the window is
    zero after three packets beyond the hole; sprayed over the unequal spines, the window learnt
    by then, and an RTT up to the slow spine's). Exactly one copy is resent (spray: beyond the
    first packets' spurious resends)."""
    sets = {"lb__scheme": lb}
    if lb == "spray":
        sets["topology__spine_delay_ns"] = "[1000, 2000, 1000, 3000]"
    sim, dropped_at, recovered_at = drop_one(100, **sets)
    (flow,) = sim.closed_flows
    (r,) = racks(sim)
    (qp,) = queue_pairs(sim)
    assert flow.retransmits == flow.spurious + 1 and qp.timeouts == 0
    window = r.reo_wnd(0) if lb == "spray" else 0
    rtt = r.srtt if lb == "ecmp" else r.min_rtt + 2 * 4 * US  # the slow spine: 4 us more each way
    assert recovered_at - dropped_at <= rtt + window + 3 * PKT_PS + 2 * US, (recovered_at - dropped_at, rtt, window)
    if lb == "ecmp":
        assert flow.retransmits == 1 and flow.spurious == 0
        fixed, f_dropped, f_recovered = drop_one(100, nic__reorder_adaptive="false")
        assert f_recovered - f_dropped > recovered_at - dropped_at + 15 * US  # the fixed 20 us window waits


def test_a_dropped_last_packet_is_recovered_by_the_probe_well_before_the_rto() -> None:
    """The last packet (PSN 260) is dropped: nothing follows it, so no ACK can reveal the hole.
    Two smoothed RTTs after the last ACK the probe resends it: the message completes ~30 us
    after the drop instead of after the 1 ms retransmission timeout (as with the fixed window)."""
    sim, dropped_at, recovered_at = drop_one(260)
    (flow,) = sim.closed_flows
    (r,) = racks(sim)
    (qp,) = queue_pairs(sim)
    rto = 1000 * US
    assert flow.retransmits == 1 and flow.spurious == 0 and qp.timeouts == 0 and r.probes == 1
    assert recovered_at - dropped_at <= 3 * r.srtt + 2 * US < rto / 10
    fixed, f_dropped, f_recovered = drop_one(260, nic__reorder_adaptive="false")
    assert f_recovered - f_dropped >= rto - 20 * US


class CountingLosses(NoCongestionControl):
    def __init__(self) -> None:
        self.losses = 0

    def on_loss(self) -> None:
        self.losses += 1


def test_the_congestion_control_hears_of_a_loss_once_per_recovery() -> None:
    """RACK's detections tell the congestion control once when they start a loss recovery (TCP
    cuts its window once per window of losses), not per PSN marked, and again only after the
    recovery has ended."""
    sr, qp = connection(psn_end=12)
    qp.cc = cc = CountingLosses()
    for psn in range(5):
        send(sr, qp, psn, psn * US)
    qp.rack.reordering_seen = True
    sr.on_selective_ack(qp, 3, 13 * US)  # PSN 0 lost: recovery until PSN 4 is acknowledged
    assert list(qp.lost) == [0] and cc.losses == 1
    sr.detect_losses(qp, 100 * US)  # PSNs 1 and 2 as well, in the same recovery
    assert list(qp.lost) == [0, 1, 2] and cc.losses == 1
    qp.lost.clear(), qp.lost_set.clear()
    qp.snd_una = 5  # everything up to PSN 4 acknowledged: the recovery ends
    sr.on_cumulative_ack(qp, 0, 5, 101 * US)
    assert qp.rack.rec_point is None
    for psn in range(5, 10):
        send(sr, qp, psn, 101 * US + psn * US)
    sr.on_selective_ack(qp, 8, 125 * US)  # PSN 5 lost: a second recovery
    assert 5 in qp.lost and cc.losses == 2


def test_the_fixed_window_tells_the_congestion_control_once_per_recovery_too() -> None:
    """``nic.reorder_adaptive: false``: the PSNs a detection finds overdue start one loss recovery,
    which lasts until everything sent by then is acknowledged; the congestion control hears of it
    once, as with RACK."""
    nic = SimpleNamespace(spec=NicSpec(transport="sr", reorder_adaptive=False), rto_ps=1000 * US,
                          schedule_timer=lambda qp: None, arm=lambda qp, t: None)
    sr = SelectiveRepeat(nic)
    qp = SimpleNamespace(rack=sr.open(), sacked=set(), lost=deque(), lost_set=set(), sent_at={}, snd_una=0,
                         snd_nxt=0, snd_max=0, psn_end=10, rto_deadline=None, reo_deadline=None,
                         rack_high=0, rack_rtt=0, recover=None, cc=CountingLosses())
    assert qp.rack is None
    for psn in range(5):
        send(sr, qp, psn, psn * US)
    sr.on_selective_ack(qp, 3, 13 * US)  # PSN 3's round trip: 10 us; overdue 10 + 20 us after sending
    assert not qp.lost and qp.reo_deadline == 30 * US
    assert sr.detect_losses(qp, 40 * US) is None
    assert list(qp.lost) == [0, 1, 2] and qp.cc.losses == 1 and qp.recover == 5
    qp.lost.clear(), qp.lost_set.clear()
    for psn in range(3):
        send(sr, qp, psn, 40 * US)  # resent
    qp.sacked.add(4)
    sr.on_selective_ack(qp, 4, 41 * US)
    assert sr.detect_losses(qp, 100 * US) is None  # PSNs 0-2 resent at 40 us: lost again, same recovery
    assert list(qp.lost) == [0, 1, 2] and qp.cc.losses == 1
    qp.lost.clear(), qp.lost_set.clear()
    qp.snd_una = 5
    sr.on_cumulative_ack(qp, 0, 5, 101 * US)
    assert qp.recover is None  # the recovery ends with PSN 4 acknowledged
    for psn in range(5, 10):
        send(sr, qp, psn, 100 * US + psn * US)
    sr.on_selective_ack(qp, 8, 130 * US)
    sr.detect_losses(qp, 200 * US)
    assert list(qp.lost) == [5, 6, 7] and qp.cc.losses == 2


@pytest.mark.parametrize("dsack", [False, True])
def test_a_probe_that_repaired_a_loss_tells_the_congestion_control(dsack: bool) -> None:
    """RFC 8985 7.4: PSN 4, the last one, is lost; the probe resends it and is acknowledged. The
    episode ends at the first ACK beyond PSN 4 (the next message's): with no DSACK for the probe
    by then, the probe repaired a loss and the congestion control hears of it; a DSACK for the
    probe (the original was only late) ends the episode without it."""
    sr, qp = connection(psn_end=5)
    qp.cc = cc = CountingLosses()
    r = qp.rack
    for psn in range(5):
        send(sr, qp, psn, psn * US)
    qp.snd_una = 4
    sr.on_cumulative_ack(qp, 0, 4, 13 * US)
    sr.on_probe_timeout(qp, 40 * US)
    assert list(qp.lost) == [4] and (r.tlp_psn, r.tlp_end) == (4, 5)
    qp.lost.clear(), qp.lost_set.clear()
    send(sr, qp, 4, 40 * US)
    qp.snd_una = 5
    sr.on_cumulative_ack(qp, 4, 5, 50 * US)  # the probe (or the late original) is in
    assert r.tlp_end == 5 and cc.losses == 0  # a DSACK may still come
    if dsack:
        sr.on_dsack(qp, 4, 51 * US)
    qp.psn_end = 8
    for psn in range(5, 8):
        send(sr, qp, psn, 60 * US)
    qp.snd_una = 8
    sr.on_cumulative_ack(qp, 5, 8, 70 * US)
    assert r.tlp_end is None and (cc.losses, r.repairs) == ((0, 0) if dsack else (1, 1))
    assert r.rec_point is None  # a repaired loss starts no recovery
