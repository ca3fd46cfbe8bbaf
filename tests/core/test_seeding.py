"""The seeding contract: seed_everything sets and reports each flag; ./reproduce.sh exports the seed
variables itself, before Python starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, random, numpy as np, torch
from core.seeding import seed_everything
first = seed_everything(7)
a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
again = seed_everything(7)
b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
print(json.dumps({"record": first, "same_draws": a == b, "again": again}))
"""


def _probe(env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_seed_everything_sets_and_reports_each_flag():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG")}
    out = _probe(env)
    rec = out["record"]
    assert rec["seed"] == 7 and out["same_draws"]
    assert rec["deterministic_algorithms"] and rec["cudnn_deterministic"]
    assert not rec["cudnn_benchmark"] and not rec["tf32_matmul"] and not rec["tf32_cudnn"]
    assert rec["cublas_workspace_config"] == ":4096:8"  # set for the process when the parent did not
    assert rec["pythonhashseed"] is None
    assert any("PYTHONHASHSEED is not set" in n for n in rec["notes"])


def test_seed_everything_reports_the_hash_seed_it_was_given():
    rec = _probe(dict(os.environ, PYTHONHASHSEED="7", CUBLAS_WORKSPACE_CONFIG=":16:8"))["record"]
    assert rec["pythonhashseed"] == "7" and rec["cublas_workspace_config"] == ":16:8"
    assert not any("PYTHONHASHSEED" in n for n in rec["notes"])


def test_reproduce_sh_exports_the_seed_variables_itself(tmp_path):
    """reproduce.sh, run from a parent without the variables, hands Python the seed it was given."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "reproduce.sh").write_text((ROOT / "reproduce.sh").read_text())
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    dump = tmp_path / "env.json"
    # the set-up script is replaced by one that puts a fake `python` first: it records its environment
    (root / "scripts" / "setup_env.sh").write_text(f'export PATH="{fake_bin}:$PATH"\n')
    (fake_bin / "python").write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json, os, sys; "
                                     f"json.dump(dict(os.environ, ARGV=\" \".join(sys.argv[1:])), "
                                     f"open(\"{dump}\", \"w\"))' \"$@\"\n")
    (fake_bin / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG")}
    proc = subprocess.run(["bash", str(root / "reproduce.sh"), "--seed", "5", "--scale", "tiny"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(dump.read_text())
    assert seen["PYTHONHASHSEED"] == "5"  # the cuBLAS workspace is seed_everything's (tested above)
    assert seen["ARGV"] == "-m harness.pipeline --seed 5 --scale tiny"


def test_reproduce_sh_refuses_a_bad_seed_before_anything(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "reproduce.sh"), "--seed", "x1"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --seed must be a non-negative integer, got 'x1'"
