"""bench/bench_gpu.py cannot rot: its --dry-run runs every code path on the CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu.py"), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_dry_run_measures_every_part(tmp_path):
    out = tmp_path / "gpu.json"
    proc = _run("--dry-run", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == {"result": str(out), "wall_s": json.loads(out.read_text())["wall_s"],
                                       "deterministic": True}
    doc = json.loads(out.read_text())
    assert doc["dry_run"] is True and doc["seeding"]["deterministic_algorithms"] is True
    task2 = doc["task2"]
    assert task2["data"]["rows"] == 2000 and 3 <= task2["data"]["mean_history"] <= 64
    run = task2["runs"]["float32"]
    assert run["steps_timed"] == 3 and run["loss_finite"] and run["samples_per_s"] > 0
    assert abs(run["epoch_s_extrapolated"] - run["s_per_step"] * run["steps_per_epoch"]) < 0.1
    assert 0 < task2["set_known_items"]["known"] <= 500
    assert doc["determinism"] == {"steps": 3, "dtype": None, "identical": True, "max_abs_diff": 0.0,
                                  "tensors": doc["determinism"]["tensors"]}
    clip = doc["clip_vit_l14"]
    assert clip["covers_per_s"] > 0 and clip["embedding_finite"] and clip["batch_size"] == 4
    assert clip["from_jpeg"]["end_to_end_per_s_one_process"] > 0 and clip["from_jpeg"]["covers"] == 4
    din = task2["runs"]["DIN_float32"]
    assert din["batch_size"] == 256 and din["loss_finite"]
    assert task2["evaluation"]["rows"] == 200 and task2["evaluation"]["finite"]
    assert doc["e5_base_titles"]["titles_per_s"] > 0 and doc["e5_base_titles"]["finite"]
    for model_class in ("SASRecDCN", "DIN"):  # the real loop, one epoch of generated data
        loop = doc["harness_train_epoch"][model_class]
        assert loop["data"] == "tiny" and loop["train_s"] > 0 and 0 < loop["valid_auc"] <= 1


def test_without_a_gpu_the_real_run_is_one_line():
    proc = _run()
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: torch ") and "sees no CUDA device" in proc.stderr
    assert proc.stderr.count("\n") == 1
