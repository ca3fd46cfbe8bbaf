"""The import contracts of pyproject.toml's [tool.importlinter] hold, and each of them bites.

harness/ (the competitor's pipeline) may import everything; referee/ (the organizer's side) imports task2
and core, never harness/, and its rooms stand in layers (audit, verify, re-run, rules, then reading,
containment, releases, facts, scoring); task1/ and task2/ import core/ only and never each other; core/
imports none of them; no package holds an import circle.
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
    assert "3 kept, 0 broken" in proc.stdout


def _copy(tmp_path: Path) -> Path:
    """The five packages and pyproject.toml, to break on purpose."""
    for name in ("core", "harness", "referee", "task1", "task2"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_core_module_importing_the_harness_breaks_the_contract(tmp_path):
    _copy(tmp_path)
    with open(tmp_path / "core" / "io.py", "a") as f:
        f.write("\nfrom harness import pipeline  # a layer violation\n")
    with open(tmp_path / "task1" / "data.py", "a") as f:
        f.write("\nimport task2.data  # the two models must stay apart\n")
    proc = _lint(tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "core.io -> harness.pipeline" in proc.stdout and "task1.data -> task2.data" in proc.stdout


def test_the_referee_reaching_up_or_a_circle_breaks_the_contracts(tmp_path):
    _copy(tmp_path)
    with open(tmp_path / "referee" / "score.py", "a") as f:
        f.write("\nfrom harness import pipeline  # the referee runs none of the competitor's pipeline\n")
    with open(tmp_path / "referee" / "rules" / "task1_rules.py", "a") as f:
        f.write("\nimport referee.verify  # a rule reaching the room above it\n")
    with open(tmp_path / "harness" / "stamps.py", "a") as f:
        f.write("\nimport harness.preflight  # preflight imports stamps: a circle\n")
    proc = _lint(tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "0 kept, 3 broken" in proc.stdout
    assert "referee.score -> harness.pipeline" in proc.stdout
    assert "referee.rules.task1_rules -> referee.verify" in proc.stdout
    assert "No cycles are allowed in harness" in proc.stdout and ".stamps -> .preflight" in proc.stdout
