"""``DIR/sweep.png``: a sweep's metric drawn against its axes, so a grid of runs reads at a glance.

``pktsim sweep`` draws it when it ends and ``pktsim plot DIR`` draws it again (another ``--metric``,
another ``--x``). The layout follows from the sweep's axes alone:

* the seed axes (:data:`~pktsim.experiments.sweep.SEED_AXES`) repeat a point rather than vary it:
  every mark is the mean over them, with min-max whiskers;
* one axis runs along x (``--x``, else the first varied axis that is not a seed); a numeric axis
  is drawn as a line in value order, any other as bars in order of first appearance;
* every combination of the other varied axes gets its own panel, titled with it; what was held
  fixed across the whole sweep (the axes with one value) goes in the figure's title.

Points that did not finish ok are left out (a bar with none says "n/a"). The layout is computed by
small pure functions (:func:`choose_x`, :func:`panels`, and the sweep's
:func:`~pktsim.experiments.sweep.stats`) that the tests check against the table directly; :func:`sweep_figure` draws them, :func:`plot_sweep` writes the file.
matplotlib is imported only when drawing (no pyplot: the caller's backend is left alone), so a
missing matplotlib is an ImportError the callers turn into a note.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pyarrow as pa

from pktsim.errors import InputError
from pktsim.experiments.sweep import MAIN_METRIC, SEED_AXES, TABLE, Stat, read_table, stats, varied_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NUMERIC_TYPES = ("int64", "float64")
POINT = "point"
"""The x "axis" when nothing varies: one bar per point."""


# ---------------------------------------------------------------------------------------------
# The layout (pure: rows in, rows out)


def text(value: Any) -> str:
    """An axis value as the titles and tick labels show it (strings as they are, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def choose_x(rows: Sequence[dict], axes: Sequence[str], x: str | None = None) -> str:
    """The axis along x: ``x`` if given, else the first varied axis that is not a seed, else a
    varied seed axis, else :data:`POINT` (nothing varies: one bar per point)."""
    if x is not None:
        return x
    varied = varied_axes(rows, axes)
    for axis in varied:
        if axis not in SEED_AXES:
            return axis
    return varied[0] if varied else POINT


def panels(rows: Sequence[dict], axes: Sequence[str], x: str) -> list[tuple[str, list[dict]]]:
    """(title, rows) per combination of the varied axes other than ``x`` and the seeds, in order
    of first appearance in ``rows``; one panel titled "" when there are no such axes."""
    by = [a for a in varied_axes(rows, axes) if a != x and a not in SEED_AXES]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(", ".join(f"{a}={text(r[a])}" for a in by), []).append(r)
    return list(groups.items())


def fixed_axes(rows: Sequence[dict], axes: Sequence[str]) -> list[str]:
    """``axis=value`` for every axis with a single value across the sweep."""
    varied = set(varied_axes(rows, axes))
    return [f"{a}={text(rows[0][a])}" for a in axes if a not in varied] if rows else []


def is_numeric(rows: Sequence[dict], axes: dict[str, str], x: str) -> bool:
    """Whether ``x`` is drawn as a line: a numeric axis other than a seed (seeds have no order
    worth a line) with a value in every row."""
    return axes.get(x) in NUMERIC_TYPES and x not in SEED_AXES and all(r[x] is not None for r in rows)


# ---------------------------------------------------------------------------------------------
# Reading and checking


def _read(out: Path) -> pa.Table:
    if not (out / TABLE).is_dir():
        raise InputError(str(out), "", f"not a sweep directory (no {TABLE})")
    return read_table(out)


def _check(table: pa.Table, axes: dict[str, str], metric: str, x: str | None) -> None:
    numeric = [f.name for f in table.schema if f.name not in axes
               and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))]
    if metric not in numeric:
        raise InputError("--metric", "", f"{metric!r} is not a numeric column of the sweep table "
                                         f"(numeric columns: {', '.join(numeric)})")
    if x is not None and x not in axes:
        raise InputError("--x", "", f"{x!r} is not an axis of this sweep (axes: {', '.join(axes) or 'none'})")


def _rows(table: pa.Table, axes: dict[str, str], metric: str, source: str) -> list[dict]:
    """The rows (the columns the plot needs), in point order; an error when none has the metric."""
    if table.num_rows:
        rows = table.select([*axes, POINT, "status", metric]).to_pylist()
        rows.sort(key=lambda r: r[POINT])
        if any(mark.n for mark in stats(rows, POINT, metric)):  # a point that finished with a value
            return rows
    raise InputError(source, "", f"no point has finished with a value of {metric}")


# ---------------------------------------------------------------------------------------------
# Drawing


