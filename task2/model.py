"""SASRecDCN, the default Task 2 model, in one file read top to bottom: its config, its blocks, the model.

An item is its trainable id embedding (32) beside its frozen 128-d `item_emb_d128` row from item_info,
projected to the sequence width (64). The frozen rows are read through `item_emb_norm` ("global":
centred on the mean item and scaled to rows of RMS norm 1, statistics fitted once on item_info and kept in
the checkpoint; `task2.layers.ItemEncoder`), so the model's outputs do not depend on the table's scale or
offset: the official table's unit is not documented, and every Track 1 team submits its own. Read raw,
a table of mean row norm 27 (an independently made dataset) put the content match's products 700 times
above what the model was tuned for, and it lost 0.04 test AUC to the plain baseline. The output bias
starts at the training split's click rate (`init_output_bias`). The history (left-padded, most recent last) goes through learned
positions and a 2-layer causal transformer encoder (2 heads, FFN 256); the user is read out twice: the
most recent slot's state, and the mean of the history's item vectors (order-free). Each readout also
enters multiplied by the projected target. A content match <u, t> compares a learned age-weighted mean of
the history's frozen rows with the target's (ids left out, so it cannot memorise pairs), and a learned
per-item bias is added to the logit. likes_level and views_level get 16-d embeddings each. A DCN-v2 (1
cross layer) runs beside an MLP of 64 over all of it; one linear layer gives the logit. In training,
SASRec's next-item loss on the history (`aux_weight`) is added to the CTR loss.

A taste mixture (`TasteMixture`, `taste_components` 32) models the histories as draws from one of 32
hidden item distributions, fitted by their likelihood (`taste_weight`); its posterior predictive
log P(target | history) enters the logit through a learned weight that starts at 0. It multiplies the
evidence of every history item, which an attention average cannot, and learns from every history item
rather than the CTR rows alone: where clicks follow one of many hidden tastes for the items themselves
and users have few rows, it took the valid AUC of the tuning worlds from 0.7984 to 0.8236 (tuning-corner-01,
where a correctly specified mixture fitted by EM reaches 0.8253). The defaults were chosen on valid AUC
over the named worlds and then over sampled tuning worlds (docs/results.md).

Cold start (`cold_start`): an item that never occurs in the training split (as a target or in a history)
would keep an id embedding that training never shaped, except to push it down whenever the next-item
loss drew it as a negative. Instead, such items share one learned "unknown item" id vector, keep their
own frozen content row, and are never drawn as negatives. `id_dropout` gives a share of the training
targets the unknown vector too; that is how the vector learns to stand for "judge this item by its
content and its levels".

The frozen item table is a persistent *buffer*: it is in `state_dict()` and so in model.safetensors,
which makes a checkpoint self-contained, and no optimizer ever sees it. A model rebuilt with
`build_model(model_args)` (at the end of this file) holds a zero table of the right shape until
`load_state_dict(strict=True)` fills it.

Masks: `item_seq` is left-padded with 0, most recent item last. Everywhere here a boolean mask means
True = a real item. Positions count back from the most recent item (0 = most recent), so trimming
left padding (length-aware batching) leaves every item's position unchanged.

The other models: `task2.din.DIN` (Track 1's fixed baseline) and `task2.plain.MeanPoolMLP` (the plain
baseline); `task2.registry` names all three and rebuilds any of them from model_args.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from task2.layers import ITEM_EMB_NORMS, MLP, CrossNetV2, ItemEncoder

# ---------------------------------------------------------------------------------------------
# Configs


@dataclass
class SASRecDCNConfig:
    """Arguments of `SASRecDCN`. `n_items` counts item_info rows, padding row 0 included."""

    n_items: int = 91_718
    item_emb_dim: int = 128  # width of the frozen item_emb_d128
    id_emb_dim: int = 32
    max_len: int = 50  # history positions read: the last max_len of item_seq
    n_layers: int = 2
    n_heads: int = 2
    ffn_dim: int = 256
    dropout: float = 0.1  # attention, residual and embedding dropout in the encoder
    pooling: str = "last"  # user vector: "last" (most recent position) or "mean" (over real items)
    causal: bool = True  # SASRec: slot t attends to real items up to t (the last slot sees them all)
    aux_weight: float = 3.0  # weight of SASRec's next-item loss on the history (needs causal); 0 = off
    aux_negatives: int = 256  # uniform negative items per batch for that loss
    cold_start: bool = True  # items absent from the training split share one learned "unknown" id vector
    id_dropout: float = 0.3  # training: a target's id vector is the unknown one with this probability
    history_id_dropout: float = 0.0  # training: the same for each history item (1: history items are content only)
    level_vocab: int = 11  # likes_level / views_level: 1..10, 0 = padding
    level_dim: int = 16
    cross_layers: int = 1
    mlp_dims: tuple[int, ...] = (64,)
    net_dropout: float = 0.0  # dropout in the parallel MLP
    seq_dim: int = 64  # width of the sequence encoder: item vectors are projected to it; 0 = no projection
    mean_readout: bool = True  # the user also as the mean of the history's item vectors (order-free)
    target_attention: bool = False  # the user also as the states weighted by their match with the target
    product: bool = True  # each user readout * the projected target as head inputs
    item_bias: bool = True  # a learned scalar per item added to the logit (unknown items share one)
    bilinear_dim: int = 64  # > 0: add <u, t> to the logit, u a position-weighted mean of the history's content
    #                        rows and t the target's, each projected to this width (ids left out unless
    #                        bilinear_ids); 0 = off
    bilinear_ids: bool = False  # the match <u, t> also reads the id vectors (history and target); off: the same
    #                        valid AUC as content only in the history worlds it was meant for (round 15)
    item_emb_norm: str = "global"  # how item_emb_d128 is read (layers.ItemEncoder): "global" centres it and
    #                        scales it to rows of RMS norm 1, so its units do not matter; "per_dim"; "none"
    taste_components: int = 32  # K > 0: a mixture of K item distributions (`TasteMixture`) fitted to the
    #                        histories by likelihood; its log P(target | history), weighed by a learned scalar
    #                        that starts at 0, is added to the logit; 0 = off
    taste_weight: float = 3.0  # weight of the mixture's likelihood of the histories in the training loss (its
    #                        parameters get no other gradient, so under Adam it matters only through grad_clip)
    taste_prior_std: float = 0.0  # > 0: a Gaussian prior of this std on each item's own logits in the mixture
    #                        (maximum a posteriori instead of likelihood): 32 tastes over 11,000 items hold
    #                        351,000 free logits, beside 472,000 items in the users' histories (tuning-large-01);
    #                        off: std 0.3 gained 0.0022 valid AUC there and cost tuning-corner-01 0.0067
    #                        (docs/results.md, "Round 12")
    taste_pmi: bool = True  # the score is log P(target | history) - log P(target): what the history adds to
    #                        the target's own frequency in the histories (the per-item bias has that already);
    #                        False: log P(target | history) itself, round 2's default, which lost heldout3-08
    #                        to the plain baseline (docs/results.md, "Round 12")
    taste_clicks: bool = False  # the mixture's likelihood also counts each training row's click as one more
    #                        draw of its user's taste (log P(history, click) rather than log P(history)); off:
    #                        with weight decay 1 it won the sampled tuning worlds and lost the named worlds
    #                        `recent` and `mean` (docs/results.md, "Round 3")

    @property
    def item_dim(self) -> int:
        """Width of an item vector: [id embedding, frozen item_emb_d128]."""
        return self.id_emb_dim + self.item_emb_dim

    @property
    def d_model(self) -> int:
        """Width of the sequence encoder."""
        return self.seq_dim or self.item_dim

    @property
    def head_dim(self) -> int:
        """Width of the head's input: user, target, levels, and the optional readouts."""
        readouts = 1 + self.mean_readout + self.target_attention
        return (readouts * (1 + self.product) * self.d_model + self.item_dim + 2 * self.level_dim
                + self.bilinear_dim)

    def check(self) -> None:
        """Raise ValueError on values the model cannot be built with."""
        if self.seq_dim < 0:
            raise ValueError("seq_dim must be >= 0")
        if self.d_model % self.n_heads:
            raise ValueError(f"the sequence width {self.d_model} must be divisible by n_heads = {self.n_heads}")
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {self.pooling!r}")
        if self.max_len < 1 or self.n_items < 2 or not self.mlp_dims:
            raise ValueError("max_len >= 1, n_items >= 2 and a non-empty mlp_dims are required")
        if not all(0.0 <= p < 1.0 for p in (self.dropout, self.net_dropout, self.id_dropout)):
            raise ValueError("dropout, net_dropout and id_dropout must be in [0, 1)")
        if not 0.0 <= self.history_id_dropout <= 1.0:
            raise ValueError("history_id_dropout must be in [0, 1]")
        if self.aux_weight < 0 or self.aux_negatives < 1 or (self.aux_weight > 0 and not self.causal):
            raise ValueError("aux_weight >= 0 (and > 0 only with causal = true), aux_negatives >= 1")
        if self.taste_prior_std < 0:
            raise ValueError("taste_prior_std must be >= 0")
        if self.taste_components < 0 or self.taste_weight < 0:
            raise ValueError("taste_components and taste_weight must be >= 0")
        if self.item_emb_norm not in ITEM_EMB_NORMS:
            raise ValueError(f"item_emb_norm must be one of {', '.join(ITEM_EMB_NORMS)}, got {self.item_emb_norm!r}")


