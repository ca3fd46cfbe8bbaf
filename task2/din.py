"""`DIN`: the official FuxiCTR baseline, Track 1's fixed CTR model, as FuxiCTR 2.3.7 builds it for
MicroLens_1M_x1.

Item = [id embedding, mean of tag embeddings, Linear(item_emb_d128)]; DIN target attention (an MLP over
[t, h, t - h, t * h], unnormalised weights) pools the history; a DNN 1024-512-256 with batch norm gives
the logit. Track 1 may tune only embedding_regularizer, net_regularizer and net_dropout here (and
learning_rate and batch_size in the training config); harness verify's T1-TRACK1-BASELINE checks it.
The frozen item table and the tag table are persistent buffers, as in `task2.model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.challenge import DIN_BASELINE_TRAIN
from task2.layers import MLP, ItemEncoder


@dataclass
class DINConfig:
    """Arguments of `DIN`, defaults as in the official baseline (FuxiCTR 2.3.7, MicroLens_1M_x1).

    Track 1 may tune only embedding_regularizer, net_regularizer, net_dropout (and, in the training
    config, learning_rate and batch_size).
    """

    n_items: int = 91_718
    item_emb_dim: int = 128
    n_tags: int = 11_740  # item_tags vocabulary, 0 = padding
    tags_len: int = 5
    embedding_dim: int = 64
    max_len: int = 64
    attention_units: tuple[int, ...] = (512, 256)
    attention_dropout: float = 0.1
    dnn_units: tuple[int, ...] = (1024, 512, 256)
    net_dropout: float = 0.1
    batch_norm: bool = True
    level_vocab: int = 11
    embedding_regularizer: float = 1e-6
    net_regularizer: float = 0.0

    @property
    def item_dim(self) -> int:
        return 2 * self.embedding_dim + self.item_emb_dim

    def check(self) -> None:
        """Raise ValueError on values the model cannot be built with."""
        if self.max_len < 1 or self.n_items < 2 or not self.dnn_units or not self.attention_units:
            raise ValueError("max_len >= 1, n_items >= 2 and non-empty dnn_units/attention_units are required")
        if not 0.0 <= self.net_dropout < 1.0 or not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError("net_dropout and attention_dropout must be in [0, 1)")


# Track 1's tunables on data of another size (the rules allow batch_size and learning_rate to change)
DIN_OFFICIAL_ROWS = 3_600_000  # the official train split: 439 steps per epoch at batch 8192


def fit_din_tunables(n_rows: int) -> dict:
    """Track 1's batch_size and learning_rate for `n_rows` training rows (both are tunables the rules allow).

    On the official data (3.6 M rows) they are the official 8192 and 1e-3. On less data the batch halves
    until an epoch has at least the official 439 steps (floor 128), and the learning rate follows the
    square-root scaling rule for Adam (lr x sqrt(batch / 8192)): at batch 8192, 120,000 rows are 15 steps
    an epoch, and a plateau schedule that decides once per epoch has almost nothing to decide with.
    """
    official_batch, official_lr = DIN_BASELINE_TRAIN["batch_size"], DIN_BASELINE_TRAIN["learning_rate"]
    steps = DIN_OFFICIAL_ROWS // official_batch
    batch = official_batch
    while batch > 128 and n_rows / batch < steps:
        batch //= 2
    lr = official_lr * math.sqrt(batch / official_batch)
    return {"train_rows": int(n_rows), "batch_size": batch, "learning_rate": float(f"{lr:.6g}"),
            "official": {"batch_size": official_batch, "learning_rate": official_lr},
            "rule": f"batch halves from {official_batch} until an epoch has >= {steps} steps (floor 128); "
                    "learning_rate x sqrt(batch / 8192)"}


class DINAttention(nn.Module):
    """DIN target attention (FuxiCTR DIN_Attention, use_softmax=False).

    score_j = MLP([t, h_j, t - h_j, t * h_j]), pooled = sum_j score_j * real_j * h_j.

    A padded slot (real_j = 0) contributes nothing, so `packed` scores only the real (row, slot) pairs:
    the same sums over a median of 6 pairs per row instead of 64 (the scoring MLP has no batch norm, so
    which rows it sees changes nothing). `forward` is the padded form, FuxiCTR's literal computation;
    tests hold the two equal, values and gradients.

    Args: dim: item width D; units: hidden widths of the scoring MLP; dropout.
    Call: target (B, D), history (B, L, D), real (B, L) bool -> (B, D).
    """

    def __init__(self, dim: int, units: tuple[int, ...], dropout: float):
        super().__init__()
        self.score = nn.Sequential(MLP(4 * dim, units, dropout), nn.Linear(units[-1], 1))

    def forward(self, target: torch.Tensor, history: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        t = target[:, None, :].expand_as(history)  # (B, L, D)
        z = torch.cat([t, history, t - history, t * history], dim=-1)  # (B, L, 4D)
        w = self.score(z).squeeze(-1) * real.to(history.dtype)  # (B, L)
        return (w[..., None] * history).sum(dim=1)  # (B, D)

    def packed(self, target: torch.Tensor, history: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """target (B, D), history (P, D) the real history items, row (P,) the row of each -> (B, D).

        The scoring MLP's first layer is linear in [t, h, t - h, t * h], so with its weight split in four
        blocks W = [Wt | Wh | Wd | Wp] it equals (Wt + Wd) t + (Wh - Wd) h + Wp (t * h) + b: the target's
        part is computed once per row instead of once per slot, and a slot costs two D-wide products
        instead of one 4D-wide one. Same parameters, same values up to float rounding (tests hold it to
        the padded form); on short histories it removes about a third of DIN's training FLOPs.
        """
        first = self.score[0].net[0]
        d = target.shape[-1]
        w = first.weight  # (U, 4D)
        w_t, w_h, w_d, w_p = w[:, :d], w[:, d:2 * d], w[:, 2 * d:3 * d], w[:, 3 * d:]
        per_row = F.linear(target, w_t + w_d, first.bias)  # (B, U)
        t = target.index_select(0, row)  # (P, D)
        z = per_row.index_select(0, row) + F.linear(history, w_h - w_d) + F.linear(t * history, w_p)  # (P, U)
        for layer in self.score[0].net[1:]:  # the model's own modules (the re-run checks what ran forward)
            z = layer(z)
        score = self.score[1](z)  # (P, 1)
        return torch.zeros_like(target).index_add_(0, row, score * history)  # (B, D)


class DIN(nn.Module):
    """The official baseline: Deep Interest Network as FuxiCTR 2.3.7 builds it for MicroLens_1M_x1.

    Item vector = [id emb (64), masked mean of tag embs (64), Linear(item_emb_d128, no bias) (128)].
    DNN over [likes emb, views emb, target, DIN-pooled history] with batch norm, one logit.

    Args:
        cfg: DINConfig.
        item_emb: (n_items, item_emb_dim) frozen table; item_tags: (n_items, tags_len) int tag ids.

    Call: item_seq (B, L), item_id (B,), likes_level (B,), views_level (B,) -> logits (B,).
    """

    def __init__(self, cfg: DINConfig, item_emb: torch.Tensor | None = None,
                 item_tags: torch.Tensor | None = None):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d = cfg.embedding_dim
        self.items = ItemEncoder(cfg.n_items, d, item_emb, cfg.item_emb_dim)
        tags = torch.zeros(cfg.n_items, cfg.tags_len, dtype=torch.long) if item_tags is None else item_tags.long().clone()
        if tags.shape != (cfg.n_items, cfg.tags_len):
            raise ValueError(f"item_tags has shape {tuple(tags.shape)}, expected {(cfg.n_items, cfg.tags_len)}")
        self.register_buffer("item_tags", tags, persistent=True)
        self.tag_emb = nn.Embedding(cfg.n_tags, d, padding_idx=0)
        self.emb_proj = nn.Linear(cfg.item_emb_dim, cfg.item_emb_dim, bias=False)
        self.likes = nn.Embedding(cfg.level_vocab, d, padding_idx=0)  # levels are 1..10; FuxiCTR pads 0
        self.views = nn.Embedding(cfg.level_vocab, d, padding_idx=0)
        self.attention = DINAttention(cfg.item_dim, cfg.attention_units, cfg.attention_dropout)
        self.dnn = MLP(2 * d + 2 * cfg.item_dim, cfg.dnn_units, cfg.net_dropout, cfg.batch_norm)
        self.head = nn.Linear(cfg.dnn_units[-1], 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """FuxiCTR's init: embeddings N(0, 1e-4) with zero padding rows, Linear xavier_normal, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=1e-4)
                if m.padding_idx is not None:
                    with torch.no_grad():
                        m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (...,) -> (..., 2 * embedding_dim + item_emb_dim)."""
        ids = ids.long()
        tags = self.item_tags[ids]  # (..., T)
        tag_vec = self.tag_emb(tags)  # (..., T, d)
        n = (tags > 0).sum(-1, keepdim=True).to(tag_vec.dtype)  # (..., 1)
        tag_mean = tag_vec.sum(-2) / (n + 1e-12)  # (..., d) FuxiCTR MaskedAveragePooling
        base = self.items(ids)  # (..., d + E)
        d = self.cfg.embedding_dim
        return torch.cat([base[..., :d], tag_mean, self.emb_proj(base[..., d:])], dim=-1)  # (..., 2d + E)

    def forward(self, item_seq, item_id, likes_level, views_level, with_aux: bool = False, clicks=None, packed: bool = True):
        seq = item_seq[:, -self.cfg.max_len:].long()  # (B, L)
        real = seq > 0  # (B, L)
        target = self.encode_items(item_id)  # (B, Di)
        if packed:  # only the real slots: gather them, score them, scatter the weighted sum back
            row = real.nonzero(as_tuple=True)[0]  # (P,) row of each real slot, row-major
            pooled = self.attention.packed(target, self.encode_items(seq[real]), row)  # (B, Di)
        else:
            pooled = self.attention(target, self.encode_items(seq), real)  # (B, Di)
        x = torch.cat([self.likes(likes_level.long()), self.views(views_level.long()), target, pooled],
                      dim=-1)  # (B, 2d + 2Di)
        logits = self.head(self.dnn(x)).squeeze(-1)  # (B,)
        return (logits, logits.new_zeros(())) if with_aux else logits

    def embedding_parameters(self) -> list[nn.Parameter]:
        """What FuxiCTR's FeatureEmbeddingDict holds: the id, tag and level tables and item_emb_d128's Linear."""
        return [p for m in (self.items.id_emb, self.tag_emb, self.emb_proj, self.likes, self.views)
                for p in m.parameters()]

    def regularization_loss(self) -> torch.Tensor | float:
        """FuxiCTR 2.3.7's L2 terms (BaseModel.regularization_loss): embedding_regularizer / 2 * ||p||^2 on every
        trainable parameter of the feature embedding (`embedding_parameters`, item_emb_d128's projection
        included), net_regularizer / 2 * ||p||^2 on every other trainable parameter (biases and batch norm too)."""
        emb = {id(p) for p in self.embedding_parameters()}
        total = 0.0
        for p in self.parameters():
            if not p.requires_grad:
                continue
            lam = self.cfg.embedding_regularizer if id(p) in emb else self.cfg.net_regularizer
            if lam:
                total = total + lam / 2 * torch.linalg.vector_norm(p) ** 2  # FuxiCTR's form, its rounding
        return total
