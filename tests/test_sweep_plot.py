"""``pktsim/analysis/sweep_plot.py``: the panel layout of a sweep's plot, the marks against the
table (mean over the seeds, computed here independently), the PNG, the errors, and ``pktsim plot``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from pktsim.analysis.sweep_plot import choose_x, panels, plot_sweep, stats, sweep_figure  # noqa: E402
from pktsim.cli import main  # noqa: E402
from pktsim.errors import InputError  # noqa: E402
from pktsim.experiments.sweep import read_table  # noqa: E402

BASE = """\
base:
  topology: bench
  workload: {jobs: [{name: job0, collective: ring_allreduce, ranks: 16, bytes: 64KiB}]}
"""
SCHEME, SIZE = "lb.scheme", "workload.jobs.0.bytes"
SCHEMES, SIZES, SEEDS = ["ecmp", "spray", "split_minimal"], [65536, 262144], [1, 2]


def run_sweep(tmp: Path, grid: str) -> Path:
    sweep_file = tmp / "s.yaml"
    sweep_file.write_text(BASE + "grid:\n" + grid)
    out = tmp / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 schemes x 2 sizes x 2 seeds, topology held fixed as a one-value axis (12 points)."""
    return run_sweep(tmp_path_factory.mktemp("grid"), f"  topology: [bench]\n  {SCHEME}: {json.dumps(SCHEMES)}\n"
                     f"  {SIZE}: {json.dumps(SIZES)}\n  seed: {json.dumps(SEEDS)}\n")


def table_rows(out: Path) -> tuple[list[dict], list[str]]:
    table = read_table(out)
    return sorted(table.to_pylist(), key=lambda r: r["point"]), list(json.loads(table.schema.metadata[b"pktsim.axes"]))


def seed_means(rows: list[dict], **fixed: object) -> dict:
    """Mean slowdown per scheme over the seeds among the rows matching ``fixed`` (by hand)."""
    sums: dict = {}
    for r in rows:
        if all(r[k] == v for k, v in fixed.items()):
            sums.setdefault(r[SCHEME], []).append(r["slowdown"])
    return {k: sum(v) / len(v) for k, v in sums.items()}


def heights(ax: Axes) -> list[float]:
    """The heights of a panel's bars (its one BarContainer: the whiskers are a container too)."""
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    return [p.get_height() for p in bars]


def test_layout_by_scheme(grid_sweep: Path) -> None:
    rows, axes = table_rows(grid_sweep)
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    assert choose_x(rows, axes) == SCHEME  # the first varied axis that is not a seed
    layout = panels(rows, axes, SCHEME)
    assert [title for title, _ in layout] == [f"{SIZE}={s}" for s in SIZES]
    for (_, panel), size in zip(layout, SIZES):
        assert len(panel) == len(SCHEMES) * len(SEEDS)
        marks = stats(panel, SCHEME, "slowdown")
        assert [m.value for m in marks] == SCHEMES and all(m.n == len(SEEDS) for m in marks)
        expected = seed_means(rows, **{SIZE: size})
        assert [m.mean for m in marks] == pytest.approx([expected[s] for s in SCHEMES])


def test_figure_bars_are_seed_means(grid_sweep: Path) -> None:
    rows, _ = table_rows(grid_sweep)
    fig = sweep_figure(read_table(grid_sweep))
    assert len(fig.axes) == len(SIZES)
    assert "topology=bench" in fig.get_suptitle() and "slowdown" in fig.get_suptitle()
    for ax, size in zip(fig.axes, SIZES):
        assert ax.get_title() == f"{SIZE}={size}"
        expected = seed_means(rows, **{SIZE: size})
        assert heights(ax) == pytest.approx([expected[s] for s in SCHEMES])
        assert [t.get_text() for t in ax.get_xticklabels()] == SCHEMES
        ideal = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(ideal) == 1 and list(ideal[0].get_ydata()) == [1.0, 1.0]


def test_png_written(grid_sweep: Path) -> None:
    path = plot_sweep(grid_sweep)  # also drawn by the sweep itself at its end
    assert path == grid_sweep / "sweep.png"
    image = imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 100  # 2 panels side by side
    assert not list(grid_sweep.glob(".*.tmp.png"))


