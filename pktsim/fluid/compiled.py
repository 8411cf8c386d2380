"""The fluid event loop compiled with numba, for healthy single-path runs.

:class:`pktsim.fluid.backend.FluidSimulation` defines the model; its Python loop costs about 155 us
of interpreter work per flow, so a 2048-rank ring AllReduce (8.4 M messages, one flow each, almost
never two starting at once) would take over 20 minutes. This module runs *the same loop* on arrays:
the same events in the same order (the timed events' heap ordered by (time, sequence
number); drains due within ``DRAIN_TOLERANCE_PS`` of the earliest taken together in slot order;
slots handed out and freed as :class:`pktsim.fluid.backend._Active` does), the same components, and
progressive filling with the same floating-point operations as :func:`pktsim.fluid.maxmin.max_min_rates_small`,
so the tables are the Python loop's byte for byte (``tests/test_fluid_compiled.py`` checks it on
random scenarios).

It covers the runs where every flow has one path and nothing changes the fabric or the plan
during the run: ECMP, ``split``, ``split_minimal`` and ``planned`` with the job or cluster scope, no
faults. The others (spraying, faults, stragglers, the connection scope) keep the Python loop.

Layout (all numpy arrays, indices are ints):

- *entries*: one per distinct subflow of a message (``FlowPlanner.subflow_table``): its
  connection (``e_qp``), its path (``e_geo`` into ``geo_links``), wire bits, latency ``L`` (ps),
  packets, hops, payload bytes. Message ``m``'s subflows are entries
  ``pat_start[msg_pat[m]]:pat_start[msg_pat[m] + 1]``.
- *flows*, numbered in posting order as the Python loop numbers them: message, entry, start and end
  (ps), the next flow queued on the same connection (``-1``: none).
- *slots*: the active flows (rate Gbit/s, bits left at ``t_ref``), a free list used as a stack,
  the per-link lists of active slots (CSR ``ol_start`` sized by the connections crossing each link)
  and a tournament tree of drain times (``tree[P + s]`` is slot s's; ``tree[1]`` the earliest).
- the timed events: a binary heap of (time ps, sequence) with code ``2 * item + kind``
  (kind 0: a message is ready, 1: a flow's last byte is received).

The loop runs in chunks of :data:`CHUNK_EVENTS` rate computations (the Python loop's progress
interval), in a thread of its own that releases the GIL; the heap's arrays come back from each
chunk because they may have grown. Meanwhile the main thread reports progress and hands the flows
and messages completed in earlier chunks to the recorder and the congestion meter in columns
(:class:`CompiledLoop`). Inlined on purpose: the loop's handlers take every array they touch as
an argument (numba compiles them into the loop), which is why their signatures are long.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from pktsim.analysis.ideal import wire_bytes
from pktsim.experiment import ProgressCallback
from pktsim.fluid.backend import DRAIN_TOLERANCE_PS, FluidSimulation
from pktsim.fluid.maxmin import SATURATION_TOLERANCE
from pktsim.traces import FlowColumns
from pktsim.units import PS_PER_NS

CHUNK_EVENTS = 2000
"""Rate computations per chunk (the progress interval)."""

HAND_ON_ROWS = 1 << 16
"""Flows received between two hand-ons of rows to the recorder (fewer, larger batches)."""

# Integer scalars of the loop's state (``ints``).
(SEQ, EVENTS, FLOWS, PACKETS, HOPS, RECEIVED_PACKETS, DONE, N_RECV, N_OPS, COUNT, N_SLOTS, N_FREE, HEAP,
 EPOCH) = range(14)
N_INTS = 14

_READY, _RECEIVED = 0, 1
_INF = np.inf
_PS_PER_NS = float(PS_PER_NS)


@njit(cache=True)
def _tree_set(tree, size, slot, due):
    """Slot ``slot``'s drain time is ``due``: update the tournament tree of minima."""
    i = size + slot
    tree[i] = due
    i >>= 1
    while i:
        a = tree[2 * i]
        b = tree[2 * i + 1]
        m = a if a <= b else b
        if tree[i] == m:
            break
        tree[i] = m
        i >>= 1


