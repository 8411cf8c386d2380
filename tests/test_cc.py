"""The congestion-control laws in isolation, against the formulas of their papers: DCQCN's cut,
alpha decay, fast recovery and additive increase (Zhu et al. 2015, section 3), DCTCP's alpha and
window cut (Alizadeh et al. 2010, section 3)."""

from __future__ import annotations

import pytest

from pktsim.packet.cc import Dcqcn, Dctcp
from pktsim.scenario import DcqcnSpec, DctcpSpec

US = 1_000_000  # ps


def test_dcqcn_cut_halves_the_rate_at_alpha_one_and_alpha_decays_per_timer() -> None:
    spec = DcqcnSpec()
    cc = Dcqcn(spec, 100.0, 0)
    cc.on_cnp(0)
    assert cc.rc == pytest.approx(50.0) and cc.rt == 100.0
    assert cc.alpha == pytest.approx(1.0)  # (1 - g) * 1 + g
    cc._catch_up(10 * 55 * US)  # ten alpha periods without a CNP
    assert cc.alpha == pytest.approx((1 - spec.g) ** 10)


def test_dcqcn_fast_recovery_then_additive_increase() -> None:
    spec = DcqcnSpec()
    cc = Dcqcn(spec, 100.0, 0)
    cc.on_cnp(0)
    cc.on_cnp(1)  # second cut: rt = 50, rc = 50 (1 - alpha / 2)
    rt, rc0 = cc.rt, cc.rc
    f = spec.fast_recovery_steps
    cc.on_sent(1 + f * 55 * US, 0)  # F timer events: fast recovery halves the gap each time
    assert cc.rt == rt
    assert cc.rc == pytest.approx(rt - (rt - rc0) / 2**f)
    cc.on_sent(1 + (f + 3) * 55 * US, 0)  # three more: additive increase of the target
    assert cc.rt == pytest.approx(rt + 3 * spec.rate_ai_gbps)


def test_dcqcn_recovers_to_line_rate_and_stops_counting() -> None:
    cc = Dcqcn(DcqcnSpec(rate_ai_gbps=5.0), 100.0, 0)
    cc.on_cnp(0)
    cc.on_sent(100_000 * US, 4096)  # 100 ms later
    assert cc.rc == 100.0 and not cc.recovering
    assert cc.ps_per_byte == pytest.approx(80.0)


def test_dcqcn_byte_counter_drives_increase_too() -> None:
    spec = DcqcnSpec(byte_counter_bytes=10_000)
    cc = Dcqcn(spec, 100.0, 0)
    cc.on_cnp(0)
    rt, rc0 = cc.rt, cc.rc
    cc.on_sent(1, 20_000)  # two byte-counter events, no timer event yet
    assert cc.byte_events == 2 and cc.timer_events == 0
    assert cc.rc == pytest.approx(rt - (rt - rc0) / 4)


def test_dctcp_alpha_and_cut_once_per_window() -> None:
    spec = DctcpSpec()
    cc = Dctcp(spec, 1000, 10_000)
    # A window of 10 packets, half of the bytes marked: alpha = (1 - g) * 1 + g * 0.5.
    cc.on_ack(10_000, 5_000, snd_una=10, snd_nxt=20)
    grown = 10_000 + 1000 * 10_000 / 10_000
    assert cc.alpha == pytest.approx(1 - spec.g + spec.g * 0.5)
    assert cc.cwnd == pytest.approx(grown * (1 - cc.alpha / 2))
    before = cc.cwnd
    cc.on_ack(1_000, 1_000, snd_una=11, snd_nxt=21)  # inside the next window: no second cut
    assert cc.cwnd == pytest.approx(before + 1000 * 1000 / before)


def test_dctcp_unmarked_windows_grow_by_one_packet_each() -> None:
    cc = Dctcp(DctcpSpec(), 1000, 10_000)
    una = 0
    for _ in range(5):
        w = cc.cwnd
        for _ in range(10):  # one window of acknowledgements in ten ACKs
            una += 1
            cc.on_ack(int(w / 10), 0, snd_una=una, snd_nxt=una + 10)
        assert cc.cwnd == pytest.approx(w + 1000, rel=0.01)
    assert cc.cuts == 0
