"""Fusion of the modality embeddings and the reducers to 128 dimensions.

Fusion, per modality m (embeddings e_m, unit rows, dim d_m):
    items without a usable input (missing/unreadable cover, empty title) get f_m = normalise(mean of
    the usable rows): a documented, flagged stand-in, never a zero row;
    with `balance`, x_m = (e_m - c_m) / sqrt(v_m), c_m the mean row and v_m the total variance, so
    each modality carries the same variance whatever its dimension;
    x = [x_image, x_text]  (N, D).

Reducers map x to z (N, 128), then z / ||z||:
    pca          z = (x - mu) W, W the top-128 eigenvectors of the covariance (signs fixed so the
                 largest-magnitude entry of each is positive); reports the explained variance.
    contrastive  u = (x - mu) V with V the top-r eigenvectors (r = `input_dim`, fixed), then
                 z = u P + MLP(u), P initialised to the first 128 coordinates (so training starts at
                 the PCA-128 embedding) and the MLP's last layer to zeros; trained with InfoNCE on
                 pairs of items from one user's train history (in-batch negatives, both directions,
                 same-item collisions masked).

Everything needed to apply the transform to new embeddings is saved with safetensors (never pickle):
fusion.<m>.fill / .center / .scale, reducer.* tensors, and metadata (kind, modalities, dims, config).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.errors import UserError
from task1.config import ContrastiveConfig
from task1.data import Histories

META_KEY = "task1_reducer"


@dataclass
class Fusion:
    modalities: tuple
    fill: dict = field(default_factory=dict)  # m -> (d_m,) float64
    center: dict = field(default_factory=dict)  # m -> (d_m,)
    scale: dict = field(default_factory=dict)  # m -> float

    def apply(self, blocks: dict) -> np.ndarray:
        """blocks: m -> (emb (N, d_m), ok (N,) bool) -> x (N, D) float64."""
        parts = []
        for m in self.modalities:
            emb, ok = blocks[m]
            e = np.asarray(emb, dtype=np.float64).copy()
            e[~ok] = self.fill[m]
            parts.append((e - self.center[m]) * self.scale[m])
        return np.hstack(parts)


def fit_fusion(blocks: dict, modalities: tuple, balance: bool) -> Fusion:
    fusion = Fusion(tuple(modalities))
    for m in modalities:
        emb, ok = blocks[m]
        if not ok.any():
            raise UserError(f"no item has a usable {m} input (every {'cover' if m == 'image' else 'title'} "
                            f"is missing or unusable); check the data folder or leave `{m}` out of `modalities`")
        e = np.asarray(emb, dtype=np.float64)
        mean = e[ok].mean(axis=0)
        fusion.fill[m] = mean / max(np.linalg.norm(mean), 1e-12)
        e = e.copy()
        e[~ok] = fusion.fill[m]
        if balance:
            fusion.center[m] = e.mean(axis=0)
            var = float(((e - fusion.center[m]) ** 2).sum(axis=1).mean())
            fusion.scale[m] = 1.0 / math.sqrt(max(var, 1e-12))
        else:
            fusion.center[m] = np.zeros(e.shape[1])
            fusion.scale[m] = 1.0
    return fusion


def l2_normalise(z: np.ndarray) -> np.ndarray:
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------
# PCA


@dataclass
class PCA:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (D, k)
    eigenvalues: np.ndarray  # (k,)
    total_variance: float

    @property
    def explained_variance_ratio(self) -> float:
        return float(self.eigenvalues.sum() / self.total_variance)

    def top(self, k: int) -> "PCA":
        return PCA(self.mean, self.components[:, :k], self.eigenvalues[:k], self.total_variance)

    def transform(self, x: np.ndarray) -> np.ndarray:  # (N, D) -> (N, k), unit rows
        return l2_normalise((x - self.mean) @ self.components)


def fit_pca(x: np.ndarray, k: int) -> PCA:
    """Eigendecomposition of the covariance (float64, deterministic signs); the top k components."""
    n, d = x.shape
    if d < k:
        raise UserError(f"the fused embedding has {d} dimensions, fewer than {k}; use larger encoders or "
                        f"both modalities")
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / max(1, n - 1)
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = vals[::-1][:k].copy(), vecs[:, ::-1][:, :k].copy()
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    return PCA(mean=mean, components=vecs * signs, eigenvalues=np.maximum(vals, 0.0),
               total_variance=float(np.trace(cov)))


# ---------------------------------------------------------------------------------------------
# Contrastive projection on co-occurring items


class ContrastiveProjector(nn.Module):
    """z = normalise(u P + W2 gelu(W1 u + b1) + b2), u = (x - mu) V.

    Args:
        pca: the top-r PCA of the fused embeddings; mu and V are fixed buffers from it.
        hidden: width of the residual MLP (0: linear projection only).
        dim: output dimension (128); P starts as the first `dim` coordinates, the MLP output as 0,
            so the untrained projector gives the PCA-`dim` embedding.

    Call: x (B, D) float32 -> (B, dim) unit rows.

    Example:
        >>> proj = ContrastiveProjector(fit_pca(np.random.randn(300, 140), 136), hidden=32)
        >>> proj(torch.zeros(4, 140)).shape
        torch.Size([4, 128])
    """

    def __init__(self, pca: PCA, hidden: int, dim: int = 128):
        super().__init__()
        d, r = pca.components.shape
        self.register_buffer("mu", torch.tensor(pca.mean, dtype=torch.float32))  # (D,)
        self.register_buffer("basis", torch.tensor(pca.components, dtype=torch.float32))  # (D, r)
        self.proj = nn.Parameter(torch.eye(r, dim, dtype=torch.float32))  # (r, dim)
        self.hidden = hidden
        if hidden:
            self.fc1 = nn.Linear(r, hidden)
            self.fc2 = nn.Linear(hidden, dim)
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, dim)
        u = (x - self.mu) @ self.basis  # (B, r)
        z = u @ self.proj  # (B, dim)
        if self.hidden:
            z = z + self.fc2(F.gelu(self.fc1(u)))  # (B, dim)
        return F.normalize(z, dim=-1)


def _pair_batches(hist: Histories, batch: int, steps: int, gen: torch.Generator):
    """`steps` batches of (a, b): two different positions of one user's sequence, users drawn uniformly."""
    lengths = np.diff(hist.seq_offsets)
    users = torch.from_numpy(np.nonzero(lengths >= 2)[0])
    if len(users) == 0:
        raise UserError("no train history has two items; the contrastive reducer needs co-occurring items "
                        "(use --reducer pca)")
    offsets = torch.from_numpy(hist.seq_offsets)
    items = torch.from_numpy(hist.seq_items)
    lens = torch.from_numpy(lengths)
    for _ in range(steps):
        u = users[torch.randint(len(users), (batch,), generator=gen)]
        n = lens[u]
        i = (torch.rand(batch, generator=gen, dtype=torch.float64) * n).long()
        j = (i + 1 + (torch.rand(batch, generator=gen, dtype=torch.float64) * (n - 1)).long()) % n
        yield items[offsets[u] + i], items[offsets[u] + j]