@njit(cache=True)
def _due_slots(tree, size, limit, out):
    """The slots whose drain time is <= ``limit``, ascending, into ``out``; returns how many."""
    n = 0
    stack = np.empty(64, dtype=np.int64)
    top = 0
    stack[0] = 1
    top = 1
    while top:
        top -= 1
        i = stack[top]
        if tree[i] > limit:
            continue
        if i >= size:
            out[n] = i - size
            n += 1
            continue
        stack[top] = 2 * i + 1  # right pushed first: the left subtree (lower slots) comes out first
        stack[top + 1] = 2 * i
        top += 2
    return n


@njit(cache=True, inline="always")
def _earlier(t, seq, other_t, other_seq):
    """Whether heap entry (t, seq) comes before (other_t, other_seq): by time, then sequence."""
    return t < other_t or (t == other_t and seq < other_seq)


@njit(cache=True, inline="always")
def _place(h_t, h_seq, h_code, i, t, seq, code):
    """Put entry (t, seq, code) at heap position ``i``."""
    h_t[i] = t
    h_seq[i] = seq
    h_code[i] = code


@njit(cache=True)
def _heap_push(h_t, h_seq, h_code, n, t, seq, code):
    """Push (t, seq, code) on the heap of ``n`` entries; returns the arrays (new ones if it grew)."""
    if n == len(h_t):
        grown = max(2 * n, 64)
        nt = np.empty(grown, dtype=np.float64)
        ns = np.empty(grown, dtype=np.int64)
        nc = np.empty(grown, dtype=np.int64)
        nt[:n] = h_t[:n]
        ns[:n] = h_seq[:n]
        nc[:n] = h_code[:n]
        h_t, h_seq, h_code = nt, ns, nc
    i = n
    while i:
        parent = (i - 1) >> 1
        if _earlier(h_t[parent], h_seq[parent], t, seq):
            break
        _place(h_t, h_seq, h_code, i, h_t[parent], h_seq[parent], h_code[parent])
        i = parent
    _place(h_t, h_seq, h_code, i, t, seq, code)
    return h_t, h_seq, h_code


@njit(cache=True)
def _heap_pop(h_t, h_seq, h_code, n):
    """Remove the least entry of the heap of ``n`` entries; returns its code."""
    code = h_code[0]
    n -= 1
    if n:
        t = h_t[n]
        seq = h_seq[n]
        last = h_code[n]
        i = 0
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            right = child + 1
            if right < n and _earlier(h_t[right], h_seq[right], h_t[child], h_seq[child]):
                child = right
            if _earlier(t, seq, h_t[child], h_seq[child]):
                break
            _place(h_t, h_seq, h_code, i, h_t[child], h_seq[child], h_code[child])
            i = child
        _place(h_t, h_seq, h_code, i, t, seq, last)
    return code


@njit(cache=True)
def _release(ids, lo, hi, pending, released, n):
    """Messages ``ids[lo:hi]`` have one thing less to wait for; those with nothing left are added
    to the ``n`` in ``released``. Returns the new count."""
    for j in range(lo, hi):
        d = ids[j]
        pending[d] -= 1
        if not pending[d]:
            released[n] = d
            n += 1
    return n


@njit(cache=True)
def _touch(links, count, touched, n_touched, t_mark, epoch):
    """Add the first ``count`` of ``links`` to the touched links; returns the new count."""
    for k in range(count):
        link = links[k]
        if t_mark[link] != epoch:
            t_mark[link] = epoch
            touched[n_touched] = link
            n_touched += 1
    return n_touched


@njit(cache=True)
def _activate(fid, now, f_entry, f_start, e_geo, e_bits, geo_links, geo_n, s_flow, s_rate, s_bits, s_tref, free,
              ol_start, ol_slots, ol_n, ints):
    """Flow ``fid`` reaches the head of its connection now: it takes a free slot (rate 0 until the
    next rate computation), as ``_Active.add`` does."""
    f_start[fid] = now
    if ints[N_FREE] == 0:  # no free slot: grow as _Active._grow does (lowest new slot first)
        old = ints[N_SLOTS]
        grow = old if old > 64 else 64
        for k in range(grow):
            free[k] = old + grow - 1 - k
        ints[N_FREE] = grow
        ints[N_SLOTS] = old + grow
    ints[N_FREE] -= 1
    slot = free[ints[N_FREE]]
    e = f_entry[fid]
    s_flow[slot] = fid
    s_rate[slot] = 0.0
    s_bits[slot] = e_bits[e]
    s_tref[slot] = now
    ints[COUNT] += 1
    g = e_geo[e]
    for k in range(geo_n[g]):
        link = geo_links[g, k]
        ol_slots[ol_start[link] + ol_n[link]] = slot
        ol_n[link] += 1


