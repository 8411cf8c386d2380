"""notebooks/analyze_run.ipynb runs end to end on fresh traces and draws its figures.

The notebook is executed in a real Jupyter kernel with nbclient, in a temporary working directory, as a
researcher would run it: once with no runs given (it simulates its three small default runs: ECMP, spray and
4-way split of a permutation on the bench fabric) and once pointed at an existing run through PKTSIM_RUNS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
for _module in ("ipykernel", "jupyter_client", "matplotlib", "pandas"):
    pytest.importorskip(_module)

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "analyze_run.ipynb"
TIMEOUT_S = 300  # per cell


def _kernel_manager() -> KernelManager:
    """A manager for ipykernel's built-in ``python3`` kernel.

    ``kernel_dirs=[]`` makes the spec manager skip installed kernel.json files and fall back to the spec
    ipykernel ships in its own package (jupyter_client does this for the native kernel name), which launches
    ``sys.executable -m ipykernel_launcher``: the kernel runs in this interpreter whatever is installed
    elsewhere, and nothing has to be installed.
    """
    specs = KernelSpecManager(kernel_dirs=[])
    assert "python3" in specs.find_kernel_specs(), "ipykernel does not provide its native python3 kernel"
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _execute(cwd: Path, monkeypatch: pytest.MonkeyPatch, runs: dict | None) -> tuple[nbformat.NotebookNode, float]:
    """Execute the notebook with ``cwd`` as working directory; returns it with outputs and the wall time."""
    tmp = cwd / "tmp"
    tmp.mkdir()
    # The kernel and the simulations it starts inherit this environment.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("TMPDIR", str(tmp))  # the default runs go to tempfile.mkdtemp(): keep them in tmp_path
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp / "mpl"))
    if runs is None:
        monkeypatch.delenv("PKTSIM_RUNS", raising=False)
    else:
        monkeypatch.setenv("PKTSIM_RUNS", json.dumps(runs))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = _kernel_manager()
    client = nbclient.NotebookClient(
        nb, km=km, kernel_name="python3", timeout=TIMEOUT_S, resources={"metadata": {"path": str(cwd)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        if km.has_kernel:  # nbclient leaves a kernel it was handed running
            km.shutdown_kernel(now=True)
    return nb, time.perf_counter() - t0


def _outputs(nb) -> list[tuple[int, dict]]:
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code" for out in cell.outputs]


def _text(nb) -> str:
    parts = []
    for _, out in _outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


def _check_figures(nb) -> int:
    """Every code cell that makes a figure shows it as a PNG; returns the number of figures."""
    plotting = [i for i, c in enumerate(nb.cells)
                if c.cell_type == "code" and ("plt.subplots(" in c.source or "plt.figure(" in c.source)]
    pngs = [i for i, out in _outputs(nb) if "image/png" in out.get("data", {})]
    assert plotting, "the notebook has no plotting cells"
    missing = sorted(set(plotting) - set(pngs))
    assert not missing, f"cells {missing} make a figure but produced no image/png output"
    return len(pngs)


def _check_no_errors(nb) -> None:
    errors = [(i, out) for i, out in _outputs(nb) if out.output_type == "error"]
    assert not errors, f"cell {errors[0][0]} raised {errors[0][1].ename}: {errors[0][1].evalue}"
    stderr = [out.text for _, out in _outputs(nb) if out.output_type == "stream" and out.name == "stderr"]
    assert not stderr, "the notebook wrote to stderr:\n" + "\n".join(stderr)


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {i} has stored outputs: clear them"
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "RUNS = {}" in first.source, "the first code cell defines the parameters, RUNS first"


def test_notebook_on_default_runs(tmp_path, monkeypatch):
    nb, wall = _execute(tmp_path, monkeypatch, runs=None)
    _check_no_errors(nb)
    figures = _check_figures(nb)
    assert figures >= 6
    text = _text(nb)
    for label in ("ecmp", "spray", "split4"):
        assert label in text
    assert "did not finish" not in text
    assert "all checks passed" in text, "the notebook's consistency checks between the tables failed"
    # The three default runs were simulated into the temporary directory, complete.
    runs = sorted((tmp_path / "tmp").glob("pktsim-runs-*/*/summary.json"))
    assert [p.parent.name for p in runs] == ["ecmp", "split4", "spray"]
    print(f"notebook executed in {wall:.1f} s with {figures} figures")
    assert wall < 120, f"the notebook took {wall:.0f} s; keep the default runs small (target < 60 s)"


def test_notebook_on_given_run(tmp_path, monkeypatch):
    """PKTSIM_RUNS overrides RUNS; a single run on another fabric (fat-tree, multi-iteration ring) works too,
    and so does the transport model (roce profile: ACKs on the host links, PFC pauses plotted)."""
    run = tmp_path / "ring-ft"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-m", "pktsim", "run", "--topology", "fat_tree_k4", "--workload", "ring_allreduce",
         "--set", "workload.jobs.0.bytes=1MiB", "--set", "workload.jobs.0.iterations=2",
         "--set", "workload.jobs.0.placement=random", "--profile", "roce", "--set", "switch.buffer_bytes=2MiB",
         "--set", "switch.pfc.xoff_bytes=64KiB", "--set", "switch.pfc.xon_bytes=32KiB", "--out", str(run), "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    nb, _ = _execute(tmp_path, monkeypatch, runs={"ring on fat-tree": str(run)})
    _check_no_errors(nb)
    _check_figures(nb)
    text = _text(nb)
    assert "ring on fat-tree" in text and "simulated" not in text  # no default runs were made
    assert "all checks passed" in text
