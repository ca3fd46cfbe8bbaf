"""A MicroLens-shaped dataset with a known answer: `harness synth OUT_DIR --scale tiny|demo|full`.

The generator writes the MicroLens_1M_MMCTR layout with the official column types (see
`../shared/docs/challenge.md`, section 1) and an `oracle/` folder that only scoring reads.

The process (all draws from one seeded NumPy generator per component, so equal seeds give equal bytes):

- Items have three hidden factors and a popularity. `category` is visible in the cover (its shape) and
  in the title (a category word); `colour` only in the cover (its background); `topic` only in the
  title (a topic word). Popularity is long-tailed (Zipf); likes_level and views_level are noisy deciles
  of it. A small share of items is *cold*: never in train rows or histories, only in valid and test,
  where only content (cover, title, tags) tells what they are.
- Users belong to one of S taste segments (prior pi). A segment's utility for an item is a sum of
  per-factor tastes: u[s, j] = beta * (A_cat[s, cat_j] + A_col[s, col_j] + A_top[s, top_j]).
  P(j | s) is proportional to pop_j ** gamma * exp(u[s, j]) (over warm items for histories and train).
- A user's history is L i.i.d. draws from P(. | s) over warm items, L = 3 + floor(lognormal) capped at
  100 (min 3, median about 6); the rows keep the last 64, left-padded with 0.
- Each user in a split contributes one clicked item drawn from P(. | s) and three negatives drawn
  uniformly from the split's item pool (25 % positives); rows are shuffled.

Because segments are finite, the Bayes posterior is exact: P(s | h) is proportional to
pi_s * prod_t P(h_t | s), P(j | h) = sum_s P(s | h) P(j | s), and for a group with one positive among g
rows, P(label = 1 | h, j) = (P(j | h) / g) / (P(j | h) / g + (1 - 1 / g) * Q(j)). That is the best any
model can do from the row's features, so `oracle/oracle.json` holds the Bayes-optimal AUC.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from harness.errors import UserError
from harness.io import write_json_atomic, write_parquet_atomic

SEQ_LEN = 64
TAGS_LEN = 5
LEVELS = 10


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and generator knobs. `full` has the real MicroLens-1M sizes."""

    n_items: int
    n_users: int
    n_train: int
    n_valid: int
    n_test: int
    n_tags: int
    image_size: int = 64
    n_segments: int = 16
    n_categories: int = 8
    n_colours: int = 8
    n_topics: int = 8
    beta: float = 1.6  # strength of taste over popularity
    gamma: float = 0.7  # popularity exponent inside P(j | s)
    zipf: float = 0.9  # popularity long tail: pop_j ~ 1 / (rank_j + 10) ** zipf
    cold_share: float = 0.04  # items never seen in train rows or histories
    text_dim: int = 768
    image_dim: int = 1024


SCALES = {
    "tiny": SynthConfig(n_items=400, n_users=5_200, n_train=16_000, n_valid=2_000, n_test=2_000,
                        n_tags=120),
    "demo": SynthConfig(n_items=3_000, n_users=41_000, n_train=120_000, n_valid=10_000, n_test=30_000,
                        n_tags=1_200),
    "full": SynthConfig(n_items=91_717, n_users=1_000_000, n_train=3_600_000, n_valid=10_000,
                        n_test=379_142, n_tags=11_740),
}

CATEGORY_WORDS = [
    ["circle", "round", "ball"], ["square", "box", "block"], ["triangle", "pyramid", "wedge"],
    ["star", "sparkle", "starburst"], ["cross", "plus", "crossing"], ["ring", "hoop", "donut"],
    ["diamond", "gem", "crystal"], ["stripes", "lines", "bars"],
]
TOPIC_WORDS = [
    ["cooking", "recipe", "kitchen"], ["travel", "journey", "trip"], ["music", "song", "concert"],
    ["football", "basketball", "tennis"], ["gaming", "videogame", "esports"],
    ["comedy", "prank", "joke"], ["smartphone", "gadget", "laptop"], ["fashion", "outfit", "makeup"],
]
FILLER_WORDS = [
    "amazing", "daily", "quick", "my", "the", "best", "new", "first", "ultimate", "simple", "weekend",
    "story", "moments", "highlights", "guide", "episode", "part", "live", "today", "short", "vlog",
    "review", "challenge", "tips", "with", "friends", "home", "city", "night", "morning",
]
COLOURS = [
    (220, 40, 40), (40, 170, 60), (40, 80, 220), (235, 210, 40), (140, 50, 190), (245, 140, 30),
    (30, 200, 210), (240, 120, 180),
]


