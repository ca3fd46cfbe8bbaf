"""A MicroLens-shaped dataset with a known answer: `harness synth OUT_DIR --scale S --world W`.

The generator writes the MicroLens_1M_MMCTR layout with the official column types (docs/challenge.md,
section 1) and an `oracle/` folder that only scoring reads. What the clicks depend on is the *world*
(`harness.worlds`: the sampling and the exact Bayes oracle); this module renders the world's items as
covers, titles, tags and embeddings and writes the files.

Random streams are named (`STREAMS`): each draw has its own seeded generator, so equal seeds give equal
bytes and adding a draw to one part leaves the others unchanged.
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

from core.challenge import DATASET_DIR, HISTORY_LEN, TAGS_LEN
from core.errors import UserError
from core.io import write_json_atomic, write_parquet_atomic
from harness.worlds import (DEFAULT_WORLD, RANDOM_WORLD, SCALES, WORLDS, Split, SynthConfig, World, WorldConfig,
                            history_lengths, history_marginal, make_histories, make_split, make_world,
                            oracle_proba, sample_world_params, world_from_params)

LEVELS = 10
# one generator per purpose, spawned from the seed in this order (an index never changes meaning)
STREAMS = ("world", "users", "train", "valid", "test", "content", "embeddings", "covers", "appeal", "nuisance")

__all__ = ["SCALES", "WORLDS", "DEFAULT_WORLD", "RANDOM_WORLD", "SynthConfig", "generate", "simulate",
           "history_lengths", "sample_world_params"]

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
    """Tag 1..C names the category, C+1..C+T the topic (each present with prob. tag_factor_share, 0.6 by
    default), then 0..max_other_tags (3) others."""
    cfg = world.cfg
    n = cfg.n_items
    has_c = rng.random(n) < cfg.tag_factor_share
    has_t = rng.random(n) < cfg.tag_factor_share
    n_other = rng.integers(0, cfg.max_other_tags + 1, n)
    first_other = 1 + cfg.n_categories + cfg.n_topics
    others = rng.integers(first_other, cfg.n_tags + 1, (n, cfg.max_other_tags))
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


def provided_embeddings(world: World, rng: np.random.Generator,
                        nuisance: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """The dataset's own embeddings, noisy projections of what each modality shows (float32); item_emb_d128
    is their PCA-128, then scaled, offset, stretched and rotated as the config says (`emb_nuisance`)."""
    cfg = world.cfg
    n = cfg.n_items

    def onehot(v, k):
        m = np.zeros((n, k))
        m[np.arange(n), v] = 1.0
        return m

    text_f = np.hstack([onehot(world.category, cfg.n_categories), onehot(world.topic, cfg.n_topics)])
    img_f = np.hstack([onehot(world.category, cfg.n_categories), onehot(world.colour, cfg.n_colours)])
    noise = cfg.emb_noise
    txt = text_f @ rng.normal(size=(text_f.shape[1], cfg.text_dim)) + rng.normal(0, noise, (n, cfg.text_dim))
    img = img_f @ rng.normal(size=(img_f.shape[1], cfg.image_dim)) + rng.normal(0, noise, (n, cfg.image_dim))
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    both = np.hstack([txt, img])
    reduced = pca(both, 128)
    if cfg.emb_nuisance:
        reduced = embedding_nuisance(reduced, cfg, nuisance or np.random.default_rng(0))
    out = {"txt_emb_BERT": txt.astype(np.float32), "img_emb_CLIPRN50": img.astype(np.float32),
           "item_emb_d128": reduced}
    for name, noise in (("v1", 0.5), ("v2", 1.0), ("v3", 2.0), ("e4", 0.25)):
        z = both @ rng.normal(size=(both.shape[1], 128)) / math.sqrt(both.shape[1])
        z += rng.normal(0, noise * z.std(), z.shape)
        out[f"item_emb_d128_{name}"] = z.astype(np.float32)
    return out


def embedding_nuisance(x: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """What a stranger's item_emb_d128 could look like with the same content: the rows x (N, D) rotated
    (emb_rotate), stretched per dimension by exp(emb_anisotropy * N(0, 1)) (renormalised to keep the mean
    row norm), times emb_scale, plus emb_scale * emb_offset * N(1, 0.5) per dimension."""
    d = x.shape[1]
    norm = np.linalg.norm(x, axis=1).mean()
    if cfg.emb_rotate:
        q, r = np.linalg.qr(rng.normal(size=(d, d)))
        x = x @ (q * np.sign(np.diag(r)))
    x = x * np.exp(cfg.emb_anisotropy * rng.normal(size=d))
    x = x * (norm / max(np.linalg.norm(x, axis=1).mean(), 1e-300))
    return x * cfg.emb_scale + cfg.emb_scale * cfg.emb_offset * rng.normal(1.0, 0.5, size=d)


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
    from core.metrics import auc

    return auc(labels, scores)


@dataclass
class Simulation:
    """A world and everything drawn from it, before any file is written."""

    world: World
    streams: dict  # name -> np.random.Generator (STREAMS)
    user_ids: np.ndarray  # (U,) 1..n_users
    offsets: np.ndarray  # (U + 1,) full histories: user u's items are flat[offsets[u]:offsets[u + 1]]
    flat: np.ndarray  # 1-based item ids
    padded: np.ndarray  # (U, 64) the last 64, left-padded
    train: Split
    valid: Split
    test: Split


def resolve(scale: str, world: str, world_seed: int | None = None,
            world_params: dict | None = None) -> tuple[SynthConfig, WorldConfig]:
    """The configs of a named world at a named scale, or of a sampled world: `world` "random" draws every
    factor from `world_seed` (`harness.worlds.sample_world_params`; the scale is then part of the draw),
    and `world_params` ({"synth": {...}, "world": {...}}, possibly partial) overrides what it names."""
    if world == RANDOM_WORLD or world_params is not None:
        base = world_from_params(sample_world_params(0 if world_seed is None else world_seed))
        if world != RANDOM_WORLD:  # parameters over a named world at a named scale
            base = resolve(scale, world)
        try:
            return world_from_params(world_params or {}, base)
        except ValueError as e:
            raise UserError(f"world parameters: {e}") from None
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    if world not in WORLDS:
        raise UserError(f"unknown world {world!r}; choose one of {', '.join([*WORLDS, RANDOM_WORLD])}")
    return SCALES[scale], WORLDS[world]


def simulate(cfg: SynthConfig, wcfg: WorldConfig, seed: int) -> Simulation:
    """Draw the world, the users' histories and the three splits (no content, no files)."""
    rngs = dict(zip(STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(STREAMS)))))
    world = make_world(cfg, wcfg, rngs["world"], rngs["appeal"])
    n_train_u, n_valid_u, n_test_u = (math.ceil(n / cfg.group_size) for n in (cfg.n_train, cfg.n_valid, cfg.n_test))
    if n_train_u + n_valid_u + n_test_u > cfg.n_users:
        raise ValueError("n_users too small for the row counts")
    user_ids = np.arange(1, cfg.n_users + 1)
    users = rngs["users"]
    segments = users.choice(cfg.n_segments, size=cfg.n_users, p=world.prior)
    offsets, flat, padded = make_histories(world, segments, users)
    perm = users.permutation(cfg.n_users)
    tr_u = perm[:n_train_u]
    va_u = perm[n_train_u:n_train_u + n_valid_u]
    te_u = perm[n_train_u + n_valid_u:n_train_u + n_valid_u + n_test_u]
    train = make_split(world, user_ids[tr_u], segments[tr_u], padded[tr_u], cfg.n_train, True, rngs["train"])
    valid = make_split(world, user_ids[va_u], segments[va_u], padded[va_u], cfg.n_valid, False, rngs["valid"])
    test = make_split(world, user_ids[te_u], segments[te_u], padded[te_u], cfg.n_test, False, rngs["test"])
    return Simulation(world, rngs, user_ids, offsets, flat, padded, train, valid, test)


