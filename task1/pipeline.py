"""`embed`: extract per-modality embeddings into resumable caches, fuse, reduce, write item_info.parquet.

Reads top to bottom: inputs, caches, extraction (skipped with `merge=True`), then, unless this is one
shard of many, the merge: fusion, reducer, quality metric, outputs.

OUT_DIR after a full run:

    item_info.parquet    the challenge's schema: item_id 0..N, item_tags array[i64, 5],
                         item_emb_d128 array[f64, 128]; row i is item i, row 0 all zeros
    reducer.safetensors  fusion and reducer parameters (task1/reducers.py; never a pickle)
    task1.json           models, config, seed and seeding flags, counts, explained variance,
                         quality metric, timings and throughput, input and output hashes
    cache/               per-modality chunk files (task1/cache.py) and the timing log of each run

Missing and corrupt covers follow the harness's one policy (core/covers.py): the file is counted
(`missing_images`, `unreadable_images`, the item ids listed in task1.json), its chunk row is flagged
(status 1 or 2, a zero placeholder that fusion never uses) and fusion gives the item the normalised
mean image embedding of the items whose cover was read. Beyond core.covers.MAX_BAD_SHARE of the
items (1 %) the run stops: before any encoding when that many files are missing, at the merge when
decoding found the rest. Empty titles get the mean title embedding the same way. With `strict=True`
the first missing or unreadable cover ends the run with one line naming the file.

item_tags: copied from the dataset's own MicroLens_1M_x1/item_info.parquet when it is there (Track 1's
fixed feature must be the official one); otherwise the last five of item_feature's list, left-padded.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from core.challenge import EMB_DIM as DIM  # item_emb_d128's width
from core.covers import MAX_BAD_SHARE, limit_text, over_limit, scan_covers
from core.env import resolve_device
from core.errors import EXIT_FINDINGS, UserError
from core.io import sha256_bytes, sha256_file, write_bytes_atomic, write_json_atomic, write_parquet_atomic
from task1 import cache as chunk_cache  # `cache` names the per-modality cache objects here
from task1.config import PACKAGED_IMAGE, Task1Config
from task1.models import model_identity, model_license
from task1.data import (ITEM_FEATURE, TAGS_LEN, TRAIN, Items, check_data_dir, official_tags, read_histories,
                        read_items)

MAX_LISTED = 1000  # problem item ids listed in task1.json per kind


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_caches(out_dir: Path, cfg: Task1Config, items: Items) -> dict[str, chunk_cache.ModalityCache]:
    """One cache per modality, keyed by everything that changes its numbers, the encoder's identity included
    (hub snapshot or sha256 of its files): a cache is never reused by another encoder, even one that now
    sits in the same folder."""

    def encoder(m: str) -> dict | None:
        return model_identity(cfg.image_model if m == "image" else cfg.text_model, m) if m in cfg.modalities else None

    specs = {
        "image": {"modality": "image", "model": cfg.image_model, "encoder": encoder("image"),
                  "batch_size": cfg.image_batch_size,
                  "lite_image_size": cfg.lite_image_size if cfg.image_model == PACKAGED_IMAGE else None,
                  "chunk_size": cfg.chunk_size, "items": items.ids_sha256()},
        "text": {"modality": "text", "model": cfg.text_model, "encoder": encoder("text"), "prefix": cfg.text_prefix,
                 "max_length": cfg.text_max_length, "batch_size": cfg.text_batch_size,
                 "chunk_size": cfg.chunk_size, "titles": items.titles_sha256()},
    }
    return {m: chunk_cache.ModalityCache(out_dir / "cache", m, specs[m], items.n, cfg.chunk_size) for m in cfg.modalities}


# ---------------------------------------------------------------------------------------------
# Covers: decoded in DataLoader workers, in id order


class CoverDataset(torch.utils.data.Dataset):
    """Item i of the dataset is the cover of ids[i]: (index, status, sha256 digest, pixels or None, error)."""

    def __init__(self, image_dir: Path, ids: np.ndarray, preprocess):
        self.image_dir, self.ids, self.preprocess = image_dir, ids, preprocess

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        from task1.models import decode_image

        path = self.image_dir / f"{int(self.ids[i])}.jpg"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return i, chunk_cache.MISSING, np.zeros(32, np.uint8), None, "file not found"
        except OSError as e:
            return i, chunk_cache.UNREADABLE, np.zeros(32, np.uint8), None, f"cannot read file ({e.strerror or e})"
        digest = np.frombuffer(hashlib.sha256(data).digest(), dtype=np.uint8).copy()
        try:
            pixels = self.preprocess(decode_image(data))
        except Exception as e:  # noqa: BLE001 - a malformed file can raise almost anything inside Pillow's decoders
            return i, chunk_cache.UNREADABLE, digest, None, f"{type(e).__name__}: {e}"
        return i, chunk_cache.OK, digest, pixels, ""


def collate_covers(batch):
    index = np.array([b[0] for b in batch], dtype=np.int64)
    status = np.array([b[1] for b in batch], dtype=np.uint8)
    sha = np.stack([b[2] for b in batch])
    ok = [b[3] for b in batch if b[3] is not None]
    pixels = torch.from_numpy(np.stack(ok)) if ok else None
    return index, status, sha, pixels, [b[4] for b in batch]


def _problem(items: Items, item_id: int, status: int, detail: str = "") -> UserError:
    path = items.image_path(item_id)
    what = "is missing" if status == chunk_cache.MISSING else f"is unreadable ({detail})" if detail else "is unreadable"
    return UserError(f"cover of item {item_id} {what}; restore the file, or run without --strict to "
                     f"replace it by the mean image embedding (counted in task1.json)", path=path,
                     exit_code=EXIT_FINDINGS)


def _too_many(items: Items, bad: list[int], when: str) -> UserError:
    first = ", ".join(f"{i}.jpg" for i in bad[:5])
    return UserError(f"{len(bad):,} of {items.n:,} covers are {when} ({len(bad) / items.n:.1%}; first: {first}); "
                     f"{limit_text()}: restore item_images/ from item_images.rar", path=items.image_dir,
                     exit_code=EXIT_FINDINGS)


def extract_images(cache: chunk_cache.ModalityCache, todo: list[int], items: Items, cfg: Task1Config,
                   device: torch.device, strict: bool, on_chunk) -> dict:
    from tqdm import tqdm

    from core.seeding import worker_init_fn
    from task1.models import ImageEncoder, precision_tag

    ids = np.concatenate([cache.ids(c) for c in todo])
    if strict:
        for i in ids:
            if not items.image_path(int(i)).is_file():
                raise _problem(items, int(i), chunk_cache.MISSING)
    t0 = time.perf_counter()
    encoder = ImageEncoder(cfg.image_model, device, cfg.fp16, cfg.lite_image_size)
    cache.write_manifest(encoder.record.to_dict())
    load_s = time.perf_counter() - t0
    precision = precision_tag(device, cfg.fp16)

    batches, pos, bs = [], 0, cfg.image_batch_size  # batches never cross a chunk
    for c in todo:
        n = len(cache.ids(c))
        batches += [list(range(pos + lo, pos + min(lo + bs, n))) for lo in range(0, n, bs)]
        pos += n
    workers = effective_workers(cfg.image_workers, device)
    loader = torch.utils.data.DataLoader(
        CoverDataset(items.image_dir, ids, encoder.preprocess), batch_sampler=batches,
        num_workers=workers, collate_fn=collate_covers, worker_init_fn=worker_init_fn,
        prefetch_factor=4 if workers else None, pin_memory=device.type == "cuda")
    starts = np.cumsum([0] + [len(cache.ids(c)) for c in todo])
    emb = np.zeros((len(ids), encoder.dim), dtype=np.float32)
    status = np.zeros(len(ids), dtype=np.uint8)
    sha = np.zeros((len(ids), 32), dtype=np.uint8)
    next_chunk, wait_s, encode_s = 0, 0.0, 0.0
    t1 = time.perf_counter()
    bar = tqdm(total=len(ids), desc="covers", unit="img", file=sys.stderr, disable=None)
    it = iter(loader)
    while True:
        tw = time.perf_counter()
        try:
            index, st, digests, pixels, errors = next(it)
        except StopIteration:
            break
        wait_s += time.perf_counter() - tw
        if strict and (st != chunk_cache.OK).any():
            k = int(np.nonzero(st != chunk_cache.OK)[0][0])
            raise _problem(items, int(ids[index[k]]), int(st[k]), errors[k])
        status[index], sha[index] = st, digests
        if pixels is not None:
            te = time.perf_counter()
            emb[index[st == chunk_cache.OK]] = encoder.encode(pixels)
            encode_s += time.perf_counter() - te
        bar.update(len(index))
        while next_chunk < len(todo) and index[-1] + 1 >= starts[next_chunk + 1]:
            a, b = starts[next_chunk], starts[next_chunk + 1]
            cache.write(todo[next_chunk], emb[a:b], status[a:b], sha[a:b], precision)
            if on_chunk:
                on_chunk("image", todo[next_chunk])
            next_chunk += 1
    bar.close()
    wall = time.perf_counter() - t1
    return {"items": int(len(ids)), "chunks": len(todo), "model_load_s": round(load_s, 3),
            "wall_s": round(wall, 3), "items_per_s": round(len(ids) / wall, 2) if wall else None,
            "loader_wait_s": round(wait_s, 3), "encode_s": round(encode_s, 3),
            "workers": workers, "workers_config": cfg.image_workers, "batch_size": cfg.image_batch_size, "precision": precision}


def effective_workers(configured: int, device: torch.device) -> int:
    """Decoding workers that fit the machine: at most its CPUs, and on a CPU device one core is left to
    the encoder (the default 4 on a 2-core machine oversubscribes it; torch warns about exactly that)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(configured, cpus - 1 if device.type == "cpu" else cpus))