# ---------------------------------------------------------------------------------------------
# The latent world


@dataclass
class World:
    """Hidden factors, tastes and the two item distributions per segment."""

    cfg: SynthConfig
    category: np.ndarray  # (N,) int, index 0 is item 1
    colour: np.ndarray  # (N,)
    topic: np.ndarray  # (N,)
    log_pop: np.ndarray  # (N,)
    cold: np.ndarray  # (N,) bool
    prior: np.ndarray  # (S,)
    log_p_all: np.ndarray  # (S, N) log P(j | s) over all items (valid/test targets)
    log_p_warm: np.ndarray  # (S, N) log P(j | s) over warm items, -inf on cold ones


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))).squeeze(axis)


def make_world(cfg: SynthConfig, rng: np.random.Generator) -> World:
    n, s = cfg.n_items, cfg.n_segments
    category = rng.integers(0, cfg.n_categories, n)
    colour = rng.integers(0, cfg.n_colours, n)
    topic = rng.integers(0, cfg.n_topics, n)
    rank = rng.permutation(n)
    log_pop = -cfg.zipf * np.log(rank + 10.0)
    cold = np.zeros(n, dtype=bool)
    n_cold = int(round(cfg.cold_share * n))
    cold[rng.choice(n, n_cold, replace=False)] = True
    prior = rng.dirichlet(np.full(s, 3.0))
    a_cat = rng.normal(size=(s, cfg.n_categories))
    a_col = rng.normal(size=(s, cfg.n_colours))
    a_top = rng.normal(size=(s, cfg.n_topics))
    util = cfg.beta * (a_cat[:, category] + a_col[:, colour] + a_top[:, topic])  # (S, N)
    logits = cfg.gamma * log_pop[None, :] + util
    log_p_all = logits - _logsumexp(logits, axis=1)[:, None]
    warm_logits = np.where(cold[None, :], -np.inf, logits)
    log_p_warm = warm_logits - _logsumexp(warm_logits, axis=1)[:, None]
    return World(cfg, category, colour, topic, log_pop, cold, prior, log_p_all, log_p_warm)


