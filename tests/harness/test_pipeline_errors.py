"""reproduce.sh's user errors: one clear line and a non-zero exit, before any work starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "harness.pipeline", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_missing_data_folder(tmp_path):
    proc = _run("--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "no such data folder" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_track(tmp_path):
    proc = _run("--track", "4", "--out", tmp_path / "run")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "'--track'" in proc.stderr and "reproduce.sh --help" in proc.stderr


def test_bad_seed_in_the_script(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "reproduce.sh"), "--seed", "abc"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--seed must be a non-negative integer" in proc.stderr
