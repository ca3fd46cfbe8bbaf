"""The import layers of pyproject.toml's [tool.importlinter] contract hold, and the contract does bite.

harness/ (orchestration) may import task1/, task2/ and core/; task1/ and task2/ import core/ only and
never each other; core/ imports none of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_repository_keeps_its_layers():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_a_core_module_importing_the_harness_breaks_the_contract(tmp_path):
    for name in ("core", "harness", "task1", "task2"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "core" / "io.py", "a") as f:
        f.write("\nfrom harness import pipeline  # a layer violation\n")
    with open(tmp_path / "task1" / "data.py", "a") as f:
        f.write("\nimport task2.data  # the two models must stay apart\n")
    proc = _lint(tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "core.io -> harness.pipeline" in proc.stdout and "task1.data -> task2.data" in proc.stdout