class _Stage2(nn.Module):
    """The trainable part of a ContrastiveProjector, on rows already projected to the PCA basis."""

    def __init__(self, model: ContrastiveProjector):
        super().__init__()
        self.model = model

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, r) -> (B, dim)
        m = self.model
        z = u @ m.proj
        if m.hidden:
            z = z + m.fc2(F.gelu(m.fc1(u)))
        return F.normalize(z, dim=-1)


def fit_contrastive(x: np.ndarray, hist: Histories, pca: PCA, cfg: ContrastiveConfig, seed: int,
                    device: torch.device, log=None) -> tuple[ContrastiveProjector, dict]:
    """Train the projector on pairs from train histories; returns it (eval mode, on the CPU) and a summary.

    x holds items 1..N in rows 0..N-1; `pca` is its top-r PCA (r >= 128). Held-out evaluation
    targets are not in `hist.seq_items`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ContrastiveProjector(pca, cfg.hidden)
    model = model.to(device).train()
    table = torch.zeros((x.shape[0] + 1, x.shape[1]), dtype=torch.float32)
    table[1:] = torch.from_numpy(x.astype(np.float32))
    # the fixed first stage once for all items: training then runs on r-dimensional rows
    with torch.no_grad():
        basis, mu = model.basis.cpu(), model.mu.cpu()
        table = ((table - mu) @ basis).to(device)  # (N + 1, r); row 0 is never drawn
    stage2 = _Stage2(model)
    gen = torch.Generator().manual_seed(seed)
    n_seq_users = int((np.diff(hist.seq_offsets) >= 2).sum())
    steps_per_epoch = max(1, math.ceil(n_seq_users / cfg.batch_size))
    steps = min(steps_per_epoch * cfg.epochs, cfg.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    losses = []
    with _one_cpu_thread(device):
        for a, b in _pair_batches(hist, cfg.batch_size, steps, gen):
            losses.append(_step(stage2, opt, sched, table, a.to(device), b.to(device), cfg.temperature))
            if log and len(losses) % steps_per_epoch == 0:
                log(f"contrastive epoch {len(losses) // steps_per_epoch}/{cfg.epochs}: "
                    f"loss {np.mean(losses[-steps_per_epoch:]):.4f}")
    model = model.cpu().eval()
    first, last = losses[:steps_per_epoch], losses[-steps_per_epoch:]
    summary = {"steps": steps, "pairs_seen": steps * cfg.batch_size, "users_with_pairs": n_seq_users,
               "epochs_done": round(steps / steps_per_epoch, 3),
               "loss_first_epoch": round(float(np.mean(first)), 6), "loss_last_epoch": round(float(np.mean(last)), 6)}
    return model, summary


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Train on one CPU thread: the matrices are small, and more threads were 4x slower on 2 shared cores."""
    n = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _step(stage2, opt, sched, table, a, b, temperature: float) -> float:
    """One InfoNCE step on the pairs (a[i], b[i]); the other rows of the batch are the negatives."""
    za, zb = stage2(table[a]), stage2(table[b])  # (B, 128) each
    logits = za @ zb.T / temperature  # (B, B)
    collide = (a[:, None] == b[None, :]) & ~torch.eye(len(a), dtype=torch.bool, device=a.device)
    logits = logits.masked_fill(collide, -1e4)  # the same item on both sides is not a negative
    target = torch.arange(len(a), device=a.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())