def extract_text(cache: chunk_cache.ModalityCache, todo: list[int], items: Items, cfg: Task1Config,
                 device: torch.device, on_chunk) -> dict:
    from tqdm import tqdm

    from task1.models import TextEncoder, precision_tag

    t0 = time.perf_counter()
    encoder = TextEncoder(cfg.text_model, cfg.text_prefix, cfg.text_max_length, device, cfg.fp16)
    cache.write_manifest(encoder.record.to_dict())
    load_s = time.perf_counter() - t0
    precision = precision_tag(device, cfg.fp16)
    t1 = time.perf_counter()
    total = 0
    bar = tqdm(total=sum(len(cache.ids(c)) for c in todo), desc="titles", unit="title", file=sys.stderr,
               disable=None)
    for c in todo:
        ids = cache.ids(c)
        titles = [items.titles[i - 1] for i in ids]
        status = np.array([chunk_cache.OK if t else chunk_cache.EMPTY_TITLE for t in titles], dtype=np.uint8)
        emb = np.zeros((len(ids), encoder.dim), dtype=np.float32)
        ok = np.nonzero(status == chunk_cache.OK)[0]
        if len(ok):
            emb[ok] = encoder.encode([titles[i] for i in ok], cfg.text_batch_size)
        cache.write(c, emb, status, None, precision)
        total += len(ids)
        bar.update(len(ids))
        if on_chunk:
            on_chunk("text", c)
    bar.close()
    wall = time.perf_counter() - t1
    return {"items": total, "chunks": len(todo), "model_load_s": round(load_s, 3), "wall_s": round(wall, 3),
            "items_per_s": round(total / wall, 2) if wall else None, "batch_size": cfg.text_batch_size,
            "precision": precision}


