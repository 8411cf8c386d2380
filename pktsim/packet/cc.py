"""Congestion control of one connection: DCQCN (rate-based) and DCTCP (window-based).

Both react to the same signal, ECN marks set by the switches (``switch.ecn``), so a comparison of
the two is a comparison of control laws, not of signals. DCTCP is the window scheme because its
fixed point is known in closed form (the queue oscillates around the marking threshold K with
amplitude O(sqrt(N)) packets, each of N flows gets 1/N of the link; Alizadeh et al. 2010/2011),
which gives the tests an independent number; a delay-based scheme such as Swift would need target
delays tuned to each topology's hop count.

A connection's congestion control is a :class:`CongestionControl`: the transport asks it whether
the window is open (:meth:`~CongestionControl.window_open`), tells it of every data packet sent
(:meth:`~CongestionControl.on_sent`, which returns when the connection may send again), every
acknowledgement (:meth:`~CongestionControl.on_ack`), CNP (:meth:`~CongestionControl.on_cnp`) and
loss (:meth:`~CongestionControl.on_loss`), and the receiver sends CNPs only if it
:attr:`~CongestionControl.wants_cnp`. ``nic.cc`` names one in :data:`CONGESTION_CONTROLS`; ``none``
is the no-op :class:`NoCongestionControl` (line rate, no window).

Timers (DCQCN's alpha and rate-increase timers) are not events: their expirations are applied
lazily, in order, whenever the connection sends or hears from the network, so an idle connection
costs nothing. A paced connection waiting for its next send time sees an increase that fell in
the wait only at that send, so it may send up to one packet late.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pktsim.registry import Registry
from pktsim.units import PS_PER_NS, ns_to_ps

if TYPE_CHECKING:
    from pktsim.scenario import DcqcnSpec, DctcpSpec, NicSpec


@dataclass(frozen=True, slots=True)
class CcParams:
    """What a connection's congestion control is built from (one per NIC)."""

    spec: NicSpec
    line_gbps: float
    """The NIC's line rate, Gbit/s."""
    mss_bytes: int
    """Payload bytes of a full packet."""
    base_rtt_ps: int
    """Round trip of the fabric's longest path without queueing (ps)."""


class CongestionControl:
    """The congestion control of one connection, as the transport drives it. Every method has a
    default that does nothing, which is the behaviour of :class:`NoCongestionControl`: line rate,
    no window. Sizes in bytes, times in ps, sequence numbers in packets (PSNs)."""

    __slots__ = ()

    wants_cnp = False
    """True if the receiver should send CNPs (at most one per ``nic.dcqcn.cnp_interval_ns``) when
    the connection's data packets arrive ECN-marked."""

    @classmethod
    def open(cls, params: CcParams, now_ps: int) -> CongestionControl:
        """The congestion control of a connection opened at ``now_ps``."""
        return cls()

    def window_open(self, inflight_packets: int) -> bool:
        """May a packet be sent beyond the ``inflight_packets`` sent and not yet acknowledged?"""
        return True

    def on_sent(self, now_ps: int, nbytes: int) -> int:
        """A data packet of ``nbytes`` on the wire is sent now; returns the earliest time (ps) the
        connection may send its next one (``now_ps``: at once)."""
        return now_ps

    def on_ack(self, acked_bytes: int, marked_bytes: int, snd_una: int, snd_nxt: int) -> None:
        """An acknowledgement: ``acked_bytes`` newly acknowledged, ``marked_bytes`` of the
        acknowledged ones carried an ECN mark; ``snd_una``/``snd_nxt`` (PSNs) delimit the window."""

    def on_cnp(self, now_ps: int) -> None:
        """A congestion notification packet arrives now."""

    def on_loss(self) -> None:
        """A loss was detected: a NACK, a timeout, selective repeat entering loss recovery (once
        per recovery), or a resent loss probe found to have repaired a loss."""


CONGESTION_CONTROLS: Registry[type[CongestionControl]] = Registry("congestion control")
"""``nic.cc`` -> the class of a connection's congestion control (built by its ``open``)."""


@CONGESTION_CONTROLS.register("none")
class NoCongestionControl(CongestionControl):
    """No congestion control: every connection sends at line rate, with no window but
    ``nic.window_bytes``."""

    __slots__ = ()