def _sample_items(log_p: np.ndarray, segments: np.ndarray, counts: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Draw counts[u] items for each user u from P(. | segments[u]); returns 0-based item indices."""
    total = int(counts.sum())
    out = np.empty(total, dtype=np.int64)
    owner = np.repeat(np.arange(len(segments)), counts)
    seg_of_draw = segments[owner]
    u = rng.random(total)
    for s in range(log_p.shape[0]):
        idx = np.nonzero(seg_of_draw == s)[0]
        if len(idx) == 0:
            continue
        cdf = np.cumsum(np.exp(log_p[s]))
        cdf /= cdf[-1]
        out[idx] = np.minimum(np.searchsorted(cdf, u[idx], side="right"), len(cdf) - 1)
    return out


# ---------------------------------------------------------------------------------------------
# Users, histories, rows


@dataclass
class Split:
    user_id: np.ndarray  # (R,)
    owner: np.ndarray  # (R,) row of the user in the split's padded histories
    padded: np.ndarray  # (U, 64) the split's users' histories, 1-based ids, left-padded with 0
    item_id: np.ndarray  # (R,) 1-based
    label: np.ndarray  # (R,)
    group_size: np.ndarray  # (R,) rows of the user's group (4, or fewer for a last partial group)


def history_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """min 3, median about 6, mean about 8, max 100 (the real MicroLens-1M shape)."""
    return np.minimum(100, 3 + np.floor(rng.lognormal(mean=1.2, sigma=0.85, size=n))).astype(np.int64)


def make_histories(world: World, segments: np.ndarray, rng: np.random.Generator):
    """Full histories as (offsets, flat 1-based ids), and their last 64 left-padded."""
    lengths = history_lengths(len(segments), rng)
    flat = _sample_items(world.log_p_warm, segments, lengths, rng) + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    padded = np.zeros((len(segments), SEQ_LEN), dtype=np.int64)
    keep = np.minimum(lengths, SEQ_LEN)
    # position of each kept draw inside the padded row: right-aligned, most recent last
    starts = offsets[1:] - keep
    rows = np.repeat(np.arange(len(segments)), keep)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(keep) - keep, keep)  # 0..keep-1 per user
    src = np.repeat(starts, keep) + within
    padded[rows, SEQ_LEN - np.repeat(keep, keep) + within] = flat[src]
    return offsets, flat, padded


def make_split(world: World, users: np.ndarray, segments: np.ndarray, padded: np.ndarray, n_rows: int,
               pool_warm: bool, rng: np.random.Generator) -> Split:
    """One clicked item and three uniform negatives per user, then the rows shuffled."""
    n_users = math.ceil(n_rows / 4)
    assert len(users) == n_users
    sizes = np.full(n_users, 4, dtype=np.int64)
    sizes[-1] = n_rows - 4 * (n_users - 1)
    log_p = world.log_p_warm if pool_warm else world.log_p_all
    pos = _sample_items(log_p, segments, np.ones(n_users, dtype=np.int64), rng)
    pool = np.nonzero(~world.cold)[0] if pool_warm else np.arange(world.cfg.n_items)
    n_neg = int((sizes - 1).sum())
    neg = pool[rng.integers(0, len(pool), n_neg)]
    owner_neg = np.repeat(np.arange(n_users), sizes - 1)
    owner = np.concatenate([np.arange(n_users), owner_neg])
    items = np.concatenate([pos, neg]) + 1
    labels = np.concatenate([np.ones(n_users, np.int64), np.zeros(n_neg, np.int64)])
    order = rng.permutation(len(owner))
    owner, items, labels = owner[order], items[order], labels[order]
    return Split(users[owner], owner, padded, items, labels, sizes[owner])


def oracle_proba(world: World, split: Split, pool_size: int, use_history: bool = True) -> np.ndarray:
    """Exact P(label = 1 | item_seq, item_id) for each row (see the module docstring).

    With `use_history=False` it is P(label = 1 | item_id) alone: the best a model that ignores the
    history can do, which tells how much the sequence part of a model has to add.
    """
    n = len(split.owner)
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, 65_536):
        hi = min(lo + 65_536, n)
        h = split.padded[split.owner[lo:hi]]
        mask = (h > 0) & use_history
        ll = np.zeros((hi - lo, world.cfg.n_segments))
        for s in range(world.cfg.n_segments):
            lp = world.log_p_warm[s][np.maximum(h - 1, 0)]
            ll[:, s] = np.where(mask, lp, 0.0).sum(axis=1)
        log_post = np.log(world.prior)[None, :] + ll
        log_post -= _logsumexp(log_post, axis=1)[:, None]
        log_pj = _logsumexp(log_post + world.log_p_all[:, split.item_id[lo:hi] - 1].T, axis=1)
        g = split.group_size[lo:hi].astype(np.float64)
        pos = np.exp(log_pj) / g
        neg = (1.0 - 1.0 / g) / pool_size
        out[lo:hi] = pos / (pos + neg)
    return out


# ---------------------------------------------------------------------------------------------
# Item content: titles, tags, covers, provided embeddings


def levels_from(score: np.ndarray) -> np.ndarray:
    """Deciles 1..10 of a score (ties broken by order, which is itself random)."""
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    return (1 + (ranks * LEVELS) // len(score)).astype(np.int64)


def make_titles(world: World, rng: np.random.Generator) -> list[str]:
    n = world.cfg.n_items
    syn_c = rng.integers(0, 3, n)
    syn_t = rng.integers(0, 3, n)
    fill = rng.integers(0, len(FILLER_WORDS), (n, 3))
    order = rng.integers(0, 2, n)
    titles = []
    for j in range(n):
        c = CATEGORY_WORDS[world.category[j]][syn_c[j]]
        t = TOPIC_WORDS[world.topic[j]][syn_t[j]]
        f = [FILLER_WORDS[k] for k in fill[j]]
        core = f"{t} {c}" if order[j] else f"{c} {t}"
        titles.append(f"{f[0]} {core} {f[1]} {f[2]} #{j + 1}")
    return titles


def make_tags(world: World, rng: np.random.Generator) -> list[list[int]]:
    """Tag 1..8 names the category, 9..16 the topic (each present with prob. 0.6), then 0-3 others."""
    cfg = world.cfg
    n = cfg.n_items
    has_c = rng.random(n) < 0.6
    has_t = rng.random(n) < 0.6
    n_other = rng.integers(0, 4, n)
    first_other = 1 + cfg.n_categories + cfg.n_topics
    others = rng.integers(first_other, cfg.n_tags + 1, (n, 3))
    tags = []
    for j in range(n):
        row = []
        if has_c[j]:
            row.append(1 + int(world.category[j]))
        if has_t[j]:
            row.append(1 + cfg.n_categories + int(world.topic[j]))
        row.extend(int(x) for x in others[j, : n_other[j]])
        tags.append(row)
    return tags


def render_cover(category: int, colour: int, rng: np.random.Generator, size: int) -> bytes:
    """A JPEG cover: background colour = colour factor, white/black shape = category factor."""
    from PIL import Image, ImageDraw

    base = np.array(COLOURS[colour], dtype=np.float64)
    bg = tuple(int(v) for v in np.clip(base + rng.normal(0, 12, 3), 0, 255))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    fg = (250, 250, 250) if rng.random() < 0.5 else (20, 20, 20)
    r = size * (0.22 + 0.12 * rng.random())
    cx, cy = size * (0.35 + 0.3 * rng.random(2))
    w = max(2, size // 12)
    box = [cx - r, cy - r, cx + r, cy + r]
    if category == 0:
        d.ellipse(box, fill=fg)
    elif category == 1:
        d.rectangle(box, fill=fg)
    elif category == 2:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif category == 3:
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
        d.polygon(pts, fill=fg)
    elif category == 4:
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fg)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fg)
    elif category == 5:
        d.ellipse(box, outline=fg, width=w)
    elif category == 6:
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    else:
        for k in range(-2, 3):
            y = size / 2 + k * size / 5
            d.rectangle([0, y - w / 2, size, y + w / 2], fill=fg)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def provided_embeddings(world: World, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The dataset's own embeddings, noisy projections of what each modality shows (float32)."""
    cfg = world.cfg
    n = cfg.n_items

    def onehot(v, k):
        m = np.zeros((n, k))
        m[np.arange(n), v] = 1.0
        return m

    text_f = np.hstack([onehot(world.category, cfg.n_categories), onehot(world.topic, cfg.n_topics)])
    img_f = np.hstack([onehot(world.category, cfg.n_categories), onehot(world.colour, cfg.n_colours)])
    txt = text_f @ rng.normal(size=(text_f.shape[1], cfg.text_dim)) + rng.normal(0, 1.5, (n, cfg.text_dim))
    img = img_f @ rng.normal(size=(img_f.shape[1], cfg.image_dim)) + rng.normal(0, 1.5, (n, cfg.image_dim))
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    both = np.hstack([txt, img])
    out = {"txt_emb_BERT": txt.astype(np.float32), "img_emb_CLIPRN50": img.astype(np.float32),
           "item_emb_d128": pca(both, 128)}
    for name, noise in (("v1", 0.5), ("v2", 1.0), ("v3", 2.0), ("e4", 0.25)):
        z = both @ rng.normal(size=(both.shape[1], 128)) / math.sqrt(both.shape[1])
        z += rng.normal(0, noise * z.std(), z.shape)
        out[f"item_emb_d128_{name}"] = z.astype(np.float32)
    return out


def pca(x: np.ndarray, k: int) -> np.ndarray:
    """Deterministic PCA to k dimensions (eigendecomposition of the covariance, signs fixed)."""
    xc = x - x.mean(axis=0, keepdims=True)
    cov = xc.T @ xc / max(1, len(x) - 1)
    vals, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, ::-1][:, :k]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    return xc @ (vecs * signs)