def reference_aucs(sim: Simulation, seed: int) -> dict:
    """Valid and test AUC of the oracle, the history-blind oracle, train popularity and random scores,
    with the oracle's probabilities."""
    world, cfg = sim.world, sim.world.cfg
    marginal = history_marginal(world, sim.padded) if world.wcfg.target == "history" else None
    pop = np.bincount(sim.train.item_id[sim.train.label == 1], minlength=cfg.n_items + 1).astype(np.float64)
    rand = np.random.default_rng(seed + 1)
    aucs, proba = {}, {}
    for name, split in (("valid", sim.valid), ("test", sim.test)):
        proba[name] = oracle_proba(world, split, cfg.n_items)
        aucs[name] = {
            "oracle": _auc(split.label, proba[name]),
            "oracle_item_only": _auc(split.label, oracle_proba(world, split, cfg.n_items, False, marginal)),
            "popularity": _auc(split.label, pop[split.item_id]),
            "random": _auc(split.label, rand.random(len(split.label))),
            "rows": int(len(split.label)),
            "positives": int(split.label.sum()),
            "cold_item_rows": int(world.cold[split.item_id - 1].sum()),
        }
    return {"auc": aucs, "proba": proba}


def generate(out_dir: str | Path, scale: str = "demo", seed: int = 0, overwrite: bool = False,
             log=None, world: str = DEFAULT_WORLD, world_seed: int | None = None,
             world_params: dict | None = None) -> dict:
    """Write the dataset into `out_dir` (built under a temporary name, then renamed); return oracle.json.

    `seed` draws the data; a sampled world (`world` "random") draws its factors from `world_seed`
    (default: `seed`), and `world_params` overrides any of them (see `resolve`)."""
    if world == RANDOM_WORLD and world_seed is None:
        world_seed = seed
    cfg, wcfg = resolve(scale, world, world_seed, world_params)
    if world == RANDOM_WORLD or world_params is not None:
        scale = "sampled" if world == RANDOM_WORLD else scale
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError("output folder exists and is not empty; choose a new folder or pass --overwrite",
                        path=out_dir)
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    sim = simulate(cfg, wcfg, seed)
    timings = {"sample": round(time.perf_counter() - t0, 2)}
    log(f"world {wcfg.name}: sampled {cfg.n_users:,} users and {cfg.n_train + cfg.n_valid + cfg.n_test:,} rows")

    tmp = out_dir.parent / f".{out_dir.name}.synth-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / DATASET_DIR).mkdir(parents=True)
    (tmp / "item_images").mkdir()
    (tmp / "oracle").mkdir()
    try:
        timings.update(_write_all(sim, tmp, log, scale, seed, world_seed if world == RANDOM_WORLD else None))
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