@CONGESTION_CONTROLS.register("dcqcn")
class Dcqcn(CongestionControl):
    """DCQCN's reaction point (Zhu et al., SIGCOMM 2015): current rate ``rc`` and target rate
    ``rt`` in Gbit/s, congestion estimate ``alpha``. Cut on every CNP; recover by fast recovery,
    additive and hyper increase, driven by a timer and a byte counter. The connection is paced at
    ``rc``: no window."""

    wants_cnp = True

    PS_PER_BYTE_AT_1_GBPS = 8.0 * PS_PER_NS
    """8000.0: a byte takes 8000 / r ps at r Gbit/s (a float, as rates are)."""

    __slots__ = (
        "spec", "line", "rc", "rt", "alpha", "t_alpha", "t_inc", "timer_events", "byte_events", "byte_acc",
        "recovering", "ps_per_byte", "cnps",
    )

    def __init__(self, spec: DcqcnSpec, line_gbps: float, now_ps: int) -> None:
        self.spec = spec
        self.line = line_gbps
        self.rc = self.rt = line_gbps
        self.alpha = 1.0
        self.t_alpha = now_ps + ns_to_ps(spec.alpha_timer_ns)
        self.t_inc = 0
        self.timer_events = self.byte_events = 0
        self.byte_acc = 0
        self.recovering = False
        """True from a cut until the rate is back at line rate (the increase machinery runs)."""
        self.ps_per_byte = self.PS_PER_BYTE_AT_1_GBPS / line_gbps
        self.cnps = 0

    @classmethod
    def open(cls, params: CcParams, now_ps: int) -> Dcqcn:
        return cls(params.spec.dcqcn, params.line_gbps, now_ps)

    def on_cnp(self, now_ps: int) -> None:
        """Multiplicative decrease: rt <- rc, rc <- rc (1 - alpha / 2), alpha grows."""
        self._catch_up(now_ps)
        s = self.spec
        self.cnps += 1
        self.rt = self.rc
        self.rc = max(s.min_rate_gbps, self.rc * (1 - self.alpha / 2))
        self.alpha = (1 - s.g) * self.alpha + s.g
        self.t_alpha = now_ps + ns_to_ps(s.alpha_timer_ns)
        self.t_inc = now_ps + ns_to_ps(s.increase_timer_ns)
        self.timer_events = self.byte_events = self.byte_acc = 0
        self.recovering = True
        self.ps_per_byte = self.PS_PER_BYTE_AT_1_GBPS / self.rc

    def on_sent(self, now_ps: int, nbytes: int) -> int:
        """Account a packet sent now: timers due so far, then the byte counter. The next packet
        may go once this one would have been serialised at the (new) current rate."""
        self._catch_up(now_ps)
        if self.recovering:
            self.byte_acc += nbytes
            while self.byte_acc >= self.spec.byte_counter_bytes and self.recovering:
                self.byte_acc -= self.spec.byte_counter_bytes
                self.byte_events += 1
                self._increase()
        return now_ps + int(nbytes * self.ps_per_byte)

    def _catch_up(self, now_ps: int) -> None:
        s = self.spec
        if self.t_alpha <= now_ps:  # alpha decays once per timer period without a CNP
            k = ns_to_ps(s.alpha_timer_ns)
            n = (now_ps - self.t_alpha) // k + 1
            self.alpha *= (1 - s.g) ** n
            self.t_alpha += n * k
        while self.recovering and self.t_inc <= now_ps:
            self.timer_events += 1
            self.t_inc += ns_to_ps(s.increase_timer_ns)
            self._increase()

    def _increase(self) -> None:
        s = self.spec
        f = s.fast_recovery_steps
        hi, lo = max(self.timer_events, self.byte_events), min(self.timer_events, self.byte_events)
        if lo > f:  # hyper increase
            self.rt += (lo - f) * s.rate_hai_gbps
        elif hi > f:  # additive increase
            self.rt += s.rate_ai_gbps
        # (fast recovery: the target stays, the rate halves its distance to it)
        self.rt = min(self.rt, self.line)
        self.rc = (self.rt + self.rc) / 2
        if self.line - self.rc < 1e-6 * self.line:
            self.rc = self.rt = self.line
            self.recovering = False
        self.ps_per_byte = self.PS_PER_BYTE_AT_1_GBPS / self.rc


@CONGESTION_CONTROLS.register("dctcp")
class Dctcp(CongestionControl):
    """DCTCP's window: ``cwnd`` bytes in flight at most; once per window of data, alpha tracks
    the fraction of ECN-marked bytes and a window with marks cuts cwnd by alpha / 2; otherwise
    cwnd grows by one packet per window (additive increase). No pacing: line rate within the
    window."""

    __slots__ = ("g", "mss", "cwnd", "alpha", "acked", "marked", "window_end", "cuts")

    def __init__(self, spec: DctcpSpec, mss_bytes: int, init_window_bytes: int) -> None:
        self.g = spec.g
        self.mss = mss_bytes
        self.cwnd = float(max(init_window_bytes, mss_bytes))
        self.alpha = 1.0
        self.acked = self.marked = 0
        self.window_end = 0
        self.cuts = 0

    @classmethod
    def open(cls, params: CcParams, now_ps: int) -> Dctcp:
        """The window starts at ``nic.dctcp.init_window_bytes``, by default one bandwidth-delay
        product (line rate x base RTT)."""
        init = params.spec.dctcp.init_window_bytes
        if init is None:
            init = int(params.line_gbps / 8 * params.base_rtt_ps / PS_PER_NS)
        return cls(params.spec.dctcp, params.mss_bytes, init)

    def window_open(self, inflight_packets: int) -> bool:
        """Open while the packets in flight, counted full, are below ``cwnd``."""
        return inflight_packets * self.mss < self.cwnd

    def on_ack(self, acked_bytes: int, marked_bytes: int, snd_una: int, snd_nxt: int) -> None:
        """``acked_bytes`` newly acknowledged, ``marked_bytes`` of the acknowledged ones carried a
        mark; ``snd_una``/``snd_nxt`` (packet sequence numbers) delimit the window."""
        self.acked += acked_bytes
        self.marked += marked_bytes
        self.cwnd += self.mss * acked_bytes / self.cwnd
        if snd_una >= self.window_end:
            if self.acked:
                self.alpha = (1 - self.g) * self.alpha + self.g * min(1.0, self.marked / self.acked)
            if self.marked:
                self.cwnd = max(float(self.mss), self.cwnd * (1 - self.alpha / 2))
                self.cuts += 1
            self.acked = self.marked = 0
            self.window_end = snd_nxt

    def on_loss(self) -> None:
        """A loss (a NACK, a timeout, a selective-repeat recovery): halve the window, as TCP does."""
        self.cwnd = max(float(self.mss), self.cwnd / 2)
