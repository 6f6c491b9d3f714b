"""The seven top-level folders install as fspo_bench.* and nothing else becomes a top-level name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
MAPPED = ("tasks", "judges", "baselines", "trainers", "leaderboard", "study")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def source_packages() -> set[str]:
    """Every folder with an __init__.py under the mapped folders, as its installed name."""
    found = set()
    for top in ("fspo_bench", *MAPPED):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            prefix = ("fspo_bench",) if top != "fspo_bench" else ()
            found.add(".".join(prefix + parts))
    return found


def test_every_package_folder_is_declared():
    declared = set(pyproject()["tool"]["setuptools"]["packages"])
    assert source_packages() == declared


@pytest.mark.parametrize("name", MAPPED)
def test_mapped_folders_are_not_top_level_names(name, tmp_path):
    result = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr
    ok = subprocess.run([sys.executable, "-c", f"import fspo_bench.{name}"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.slow
def test_wheel_maps_folders_into_the_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("fspo_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fspo_bench"}
    for package in source_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names
    data = [p.relative_to(ROOT) for p in ROOT.glob("tasks/*/data/*") if p.is_file()]
    for path in data:
        assert f"fspo_bench/{path.as_posix()}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "baselines = fspo_bench.baselines.plugin" in declared
