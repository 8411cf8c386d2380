"""The end of a run for people: the per-job table and a few lines that fit an 80-column terminal."""

from __future__ import annotations

from collections.abc import Mapping

from pktsim.units import format_bytes, format_ns

WIDTH = 80
"""Columns the report is laid out for (a narrower terminal gets its own width)."""


def print_summary(summary: Mapping) -> None:
    """Per job: CCT against the ideal, then the fair rate given the paths taken, its Jain index,
    the throughput and the FCT percentiles; then the largest queue, the transport's counts, the
    makespan and the speed. ``summary``: a :class:`~pktsim.summary.RunSummary` or a loaded
    summary.json."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.width = min(console.width, WIDTH) if console.is_terminal else WIDTH
    table = Table(title=f"pktsim run '{summary['name']}' (lb={summary['lb']}, seed={summary['seed']}, "
                        f"{summary['backend']})", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for col in ("job", "collective", "ranks", "bytes", "CCT", "ideal", "slowdown"):
        if col in ("job", "collective"):  # names fold when the table would pass the width
            table.add_column(col, overflow="fold")
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for j in summary["jobs"]:
        table.add_row(
            j["name"], j["collective"], str(j["ranks"]), format_bytes(j["bytes"]), format_ns(j["mean_cct_ns"]),
            format_ns(j["mean_ideal_cct_ns"]), f"{j['slowdown']:.3f}x" if j["slowdown"] else "-",
        )
    console.print(table)
    if all("fct_p99_ns" in j for j in summary["jobs"]):  # summaries written before these keys lack them
        console.print(_fairness_table(summary["jobs"]))
        console.print("fair rate: the slowest message's max-min fair rate given the paths taken, mean over "
                      "phases; Jain: of the messages' fair rates; throughput: achieved")
    if any(j["iterations"] > 1 for j in summary["jobs"]):
        console.print("CCT and ideal: the mean over each job's iterations (all of them in summary.json)")
    makespan = max(j["end_ns"] for j in summary["jobs"])
    interval = summary["scenario"]["traces"]["queue_interval_ns"]
    if summary["backend"] == "fluid":
        console.print("largest queue: - (the fluid backend does not model queues)")
        console.print(
            f"makespan {format_ns(makespan)}, simulated in {summary['wall_s']:.3f} s wall: "
            f"{summary['events']:,} rate recomputations, standing for {summary['packet_hops']:,} packet-hops "
            f"({summary['packet_hops_per_s'] or 0:,.0f} packet-hops/s equivalent)"
        )
    else:
        q = summary["largest_queue"]
        console.print(f"largest queue: {format_bytes(q['max_bytes'])} at {q['node']} -> {q['port']}, in the "
                      f"{format_ns(interval)} sampling interval from t = {format_ns(q['time_ns'])}")
        t = summary.get("transport")
        if t is not None:
            console.print(
                f"transport {t['transport']}, cc {t['cc']}: {t['data_packets_sent']:,} data packets sent, "
                f"{t['retransmits']:,} retransmitted ({t['spurious_retransmits']:,} spurious, "
                f"{t['discarded_out_of_order']:,} discarded out of order, {t['timeouts']:,} timeouts), "
                f"{t['drops']:,} dropped, "
                + (f"{t['fault_drops']:,} lost to faults, " if t.get("fault_drops") else "")
                + f"{t['ecn_marks']:,} ECN-marked, {t['pause_frames']:,} PFC pauses "
                f"({format_ns(t['paused_ns'])} of port pause time)"
            )
        tail = summary["sim_time_ns"] - makespan
        idle = f" (then {format_ns(tail)} of idle timers)" if tail > 0 else ""
        console.print(
            f"makespan {format_ns(makespan)}{idle}, simulated in {summary['wall_s']:.2f} s wall: "
            f"{summary['packet_hops']:,} packet-hops, {summary['packet_hops_per_s']:,.0f} packet-hops/s, "
            f"{summary['events_per_packet_hop']:.2f} events per packet-hop"
        )
    for f in summary.get("faults") or ():
        console.print(_fault_line(f))
    healthy = [j for j in summary["jobs"] if j.get("fault_slowdown")]
    if healthy:
        console.print("faults cost: " + ", ".join(
            f"{j['name']} {j['fault_slowdown']:.3f}x its fault-free CCT "
            f"({format_ns(sum(j['fault_free_cct_ns']) / len(j['fault_free_cct_ns']))})" for j in healthy))
    for warning in summary.get("warnings") or ():
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"traces: {summary['out']}/")


def _fairness_table(jobs: list[Mapping]):
    """Per job: its fair rate, Jain index, achieved throughput and FCT percentiles."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("job", overflow="fold")
    for col in ("fair rate", "Jain", "throughput", "FCT p50", "FCT p99"):
        table.add_column(col, justify="right", no_wrap=True)
    for j in jobs:
        table.add_row(
            j["name"], _gbps(j["fair_rate_gbps"]), "-" if j["fair_jain"] is None else f"{j['fair_jain']:.3f}",
            _gbps(j["throughput_gbps"]), format_ns(j["fct_p50_ns"]), format_ns(j["fct_p99_ns"]),
        )
    return table


def _gbps(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f} Gb/s"


def _fault_line(f: Mapping) -> str:
    """One fault and the fabric's reactions, in words."""
    value = f.get("value")
    kind = f["kind"]
    what = (f" to {value:g} Gbit/s" if kind == "link_degrade" else f" dropping {value:.2%} of packets"
            if kind == "link_loss" else f" computing {value:g}x slower" if kind == "straggler" else "")
    reactions = [f"{name} {format_ns(f[key])}" for name, key in
                 (("detected", "detected_ns"), ("converged", "converged_ns"), ("re-planned", "replanned_ns"))
                 if f.get(key) is not None]
    return (f"fault {f['fault_id']}: {f['kind']} {f['target']}{what} at {format_ns(f['at_ns'])}"
            + (f"; {', '.join(reactions)}" if reactions else ""))
