"""The CUDA choices of training, tested on the CPU: the autocast dtype by compute capability (mocked), and
DistributedDataParallel without buffer broadcasts (a one-process gloo group)."""

from __future__ import annotations

import json

import pytest
import torch

from task2.model import SASRecDCN, SASRecDCNConfig
from task2.train import amp_dtype_for, wrap_ddp


@pytest.mark.parametrize("capability, want", [
    ((7, 5), torch.float16),  # T4: no native bf16, fp16 with a GradScaler
    ((7, 0), torch.float16),  # V100
    ((6, 1), torch.float16),  # P100-class
    ((8, 0), torch.bfloat16),  # A100
    ((8, 9), torch.bfloat16),  # L4
    ((9, 0), torch.bfloat16),  # H100
])
def test_amp_dtype_follows_the_compute_capability(monkeypatch, capability, want):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # emulated bf16 answers True on a T4; the choice must not listen to it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp_dtype_for(torch.device("cuda:0"), amp=True) == want


def test_no_autocast_on_the_cpu_or_with_amp_off(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert amp_dtype_for(torch.device("cpu"), amp=True) is None
    assert amp_dtype_for(torch.device("cuda:0"), amp=False) is None


def test_run_json_records_the_amp_choice(mini_run):
    run = json.loads((mini_run / "run.json").read_text())
    assert run["amp"] == {"dtype": None, "grad_scaler": False, "compute_capability": None}  # CPU run


def test_ddp_does_not_broadcast_buffers(tmp_path, monkeypatch):
    """With broadcast_buffers on, DDP re-sends every buffer (the frozen item table, id_known) before each
    forward; the wrapper must switch that off, and a forward must not broadcast anything."""
    import torch.distributed as dist

    model = SASRecDCN(SASRecDCNConfig(n_items=50, id_emb_dim=8, n_layers=1, ffn_dim=16, max_len=8,
                                      cross_layers=1, mlp_dims=[16]), torch.randn(50, 128))
    assert len(list(model.buffers())) >= 2
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = wrap_ddp(model, torch.device("cpu"))
        assert ddp.broadcast_buffers is False and ddp.forward_sync_buffers is False
        calls = []
        monkeypatch.setattr(ddp, "_distributed_broadcast_coalesced",
                            lambda *a, **k: calls.append(len(a[0]) if a else 0))
        seq = torch.randint(1, 50, (4, 8))
        ddp(seq, torch.randint(1, 50, (4,)), torch.ones(4, dtype=torch.long), torch.ones(4, dtype=torch.long))
        assert calls == []
    finally:
        dist.destroy_process_group()
