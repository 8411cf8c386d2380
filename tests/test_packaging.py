"""The wheel: it holds every module and every preset, and an installed pktsim finds its presets with
importlib.resources, not beside a checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRESET_DIRS = {"topology": "topologies", "workload": "workloads", "profile": "profiles", "sweep": "sweeps"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps`` of a copy of the source tree (so the build leaves nothing in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pktsim", *PRESET_DIRS.values()):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    dist = tmp / "dist"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    (whl,) = dist.glob("pktsim-*.whl")
    return whl


def test_wheel_holds_every_preset_module_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for d in PRESET_DIRS.values():
            presets = sorted((REPO / d).glob("*.yaml"))
            assert presets, d
            for p in presets:
                member = f"pktsim/presets/{d}/{p.name}"
                assert member in names, member
                assert z.read(member) == p.read_bytes()
        modules = {str(p.relative_to(REPO)) for p in (REPO / "pktsim").rglob("*.py")}
        assert modules - names == set()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert any(n.startswith(dist_info) and n.endswith("LICENSE") for n in names)
        assert "pktsim = pktsim.cli:main" in z.read(f"{dist_info}/entry_points.txt").decode()


def test_installed_pktsim_finds_every_preset_with_importlib_resources(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    work = tmp_path / "work"  # no presets here, and not the checkout
    work.mkdir()
    probe = """
import importlib.resources, json, pktsim
from pathlib import Path
from pktsim.scenario.loading import _resolve_ref
from pktsim.scenario.presets import PRESET_DIRS, preset_names, shipped_dir
out = {"pktsim": pktsim.__file__, "dirs": {}, "names": {}, "sources": {}}
for section, d in PRESET_DIRS.items():
    out["dirs"][section] = str(importlib.resources.files(f"pktsim.presets.{d}").joinpath("x").parent)
    out["names"][section] = preset_names(section)
    out["sources"][section] = [_resolve_ref(section, n, "probe")[1] for n in preset_names(section)]
print(json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", probe], cwd=work, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert Path(got["pktsim"]).is_relative_to(site)
    for section, d in PRESET_DIRS.items():
        assert Path(got["dirs"][section]) == site / "pktsim" / "presets" / d
        assert got["names"][section] == sorted(p.stem for p in (REPO / d).glob("*.yaml"))
        assert all(Path(s).is_relative_to(site) for s in got["sources"][section]), got["sources"][section]
