"""Core benchmark: speed and memory of the packet backend, side by side with its peers.

Scenario: 4 spines x 8 leaves x 4 hosts, all links 100 Gb/s, 1 us propagation, 4096-byte packets,
a cross-leaf permutation (rank r -> r + 4) of 64 MiB flows, traces on.

pktsim cases (``--cases``, default all, in this order):

    ecmp        ideal transport (no ACKs, line rate), per-flow ECMP      --lb ecmp
    spray       ideal transport, per-packet spraying                     --lb spray
    sr_ecmp     selective repeat (ACK per packet), ECMP                  --set nic.transport=sr
    sr_spray    selective repeat, spraying                               --lb spray --set nic.transport=sr
    roce_pfc    the roce profile without congestion control (PFC only)   --profile roce --set nic.cc=none
    roce_dcqcn  the roce profile: go-back-N, DCQCN, PFC, ECN             --profile roce

For each: packet-hops per second with ACK hops included ("all") and excluded ("data"), engine events
per packet-hop, peak RSS of the run's own child process, the CCT. summary.json's ``packet_hops``
counts every packet on every port (data, ACKs, NACKs, CNPs; PFC pauses are not packets), and does
not separate data from ACKs, so the data hops are computed from the scenario: every flow crosses
leaves, 4 hops (host -> leaf -> spine -> leaf -> host), and nothing is dropped here, so
data hops = 4 x data packets sent (``transport.data_packets_sent``, resends included; the ideal
transport: ``packets``, which then are all data) and ACK hops = ``packet_hops`` - data hops.

Peers:
  - raw SimPy: events per second of a trivial process (the ceiling any SimPy design can reach);
  - ns.py on the ideal ECMP scenario (if installed: pip install -e ".[bench]") and the speed ratio;
  - htsim (``--htsim DIR``, C++, https://github.com/ultraethernet/uet-htsim, built by you; see
    bench/htsim_side_by_side.py for the inputs, flags and how its hops and CCT are counted): each
    case's htsim peer, run in the same round right after it: htsim_uec with a constant window for
    ecmp/sr_ecmp (1 path) and spray/sr_spray (8192 paths), htsim_roce with PFC (and DCQCN) for the
    roce cases; its hops/s (all, data), the ratio htsim/pktsim per round, and the CCT agreement.

Rounds alternate the simulators (shared machines are noisy); figures are medians over rounds, with
each round's value listed.

    python bench/bench_core.py                            # the full benchmark (all cases, ns.py)
    python bench/bench_core.py --mib 8 --cases ecmp,roce_dcqcn
    python bench/bench_core.py --htsim /tmp/htsim/htsim/sim/build --no-nspy --repeat 3
    python bench/bench_core.py --callgrind --cases ecmp,spray   # Ir per packet-hop (64 KiB and 2 MiB flows)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

HOPS = 4  # every flow of the cross-leaf permutation: host -> leaf -> spine -> leaf -> host
CASES = {
    "ecmp": ["--lb", "ecmp"],
    "spray": ["--lb", "spray"],
    "sr_ecmp": ["--lb", "ecmp", "--set", "nic.transport=sr"],
    "sr_spray": ["--lb", "spray", "--set", "nic.transport=sr"],
    "roce_pfc": ["--lb", "ecmp", "--profile", "roce", "--set", "nic.cc=none"],
    "roce_dcqcn": ["--lb", "ecmp", "--profile", "roce"],
}


def run_pktsim(mib: int, extra: list[str], tree: Path = HERE.parent) -> dict:
    """One run in a child process, so its peak RSS is its own (os.wait4 reports that child's).
    ``tree``: the checkout whose ``pktsim`` runs (``python -m pktsim`` from there). ECMP unless
    ``extra`` names ``--lb``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        lb = [] if "--lb" in extra else ["--lb", "ecmp"]
        cmd = [sys.executable, "-m", "pktsim", "run", "--topology", "bench", "--workload", "permutation",
               *lb, "--set", f"workload.jobs.0.bytes={mib}MiB", "--out", str(out), "--quiet", *extra]
        child = subprocess.Popen(cmd, cwd=tree)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, cmd)
        summary = json.loads((out / "summary.json").read_text())
    summary["peak_rss_mib"] = usage.ru_maxrss / 1024
    t = summary["transport"]
    summary["data_hops"] = HOPS * (t["data_packets_sent"] if t else summary["packets"])
    summary["ack_hops"] = summary["packet_hops"] - summary["data_hops"]
    summary["data_hops_per_s"] = summary["data_hops"] / summary["wall_s"]
    summary["cct_ns"] = summary["jobs"][0]["mean_cct_ns"]
    return summary


CALLGRIND_SIZES = ("64KiB", "2MiB")
"""Flow sizes of the callgrind cost per packet-hop: the difference between them cancels what a run
costs whatever its size (start-up, the scenario, writing the traces' schemas)."""


