"""Layers shared by the Task 2 models: the item encoder, the DCN-v2 cross network, the MLP block."""

from __future__ import annotations

import torch
from torch import nn


ITEM_EMB_NORMS = ("none", "global", "per_dim")


class ItemEncoder(nn.Module):
    """Item vector = [trainable id embedding, frozen item_emb_d128 row, read through `norm`].

    Args:
        n_items: rows of the item table, padding row 0 included.
        id_dim: width of the trainable id embedding (row 0 stays zero: padding_idx).
        item_emb: (n_items, E) frozen table, or None for zeros of width `item_emb_dim` (filled later by
            `load_state_dict`).
        item_emb_dim: E, used when `item_emb` is None.
        norm: how the frozen rows are read. "none": as they are (DIN, Track 1's fixed input path).
            "global": x' = (x - c) / s with c the mean row and s the root-mean-square norm of the centred
            rows (1 after it); "per_dim": each dimension centred and scaled to the same spread, s_d =
            std_d * sqrt(E) (so rows again have a root-mean-square norm of 1). c and s are fitted once on
            the table's real rows (row 0, the padding, left out), kept as buffers `emb_center` and
            `emb_scale` (in the checkpoint), and the padding row reads as zeros. Either makes the model's
            output the same for a x + b as for x (any a > 0, any offset b; per_dim also any per-dimension
            a_d > 0): what the model learns does not depend on a unit the data never promised.

    Call: ids (...,) int -> (..., id_dim + E) float. `content(ids)` gives the frozen part alone.

    Example:
        >>> enc = ItemEncoder(10, 4, torch.zeros(10, 3))
        >>> enc(torch.tensor([[0, 5]])).shape
        torch.Size([1, 2, 7])
    """

    def __init__(self, n_items: int, id_dim: int, item_emb: torch.Tensor | None = None, item_emb_dim: int = 128,
                 norm: str = "none"):
        super().__init__()
        if norm not in ITEM_EMB_NORMS:
            raise ValueError(f"item_emb_norm must be one of {', '.join(ITEM_EMB_NORMS)}, got {norm!r}")
        self.norm = norm
        self.id_emb = nn.Embedding(n_items, id_dim, padding_idx=0)
        table = torch.zeros(n_items, item_emb_dim) if item_emb is None else item_emb.detach().float().clone()
        if table.shape[0] != n_items:
            raise ValueError(f"item_emb has {table.shape[0]} rows, expected n_items = {n_items}")
        self.register_buffer("item_emb_d128", table, persistent=True)  # frozen, saved in the checkpoint
        if norm != "none":
            width = table.shape[1]
            self.register_buffer("emb_center", torch.zeros(width), persistent=True)
            self.register_buffer("emb_scale", torch.ones(width if norm == "per_dim" else 1), persistent=True)
            if item_emb is not None:
                self.fit_norm(item_emb)

    @torch.no_grad()
    def fit_norm(self, item_emb: torch.Tensor) -> None:
        """Fit emb_center and emb_scale on rows 1.. of `item_emb` (in float64: an offset much larger than the
        spread keeps its precision)."""
        x = item_emb.detach().double()[1:]  # (N - 1, E) the real items
        if len(x) == 0:
            return
        center = x.mean(dim=0)  # (E,)
        xc = x - center
        if self.norm == "global":
            scale = xc.pow(2).sum(dim=1).mean().sqrt().reshape(1)  # (1,) RMS row norm
        else:
            scale = xc.pow(2).mean(dim=0).sqrt() * x.shape[1] ** 0.5  # (E,)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant table: nothing to scale
        self.emb_center.copy_(center.float())
        self.emb_scale.copy_(scale.float())

    def content(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (...,) int -> (..., E): the frozen rows as the model reads them (padding 0 reads as zeros)."""
        ids = ids.long()
        x = self.item_emb_d128[ids]  # (..., E)
        if self.norm == "none":
            return x
        x = (x - self.emb_center) / self.emb_scale  # (..., E)
        return x * (ids != 0).unsqueeze(-1).to(x.dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        return torch.cat([self.id_emb(ids), self.content(ids)], dim=-1)  # (..., id_dim + E)


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