# ---------------------------------------------------------------------------------------------
# Writing


def _list_column(name: str, offsets: np.ndarray, values: np.ndarray) -> pl.Series:
    arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values.astype(np.int64)))
    return pl.Series(name, pl.from_arrow(arr)).cast(pl.List(pl.Int64))


def _array_column(name: str, values: np.ndarray, dtype) -> pl.Series:
    return pl.Series(name, values).cast(pl.Array(dtype, values.shape[1]))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from harness.metrics import auc

    return auc(labels, scores)


def generate(out_dir: str | Path, scale: str = "demo", seed: int = 0, overwrite: bool = False,
             log=None) -> dict:
    """Write the dataset into `out_dir` (built under a temporary name, then renamed); return oracle.json."""
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    cfg = SCALES[scale]
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError("output folder exists and is not empty; choose a new folder or pass --overwrite",
                        path=out_dir)
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    streams = np.random.SeedSequence(seed).spawn(8)
    rngs = [np.random.default_rng(s) for s in streams]
    world = make_world(cfg, rngs[0])

    tmp = out_dir.parent / f".{out_dir.name}.synth-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "MicroLens_1M_x1").mkdir(parents=True)
    (tmp / "item_images").mkdir()
    (tmp / "oracle").mkdir()
    try:
        timings = _write_all(world, cfg, tmp, rngs, log, scale, seed)
        result = json.loads((tmp / "oracle" / "oracle.json").read_text())
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.synth-old"
            if old.exists():
                shutil.rmtree(old)
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result["timings_s"] = dict(timings, total=round(time.perf_counter() - t0, 2))
    return result