def callgrind_ir(flow_bytes: str, extra: list[str], tree: Path = HERE.parent) -> tuple[int, int]:
    """Instructions (Ir) of one run under ``valgrind --tool=callgrind`` and its packet-hops. The
    run's hash seed is fixed and numpy's BLAS threads are one (their spinning and the dicts' layout
    otherwise move a run's count by ~0.2%); a run without valgrind first writes the ``.pyc`` files."""
    env = os.environ | {"PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        lb = [] if "--lb" in extra else ["--lb", "ecmp"]
        cmd = [sys.executable, "-m", "pktsim", "run", "--topology", "bench", "--workload", "permutation", *lb,
               "--set", f"workload.jobs.0.bytes={flow_bytes}", "--quiet", *extra]
        subprocess.run(cmd + ["--out", str(Path(tmp) / "warm")], cwd=tree, env=env, check=True)
        cg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out"]
        log = subprocess.run(cg + cmd + ["--out", str(Path(tmp) / "run")], cwd=tree, env=env, check=True,
                             capture_output=True, text=True).stderr
        hops = json.loads((Path(tmp) / "run" / "summary.json").read_text())["packet_hops"]
    ir = next(int(line.split()[-1].replace(",", "")) for line in log.splitlines() if "Collected :" in line)
    return ir, hops


def callgrind_per_hop(names: list[str]) -> None:
    """Print each case's instructions per packet-hop, (Ir(2MiB) - Ir(64KiB)) / (hops(2MiB) -
    hops(64KiB)), and its ratio to the first case's: a figure the machine's load does not move."""
    first = None
    for c in names:
        (ir1, h1), (ir2, h2) = (callgrind_ir(size, CASES[c]) for size in CALLGRIND_SIZES)
        per_hop = (ir2 - ir1) / (h2 - h1)
        if first is None:
            first = per_hop
        print(f"{c:10s} {per_hop:>8,.0f} Ir per packet-hop ({ir1:,} Ir / {h1:,} hops at {CALLGRIND_SIZES[0]}, "
              f"{ir2:,} / {h2:,} at {CALLGRIND_SIZES[1]}); {per_hop / first:.3f}x {names[0]}", flush=True)


def simpy_event_rate(n: int = 1_000_000) -> float:
    """Events per second of a trivial SimPy process (one timeout per step)."""
    import simpy

    env = simpy.Environment()

    def ticker(env: simpy.Environment):
        for _ in range(n):
            yield env.timeout(1)

    env.process(ticker(env))
    t0 = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t0)


def compare_trees(baseline: Path, mib: int, rounds: int, variants: dict[str, list[str]]) -> None:
    """This tree against ``baseline``, alternating, on each variant (name: extra arguments)."""
    for name, extra in variants.items():
        ratios, ours, theirs = [], [], []
        for _ in range(rounds):
            b = run_pktsim(mib, extra, baseline)["packet_hops_per_s"]
            a = run_pktsim(mib, extra)["packet_hops_per_s"]
            ours.append(a)
            theirs.append(b)
            ratios.append(a / b)
        print(f"{name:10s} this tree {', '.join(f'{x:,.0f}' for x in ours)} packet-hops/s; baseline "
              f"{', '.join(f'{x:,.0f}' for x in theirs)}; ratio per round {', '.join(f'{r:.3f}' for r in ratios)}")


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _rounds(values, fmt: str = ",.0f") -> str:
    return ", ".join(format(v, fmt) for v in values)