@njit(cache=True)
def _post(m, now, msg_pat, pat_start, ready, f_msg, f_entry, f_start, f_next, qp_head, qp_tail, e_qp, e_geo, e_bits,
          e_packets, e_hops, geo_links, geo_n, s_flow, s_rate, s_bits, s_tref, free, ol_start, ol_slots, ol_n,
          touched, n_touched, t_mark, ints):
    """Message ``m`` is ready now: its subflows join their connections' queues (a flow alone in
    its queue starts). Returns the new count of touched links."""
    ready[m] = now
    p = msg_pat[m]
    for e in range(pat_start[p], pat_start[p + 1]):
        fid = ints[FLOWS]
        ints[FLOWS] += 1
        f_msg[fid] = m
        f_entry[fid] = e
        f_next[fid] = -1
        ints[PACKETS] += e_packets[e]
        ints[HOPS] += e_packets[e] * e_hops[e]
        qp = e_qp[e]
        if qp_tail[qp] < 0:
            qp_head[qp] = fid
            qp_tail[qp] = fid
            _activate(fid, now, f_entry, f_start, e_geo, e_bits, geo_links, geo_n, s_flow, s_rate, s_bits, s_tref,
                      free, ol_start, ol_slots, ol_n, ints)
            g = e_geo[e]
            n_touched = _touch(geo_links[g], geo_n[g], touched, n_touched, t_mark, ints[EPOCH])
        else:
            f_next[qp_tail[qp]] = fid
            qp_tail[qp] = fid
    return n_touched


@njit(cache=True)
def _fill(slots, n, now, s_flow, f_entry, e_geo, geo_links, geo_n, capacity, ol_start, ol_slots, ol_n, s_rate,
          s_bits, s_tref, tree, size, l_mark, l_count, l_left, l_share, c_links, hit, s_frozen, ints):
    """Max-min rates of the ``n`` slots in ``slots`` (a union of components) by progressive
    filling, with the rounds, tolerance and floating-point operations of ``max_min_rates_small``,
    then their bits brought up to ``now`` and their drain times rescheduled (``_Active.set_rates``)."""
    ints[EPOCH] += 1
    epoch = ints[EPOCH]
    n_links = 0
    for k in range(n):
        g = e_geo[f_entry[s_flow[slots[k]]]]
        for j in range(geo_n[g]):
            link = geo_links[g, j]
            if l_mark[link] != epoch:
                l_mark[link] = epoch
                l_count[link] = 0
                l_left[link] = capacity[link]
                c_links[n_links] = link
                n_links += 1
            l_count[link] += 1
    unfrozen = n
    level = 0.0
    while unfrozen:
        step = _INF
        for k in range(n_links):
            link = c_links[k]
            share = l_left[link] / l_count[link]
            l_share[link] = share
            if share < step:
                step = share
        level += step
        limit = step * (1 + SATURATION_TOLERANCE)
        n_hit = 0
        for k in range(n_links):
            link = c_links[k]
            l_left[link] -= step * l_count[link]
            if l_share[link] <= limit:
                hit[n_hit] = link
                n_hit += 1
        for k in range(n_hit):
            link = hit[k]
            for j in range(ol_start[link], ol_start[link] + ol_n[link]):
                s = ol_slots[j]
                if s_frozen[s] != epoch:
                    s_frozen[s] = epoch
                    unfrozen -= 1
                    s_bits[s] = _max_zero(s_bits[s] - s_rate[s] * ((now - s_tref[s]) / _PS_PER_NS))
                    s_tref[s] = now
                    s_rate[s] = level
                    _tree_set(tree, size, s, now + s_bits[s] / level * _PS_PER_NS)
                    g = e_geo[f_entry[s_flow[s]]]
                    for i in range(geo_n[g]):
                        l_count[geo_links[g, i]] -= 1
        kept = 0
        for k in range(n_links):  # the links that still carry unfrozen flows
            if l_count[c_links[k]] > 0:
                c_links[kept] = c_links[k]
                kept += 1
        n_links = kept