def _log_run(cache: chunk_cache.ModalityCache, shard, record: dict) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"{stamp}-{time.time_ns() % 10**9:09d}-{socket.gethostname()}-{os.getpid()}.json"
    write_json_atomic(cache.dir / "runs" / name, {"shard": list(shard) if shard else None, **record})


# ---------------------------------------------------------------------------------------------
# Merge: fusion, reducer, quality, outputs


def item_info_frame(tags: np.ndarray, emb: np.ndarray) -> pl.DataFrame:
    n1 = emb.shape[0]
    return pl.DataFrame([
        pl.Series("item_id", np.arange(n1, dtype=np.int64)),
        pl.Series("item_tags", tags.astype(np.int64)).cast(pl.Array(pl.Int64, TAGS_LEN)),
        pl.Series("item_emb_d128", emb.astype(np.float64)).cast(pl.Array(pl.Float64, DIM)),
    ])


def check_item_info(frame: pl.DataFrame, n: int, path: Path) -> str:
    """The harness schema check (core.schemas.validate_item_info) plus this module's invariants."""
    emb = np.asarray(frame["item_emb_d128"].to_numpy())
    norms = np.linalg.norm(emb[1:], axis=1)
    problems = []
    if not np.array_equal(frame["item_id"].to_numpy(), np.arange(n + 1)):
        problems.append("item_id is not 0..N")
    if np.any(emb[0] != 0) or np.any(np.asarray(frame["item_tags"].to_numpy())[0] != 0):
        problems.append("row 0 is not all zeros")
    if not np.all(np.isfinite(emb)) or np.any(np.abs(norms - 1.0) > 1e-6):
        problems.append("an embedding row is not finite or not unit length")
    from core.schemas import validate_item_info

    checker = "core.schemas.validate_item_info"
    problems += [f.message for f in validate_item_info(frame, n_items=n) if f.severity == "error"]
    if problems:
        raise UserError(f"item_info failed its check before writing: {problems[0]} ({len(problems)} problems); "
                        f"this is a bug in task1, please report it", path=path, exit_code=EXIT_FINDINGS)
    return checker