# ---------------------------------------------------------------------------------------------
# Building blocks


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder layer: x + MHA(LN(x)), then x + FFN(LN(x)); GELU FFN.

    Args:
        d_model: width D; n_heads: heads (D divisible by it); ffn_dim: hidden width of the FFN;
        dropout: on attention weights and on both residual branches.

    Call: x (B, L, D), mask bool broadcastable to (B, H, L, L), True = query may attend to key
    -> (B, L, D). Keys a query may not attend to get zero weight: changing them changes none of its
    outputs. Every query needs at least one allowed key.
    """

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(d_model)
        # no bias: a key bias adds the same q.b to every score of a query, so its true gradient is 0
        # and Adam would turn rounding noise into updates of size lr
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)  # 3 x (B, L, D)
        q = q.view(b, l, h, d // h).transpose(1, 2)  # (B, H, L, D/H)
        k = k.view(b, l, h, d // h).transpose(1, 2)  # (B, H, L, D/H)
        v = v.view(b, l, h, d // h).transpose(1, 2)  # (B, H, L, D/H)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, L, D/H)
        a = a.transpose(1, 2).reshape(b, l, d)  # (B, L, D)
        x = x + self.drop(self.proj(a))  # (B, L, D)
        return x + self.drop(self.ffn(self.ln2(x)))  # (B, L, D)


class SequenceEncoder(nn.Module):
    """History -> user vector: learned positions, `n_layers` EncoderBlocks, final LayerNorm, pooling.

    Args:
        cfg: a SASRecDCNConfig (d_model, max_len, n_layers, n_heads, ffn_dim, dropout, pooling, causal).

    Call: seq (B, L, D) item vectors, real (B, L) bool (True = real item; left-padded, most recent last,
    L <= max_len) -> (B, D). A row without any real item gives the zero vector. `encode` gives the
    per-slot states (B, L, D), `pool` turns them into the user vector.

    Masks: a query attends only to real keys (and, when causal, only to keys at or before its slot).
    Position p of slot j is L - 1 - j (0 = most recent), so dropping leading padding columns changes
    nothing. Queries with no real key allowed (padding slots, rows with no history) attend to their
    own slot only, which avoids an all-masked softmax; their outputs are never pooled.
    """

    def __init__(self, cfg: SASRecDCNConfig):
        super().__init__()
        d = cfg.d_model
        self.pooling = cfg.pooling
        self.causal = cfg.causal
        self.pos = nn.Embedding(cfg.max_len, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(d, cfg.n_heads, cfg.ffn_dim, cfg.dropout)
                                    for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(d)

    def attention_mask(self, real: torch.Tensor) -> torch.Tensor:
        """real (B, L) -> (B, 1, L, L) bool: query i may attend to key j."""
        l = real.shape[1]
        eye = torch.eye(l, dtype=torch.bool, device=real.device)  # (L, L)
        allowed = real[:, None, None, :]  # (B, 1, 1, L) real keys only
        if self.causal:
            allowed = allowed & torch.ones(l, l, dtype=torch.bool, device=real.device).tril()  # key j <= query i
        has_key = allowed.any(dim=-1, keepdim=True)  # (B, 1, L or 1, 1)
        return allowed | (eye & ~has_key)  # (B, 1, L, L)

    def encode(self, seq: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        l = seq.shape[1]
        positions = torch.arange(l - 1, -1, -1, device=seq.device)  # (L,) most recent = 0
        x = self.drop(seq + self.pos(positions)[None])  # (B, L, D)
        mask = self.attention_mask(real)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask)  # (B, L, D)
        return self.ln(x)  # (B, L, D)

    def pool(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        has_any = real.any(dim=1)  # (B,)
        if self.pooling == "last":
            user = x[:, -1]  # (B, D) the most recent item's slot (real whenever the row has one)
        else:
            w = real.to(x.dtype)  # (B, L)
            user = (x * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)  # (B, D)
        return user * has_any[:, None].to(x.dtype)  # (B, D)

    def forward(self, seq: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.pool(self.encode(seq, real), real)  # (B, D)


class TasteMixture(nn.Module):
    """A latent-taste model of the histories: each user has one of K hidden tastes, each taste k an item
    distribution P(j | k) = softmax_j(a_jk) with a_jk = its id's logit (learned per item) + a linear read of
    its content row, and a history is i.i.d. draws from one taste, the taste drawn from pi. The user's taste
    posterior multiplies the evidence of every history item (a sum of log-likelihoods, which sharpens with the history's length,
    where an attention average cannot), and the target is scored by the posterior predictive:

        log P(j | h) = log sum_k P(k | h) P(j | k),   P(k | h) proportional to pi_k prod_t P(h_t | k).

    It is fitted by maximum likelihood on the histories (minus the log-likelihood of each row's history per
    item, `SASRecDCN.taste_score`'s loss), so every history item trains it, not only the CTR rows' clicks. The
    distributions run over the items seen in training (`known`); an item never seen there reads by its
    content alone.

    Args: n_items; k: tastes; content_dim: width of the (normalised) content rows.
    Call: `logits` and `log_norm` give log P(j | k) up to and with its normaliser, `posterior` a history's
    taste posterior and likelihood; `SASRecDCN.taste_score` puts them together. Everything runs in float32.
    """

    STEP = 10.0  # its parameters are stored divided by this and used multiplied by it: Adam moves each
    #              parameter by about the learning rate per step, so the mixture learns STEP times faster than
    #              the network around it (at the network's 0.001 it barely moved in a run's epochs: tuning
    #              rounds 6 and 7 in docs/results.md)

    def __init__(self, n_items: int, k: int, content_dim: int):
        super().__init__()
        self.id_logit = nn.Embedding(n_items, k)
        # no bias: a constant per taste cancels in the softmax over items, so its true gradient is 0 and
        # Adam would turn rounding noise into steps of the learning rate's size
        self.content = nn.Linear(content_dim, k, bias=False)
        self.log_prior = nn.Parameter(torch.zeros(k))

    def reset_parameters(self) -> None:
        # a random start breaks the tastes' symmetry (from a common start every taste would get the same
        # gradient and stay equal), as EM starts from a random assignment
        nn.init.normal_(self.id_logit.weight, std=0.5 / self.STEP)
        nn.init.normal_(self.content.weight, std=0.01 / self.STEP)
        nn.init.zeros_(self.log_prior)

    def logits(self, ids: torch.Tensor, content: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """ids (...,), content (..., E), known (...,) -> (..., K) unnormalised log P(j | k)."""
        a = self.id_logit(ids.long()).float() * known[..., None].float()
        return self.STEP * (a + self.content(content.float()))

    def log_norm(self, all_content: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """(K,) log sum_j exp(a_jk) over the known real items (rows 1.. of the table)."""
        ids = torch.arange(1, len(known), device=known.device)
        a = self.logits(ids, all_content, known[1:])  # (N - 1, K)
        return torch.logsumexp(a.masked_fill(~known[1:, None], float("-inf")), dim=0)

    def posterior(self, hist_logp: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hist_logp (B, L, K) log P(h_t | k), real (B, L) -> log P(k | h) (B, K), log P(h) (B,)."""
        ll = (hist_logp * real[..., None].float()).sum(1) + torch.log_softmax(self.STEP * self.log_prior, 0)  # (B, K)
        log_h = torch.logsumexp(ll, dim=-1)  # (B,)
        return ll - log_h[:, None], log_h


# ---------------------------------------------------------------------------------------------
# Models. Both take the same batch: item_seq (B, L) int, item_id (B,), likes_level (B,), views_level
# (B,) and return logits (B,), or (logits, auxiliary loss) with with_aux=True (training). L may be
# shorter than max_len (trimmed padding); longer is cut to the most recent max_len.


KNOWN_CHUNK = 1 << 20  # ids per indexing call in set_known_items (an int64 copy of 8 MB at most)


class SASRecDCN(nn.Module):
    """SASRec-style sequence encoder + DCN-v2 head (the default Task 2 model).

    Args:
        cfg: SASRecDCNConfig.
        item_emb: (n_items, item_emb_dim) frozen table from item_info (None: zeros until loaded).

    Call: item_seq (B, L), item_id (B,), likes_level (B,), views_level (B,) -> logits (B,);
    with_aux=True -> (logits, next-item loss), see `next_item_loss`.
    """

    def __init__(self, cfg: SASRecDCNConfig, item_emb: torch.Tensor | None = None):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.items = ItemEncoder(cfg.n_items, cfg.id_emb_dim, item_emb, cfg.item_emb_dim, cfg.item_emb_norm)
        self.sequence = SequenceEncoder(cfg)
        # items seen in training (set_known_items); the others take `unknown_id` as their id vector
        self.register_buffer("id_known", torch.ones(cfg.n_items, dtype=torch.bool), persistent=True)
        self.taste_tokens = 1.0  # history items in the training split (set_known_items), for taste_prior_std
        self.unknown_id = nn.Parameter(torch.zeros(cfg.id_emb_dim))
        self.project = nn.Linear(cfg.item_dim, cfg.d_model) if cfg.seq_dim else nn.Identity()
        self.likes = nn.Embedding(cfg.level_vocab, cfg.level_dim)
        self.views = nn.Embedding(cfg.level_vocab, cfg.level_dim)
        if cfg.item_bias:
            self.bias = nn.Embedding(cfg.n_items, 1)
            self.unknown_bias = nn.Parameter(torch.zeros(1))
        if cfg.bilinear_dim:
            # not "user": T2-FEATURES refuses tensors named like a user embedding (the rules ban user ids)
            bil_in = cfg.item_dim if cfg.bilinear_ids else cfg.item_emb_dim
            self.bil_history = nn.Linear(bil_in, cfg.bilinear_dim)
            self.bil_item = nn.Linear(bil_in, cfg.bilinear_dim)
            self.bil_age = nn.Parameter(torch.zeros(cfg.max_len))  # weight logit of the item `age` steps back
        if cfg.taste_components:
            self.taste = TasteMixture(cfg.n_items, cfg.taste_components, cfg.item_emb_dim)
            self.taste_scale = nn.Parameter(torch.zeros(()))
        in_dim = cfg.head_dim
        self.cross = CrossNetV2(in_dim, cfg.cross_layers)
        self.mlp = MLP(in_dim, cfg.mlp_dims, cfg.net_dropout)
        self.head = nn.Linear(in_dim + cfg.mlp_dims[-1], 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("id_emb.weight"):
                nn.init.normal_(p, std=0.02)
                with torch.no_grad():
                    p[0].zero_()
            elif p.dim() == 2 and "emb" not in name and "pos" not in name:
                nn.init.xavier_uniform_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
        for emb in (self.likes, self.views, self.sequence.pos):
            nn.init.normal_(emb.weight, std=0.02)
        for layer in self.cross.layers:  # start each cross layer near the identity map
            nn.init.normal_(layer.weight, std=0.01)
        if self.cfg.item_bias:
            nn.init.zeros_(self.bias.weight)
        if self.cfg.taste_components:
            self.taste.reset_parameters()
            nn.init.zeros_(self.taste_scale)  # the CTR loss decides how much the mixture's evidence counts

    @torch.no_grad()
    def init_output_bias(self, rate: float) -> None:
        """Start the logit at the training split's click rate (its log-odds in the output bias): the first
        epoch's valid BCE starts at the base rate's instead of at log 2, however few steps the epoch has."""
        self.head.bias.fill_(math.log(rate / (1 - rate)) if 0 < rate < 1 else 0.0)

    def set_known_items(self, *ids: torch.Tensor) -> None:
        """Mark the item ids in `ids` (tensors of any shape, int32 or int64) as seen in training; padding 0
        counts as known. Indexing widens int32 indices to an int64 copy, so each tensor goes in slices of
        KNOWN_CHUNK ids: at full size (3.6 M x 64 histories) the peak grows by 58 MiB instead of 1.76 GiB
        (measured on the CPU, bench/results/known_items_full_cpu_2026-12-03.json). With `taste_prior_std` it
        also counts the history items (the 2-D tensors' real ids), in the same slices."""
        if self.cfg.taste_prior_std > 0:  # the taste loss is per history item, so its prior is divided by them
            self.taste_tokens = float(sum(int((part > 0).sum()) for t in ids if t.dim() == 2
                                          for part in t.reshape(-1).split(KNOWN_CHUNK))) or 1.0
        if not self.cfg.cold_start:
            return
        known = torch.zeros_like(self.id_known)
        for t in ids:
            for part in t.reshape(-1).split(KNOWN_CHUNK):
                known[part] = True
        known[0] = True
        self.id_known.copy_(known)

    def unknown_mask(self, ids: torch.Tensor, id_dropout: float = 0.0) -> torch.Tensor:
        """ids (...,) -> (...,) bool: items never seen in training and, with id_dropout > 0, a random share
        of the real ones (training only); id_dropout >= 1 makes every real item unknown, with no draw."""
        unknown = ~self.id_known[ids.long()]  # (...,)
        if id_dropout >= 1.0:
            return unknown | (ids > 0)
        if id_dropout > 0:
            unknown = unknown | ((torch.rand(ids.shape, device=ids.device) < id_dropout) & (ids > 0))
        return unknown

    def encode_items(self, ids: torch.Tensor, unknown: torch.Tensor | None = None) -> torch.Tensor:
        """ids (...,) -> (..., item_dim); unknown items (`unknown_mask` by default) take unknown_id."""
        v = self.items(ids)  # (..., item_dim)
        k = self.cfg.id_emb_dim
        if unknown is None:
            unknown = self.unknown_mask(ids)
        id_part = torch.where(unknown[..., None], self.unknown_id.to(v.dtype).expand_as(v[..., :k]), v[..., :k])
        return torch.cat([id_part, v[..., k:]], dim=-1)  # (..., item_dim)

    def forward(self, item_seq, item_id, likes_level, views_level, with_aux: bool = False, clicks=None):
        """clicks (B,): the rows' labels, read only by the auxiliary loss (`taste_clicks`), never by the logits."""
        cfg = self.cfg
        seq = item_seq[:, -cfg.max_len:].long()  # (B, L)
        real = seq > 0  # (B, L) True = real item
        p = cfg.history_id_dropout  # 1: history items are content only, in training and prediction alike
        hist_unknown = self.unknown_mask(seq, p if self.training or p >= 1.0 else 0.0)  # (B, L)
        hist_vec = self.encode_items(seq, hist_unknown)  # (B, L, item_dim)
        items = self.project(hist_vec)  # (B, L, D)
        states = self.sequence.encode(items, real)  # (B, L, D)
        user = self.sequence.pool(states, real)  # (B, D)
        unknown = self.unknown_mask(item_id, cfg.id_dropout if self.training else 0.0)  # (B,)
        target = self.encode_items(item_id, unknown)  # (B, item_dim)
        parts = [user, target, self.likes(likes_level.long()), self.views(views_level.long())]
        t = self.project(target)  # (B, D)
        w = real.to(items.dtype)  # (B, L)
        users = [user]
        if cfg.mean_readout:
            users.append((items * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0))  # (B, D)
        if cfg.target_attention:
            score = (states @ t[:, :, None]).squeeze(-1) / cfg.d_model ** 0.5  # (B, L)
            a = torch.softmax(score.masked_fill(~real, float("-inf")), dim=-1).nan_to_num(0.0)  # (B, L)
            users.append((a[..., None] * states).sum(1))  # (B, D)
        parts += users[1:]
        if cfg.product:  # each user readout times the target, element by element
            parts += [u * t for u in users]  # k x (B, D)
        match = None
        if cfg.bilinear_dim:  # the content match's user side also reaches the head (a per-user term)
            ids = (hist_vec, target) if cfg.bilinear_ids else (None, None)
            u_content, match = self.content_match(seq, real, item_id, *ids)  # (B, k), (B,)
            parts.append(u_content)
        x0 = torch.cat(parts, dim=-1)  # (B, head_dim)
        h = torch.cat([self.cross(x0), self.mlp(x0)], dim=-1)  # (B, head_dim + mlp_dims[-1])
        logits = self.head(h).squeeze(-1)  # (B,)
        if cfg.item_bias:
            bias = self.bias(item_id.long()).squeeze(-1)  # (B,)
            logits = logits + torch.where(unknown, self.unknown_bias.to(bias.dtype), bias)
        if match is not None:
            logits = logits + match
        taste_loss = None
        if cfg.taste_components:
            score, taste_loss = self.taste_score(seq, real, item_id, clicks if with_aux and cfg.taste_clicks else None)
            logits = logits + self.taste_scale * score
        if not with_aux:
            return logits
        aux = self.next_item_loss(states, items, seq)
        return logits, aux if taste_loss is None else aux + cfg.taste_weight * taste_loss

    def taste_score(self, seq: torch.Tensor, real: torch.Tensor, item_id: torch.Tensor,
                    clicks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The TasteMixture's log P(target | history) relative to a uniform pick among the known items (0 for
        a row without history), and its loss on the rows' histories: minus their log-likelihood per history
        item; with `clicks` (B,) 0/1, the clicked rows' targets count as one more draw each (minus
        log P(history, target) per draw). seq (B, L), real (B, L), item_id (B,) -> (B,), scalar."""
        with torch.autocast(device_type=seq.device.type, enabled=False):  # likelihoods need float32's range
            return self._taste_score(seq, real, item_id, clicks)

    def _taste_score(self, seq, real, item_id, clicks=None):
        known = self.id_known
        log_norm = self.taste.log_norm(self.items.content(torch.arange(1, len(known), device=seq.device)), known)
        hist = self.taste.logits(seq, self.items.content(seq), known[seq.long()]) - log_norm  # (B, L, K)
        target = self.taste.logits(item_id, self.items.content(item_id), known[item_id.long()]) - log_norm  # (B, K)
        log_post, log_h = self.taste.posterior(hist, real)  # (B, K), (B,)
        log_pj = torch.logsumexp(log_post + target, dim=-1)  # (B,) log P(target | history)
        if clicks is None:
            loss = -log_h.sum() / real.sum().clamp_min(1)
            if self.cfg.taste_prior_std > 0:  # minus the log prior of the own logits, per training history item
                a = self.taste.STEP * self.taste.id_logit.weight[known]
                loss = loss + (a.float() ** 2).sum() / (2 * self.cfg.taste_prior_std ** 2 * self.taste_tokens)
        else:  # log P(h, j) = log P(h) + log P(j | h) on the clicked rows
            c = clicks.float()
            loss = -(log_h.sum() + (c * log_pj).sum()) / (real.sum() + c.sum()).clamp_min(1)
        # the mixture is fitted by its likelihood alone: the CTR loss reaches taste_scale, not the mixture
        log_pj, target = log_pj.detach(), target.detach()
        if self.cfg.taste_pmi:  # minus log P(target) = log sum_k pi_k P(target | k)
            log_pi = torch.log_softmax(self.taste.STEP * self.taste.log_prior.detach(), 0)
            score = log_pj - torch.logsumexp(log_pi + target, dim=-1)  # (B,)
        else:  # relative to a uniform pick among the known items
            score = log_pj + torch.log((known.sum() - 1).clamp_min(1).float())  # (B,)
        score = score * real.any(dim=1).float()
        return score, loss

    def content_match(self, seq: torch.Tensor, real: torch.Tensor, item_id: torch.Tensor,
                      hist_vec: torch.Tensor | None = None,
                      target_vec: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """<u, t>: u = sum_k a_k W_u c_k over the history's content rows c_k, a = softmax over the real
        slots of a learned weight per age (0 = most recent), t = W_t c_target. Content only by default: ids
        would let it memorise pairs instead of learning which content goes with which. With `bilinear_ids`
        the caller passes the full item vectors [id, content] of the history (hist_vec, (B, L, item_dim)) and
        the target (target_vec, (B, item_dim)) to read instead. -> u (B, k), <u, t> (B,)"""
        l = seq.shape[1]
        age = self.bil_age[:l].flip(0)  # (L,) slot j holds the item l - 1 - j steps back
        a = torch.softmax(age.expand(seq.shape[0], l).masked_fill(~real, -1e9), dim=-1)  # (B, L)
        a = a * real.any(dim=1, keepdim=True).to(a.dtype)  # rows without history: no content match
        hist = self.items.content(seq) if hist_vec is None else hist_vec  # (B, L, E) or (B, L, item_dim)
        u = (a[..., None] * self.bil_history(hist)).sum(1)  # (B, k)
        t = self.bil_item(self.items.content(item_id) if target_vec is None else target_vec)  # (B, k)
        return u, (u * t).sum(-1)  # (B, k), (B,)

    def next_item_loss(self, states: torch.Tensor, items: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """aux_weight x SASRec's next-item loss: the state after item t scores item t + 1 against
        `aux_negatives` items drawn uniformly (one draw per batch, from the global RNG), softmax
        cross-entropy, averaged over the slots where both t and t + 1 are real items.

        states (B, L, D), items (B, L, D) the item vectors, seq (B, L) ids -> scalar.
        """
        if self.cfg.aux_weight == 0 or seq.shape[1] < 2:
            return states.new_zeros(())
        h = states[:, :-1]  # (B, L-1, D) state after item t
        valid = (seq[:, :-1] > 0) & (seq[:, 1:] > 0)  # (B, L-1)
        negs = torch.randint(1, self.cfg.n_items, (self.cfg.aux_negatives,), device=seq.device)  # (K,)
        pos = (h * items[:, 1:]).sum(-1, keepdim=True)  # (B, L-1, 1)
        p = self.cfg.history_id_dropout if self.training else 0.0  # negatives encoded as the history items are
        neg = h @ self.project(self.encode_items(negs, self.unknown_mask(negs, p))).T  # (B, L-1, K)
        # a negative that is the positive, or an item never seen in training (it would be pushed down)
        neg = neg.masked_fill((seq[:, 1:, None] == negs) | ~self.id_known[negs], float("-inf"))
        nll = torch.logsumexp(torch.cat([pos, neg], dim=-1), dim=-1) - pos.squeeze(-1)  # (B, L-1)
        return self.cfg.aux_weight * (nll * valid).sum() / valid.sum().clamp_min(1)

    def regularization_loss(self) -> torch.Tensor | float:
        return 0.0
