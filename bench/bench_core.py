"""Core benchmark: speed and memory of the packet backend, side by side with its ceilings.

Scenario: 4 spines x 8 leaves x 4 hosts, all links 100 Gb/s, 1 us propagation, 4096-byte packets,
a cross-leaf permutation (rank r -> r + 4) of 64 MiB flows under ECMP, traces on.

Prints, from one run on this machine:
  - pktsim: packet-hops per second, engine events per packet-hop, peak RSS of the run's process;
  - raw SimPy: events per second of a trivial process (the ceiling any SimPy design can reach);
  - ns.py on the same scenario (if installed: pip install -e ".[bench]") and the speed ratio;
  - the ``roce`` variant: the same scenario with the transport model (ACKs as packets, go-back-N,
    DCQCN, PFC, ECN; ``--profile roce``): its packet-hops (ACK hops included) per second, the
    share of them that are ACKs, and its cost per packet-hop relative to the ideal fabric.

    python bench/bench_core.py            # the full benchmark (~2 min with ns.py)
    python bench/bench_core.py --mib 8    # quicker, smaller flows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run_pktsim(mib: int, extra: list[str], tree: Path = HERE.parent) -> dict:
    """One run in a child process, so its peak RSS is its own (os.wait4 reports that child's).
    ``tree``: the checkout whose ``pktsim`` runs (``python -m pktsim`` from there)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "pktsim", "run", "--topology", "bench", "--workload", "permutation",
               "--lb", "ecmp", "--set", f"workload.jobs.0.bytes={mib}MiB", "--out", str(out), "--quiet", *extra]
        child = subprocess.Popen(cmd, cwd=tree)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, cmd)
        summary = json.loads((out / "summary.json").read_text())
    summary["peak_rss_mib"] = usage.ru_maxrss / 1024
    return summary


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


def compare_trees(baseline: Path, mib: int, rounds: int, roce: bool) -> None:
    """This tree against ``baseline``, alternating, on the ideal fabric (and the roce profile)."""
    variants = {"ideal": []} | ({"roce": ["--profile", "roce"]} if roce else {})
    for name, extra in variants.items():
        ratios, ours, theirs = [], [], []
        for _ in range(rounds):
            b = run_pktsim(mib, extra, baseline)["packet_hops_per_s"]
            a = run_pktsim(mib, extra)["packet_hops_per_s"]
            ours.append(a)
            theirs.append(b)
            ratios.append(a / b)
        print(f"{name:6s} this tree {', '.join(f'{x:,.0f}' for x in ours)} packet-hops/s; baseline "
              f"{', '.join(f'{x:,.0f}' for x in theirs)}; ratio per round {', '.join(f'{r:.3f}' for r in ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64, help="flow size in MiB (default 64)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of pktsim and ns.py, interleaved (default 2)")
    parser.add_argument("--no-nspy", action="store_true", help="skip ns.py")
    parser.add_argument("--no-roce", action="store_true", help="skip the roce variant")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="another checkout (e.g. a git worktree of an older commit): alternate its runs with "
                             "this tree's and print the speed ratio round by round, then stop")
    args = parser.parse_args()
    if args.baseline is not None:
        compare_trees(args.baseline, args.mib, args.repeat, not args.no_roce)
        return
    try:
        from nspy_baseline import run_nspy
    except ImportError:
        run_nspy = None

    floor = run_pktsim(0, ["--set", "workload.jobs.0.bytes=64KiB"])["peak_rss_mib"]
    # Shared machines are noisy: alternate the simulators and keep each one's best round.
    runs, nspy, roce = [], [], []
    for _ in range(args.repeat):
        runs.append(run_pktsim(args.mib, []))
        if not args.no_roce:
            roce.append(run_pktsim(args.mib, ["--profile", "roce"]))
        if run_nspy is not None and not args.no_nspy:
            try:
                nspy.append(run_nspy(flow_bytes=args.mib * 2**20))
            except ImportError as e:
                print(f"ns.py    not installed, skipped ({e})")
                run_nspy = None
    s = max(runs, key=lambda r: r["packet_hops_per_s"])
    print(f"pktsim   {s['packet_hops']:>10,} packet-hops in {s['wall_s']:6.2f} s: "
          f"{s['packet_hops_per_s']:>9,.0f} packet-hops/s (rounds: "
          f"{', '.join(format(r['packet_hops_per_s'], ',.0f') for r in runs)}), "
          f"{s['events_per_packet_hop']:.3f} events/packet-hop, "
          f"CCT {s['jobs'][0]['mean_cct_ns'] / 1e6:.3f} ms (slowdown {s['jobs'][0]['slowdown']:.2f}x: ECMP collisions)")
    peak = max(r["peak_rss_mib"] for r in runs)
    print(f"memory   peak RSS {peak:.0f} MiB; the same run with 64 KiB flows peaks at {floor:.0f} MiB "
          f"(interpreter, libraries and pyarrow's code), so the simulation's own state peaks at {peak - floor:.0f} MiB")
    if roce:
        r = max(roce, key=lambda x: x["packet_hops_per_s"])
        t = r["transport"]
        data_hops = s["packet_hops"]  # the ideal run's hops: every data packet once over its path
        acks = r["packet_hops"] - data_hops - t["retransmits"] * 4
        pairs = ", ".join(f"{a['packet_hops_per_s'] / b['packet_hops_per_s']:.2f}" for a, b in zip(roce, runs))
        print(f"roce     {r['packet_hops']:>10,} packet-hops in {r['wall_s']:6.2f} s: "
              f"{r['packet_hops_per_s']:>9,.0f} packet-hops/s (rounds: "
              f"{', '.join(format(x['packet_hops_per_s'], ',.0f') for x in roce)}), "
              f"{r['events_per_packet_hop']:.3f} events/packet-hop, ACKs {acks / r['packet_hops']:.0%} of the hops, "
              f"CCT {r['jobs'][0]['mean_cct_ns'] / 1e6:.3f} ms (slowdown {r['jobs'][0]['slowdown']:.2f}x; "
              f"{t['ecn_marks']:,} ECN marks, {t['pause_frames']:,} pauses, {t['drops']} drops)")
        print(f"         per packet-hop the roce variant runs at {r['packet_hops_per_s'] / s['packet_hops_per_s']:.2f}x "
              f"the ideal fabric's speed (round by round: {pairs}); peak RSS {max(x['peak_rss_mib'] for x in roce):.0f} MiB")
    raw = max(simpy_event_rate() for _ in range(args.repeat))
    print(f"simpy    {raw:>10,.0f} events/s of a trivial process (ceiling): pktsim reaches "
          f"{s['packet_hops_per_s'] / raw:.2f} packet-hops per raw SimPy event")
    if nspy:
        n = max(nspy, key=lambda r: r["hops_per_s"])
        print(f"ns.py    {n['packet_hops']:>10,} packet-hops in {n['wall_s']:6.2f} s: {n['hops_per_s']:>9,.0f} "
              f"packet-hops/s (rounds: {', '.join(format(r['hops_per_s'], ',.0f') for r in nspy)})")
        pairs = ", ".join(f"{r['packet_hops_per_s'] / q['hops_per_s']:.1f}x" for r, q in zip(runs, nspy))
        print(f"ratio    pktsim / ns.py = {s['packet_hops_per_s'] / n['hops_per_s']:.1f}x packet-hops per second "
              f"(best of each; round by round: {pairs})")


if __name__ == "__main__":
    main()