def test_numeric_x_gives_lines(grid_sweep: Path, tmp_path: Path) -> None:
    rows, _ = table_rows(grid_sweep)
    fig = sweep_figure(read_table(grid_sweep), x=SIZE)
    assert [ax.get_title() for ax in fig.axes] == [f"{SCHEME}={s}" for s in SCHEMES]
    for ax, scheme in zip(fig.axes, SCHEMES):
        assert not [c for c in ax.containers if isinstance(c, BarContainer)]
        (line,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        data = line.lines[0]
        assert list(data.get_xdata()) == SIZES  # ascending
        expected = [sum(v) / len(v) for v in
                    ([r["slowdown"] for r in rows if r[SCHEME] == scheme and r[SIZE] == s] for s in SIZES)]
        assert list(data.get_ydata()) == pytest.approx(expected)
    path = plot_sweep(grid_sweep, x=SIZE, path=tmp_path / "by_size.png")
    assert path == tmp_path / "by_size.png" and imread(path).ndim == 3


def test_stats_leave_out_failed_points() -> None:
    rows = [{"x": "a", "status": "ok", "m": 2.0}, {"x": "a", "status": "error", "m": None},
            {"x": "b", "status": "too large", "m": None}, {"x": "a", "status": "ok", "m": 4.0},
            {"x": "c", "status": "ok", "m": None}]
    marks = stats(rows, "x", "m")
    assert [(m.value, m.n, m.mean, m.lo, m.hi) for m in marks] == [
        ("a", 2, 3.0, 2.0, 4.0), ("b", 0, None, None, None), ("c", 0, None, None, None)]
    numeric = stats([{"x": 3, "status": "ok", "m": 1.0}, {"x": 1, "status": "ok", "m": 2.0}], "x", "m", numeric=True)
    assert [m.value for m in numeric] == [1, 3]


def synthetic(rows: list[dict], axes: dict[str, str]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    return table.replace_schema_metadata({b"pktsim.axes": json.dumps(axes).encode()})


def test_na_bar_and_panel_cap() -> None:
    rows = [{"a": a, "b": b, "seed": 1, "point": 2 * a + i, "status": "ok" if (a, b) != (0, "y") else "error",
             "slowdown": 1.0 + a / 100} for a in range(50) for i, b in enumerate(["x", "y"])]
    fig = sweep_figure(synthetic(rows, {"a": "int64", "b": "string", "seed": "int64"}), x="b")
    assert len(fig.axes) == 48 and "first 48 of 50 panels" in fig.get_suptitle()
    assert "seed=1" in fig.get_suptitle()
    first = fig.axes[0]
    assert first.get_title() == "a=0" and "n/a" in [t.get_text() for t in first.texts]
    assert heights(first) == [1.0]


def test_only_seeds_vary(tmp_path: Path) -> None:
    out = run_sweep(tmp_path, "  seed: [1, 2]\n")
    rows, axes = table_rows(out)
    assert choose_x(rows, axes) == "seed"
    fig = sweep_figure(read_table(out))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]
    assert heights(ax) == pytest.approx([r["slowdown"] for r in rows])


def test_nothing_varies() -> None:
    rows = [{"seed": 1, "point": 0, "status": "ok", "slowdown": 1.5}]
    fig = sweep_figure(synthetic(rows, {"seed": "int64"}))
    (ax,) = fig.axes
    assert ax.get_xlabel() == "point" and heights(ax) == [1.5]


def test_errors(grid_sweep: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a sweep directory") as e:
        plot_sweep(tmp_path)
    assert str(e.value) == f"{tmp_path}: not a sweep directory (no sweep.parquet)"
    with pytest.raises(InputError, match=r"^--metric: 'nope' is not a numeric column .*\(numeric columns: .*slowdown"):
        plot_sweep(grid_sweep, metric="nope")
    with pytest.raises(InputError, match="--metric"):
        plot_sweep(grid_sweep, metric="status")  # a column, not numeric
    with pytest.raises(InputError, match=r"^--x: 'nope' is not an axis .*\(axes: topology, lb.scheme, "):
        plot_sweep(grid_sweep, x="nope")
    with pytest.raises(InputError) as e:  # no fault: every ok row has fault_at_ns null
        plot_sweep(grid_sweep, metric="fault_at_ns")
    assert str(e.value) == f"{grid_sweep}: no point has finished with a value of fault_at_ns"
    (tmp_path / "sweep.parquet").mkdir()  # a sweep killed before its first point
    with pytest.raises(InputError, match="no point has finished with a value of slowdown"):
        plot_sweep(tmp_path)


def test_cli_plot(grid_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(grid_sweep)]) == 0
    assert capsys.readouterr().out.strip() == f"plot: {grid_sweep / 'sweep.png'}"
    assert main(["plot", str(grid_sweep), "--x", SIZE, "--metric", "max_congestion", "-o",
                 str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()
    capsys.readouterr()
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pktsim: error: ") and err.count("\n") == 1