@dataclass
class Loaded:
    blocks: dict  # m -> (emb (N, d), ok (N,))
    counts: dict
    precision: dict
    covers_sha256: str | None


def load_caches(caches: dict, items: Items, strict: bool) -> Loaded:
    blocks, counts, precision, covers = {}, {"items": items.n}, {}, None
    for m, cache in caches.items():
        emb, status, sha, prec = cache.read_all()
        precision[m] = prec
        if m == "image":
            if strict and (status != chunk_cache.OK).any():
                k = int(np.nonzero(status != chunk_cache.OK)[0][0])
                raise _problem(items, k + 1, int(status[k]), "in the cache of an earlier run")
            bad = (np.nonzero(status != chunk_cache.OK)[0] + 1).tolist()
            if over_limit(len(bad), items.n):
                raise _too_many(items, bad, "missing or unreadable")
            counts["images_ok"] = int((status == chunk_cache.OK).sum())
            counts["missing_images"] = int((status == chunk_cache.MISSING).sum())
            counts["unreadable_images"] = int((status == chunk_cache.UNREADABLE).sum())
            for name, code in (("missing_image_ids", chunk_cache.MISSING), ("unreadable_image_ids", chunk_cache.UNREADABLE)):
                counts[name] = (np.nonzero(status == code)[0] + 1)[:MAX_LISTED].tolist()
            covers = hashlib.sha256(sha.tobytes()).hexdigest()
        else:
            counts["titles_ok"] = int((status == chunk_cache.OK).sum())
            counts["empty_titles"] = int((status == chunk_cache.EMPTY_TITLE).sum())
            counts["empty_title_ids"] = (np.nonzero(status == chunk_cache.EMPTY_TITLE)[0] + 1)[:MAX_LISTED].tolist()
        blocks[m] = (emb, status == chunk_cache.OK)
    return Loaded(blocks, counts, precision, covers)


