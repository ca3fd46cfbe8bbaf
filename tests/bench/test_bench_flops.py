"""bench/flops.py counts what the model computes (torch's FlopCounterMode) and changes nothing in it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from task2.model import SASRecDCN, SASRecDCNConfig

_spec = importlib.util.spec_from_file_location("bench_flops_module", Path(__file__).resolve().parents[2] / "bench" / "flops.py")
flops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flops)


def _sasrec() -> SASRecDCN:
    torch.manual_seed(0)
    cfg = SASRecDCNConfig(n_items=50, item_emb_dim=8, id_emb_dim=8, max_len=12, n_heads=4, ffn_dim=32,
                          mlp_dims=(16, 8), dropout=0.0)
    return SASRecDCN(cfg, torch.randn(50, 8)).eval()


def test_flops_count_grows_with_history():
    model = _sasrec()
    before = [p.detach().clone() for p in model.parameters()]
    short, long = flops.flops_per_sample(model, 4), flops.flops_per_sample(model, 12)
    assert long["forward_flops"] > short["forward_flops"] > 0
    assert 2 * short["forward_flops"] < short["train_flops"] < 5 * short["forward_flops"]
    # the dominant term by hand: 2 layers x L tokens x (4 D^2 + 2 D F) multiply-adds, 2 FLOPs each
    d, f = model.cfg.d_model, model.cfg.ffn_dim
    assert short["forward_flops"] > 2 * 2 * 4 * (4 * d * d + 2 * d * f)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # counting trains nothing
    assert all(p.grad is None for p in model.parameters()) and not model.training