def _htsim_round(root: Path, case, flow_bytes: int, pk_cct_ns: float, workdir: Path) -> dict:
    """One htsim run; its simulated end time bounds the run (htsim's clock runs to it): three times
    pktsim's CCT, at least six times the line-rate time, raised if a flow had not finished."""
    from htsim_side_by_side import PAYLOAD_BYTES, WIRE_BYTES, run_htsim

    line_rate_us = -(-flow_bytes // PAYLOAD_BYTES) * WIRE_BYTES * 8 / 100e3
    end_us = int(max(3 * pk_cct_ns / 1e3, 6 * line_rate_us)) + 1000
    for attempt in range(3):
        try:
            return run_htsim(root, case, flow_bytes, workdir, end_us)
        except RuntimeError as e:
            if "finished by" not in str(e) or attempt == 2:
                raise
            end_us *= 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64, help="flow size in MiB (default 64)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every simulator, interleaved (default 2)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated pktsim cases (default all: {','.join(CASES)})")
    parser.add_argument("--no-nspy", action="store_true", help="skip ns.py")
    parser.add_argument("--no-roce", action="store_true", help="skip the roce cases")
    parser.add_argument("--htsim", metavar="DIR", type=Path,
                        help="htsim's build directory (holding datacenter/htsim_uec and datacenter/htsim_roce; "
                             "the source's datacenter/ with the build's symlinks works too): run each case's htsim "
                             "peer in every round")
    parser.add_argument("--htsim-sack", metavar="BYTES", type=int, default=4096,
                        help="htsim_uec acknowledges every BYTES received (default 4096: every packet, as pktsim's "
                             "ack_every 1; htsim's own default is 16384)")
    parser.add_argument("--htsim-dcqcn", action="store_true",
                        help="also run htsim_roce -dcqcn for roce_dcqcn (skipped by default: it did not finish here, "
                             "see bench/htsim_side_by_side.py)")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="another checkout (e.g. a git worktree of an older commit): alternate its runs with "
                             "this tree's and print the speed ratio round by round, then stop (cases: ideal ECMP "
                             "and roce, or those of --cases)")
    parser.add_argument("--callgrind", action="store_true",
                        help="instead: instructions per packet-hop of each case under valgrind's callgrind "
                             f"(flows of {' and '.join(CALLGRIND_SIZES)}; minutes per case), e.g. --cases ecmp,spray")
    args = parser.parse_args()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    if args.no_roce:
        names = [c for c in names if not c.startswith("roce")]
    if args.callgrind:
        callgrind_per_hop(names)
        return
    if args.baseline is not None:
        if "--cases" in sys.argv[1:] or any(a.startswith("--cases=") for a in sys.argv[1:]):
            variants = {c: CASES[c] for c in names}
        else:
            variants = {"ideal": []} | ({} if args.no_roce else {"roce": ["--profile", "roce"]})
        compare_trees(args.baseline, args.mib, args.repeat, variants)
        return
    try:
        from nspy_baseline import run_nspy
    except ImportError:
        run_nspy = None
    htsim_cases = None
    if args.htsim is not None:
        from htsim_side_by_side import find_binary, htsim_cases as make_cases

        htsim_cases = make_cases(args.htsim_sack, args.htsim_dcqcn)
        for c in names:  # fail now, not after the first pktsim run
            if htsim_cases[c] is not None:
                find_binary(args.htsim, htsim_cases[c].binary)

    floor = run_pktsim(0, ["--set", "workload.jobs.0.bytes=64KiB"])["peak_rss_mib"]
    runs: dict[str, list[dict]] = {c: [] for c in names}
    peers: dict[str, list[dict]] = {c: [] for c in names}
    nspy: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_htsim_") as tmp:
        for rnd in range(args.repeat):
            for c in names:
                s = run_pktsim(args.mib, CASES[c])
                runs[c].append(s)
                if htsim_cases is not None and htsim_cases[c] is not None:
                    peers[c].append(_htsim_round(args.htsim, htsim_cases[c], args.mib * 2**20, s["cct_ns"],
                                                 Path(tmp)))
            if run_nspy is not None and not args.no_nspy:
                try:
                    nspy.append(run_nspy(flow_bytes=args.mib * 2**20))
                except ImportError as e:
                    print(f"ns.py    not installed, skipped ({e})")
                    run_nspy = None
            print(f"round {rnd + 1}/{args.repeat} done", file=sys.stderr, flush=True)

    for c in names:
        rs = runs[c]
        s = rs[0]
        line = (f"{c:10s} pktsim {s['packet_hops']:>10,} hops ({s['data_hops']:,} data) in "
                f"{_med(rs, 'wall_s'):6.2f} s: {_med(rs, 'packet_hops_per_s'):>9,.0f} hops/s all, "
                f"{_med(rs, 'data_hops_per_s'):>9,.0f} data (rounds: {_rounds(r['packet_hops_per_s'] for r in rs)}), "
                f"{_med(rs, 'events_per_packet_hop'):.3f} events/hop, peak RSS {max(r['peak_rss_mib'] for r in rs):.0f} MiB, "
                f"CCT {s['cct_ns'] / 1e6:.3f} ms (slowdown {s['jobs'][0]['slowdown']:.2f}x)")
        t = s["transport"]
        if t:
            line += (f"; ACKs {s['ack_hops'] / s['packet_hops']:.0%} of the hops, {t['retransmits']:,} resent, "
                     f"{t['ecn_marks']:,} ECN marks, {t['pause_frames']:,} pauses, {t['drops']} drops")
        print(line)
        if peers[c]:
            hs = peers[c]
            h = hs[0]
            ratios = [p["packet_hops_per_s"] / r["packet_hops_per_s"] for p, r in zip(hs, rs)]
            dratios = [p["data_hops_per_s"] / r["data_hops_per_s"] for p, r in zip(hs, rs)]
            print(f"{'':10s} htsim  {h['packet_hops']:>10,} hops ({h['data_hops']:,} data) in "
                  f"{_med(hs, 'wall_s'):6.2f} s: {_med(hs, 'packet_hops_per_s'):>9,.0f} hops/s all, "
                  f"{_med(hs, 'data_hops_per_s'):>9,.0f} data (rounds: {_rounds(p['packet_hops_per_s'] for p in hs)}), "
                  f"peak RSS {max(p['peak_rss_mib'] for p in hs):.0f} MiB, CCT {h['cct_ns'] / 1e6:.3f} ms "
                  f"({h['cct_ns'] / s['cct_ns'] - 1:+.1%} vs pktsim); {h['acks']:,} ACKs, {h['nacks']:,} NACKs, "
                  f"{h['cnps']:,} CNPs, {h['retransmits']:,} resent [{h['label']}]")
            print(f"{'':10s} htsim/pktsim per hop: {statistics.median(ratios):.1f}x all hops, "
                  f"{statistics.median(dratios):.1f}x data hops (rounds: {_rounds(ratios, '.1f')}; "
                  f"data {_rounds(dratios, '.1f')})")
        elif htsim_cases is not None:
            from htsim_side_by_side import DCQCN_UNUSABLE

            print(f"{'':10s} htsim  no peer run: {DCQCN_UNUSABLE} (--htsim-dcqcn to try)")
    base = runs["ecmp"] if "ecmp" in runs else runs[names[0]] if names else []
    if base:
        peak = max(r["peak_rss_mib"] for r in base)
        name = "ecmp" if "ecmp" in runs else names[0]
        print(f"memory     peak RSS of {name} {peak:.0f} MiB; the same run with 64 KiB flows peaks at {floor:.0f} MiB "
              f"(interpreter, libraries and pyarrow's code), so the simulation's own state peaks at {peak - floor:.0f} MiB")
    raw = max(simpy_event_rate() for _ in range(args.repeat))
    if base:
        best = max(r["packet_hops_per_s"] for r in base)
        print(f"simpy      {raw:>10,.0f} events/s of a trivial process (ceiling): pktsim ({name}) reaches "
              f"{best / raw:.2f} packet-hops per raw SimPy event")
    else:
        print(f"simpy      {raw:>10,.0f} events/s of a trivial process (ceiling)")
    if nspy:
        n = max(nspy, key=lambda r: r["hops_per_s"])
        print(f"ns.py      {n['packet_hops']:>10,} packet-hops in {n['wall_s']:6.2f} s: {n['hops_per_s']:>9,.0f} "
              f"packet-hops/s (rounds: {', '.join(format(r['hops_per_s'], ',.0f') for r in nspy)})")
        if base:
            best = max(r["packet_hops_per_s"] for r in base)
            pairs = ", ".join(f"{r['packet_hops_per_s'] / q['hops_per_s']:.1f}x" for r, q in zip(base, nspy))
            print(f"ratio      pktsim ({name}) / ns.py = {best / n['hops_per_s']:.1f}x packet-hops per second "
                  f"(best of each; round by round: {pairs})")
    _table(names, runs, peers)


