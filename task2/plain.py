"""`MeanPoolMLP`: the plain baseline that every Task 2 default must beat.

Each item is [trainable id embedding, frozen item_emb_d128 row]. The user is the mean of the history's
item vectors; an MLP reads [user, target, user * target, likes, views] and gives one logit. No
attention, no order, no auxiliary loss: what a practitioner writes in sixty lines, and a strong model
whenever the target item carries most of the signal. It trains through the same `task2.train` loop as
the default model, so the two are compared on equal terms (`bench/bench_task2.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from task2.layers import ITEM_EMB_NORMS, MLP, ItemEncoder


@dataclass
class MeanPoolMLPConfig:
    """Arguments of `MeanPoolMLP`. `n_items` counts item_info rows, padding row 0 included."""

    n_items: int = 91_718
    item_emb_dim: int = 128
    id_emb_dim: int = 64
    max_len: int = 64
    level_vocab: int = 11
    level_dim: int = 16
    mlp_dims: tuple[int, ...] = (256, 128)
    net_dropout: float = 0.0
    item_emb_norm: str = "global"  # how item_emb_d128 is read (task2.layers.ItemEncoder)

    def check(self) -> None:
        """Raise ValueError on values the model cannot be built with."""
        if self.max_len < 1 or self.n_items < 2 or not self.mlp_dims:
            raise ValueError("max_len >= 1, n_items >= 2 and a non-empty mlp_dims are required")
        if not 0.0 <= self.net_dropout < 1.0:
            raise ValueError("net_dropout must be in [0, 1)")
        if self.item_emb_norm not in ITEM_EMB_NORMS:
            raise ValueError(f"item_emb_norm must be one of {', '.join(ITEM_EMB_NORMS)}, got {self.item_emb_norm!r}")


class MeanPoolMLP(nn.Module):
    """Mean-pooled history + MLP over [user, target, user * target, likes, views].

    Args:
        cfg: MeanPoolMLPConfig.
        item_emb: (n_items, item_emb_dim) frozen table from item_info (None: zeros until loaded).

    Call: item_seq (B, L), item_id (B,), likes_level (B,), views_level (B,) -> logits (B,).
    """

    def __init__(self, cfg: MeanPoolMLPConfig, item_emb: torch.Tensor | None = None):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d = cfg.id_emb_dim + cfg.item_emb_dim
        self.items = ItemEncoder(cfg.n_items, cfg.id_emb_dim, item_emb, cfg.item_emb_dim, cfg.item_emb_norm)
        self.likes = nn.Embedding(cfg.level_vocab, cfg.level_dim)
        self.views = nn.Embedding(cfg.level_vocab, cfg.level_dim)
        self.mlp = MLP(3 * d + 2 * cfg.level_dim, cfg.mlp_dims, cfg.net_dropout)
        self.head = nn.Linear(cfg.mlp_dims[-1], 1)
        nn.init.normal_(self.items.id_emb.weight, std=0.02)
        with torch.no_grad():
            self.items.id_emb.weight[0].zero_()

    @torch.no_grad()
    def init_output_bias(self, rate: float) -> None:
        """Start the logit at the training split's click rate (see SASRecDCN.init_output_bias)."""
        self.head.bias.fill_(math.log(rate / (1 - rate)) if 0 < rate < 1 else 0.0)

    def forward(self, item_seq, item_id, likes_level, views_level, with_aux: bool = False, clicks=None):
        seq = item_seq[:, -self.cfg.max_len:].long()  # (B, L)
        real = (seq > 0).to(torch.float32)  # (B, L)
        hist = self.items(seq)  # (B, L, D)
        user = (hist * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1.0)  # (B, D)
        target = self.items(item_id.long())  # (B, D)
        x = torch.cat([user, target, user * target, self.likes(likes_level.long()),
                       self.views(views_level.long())], dim=-1)  # (B, 3D + 2 level_dim)
        logits = self.head(self.mlp(x)).squeeze(-1)  # (B,)
        return (logits, logits.new_zeros(())) if with_aux else logits

    def regularization_loss(self) -> torch.Tensor | float:
        return 0.0