def sweep_figure(table: pa.Table, metric: str = MAIN_METRIC, x: str | None = None, source: str = "sweep",
                 max_panels: int = 48, columns: int = 4) -> Figure:
    """The figure of a sweep table (as :func:`~pktsim.experiments.sweep.read_table` returns it):
    one panel per combination of the varied axes other than x and the seeds, at most
    ``max_panels`` of them, ``columns`` to a row. Raises InputError for a metric that is not a
    numeric column, an x that is not an axis, or no ok point with a value of the metric."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    axes = json.loads((table.schema.metadata or {}).get(b"pktsim.axes", b"{}"))
    if table.num_rows:
        _check(table, axes, metric, x)
    rows = _rows(table, axes, metric, source)
    x = choose_x(rows, list(axes), x)
    numeric = is_numeric(rows, axes, x)
    layout = panels(rows, list(axes), x)
    shown = layout[:max_panels]
    ncols = min(columns, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    marks = max(len({text(r[x]) for r in rows_}) for _, rows_ in shown)
    width = 4.2 if numeric else min(9.0, max(4.2, 1.2 + 0.45 * marks))
    fig = Figure(figsize=(width * ncols, 3.4 * nrows + 1.0), layout="constrained")
    first = None
    for i, (title, rows_) in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, i + 1, sharey=first)
        first = first or ax
        _draw_panel(ax, stats(rows_, x, metric, numeric), numeric)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(x, fontsize=9)
        if i % ncols == 0:
            ax.set_ylabel(metric, fontsize=9)
        if metric == MAIN_METRIC:
            ax.axhline(1.0, ls="--", color="grey", lw=1, zorder=0)
    fig.suptitle(_suptitle(rows, list(axes), x, metric, len(shown), len(layout), width * ncols), fontsize=10)
    return fig


def _suptitle(rows: Sequence[dict], axes: Sequence[str], x: str, metric: str, shown: int, total: int,
              inches: float) -> str:
    seeds = [a for a in varied_axes(rows, axes) if a in SEED_AXES and a != x]
    head = f"{metric} by {x}" + (f" (mean, min-max over {', '.join(seeds)})" if seeds else "")
    if shown < total:
        head += f"; first {shown} of {total} panels"
    fixed = fixed_axes(rows, axes)
    if not fixed:
        return head
    return head + "\n" + textwrap.fill("fixed: " + ", ".join(fixed), width=max(40, int(inches * 14)))


def _draw_panel(ax: Axes, marks: list[Stat], numeric: bool) -> None:
    done = [m for m in marks if m.n]
    if not done:
        ax.text(0.5, 0.5, "no ok point", ha="center", va="center", transform=ax.transAxes, color="grey")
    if numeric:
        _draw_line(ax, done)
    else:
        _draw_bars(ax, marks)


def _whiskers(marks: list[Stat]) -> list[list[float]]:
    return [[m.mean - m.lo for m in marks], [m.hi - m.mean for m in marks]]


def _draw_line(ax: Axes, marks: list[Stat]) -> None:
    """A line with markers over the x values that have an ok point (the others are skipped)."""
    if not marks:
        return
    xs = [m.value for m in marks]
    ax.errorbar(xs, [m.mean for m in marks], yerr=_whiskers(marks), marker="o", capsize=3, lw=1.2)
    if min(xs) > 0 and max(xs) / min(xs) >= 100:
        ax.set_xscale("log")
    if len(xs) <= 10:  # the values themselves as ticks (none in between, even on a log scale)
        from matplotlib.ticker import NullLocator

        labels = [f"{v:g}" for v in xs]
        ax.set_xticks(xs, labels, rotation=30 if max(map(len, labels)) > 6 else 0, fontsize=8)
        ax.xaxis.set_minor_locator(NullLocator())


def _draw_bars(ax: Axes, marks: list[Stat]) -> None:
    """A bar per x value (mean, min-max whiskers, the mean written on it); "n/a" without an ok point."""
    done = [(i, m) for i, m in enumerate(marks) if m.n]
    if done:
        bars = ax.bar([i for i, _ in done], [m.mean for _, m in done], yerr=_whiskers([m for _, m in done]),
                      capsize=3, color="C0", width=0.7)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    for i, m in enumerate(marks):
        if not m.n:
            ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
    labels = [text(m.value) for m in marks]
    long = max(map(len, labels), default=0) > 6
    ax.set_xticks(range(len(marks)), labels, rotation=30 if long else 0, ha="right" if long else "center",
                  fontsize=8)
    ax.set_xlim(-0.6, len(marks) - 0.4)


# ---------------------------------------------------------------------------------------------
# The file


def plot_sweep(out: Path, metric: str = MAIN_METRIC, x: str | None = None, path: Path | None = None) -> Path:
    """Draw the sweep in ``out`` (its ``sweep.parquet``): ``metric`` against the axes, averaged
    over the seeds, one panel per combination of the varied axes other than ``x`` (see the module
    docstring), and write it as a PNG at ``path`` (default ``out/sweep.png``), atomically: a reader
    never sees half an image. Returns the path.

    Raises InputError when ``out`` is not a sweep directory, ``metric`` is not a numeric column,
    ``x`` is not an axis, or no point finished ok with a value of ``metric``; ImportError when
    matplotlib is not installed."""
    out = Path(out)
    table = _read(out)
    fig = sweep_figure(table, metric, x, source=str(out))
    path = Path(path) if path is not None else out / "sweep.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")  # the suffix tells savefig the format
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
