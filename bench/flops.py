"""FLOPs and parameter counts of the Task 2 models, counted by torch's FlopCounterMode on the model itself
(no second copy of the architecture). Used by bench_flops.py and bench_task2.py."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(b.numel() for b in model.buffers())
    return {"trainable": int(trainable), "frozen_buffers": int(frozen)}


def count_flops(model: nn.Module, args: tuple) -> tuple[int, int]:
    """FLOPs of one batch `args` (item_seq, item_id, likes_level, views_level), counted by torch's
    FlopCounterMode (2 per multiply-add; matmuls, attention and convolutions): the forward pass in eval
    mode, and one training step (forward with the auxiliary loss, then backward). -> (forward, train).
    The model's weights and mode are left as they were (its gradients are cleared)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    try:
        model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(*args)
        forward = counter.get_total_flops()
        model.train()
        with FlopCounterMode(display=False) as counter:
            logits, aux = model(*args, with_aux=True)
            (logits.sum() + aux).backward()
        train = counter.get_total_flops()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return forward, train


def flops_per_sample(model: nn.Module, history_length: int, batch: int = 4) -> dict:
    """`count_flops` per sample on a synthetic batch whose histories hold `history_length` real items,
    trimmed of padding as length-aware batches are."""
    cfg = model.cfg
    l = max(1, min(int(history_length), cfg.max_len))
    seq = (torch.arange(l) % (cfg.n_items - 1) + 1).repeat(batch, 1)  # (batch, l), no padding
    ones = torch.ones(batch, dtype=torch.long)
    forward, train = count_flops(model, (seq, ones, ones, ones))
    return {"forward_flops": forward / batch, "train_flops": train / batch, "history_length": l}