@njit(cache=True)
def _max_zero(x):
    """``np.maximum(x, 0.0)``'s result (x itself when x >= 0, signed zero kept)."""
    return x if x >= 0.0 else 0.0


@njit(cache=True)
def _component(touched, n_touched, limit, ol_start, ol_slots, ol_n, s_flow, f_entry, e_geo, geo_links, geo_n,
               l_seen, s_seen, stack, out, ints):
    """The slots connected to the touched links through shared links, into ``out``; returns how
    many, or -1 when more than ``limit`` (``_Active.component``)."""
    ints[EPOCH] += 1
    epoch = ints[EPOCH]
    top = 0
    for k in range(n_touched):
        link = touched[k]
        l_seen[link] = epoch
        stack[top] = link
        top += 1
    n = 0
    while top:
        top -= 1
        link = stack[top]
        for j in range(ol_start[link], ol_start[link] + ol_n[link]):
            s = ol_slots[j]
            if s_seen[s] != epoch:
                s_seen[s] = epoch
                out[n] = s
                n += 1
                if n > limit:
                    return -1
                g = e_geo[f_entry[s_flow[s]]]
                for i in range(geo_n[g]):
                    other = geo_links[g, i]
                    if l_seen[other] != epoch:
                        l_seen[other] = epoch
                        stack[top] = other
                        top += 1
    return n


