"""How much GPU memory each stage of a run needs, by formula, and how much a card has free, by probe.

The preflight compares the largest stage's need with the memory free *after* a CUDA context exists,
measured in a subprocess (`probe`), so the pipeline itself never holds a context. The formulas are
upper-bound estimates from the models' configs, the batch sizes and the dtype; they are not measured on
a GPU (none was lent to this work), so each adds a margin:

- a Task 1 encoder (inference, no gradients): weights (parameters x bytes per value) plus, for one batch,
  the largest layer's activations: tokens x (8 x hidden + 2 x intermediate) values per sample, and the
  attention scores and their softmax, 2 x heads x tokens^2 values per sample; covers also hold the batch
  of pixels in float32. CLIP ViT-L/14 at 224 px has 257 tokens (16 x 16 patches and a class token).
- Task 2 training: 16 bytes per trainable parameter (fp32 weight, gradient and AdamW's two moments), 4 per
  frozen item-table value, and activations kept for the backward pass: per sample, the history
  (max_len positions x seq_dim x n_layers x 24 values, the attention scores max_len^2 x heads x n_layers
  x 3) and the target, at 2 bytes under fp16/bf16 autocast and 4 without.
- then x 1.2 for the allocator's fragmentation and cuDNN/cuBLAS workspaces, + 0.5 GiB of kernels' scratch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

GIB = 1024 ** 3
MARGIN, SCRATCH_GIB = 1.2, 0.5

# the reference encoders' shapes, for when their configs are not on this machine yet (first download)
CLIP_L14 = {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096, "num_attention_heads": 16,
            "image_size": 224, "patch_size": 14}
E5_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072, "num_attention_heads": 12,
           "vocab_size": 250_002, "max_position_embeddings": 514}


@dataclass
class Need:
    stage: str
    gib: float
    knob: str  # what to lower when it does not fit
    basis: str


def _bytes(fp16: bool) -> int:
    return 2 if fp16 else 4


def encoder_need(role: str, config: dict | None, batch: int, fp16: bool, text_tokens: int = 128) -> Need:
    """Peak memory of encoding one batch with a Task 1 encoder (`config`: its config.json, or None for the
    reference model's shape)."""
    b = _bytes(fp16)
    if role == "image":
        c = dict(CLIP_L14)
        c.update((config or {}).get("vision_config") or {})
        h, layers, inter, heads = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["num_attention_heads"]
        tokens = (c["image_size"] // c["patch_size"]) ** 2 + 1
        params = layers * (4 * h * h + 2 * h * inter) + 3 * c["patch_size"] ** 2 * h + tokens * h
        extra = 3 * c["image_size"] ** 2 * 4  # the float32 pixels of one cover
        knob = "image_batch_size"
    else:
        c = dict(E5_BASE)
        c.update({k: v for k, v in (config or {}).items() if k in E5_BASE})
        h, layers, inter, heads = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["num_attention_heads"]
        tokens = min(text_tokens, c["max_position_embeddings"])
        params = layers * (4 * h * h + 2 * h * inter) + c["vocab_size"] * h
        extra = 0
        knob = "text_batch_size"
    per_sample = (tokens * (8 * h + 2 * inter) + 2 * heads * tokens * tokens) * b + extra
    raw = params * b + batch * per_sample
    return Need(f"embed ({role}s)", raw * MARGIN / GIB + SCRATCH_GIB, knob,
                f"{params / 1e6:.0f} M parameters x {b} B + {batch} x {per_sample / 1e6:.1f} MB per sample")


def train_need(model: dict, n_items: int, batch: int, amp: bool) -> Need:
    """Peak memory of one Task 2 training step of SASRecDCN (`model`: its config as a dict of overrides)."""
    from task2.model import SASRecDCNConfig

    cfg = SASRecDCNConfig(**{k: v for k, v in model.items() if k in SASRecDCNConfig.__dataclass_fields__})
    d = cfg.seq_dim or (cfg.id_emb_dim + cfg.item_emb_dim)
    dense = (cfg.item_emb_dim + cfg.id_emb_dim) * d + cfg.n_layers * (4 * d * d + 2 * d * cfg.ffn_dim) + 2_000_000
    k = cfg.taste_components
    trainable = n_items * (cfg.id_emb_dim + 1 + k) + dense  # id vectors, item biases, taste logits, dense layers
    frozen = n_items * cfg.item_emb_dim
    b = 2 if amp else 4
    per_sample = (cfg.max_len * d * cfg.n_layers * 24 + cfg.max_len ** 2 * cfg.n_heads * cfg.n_layers * 3
                  + 4 * (cfg.item_emb_dim + d) * 8) * b + cfg.max_len * k * 4 * 4  # the mixture runs in float32
    # the mixture's normaliser reads every item's content row and taste logits each step, in float32
    raw = 16 * trainable + 4 * frozen + batch * per_sample + 3 * n_items * (cfg.item_emb_dim + 2 * k) * 4
    return Need("train", raw * MARGIN / GIB + SCRATCH_GIB, "batch_size",
                f"{trainable / 1e6:.1f} M trainable x 16 B + {frozen / 1e6:.1f} M frozen x 4 B + {batch} x "
                f"{per_sample / 1e6:.2f} MB per sample")


PROBE = ("import json, torch; d = torch.device('cuda', 0); torch.zeros(1, device=d); f, t = torch.cuda.mem_get_info(d);"
         " p = torch.cuda.get_device_properties(d); print(json.dumps({'free': f, 'total': t, 'name': p.name, "
         "'capability': f'{p.major}.{p.minor}'}))")


def probe(timeout: float = 120.0) -> dict:
    """{free, total, name, capability} of GPU 0, measured in a subprocess after it made a CUDA context (so the
    free figure is what a stage will find); raises RuntimeError with the reason when the probe fails."""
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(" ".join((proc.stderr or "no output").split())[-300:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def din_need(model: dict, n_items: int, batch: int, amp: bool) -> Need:
    """Peak memory of one training step of Track 1's DIN: its attention MLP runs at every history position."""
    from task2.din import DINConfig

    cfg = DINConfig(**{k: v for k, v in model.items() if k in DINConfig.__dataclass_fields__})
    dim = cfg.item_dim
    trainable = n_items * cfg.embedding_dim + cfg.n_tags * cfg.embedding_dim + 4 * dim * sum(cfg.dnn_units) + 1_000_000
    frozen = n_items * cfg.item_emb_dim
    attention = 4 * dim + 2 * sum(cfg.attention_units) + 2  # the unit's input, its layers and their activations
    b = 2 if amp else 4
    per_sample = (cfg.max_len * (attention + 2 * dim) + 2 * (3 * dim + 2 * sum(cfg.dnn_units))) * b
    raw = 16 * trainable + 4 * frozen + batch * per_sample
    return Need("train", raw * MARGIN / GIB + SCRATCH_GIB, "batch_size",
                f"{trainable / 1e6:.1f} M trainable x 16 B + {frozen / 1e6:.1f} M frozen x 4 B + {batch} x "
                f"{per_sample / 1e6:.2f} MB per sample")