def _write_all(sim: Simulation, root: Path, log, scale: str, seed: int, world_seed: int | None = None) -> dict:
    world, cfg, rngs = sim.world, sim.world.cfg, sim.streams
    train, valid, test = sim.train, sim.valid, sim.test
    timings = {}
    # item-side content
    t = time.perf_counter()
    content = rngs["content"]
    score = world.level_score()
    likes_level = levels_from(score + content.normal(0, 0.6, cfg.n_items))
    views_level = levels_from(score + content.normal(0, 0.3, cfg.n_items))
    titles = make_titles(world, content)
    tags = make_tags(world, content)
    emb = provided_embeddings(world, rngs["embeddings"], rngs["nuisance"])
    timings["content"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    x1 = root / DATASET_DIR
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
    user_ids, offsets, flat = sim.user_ids, sim.offsets, sim.flat
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
    img_rng = rngs["covers"]
    images = root / "item_images"
    for j in range(n):
        (images / f"{j + 1}.jpg").write_bytes(
            render_cover(int(world.category[j]), int(world.colour[j]), img_rng, cfg.image_size))
    timings["images"] = round(time.perf_counter() - t, 2)
    log(f"rendered {n:,} covers")

    # oracle: only scoring reads this folder
    t = time.perf_counter()
    oracle = root / "oracle"
    ref = reference_aucs(sim, seed)
    aucs, p_valid, p_test = ref["auc"], ref["proba"]["valid"], ref["proba"]["test"]
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
        "world": world.wcfg.name,
        "world_summary": world.wcfg.summary,
        "seed": seed,
        "world_seed": world_seed,
        "config": asdict(cfg),
        "world_config": asdict(world.wcfg),
        "auc": aucs,
        "history_length": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                           "mean": round(float(lengths.mean()), 3), "max": int(lengths.max())},
        "cold_items": int(world.cold.sum()),
        "train_positive_share": round(float(train.label.mean()), 6),
        "item_emb_d128_mean_row_norm": round(float(np.linalg.norm(emb["item_emb_d128"], axis=1).mean()), 6),
        "scoring_only": "nothing in the pipeline reads this folder except scoring",
    }
    write_json_atomic(oracle / "oracle.json", doc)
    timings["oracle"] = round(time.perf_counter() - t, 2)
    return timings