@njit(cache=True, nogil=True)
def advance(
    msg_pat, pat_start, gap_ps, msg_bytes, dep_off, dep_ids, msg_op, wait_start, waiting,
    e_qp, e_geo, e_bits, e_lat, e_packets, e_hops, e_size, geo_links, geo_n, capacity, ol_start,
    pending, op_left, ready, start, end, rx, op_end,
    f_msg, f_entry, f_start, f_end, f_next, qp_head, qp_tail,
    s_flow, s_rate, s_bits, s_tref, free, tree, ol_slots, ol_n,
    h_t, h_seq, h_code,
    recv_order, done_order, op_order, ints, now_box, scratch,
):
    """Run the loop until :data:`CHUNK_EVENTS` more rate computations have been made, or to the
    end. Returns (finished, the heap's arrays)."""
    size = len(tree) // 2
    n_links = len(capacity)
    n_slot_cap = len(s_flow)
    touched = scratch[0][:n_links]
    t_mark = scratch[1][:n_links]
    l_mark = scratch[2][:n_links]
    l_count = scratch[3][:n_links]
    c_links = scratch[4][:n_links]
    hit = scratch[5][:n_links]
    l_seen = scratch[6][:n_links]
    stack = scratch[7]
    s_seen = scratch[8][:n_slot_cap]
    s_frozen = scratch[9][:n_slot_cap]
    comp = scratch[10][:n_slot_cap]
    released = scratch[11]
    l_left = np.empty(n_links, dtype=np.float64)
    l_share = np.empty(n_links, dtype=np.float64)
    n_touched = 0
    ints[EPOCH] += 1
    now = now_box[0]
    stop_at = ints[EVENTS] + CHUNK_EVENTS
    while True:
        t_drain = tree[1] if ints[COUNT] else _INF
        t_event = h_t[0] if ints[HEAP] else _INF
        t = t_drain if t_drain <= t_event else t_event
        if t == _INF:
            now_box[0] = now
            return True, h_t, h_seq, h_code
        now = t
        if t_drain <= t + DRAIN_TOLERANCE_PS:
            n_due = _due_slots(tree, size, t + DRAIN_TOLERANCE_PS, comp)
            for k in range(n_due):  # _drained, in slot order
                slot = comp[k]
                fid = s_flow[slot]
                e = f_entry[fid]
                g = e_geo[e]
                s_flow[slot] = -1
                s_rate[slot] = 0.0
                _tree_set(tree, size, slot, _INF)
                free[ints[N_FREE]] = slot
                ints[N_FREE] += 1
                ints[COUNT] -= 1
                for i in range(geo_n[g]):
                    link = geo_links[g, i]
                    base = ol_start[link]
                    last = base + ol_n[link] - 1
                    for j in range(base, last + 1):
                        if ol_slots[j] == slot:
                            ol_slots[j] = ol_slots[last]
                            break
                    ol_n[link] -= 1
                n_touched = _touch(geo_links[g], geo_n[g], touched, n_touched, t_mark, ints[EPOCH])
                h_t, h_seq, h_code = _heap_push(h_t, h_seq, h_code, ints[HEAP], now + e_lat[e], ints[SEQ],
                                                2 * fid + _RECEIVED)
                ints[HEAP] += 1
                ints[SEQ] += 1
                qp = e_qp[e]
                nxt = f_next[fid]
                qp_head[qp] = nxt
                if nxt < 0:
                    qp_tail[qp] = -1
                else:
                    _activate(nxt, now, f_entry, f_start, e_geo, e_bits, geo_links, geo_n, s_flow, s_rate, s_bits,
                              s_tref, free, ol_start, ol_slots, ol_n, ints)
                    g2 = e_geo[f_entry[nxt]]
                    n_touched = _touch(geo_links[g2], geo_n[g2], touched, n_touched, t_mark, ints[EPOCH])
        while ints[HEAP] and h_t[0] <= t:
            code = _heap_pop(h_t, h_seq, h_code, ints[HEAP])
            ints[HEAP] -= 1
            item = code >> 1
            if code & 1 == _READY:
                n_touched = _post(item, now, msg_pat, pat_start, ready, f_msg, f_entry, f_start, f_next, qp_head,
                                  qp_tail, e_qp, e_geo, e_bits, e_packets, e_hops, geo_links, geo_n, s_flow, s_rate,
                                  s_bits, s_tref, free, ol_start, ol_slots, ol_n, touched, n_touched, t_mark, ints)
                continue
            # _received: the last byte of flow ``item`` arrives now
            fid = item
            e = f_entry[fid]
            f_end[fid] = now
            ints[RECEIVED_PACKETS] += e_packets[e]
            recv_order[ints[N_RECV]] = fid
            ints[N_RECV] += 1
            m = f_msg[fid]
            if start[m] < 0 or f_start[fid] < start[m]:
                start[m] = f_start[fid]
            rx[m] += e_size[e]
            if rx[m] < msg_bytes[m]:
                continue
            end[m] = now
            done_order[ints[DONE]] = m
            ints[DONE] += 1
            n_rel = _release(dep_ids, dep_off[m], dep_off[m + 1], pending, released, 0)
            op = msg_op[m]
            op_left[op] -= 1
            if op_left[op] == 0:
                op_end[op] = end[m]
                op_order[ints[N_OPS]] = op
                ints[N_OPS] += 1
                n_rel = _release(waiting, wait_start[op], wait_start[op + 1], pending, released, n_rel)
            for k in range(n_rel):
                d = released[k]
                gap = gap_ps[d]
                if gap:
                    h_t, h_seq, h_code = _heap_push(h_t, h_seq, h_code, ints[HEAP], now + gap, ints[SEQ],
                                                    2 * d + _READY)
                    ints[HEAP] += 1
                    ints[SEQ] += 1
                else:
                    n_touched = _post(d, now, msg_pat, pat_start, ready, f_msg, f_entry, f_start, f_next, qp_head,
                                      qp_tail, e_qp, e_geo, e_bits, e_packets, e_hops, geo_links, geo_n, s_flow,
                                      s_rate, s_bits, s_tref, free, ol_start, ol_slots, ol_n, touched, n_touched,
                                      t_mark, ints)
        if n_touched:
            limit = ints[COUNT] // 2
            if limit < 64:
                limit = 64
            n = _component(touched, n_touched, limit, ol_start, ol_slots, ol_n, s_flow, f_entry, e_geo, geo_links,
                           geo_n, l_seen, s_seen, stack, comp, ints)
            n_touched = 0
            ints[EPOCH] += 1  # a new touched set
            if n < 0:  # too large: every active flow
                n = 0
                for s in range(ints[N_SLOTS]):
                    if s_flow[s] >= 0:
                        comp[n] = s
                        n += 1
            if n:
                _fill(comp, n, now, s_flow, f_entry, e_geo, geo_links, geo_n, capacity, ol_start, ol_slots, ol_n,
                      s_rate, s_bits, s_tref, tree, size, l_mark, l_count, l_left, l_share, c_links, hit, s_frozen,
                      ints)
                ints[EVENTS] += 1
                if ints[EVENTS] >= stop_at:
                    now_box[0] = now
                    return False, h_t, h_seq, h_code