def _write_all(world: World, cfg: SynthConfig, root: Path, rngs, log, scale: str, seed: int) -> dict:
    timings = {}
    t = time.perf_counter()
    n_train_u, n_valid_u, n_test_u = (math.ceil(n / 4) for n in (cfg.n_train, cfg.n_valid, cfg.n_test))
    if n_train_u + n_valid_u + n_test_u > cfg.n_users:
        raise ValueError("n_users too small for the row counts")
    user_ids = np.arange(1, cfg.n_users + 1)
    segments = rngs[1].choice(cfg.n_segments, size=cfg.n_users, p=world.prior)
    offsets, flat, padded = make_histories(world, segments, rngs[1])
    perm = rngs[1].permutation(cfg.n_users)
    tr_u = perm[:n_train_u]
    va_u = perm[n_train_u:n_train_u + n_valid_u]
    te_u = perm[n_train_u + n_valid_u:n_train_u + n_valid_u + n_test_u]
    train = make_split(world, user_ids[tr_u], segments[tr_u], padded[tr_u], cfg.n_train, True, rngs[2])
    valid = make_split(world, user_ids[va_u], segments[va_u], padded[va_u], cfg.n_valid, False, rngs[3])
    test = make_split(world, user_ids[te_u], segments[te_u], padded[te_u], cfg.n_test, False, rngs[4])
    timings["sample"] = round(time.perf_counter() - t, 2)
    log(f"sampled {cfg.n_users:,} users and {cfg.n_train + cfg.n_valid + cfg.n_test:,} rows")

    # item-side content
    t = time.perf_counter()
    likes_level = levels_from(world.log_pop + rngs[5].normal(0, 0.6, cfg.n_items))
    views_level = levels_from(world.log_pop + rngs[5].normal(0, 0.3, cfg.n_items))
    titles = make_titles(world, rngs[5])
    tags = make_tags(world, rngs[5])
    emb = provided_embeddings(world, rngs[6])
    timings["content"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    x1 = root / "MicroLens_1M_x1"
    lik = np.concatenate([[0], likes_level])
    vie = np.concatenate([[0], views_level])

    def rows_frame(split: Split, with_label: bool, with_id: bool) -> pl.DataFrame:
        cols = {}
        if with_id:
            cols["ID"] = pl.Series("ID", np.arange(len(split.item_id), dtype=np.int64))
        cols["user_id"] = pl.Series("user_id", split.user_id.astype(np.int64))
        # gather in polars: one (R, 64) copy instead of two (the full train split is 1.8 GB)
        cols["item_seq"] = _array_column("item_seq", split.padded, pl.Int64).gather(split.owner)
        cols["item_id"] = pl.Series("item_id", split.item_id.astype(np.int64))
        cols["likes_level"] = pl.Series("likes_level", lik[split.item_id])
        cols["views_level"] = pl.Series("views_level", vie[split.item_id])
        if with_label:
            cols["label"] = pl.Series("label", split.label)
        return pl.DataFrame(list(cols.values()))

    write_parquet_atomic(x1 / "train.parquet", rows_frame(train, True, False))
    write_parquet_atomic(x1 / "valid.parquet", rows_frame(valid, True, False))
    write_parquet_atomic(x1 / "test.parquet", rows_frame(test, False, True))

    n = cfg.n_items
    tag_pad = np.zeros((n + 1, TAGS_LEN), dtype=np.int64)
    for j, row in enumerate(tags):
        last = row[-TAGS_LEN:]
        if last:
            tag_pad[j + 1, TAGS_LEN - len(last):] = last
    info_emb = np.zeros((n + 1, 128), dtype=np.float64)
    info_emb[1:] = emb["item_emb_d128"]
    write_parquet_atomic(x1 / "item_info.parquet", pl.DataFrame([
        pl.Series("item_id", np.arange(n + 1, dtype=np.int64)),
        _array_column("item_tags", tag_pad, pl.Int64),
        _array_column("item_emb_d128", info_emb, pl.Float64),
    ]))
    tag_off = np.concatenate([[0], np.cumsum([len(r) for r in tags])])
    tag_flat = np.array([x for r in tags for x in r], dtype=np.int64)
    item_ids = np.arange(1, n + 1, dtype=np.int64)
    write_parquet_atomic(root / "item_feature.parquet", pl.DataFrame([
        pl.Series("item_id", item_ids),
        pl.Series("item_title", titles, dtype=pl.String),
        _list_column("item_tags", tag_off, tag_flat),
        pl.Series("likes_level", likes_level),
        pl.Series("views_level", views_level),
        _array_column("txt_emb_BERT", emb["txt_emb_BERT"], pl.Float32),
        _array_column("img_emb_CLIPRN50", emb["img_emb_CLIPRN50"], pl.Float32),
    ]))
    write_parquet_atomic(root / "item_emb.parquet", pl.DataFrame(
        [pl.Series("item_id", item_ids)]
        + [_array_column(f"item_emb_d128_{v}", emb[f"item_emb_d128_{v}"], pl.Float32)
           for v in ("v1", "v2", "v3", "e4")]))
    write_parquet_atomic(root / "item_seq.parquet", pl.DataFrame([
        pl.Series("user_id", user_ids.astype(np.int64)),
        _list_column("item_seq", offsets, flat),
    ]))
    timings["parquet"] = round(time.perf_counter() - t, 2)
    log("wrote the seven parquet files")

    t = time.perf_counter()
    img_rng = rngs[7]
    images = root / "item_images"
    for j in range(n):
        (images / f"{j + 1}.jpg").write_bytes(
            render_cover(int(world.category[j]), int(world.colour[j]), img_rng, cfg.image_size))
    timings["images"] = round(time.perf_counter() - t, 2)
    log(f"rendered {n:,} covers")

    # oracle: only scoring reads this folder
    t = time.perf_counter()
    oracle = root / "oracle"
    p_valid = oracle_proba(world, valid, cfg.n_items)
    p_test = oracle_proba(world, test, cfg.n_items)
    pop = np.bincount(train.item_id[train.label == 1], minlength=n + 1).astype(np.float64)
    rand = np.random.default_rng(seed + 1)
    aucs = {}
    for name, split, p in (("valid", valid, p_valid), ("test", test, p_test)):
        aucs[name] = {
            "oracle": _auc(split.label, p),
            "oracle_item_only": _auc(split.label, oracle_proba(world, split, cfg.n_items, False)),
            "popularity": _auc(split.label, pop[split.item_id]),
            "random": _auc(split.label, rand.random(len(split.label))),
            "rows": int(len(split.label)),
            "positives": int(split.label.sum()),
            "cold_item_rows": int(world.cold[split.item_id - 1].sum()),
        }
    pl.DataFrame({"ID": np.arange(len(test.label), dtype=np.int64), "label": test.label}).write_csv(
        oracle / "ground_truth.csv")
    pl.DataFrame({"ID": np.arange(len(test.label), dtype=np.int64), "proba": p_test}).write_parquet(
        oracle / "proba_test.parquet")
    pl.DataFrame({"row": np.arange(len(valid.label), dtype=np.int64), "proba": p_valid}).write_parquet(
        oracle / "proba_valid.parquet")
    lengths = np.diff(offsets)
    doc = {
        "generator": "harness.synth",
        "scale": scale,
        "seed": seed,
        "config": asdict(cfg),
        "auc": aucs,
        "history_length": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                           "mean": round(float(lengths.mean()), 3), "max": int(lengths.max())},
        "cold_items": int(world.cold.sum()),
        "train_positive_share": round(float(train.label.mean()), 6),
        "scoring_only": "nothing in the pipeline reads this folder except scoring",
    }
    write_json_atomic(oracle / "oracle.json", doc)
    timings["oracle"] = round(time.perf_counter() - t, 2)
    return timings