@torch.inference_mode()
def project(model: ContrastiveProjector, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    out = [model(torch.from_numpy(x[lo:lo + batch].astype(np.float32))).numpy() for lo in range(0, len(x), batch)]
    return l2_normalise(np.concatenate(out).astype(np.float64))


# ---------------------------------------------------------------------------------------------
# Saving and loading: safetensors, self-describing


def save_reducer(fusion: Fusion, kind: str, pca: PCA, model: ContrastiveProjector | None,
                 config: dict) -> bytes:
    """The bytes of reducer.safetensors (the caller writes them atomically)."""
    from safetensors.numpy import save

    tensors = {}
    for m in fusion.modalities:
        tensors[f"fusion.{m}.fill"] = fusion.fill[m]
        tensors[f"fusion.{m}.center"] = fusion.center[m]
        tensors[f"fusion.{m}.scale"] = np.array([fusion.scale[m]], dtype=np.float64)
    tensors["pca.mean"] = pca.mean
    tensors["pca.components"] = pca.components
    tensors["pca.eigenvalues"] = pca.eigenvalues
    tensors["pca.total_variance"] = np.array([pca.total_variance])
    if model is not None:
        for name, t in model.state_dict().items():
            tensors[f"contrastive.{name}"] = t.detach().cpu().numpy()
    meta = {"kind": kind, "modalities": list(fusion.modalities),
            "dims": {m: int(fusion.fill[m].shape[0]) for m in fusion.modalities},
            "hidden": model.hidden if model is not None else 0, "config": config,
            "format": "task1 reducer v1: see task1/reducers.py"}
    # one metadata entry: safetensors writes several in no fixed order, which would break equal bytes
    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                metadata={META_KEY: json.dumps(meta, sort_keys=True)})


@dataclass
class Reducer:
    """A saved reducer, loaded: `transform(blocks)` gives the 128-d unit embeddings."""

    kind: str
    fusion: Fusion
    pca: PCA
    model: ContrastiveProjector | None

    def transform(self, blocks: dict) -> np.ndarray:
        x = self.fusion.apply(blocks)
        return self.pca.transform(x) if self.kind == "pca" else project(self.model, x)


def load_reducer(path) -> Reducer:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()[META_KEY])
        t = {k: f.get_tensor(k) for k in f.keys()}
    mods = tuple(meta["modalities"])
    fusion = Fusion(mods, {m: t[f"fusion.{m}.fill"] for m in mods}, {m: t[f"fusion.{m}.center"] for m in mods},
                    {m: float(t[f"fusion.{m}.scale"][0]) for m in mods})
    pca = PCA(t["pca.mean"], t["pca.components"], t["pca.eigenvalues"], float(t["pca.total_variance"][0]))
    model = None
    if meta["kind"] == "contrastive":
        basis = t["contrastive.basis"]
        model = ContrastiveProjector(PCA(t["contrastive.mu"], basis, np.zeros(basis.shape[1]), 1.0),
                                     int(meta["hidden"]))
        model.load_state_dict({k[len("contrastive."):]: torch.from_numpy(v) for k, v in t.items()
                               if k.startswith("contrastive.")})
        model.eval()
    return Reducer(meta["kind"], fusion, pca, model)