# ---------------------------------------------------------------------------------------------
# The driver: arrays from a FluidSimulation in, its counters, the DAG's times and the rows out


class CompiledLoop:
    """Runs the loop of one :class:`~pktsim.fluid.backend.FluidSimulation` in :func:`advance` and
    leaves the simulation, its DAG execution and the recorder as its Python loop would."""

    def __init__(self, sim: FluidSimulation) -> None:
        self.sim = sim
        w, dag = sim.workload, sim.dag
        nic = sim.scenario.nic
        pattern, lists = sim.planner.subflow_table(w)
        owner = np.zeros(len(lists), dtype=np.int64)  # a message of each list: its connection
        owner[pattern[::-1]] = np.arange(len(pattern))[::-1]
        qps: dict[tuple, int] = {}
        geos: dict[tuple, int] = {}
        self.paths: list[list[str]] = []
        self.turns: list[str] = []
        geo_links: list[list[int]] = []
        geo_hops: list[int] = []
        entries: list[tuple] = []  # (qp, geo, bits, latency ps, packets, hops, bytes, subflow, entropy)
        pat_start = [0]
        hosts = w.hosts
        for p, subflows in enumerate(lists):
            m = int(owner[p])
            job, src, dst, channel = int(w.job[m]), int(w.src[m]), int(w.dst[m]), int(w.channel[m])
            for sub, (size, entropy) in enumerate(subflows):
                qp = qps.setdefault((src, job, channel, sub, entropy, dst), len(qps))
                g = geos.get((src, dst, entropy))
                if g is None:
                    path, _, _, links, hops, turn = sim._connection_geometry(hosts[src], hosts[dst], entropy)
                    g = geos[src, dst, entropy] = len(geo_links)
                    geo_links.append(links)
                    geo_hops.append(hops)
                    self.paths.append(path)
                    self.turns.append(turn)
                bits = 8 * wire_bytes(size, nic.mtu_bytes, nic.header_bytes)
                packets = -(-size // nic.payload_bytes)
                entries.append((qp, g, bits, sim.geometry.latency_ps(hosts[src], hosts[dst], size), packets,
                                geo_hops[g], size, sub, entropy))
            pat_start.append(len(entries))
        e = np.array(entries, dtype=np.int64).reshape(-1, 9)
        self.e_qp, self.e_geo, e_bits, self.e_lat, self.e_packets, self.e_hops, self.e_size, self.e_sub, \
            self.e_entropy = (np.ascontiguousarray(e[:, k]) for k in range(9))
        self.e_bits = e_bits.astype(np.float64)
        self.pattern = pattern
        self.pat_start = np.array(pat_start, dtype=np.int64)
        n_links = len(sim.fabric.links)
        width = max(len(links) for links in geo_links)
        self.geo_n = np.array([len(links) for links in geo_links], dtype=np.int64)
        self.geo_links = np.zeros((len(geo_links), width), dtype=np.int64)
        for g, links in enumerate(geo_links):
            self.geo_links[g, :len(links)] = links
        # Per link, room for every connection that crosses it (each has at most one active flow).
        qp_geo = np.zeros(len(qps), dtype=np.int64)
        qp_geo[self.e_qp] = self.e_geo
        crossing = np.bincount(np.concatenate([geo_links[g] for g in qp_geo.tolist()]), minlength=n_links)
        self.ol_start = np.zeros(n_links + 1, dtype=np.int64)
        np.cumsum(crossing, out=self.ol_start[1:])
        self.capacity = np.ascontiguousarray(sim.capacity[:n_links])
        # The DAG execution's own arrays, written in place.
        self.pending = np.frombuffer(dag.pending, dtype=np.int32)
        self.ready = np.frombuffer(dag.ready_ps, dtype=np.float64)
        self.start = np.frombuffer(dag.start_ps, dtype=np.float64)
        self.end = np.frombuffer(dag.end_ps, dtype=np.float64)
        self.rx = np.frombuffer(dag.rx_bytes, dtype=np.int64)
        self.op_left = np.array(dag.op_left, dtype=np.int64)
        self.op_end = np.array(dag.op_end_ps, dtype=np.float64)
        self.dep_off, self.dep_ids = np.asarray(dag._dep_offsets), np.asarray(dag._dependents)
        self.wait_start, self.waiting = np.asarray(dag._wait_start), np.asarray(dag._waiting)
        self.gap_ps = w.gap_ns * PS_PER_NS
        n_flows = int(np.diff(self.pat_start)[pattern].sum())
        self.f_msg = np.zeros(n_flows, dtype=np.int32)
        self.f_entry = np.zeros(n_flows, dtype=np.int32)
        self.f_start = np.zeros(n_flows, dtype=np.float64)
        self.f_end = np.zeros(n_flows, dtype=np.float64)
        self.f_next = np.zeros(n_flows, dtype=np.int32)
        self.qp_head = np.full(len(qps), -1, dtype=np.int64)
        self.qp_tail = np.full(len(qps), -1, dtype=np.int64)
        slots = max(64, 2 * len(qps))  # _Active doubles only when full: never past twice the connections
        size = 1 << max(slots - 1, 1).bit_length()
        self.s_flow = np.full(slots, -1, dtype=np.int64)
        self.s_rate = np.zeros(slots)
        self.s_bits = np.zeros(slots)
        self.s_tref = np.zeros(slots)
        self.free = np.zeros(slots, dtype=np.int64)
        self.tree = np.full(2 * size, np.inf)
        self.ol_slots = np.zeros(int(self.ol_start[-1]), dtype=np.int64)
        self.ol_n = np.zeros(n_links, dtype=np.int64)
        roots = np.flatnonzero(self.pending == 0)
        self.h_t = np.ascontiguousarray((w.gap_ns[roots] * PS_PER_NS).astype(np.float64))
        order = np.argsort(self.h_t, kind="stable")  # sorted by (time, sequence): a valid heap
        self.h_t = self.h_t[order]
        self.h_seq = order.astype(np.int64)
        self.h_code = (2 * roots[order] + _READY).astype(np.int64)
        self.recv_order = np.zeros(n_flows, dtype=np.int64)
        self.done_order = np.zeros(len(w.bytes), dtype=np.int64)
        self.op_order = np.zeros(len(w.collectives), dtype=np.int64)
        self.ints = np.zeros(N_INTS, dtype=np.int64)
        self.ints[SEQ] = self.ints[HEAP] = len(roots)
        self.now = np.zeros(1)
        releases = int(np.diff(self.dep_off).max(initial=0) + np.diff(self.wait_start).max(initial=0))
        big = max(n_links, slots)
        self.scratch = (*(np.zeros(big, dtype=np.int64) for _ in range(11)), np.zeros(releases + 1, dtype=np.int64))
        self._recorded = [0, 0, 0]  # flows, messages, ops already handed on
        self.ideal_fct_ps = np.asarray(dag.ideal_fct_ps, dtype=np.int64)
        self.single_path_fct_ps = (None if dag.single_path_fct_ps is None
                                   else np.asarray(dag.single_path_fct_ps, dtype=np.int64))

    def run(self, progress: ProgressCallback | None) -> int:
        """Run to the end; returns the number of rate computations.

        The loop runs chunk after chunk in a thread of its own (``advance`` releases the GIL),
        leaving after each chunk a snapshot of its counters; this thread takes the snapshots in
        order, reports progress and hands on the rows they cover, which the loop no longer
        writes: on purpose, since writing the tables costs about as much as the loop. The rows are
        the same however the two threads interleave."""
        snapshots: queue.Queue[tuple[np.ndarray, float, bool]] = queue.Queue()
        stop = threading.Event()
        compiling = not advance.signatures  # numba compiles the loop (or loads it) at its first call

        def chunks() -> None:
            finished = False
            while not finished and not stop.is_set():
                finished = self._advance()
                snapshots.put((self.ints.copy(), float(self.now[0]), finished))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pktsim-fluid") as pool:
            loop = pool.submit(chunks)
            try:
                while True:
                    try:
                        ints, now, finished = snapshots.get(timeout=0.2)
                    except queue.Empty:
                        if loop.done():
                            loop.result()  # the loop's error, if it raised one
                        if compiling and progress is not None:
                            progress(self.sim._progress(0, "compiling"))
                        continue
                    compiling = False
                    self._update_counters(ints, now)
                    self._hand_on(ints, final=finished)
                    if finished:
                        return int(ints[EVENTS])
                    if progress is not None:
                        progress(self.sim._progress(int(ints[EVENTS])))
            finally:
                stop.set()  # an error or a signal here: the loop stops after its chunk

    def _advance(self) -> bool:
        """One chunk of the loop; returns whether the run is over."""
        w = self.sim.workload
        finished, self.h_t, self.h_seq, self.h_code = advance(
            self.pattern, self.pat_start, self.gap_ps, w.bytes, self.dep_off, self.dep_ids, w.op, self.wait_start,
            self.waiting, self.e_qp, self.e_geo, self.e_bits, self.e_lat, self.e_packets, self.e_hops, self.e_size,
            self.geo_links, self.geo_n, self.capacity, self.ol_start,
            self.pending, self.op_left, self.ready, self.start, self.end, self.rx, self.op_end,
            self.f_msg, self.f_entry, self.f_start, self.f_end, self.f_next, self.qp_head, self.qp_tail,
            self.s_flow, self.s_rate, self.s_bits, self.s_tref, self.free, self.tree, self.ol_slots, self.ol_n,
            self.h_t, self.h_seq, self.h_code, self.recv_order, self.done_order, self.op_order, self.ints,
            self.now, self.scratch,
        )
        return finished

    def _update_counters(self, ints: np.ndarray, now_ps: float) -> None:
        """The simulation's counters and clock, and the DAG's count of messages done, from a
        snapshot of the loop's integers and clock."""
        sim = self.sim
        sim.now = now_ps
        sim.flows_posted, sim.packets_posted, sim.packet_hops = int(ints[FLOWS]), int(ints[PACKETS]), int(ints[HOPS])
        sim.packets_received = int(ints[RECEIVED_PACKETS])
        sim.dag.messages_done = int(ints[DONE])

    def _hand_on(self, upto: np.ndarray, final: bool) -> None:
        """Hand the flows, messages and ops completed since the last hand-on, up to the counts in
        ``upto`` (a copy of the loop's integers), to the DAG execution and the recorder, in the
        order the Python loop would: every :data:`HAND_ON_ROWS` flows, and at the end (``final``)."""
        sim, dag = self.sim, self.sim.dag
        f0, m0, o0 = self._recorded
        f1, m1, o1 = int(upto[N_RECV]), int(upto[DONE]), int(upto[N_OPS])
        if not final and f1 - f0 < HAND_ON_ROWS:
            return
        self._recorded = [f1, m1, o1]
        fids = self.recv_order[f0:f1]
        entry = self.f_entry[fids]
        msg_ids, nbytes, path_ids = self.f_msg[fids], self.e_size[entry], self.e_geo[entry]
        dag.congestion.add_flows(msg_ids, nbytes, path_ids, self.paths)
        ops = self.op_order[o0:o1].tolist()
        if final:
            dag.op_left = self.op_left.tolist()
        for op in ops:
            dag.op_end_ps[op] = float(self.op_end[op])
        recorder = sim.recorder
        if recorder is None:
            return
        w = sim.workload
        recorder.flows_done(w, FlowColumns(
            flow_id=fids, msg_id=msg_ids, subflow=self.e_sub[entry], bytes=nbytes, start_ps=self.f_start[fids],
            end_ps=self.f_end[fids], packets=self.e_packets[entry], entropy=self.e_entropy[entry], path_id=path_ids,
        ), self.paths, self.turns)
        done = self.done_order[m0:m1]
        recorder.messages_done(w, done, self.ready[done], self.start[done], self.end[done], self.ideal_fct_ps,
                               self.single_path_fct_ps)
        for op in ops:
            recorder.collective_done(w.collectives[op], dag.op_start_ps(op), dag.op_end_ps[op], dag.ideal_op_ps[op])