def reduce(blocks: dict, hist, cfg: Task1Config, seed: int, device: torch.device, log) -> dict:
    """Fusion and the configured reducer: the (N+1, 128) table plus what went into it."""
    from task1.reducers import fit_contrastive, fit_fusion, fit_pca, project, save_reducer

    fusion = fit_fusion(blocks, cfg.modalities, cfg.balance)
    x = fusion.apply(blocks)
    model, training = None, None
    if cfg.reducer == "pca":
        pca = fit_pca(x, DIM)
        z = pca.transform(x)
    else:
        wide = fit_pca(x, max(DIM, min(cfg.contrastive.input_dim, x.shape[1])))
        pca = wide.top(DIM)
        model, training = fit_contrastive(x, hist, wide, cfg.contrastive, seed, device, log)
        z = project(model, x)
    table = np.zeros((z.shape[0] + 1, DIM), dtype=np.float64)
    table[1:] = z
    blob = save_reducer(fusion, cfg.reducer, pca, model, cfg.to_dict())
    return {"table": table, "reducer_bytes": blob, "explained_variance": round(pca.explained_variance_ratio, 6),
            "input_dim": int(x.shape[1]), "training": training}


def run(data_dir, out_dir, cfg: Task1Config, *, shard: tuple[int, int] | None = None, merge: bool = False,
        strict: bool = False, device: str = "auto", seed: int = 0, on_chunk=None, log=_stderr) -> dict:
    """The whole `embed` command as a function; returns the task1.json document (or a shard summary).

    Args:
        shard: (K, N), 1-based: compute only the K-th of N contiguous ranges of chunks and stop.
        merge: compute nothing; join finished chunks (all must exist) into the outputs.
        strict: fail on the first missing or unreadable cover instead of replacing it.
        on_chunk: called as on_chunk(modality, chunk_index) after each chunk is written (tests
            interrupt a run from here).
    """
    t_start = time.perf_counter()
    from core.env import fingerprint
    from core.seeding import seed_everything

    data_dir = check_data_dir(data_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError("--out must be a folder, not a file", path=out_dir)
    items = read_items(data_dir)
    if "image" in cfg.modalities and not merge and not items.image_dir.is_dir():
        raise UserError("cover folder not found; unpack item_images.rar there, or leave `image` out of "
                        "`modalities` in --config", path=items.image_dir)
    if "image" in cfg.modalities and not merge:
        scan = scan_covers(items.image_dir, items.n)  # names and sizes: a missing or empty cover
        if strict and scan.bad:
            first = min(scan.missing[:1] + scan.unreadable[:1])
            missing = first in scan.missing[:1]
            raise _problem(items, first, chunk_cache.MISSING if missing else chunk_cache.UNREADABLE, "" if missing else "empty file")
        if over_limit(scan.bad, items.n):
            raise _too_many(items, sorted(scan.missing + scan.unreadable), "missing or empty")
        if scan.bad:
            log(f"covers: {len(scan.missing)} missing, {len(scan.unreadable)} empty of {items.n} (first: "
                f"{', '.join(str(i) for i in sorted(scan.missing + scan.unreadable)[:5])}); each is replaced by "
                f"the mean image embedding and listed in task1.json ({limit_text()})")
    seeding = seed_everything(seed)
    dev = resolve_device(device)
    caches = make_caches(out_dir, cfg, items)

    extraction = {}
    if not merge:
        for m, cache in caches.items():
            todo = cache.missing(chunk_cache.shard_chunks(cache.n_chunks, shard))
            if not todo:
                extraction[m] = {"items": 0, "chunks": 0, "reused_chunks": cache.n_chunks}
                continue
            log(f"{m}: computing {len(todo)} of {cache.n_chunks} chunks into {cache.dir}")
            if m == "image":
                rec = extract_images(cache, todo, items, cfg, dev, strict, on_chunk)
            else:
                rec = extract_text(cache, todo, items, cfg, dev, on_chunk)
            _log_run(cache, shard, rec)
            extraction[m] = rec
    if shard is not None and not merge:
        return {"shard": f"{shard[0]}/{shard[1]}", "out": str(out_dir), "extraction": extraction,
                "missing_chunks": {m: len(c.missing()) for m, c in caches.items()}}

    t_merge = time.perf_counter()
    loaded = load_caches(caches, items, strict)
    hist = read_histories(data_dir, items.n, cfg.quality.eval_users, seed)
    red = reduce(loaded.blocks, hist, cfg, seed, dev, log)
    from task1.quality import next_item_recall

    quality = next_item_recall(red["table"], hist, cfg.quality.ks)
    official = official_tags(data_dir, items.n)
    tags = items.tags if official is None else official  # Track 1's fixed feature: the dataset's own
    frame = item_info_frame(tags, red["table"])
    info_path = out_dir / "item_info.parquet"
    checker = check_item_info(frame, items.n, info_path)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / "reducer.safetensors", red["reducer_bytes"])
    write_parquet_atomic(info_path, frame)
    merge_s = time.perf_counter() - t_merge

    models = []
    for m, cache in caches.items():
        manifest = cache.read_manifest() or {}
        record = dict(manifest.get("model", {"role": m, "id": cache.spec["model"]}), cache=str(cache.dir))
        # the licence as of this run: a licence stated now also covers caches computed before it was stated
        try:
            found, where = model_license(cache.spec["model"], m, cfg.image_model_license if m == "image" else cfg.text_model_license)
        except UserError:  # the model folder is gone (a merge elsewhere): keep what extraction recorded
            found, where = None, None
        if found:
            record["license"], record["license_source"] = found, where
        models.append(record)
    throughput = {}
    for m, cache in caches.items():
        runs = [json.loads(p.read_text()) for p in sorted((cache.dir / "runs").glob("*.json"))]
        items_done = sum(r.get("items", 0) for r in runs)
        wall = sum(r.get("wall_s", 0.0) for r in runs)
        throughput[m] = {"runs": len(runs), "items": items_done, "wall_s": round(wall, 3),
                         "items_per_s": round(items_done / wall, 2) if wall else None}
    inputs = {"data_dir": str(data_dir.resolve()),
              "sha256": {name: sha256_file(data_dir / name) for name in (ITEM_FEATURE, TRAIN)}}
    if loaded.covers_sha256:
        inputs["covers_sha256"] = loaded.covers_sha256
    inputs["titles_sha256"] = items.titles_sha256()
    doc = {
        "task": "Task 1: multimodal item embeddings",
        "profile": cfg.profile,
        "config": cfg.to_dict(),
        "seed": seed,
        "seeding": seeding,
        "device": str(dev),
        "precision": loaded.precision,
        "models": models,
        "inputs": inputs,
        "counts": loaded.counts,
        "policy": {"missing_or_unreadable_image": "replaced by the normalised mean image embedding of the "
                   "readable covers; counted and listed here" if not strict else "fail (--strict)",
                   "max_bad_cover_share": MAX_BAD_SHARE,
                   "empty_title": "replaced by the normalised mean title embedding; counted and listed here"},
        "fusion": {"modalities": list(cfg.modalities), "balance": cfg.balance, "input_dim": red["input_dim"]},
        "reducer": {"kind": cfg.reducer, "explained_variance": red["explained_variance"],
                    "explained_variance_note": "share of the fused embedding's variance in the top 128 "
                    "principal components (the contrastive reducer starts from them)",
                    "training": red["training"]},
        "item_tags": {"source": ("copied from the dataset's MicroLens_1M_x1/item_info.parquet" if official is not None
                                 else "item_feature.parquet item_tags, last 5, left-padded (the dataset has no "
                                      "item_info.parquet of N + 1 rows)"),
                      "equal_to_dataset_item_info": None if official is None else True,
                      "items_whose_item_feature_last_five_differ": None if official is None
                      else int((official != items.tags).any(axis=1).sum())},
        "quality": quality,
        "schema_check": checker,
        "timings": {"extraction_this_run": extraction, "extraction_all_runs": throughput,
                    "merge_s": round(merge_s, 3), "total_s": round(time.perf_counter() - t_start, 3)},
        "outputs": {"item_info.parquet": sha256_file(info_path),
                    "reducer.safetensors": sha256_bytes(red["reducer_bytes"])},
        "environment": fingerprint(),
    }
    write_json_atomic(out_dir / "task1.json", doc)
    return doc
