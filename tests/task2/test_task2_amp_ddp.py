"""The CUDA choices of training, tested on the CPU: the autocast dtype by compute capability (mocked), and
DistributedDataParallel without buffer broadcasts (a one-process gloo group)."""

from __future__ import annotations

import json

import pytest
import torch

from task2.model import SASRecDCN, SASRecDCNConfig
from task2_fixtures import FAST_TRAIN
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
    assert run["amp"] == {"dtype": None, "grad_scaler": False, "compute_capability": None,
                          "skipped_steps": 0}  # CPU run


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


def test_a_step_the_grad_scaler_skips_is_counted():
    """An overflow under a GradScaler (forced here on the CPU by a scale no fp32 gradient survives) skips the
    optimizer step and is reported as skipped; the same step without a scaler is taken."""
    from task2.train import TrainConfig, make_optimizer, train_step

    model = SASRecDCN(SASRecDCNConfig(n_items=50, id_emb_dim=8, n_layers=1, ffn_dim=16, max_len=8,
                                      cross_layers=1, mlp_dims=[16]), torch.randn(50, 128))
    item = torch.randint(1, 50, (6,))
    batch = {"item_seq": torch.randint(1, 50, (6, 8)), "item_id": item, "likes_level": torch.ones(6, dtype=torch.long),
             "views_level": torch.ones(6, dtype=torch.long), "label": (item % 2 == 0).float(), "global_size": 6}
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38)
    _, _, skipped = train_step(model, model, make_optimizer(model, TrainConfig()), batch, 1.0, scaler=scaler)
    assert skipped is True and scaler.get_scale() < 3e38
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters())  # the step was not taken
    _, _, skipped = train_step(model, model, make_optimizer(model, TrainConfig()), batch, 1.0)
    assert skipped is False


def test_a_non_finite_validation_stops_training_in_one_line(mini_data, tmp_path, monkeypatch, harness_cli):
    """A NaN in the validation logits (injected into the scoring) ends `harness train` with exit 1 and one
    line naming the epoch and what to try; no traceback."""
    import task2.train as train_mod

    real = train_mod.score_split

    def with_nan(*args, **kwargs):
        out = real(*args, **kwargs).clone()
        out[3] = float("nan")
        return out

    monkeypatch.setattr(train_mod, "score_split", with_nan)
    config = tmp_path / "fast.json"
    config.write_text(json.dumps(FAST_TRAIN))
    code, _out, err = harness_cli("train", "--data", mini_data, "--out", tmp_path / "run", "--config", config)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err, err
    assert "epoch 1: 1 validation logit(s) are not finite" in lines[-1] and "a lower learning rate" in lines[-1], err