def _table(names: list[str], runs: dict[str, list[dict]], peers: dict[str, list[dict]]) -> None:
    """The compact side-by-side table: medians over rounds (hops/s in thousands)."""
    print()
    print("case       | pktsim khops/s all  data | ev/hop | RSS MiB | htsim khops/s all   data | "
          "htsim/pktsim all  data | CCT ms pktsim  htsim  diff")
    for c in names:
        rs, hs = runs[c], peers[c]
        row = (f"{c:10s} | {_med(rs, 'packet_hops_per_s') / 1e3:17,.0f} {_med(rs, 'data_hops_per_s') / 1e3:5,.0f} | "
               f"{_med(rs, 'events_per_packet_hop'):6.3f} | {max(r['peak_rss_mib'] for r in rs):7.0f} | ")
        if hs:
            ratio = statistics.median(p["packet_hops_per_s"] / r["packet_hops_per_s"] for p, r in zip(hs, rs))
            dratio = statistics.median(p["data_hops_per_s"] / r["data_hops_per_s"] for p, r in zip(hs, rs))
            row += (f"{_med(hs, 'packet_hops_per_s') / 1e3:16,.0f} {_med(hs, 'data_hops_per_s') / 1e3:6,.0f} | "
                    f"{ratio:15.1f}x {dratio:4.1f}x | {rs[0]['cct_ns'] / 1e6:13.3f} {hs[0]['cct_ns'] / 1e6:6.3f} "
                    f"{hs[0]['cct_ns'] / rs[0]['cct_ns'] - 1:+5.1%}")
        else:
            row += f"{'-':>16s} {'-':>6s} | {'-':>15s}  {'-':>4s}  | {rs[0]['cct_ns'] / 1e6:13.3f} {'-':>6s} {'-':>5s}"
        print(row)


if __name__ == "__main__":
    main()
