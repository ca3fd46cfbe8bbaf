"""Layers shared by the Task 2 models: the item encoder, the DCN-v2 cross network, the MLP block."""

from __future__ import annotations

import torch
from torch import nn


class ItemEncoder(nn.Module):
    """Item vector = [trainable id embedding, frozen item_emb_d128 row].

    Args:
        n_items: rows of the item table, padding row 0 included.
        id_dim: width of the trainable id embedding (row 0 stays zero: padding_idx).
        item_emb: (n_items, E) frozen table, or None for zeros of width `item_emb_dim` (filled later by
            `load_state_dict`).
        item_emb_dim: E, used when `item_emb` is None.

    Call: ids (...,) int -> (..., id_dim + E) float.

    Example:
        >>> enc = ItemEncoder(10, 4, torch.zeros(10, 3))
        >>> enc(torch.tensor([[0, 5]])).shape
        torch.Size([1, 2, 7])
    """

    def __init__(self, n_items: int, id_dim: int, item_emb: torch.Tensor | None = None, item_emb_dim: int = 128):
        super().__init__()
        self.id_emb = nn.Embedding(n_items, id_dim, padding_idx=0)
        table = torch.zeros(n_items, item_emb_dim) if item_emb is None else item_emb.detach().float().clone()
        if table.shape[0] != n_items:
            raise ValueError(f"item_emb has {table.shape[0]} rows, expected n_items = {n_items}")
        self.register_buffer("item_emb_d128", table, persistent=True)  # frozen, saved in the checkpoint

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        return torch.cat([self.id_emb(ids), self.item_emb_d128[ids]], dim=-1)  # (..., id_dim + E)


class CrossNetV2(nn.Module):
    """DCN-v2 cross network: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, full-rank W_l, `n_layers` times.

    Args: dim: input width D; n_layers: number of cross layers.
    Call: x0 (B, D) -> (B, D).

    Example:
        >>> CrossNetV2(8, 3)(torch.randn(2, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(self, dim: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0  # (B, D)
        for layer in self.layers:
            x = x0 * layer(x) + x  # (B, D)
        return x


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> ReLU -> Dropout for each width in `dims`; no output layer.

    Args: in_dim; dims: hidden widths; dropout; batch_norm.
    Call: x (B, in_dim) -> (B, dims[-1]).
    """

    def __init__(self, in_dim: int, dims: tuple[int, ...], dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for width in dims:
            layers.append(nn.Linear(in_dim, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, dims[-1])
