"""The GPU check of a real run, in one command: a T4's 16 GB emulated on whatever card is lent (issue 11).

    python bench/bench_gpu.py                      # CUDA; about 5-8 minutes on one GPU
    python bench/bench_gpu.py --data DATA_DIR      # Task 2 on that dataset's train split instead
    python bench/bench_gpu.py --dry-run --out X    # CPU, tiny sizes: every code path in seconds (tested)

What it measures, each with its peak GPU memory (torch.cuda.max_memory_allocated) under
`torch.cuda.set_per_process_memory_fraction`, so that a larger card allows no more than a T4's
--emulate-gib (14.6 GiB: what torch reports usable on a 16 GB T4):

1. Task 2 on full-size data: 3.6 M training rows over 91,717 items, generated in memory with the real
   data's shape (history lengths min 3, median 6, up to 64 slots; 25 % positives; long-tailed item ids)
   unless --data gives a dataset. The training step of task2/train.py (autocast, BCE + auxiliary loss,
   GradScaler, gradient clipping, AdamW), deterministic algorithms on, the split on the GPU as train.py
   puts it: the default SASRecDCN at batch 512, and Track 1's DIN at the official batch 8192. For each
   autocast dtype, fp16 with a GradScaler (what a T4 gets) and bf16 where the GPU has it natively
   (compute capability >= 8.0): --warmup steps, then --steps timed steps, extrapolated to an epoch.
   Evaluation as `harness train` runs it (fp32, score_split) over a tenth of the rows, extrapolated.
   set_known_items on that split, with its peak.
2. The real `harness train` loop (task2.train.train: batches, evaluation, checkpoint, records) for one
   epoch of the generated `demo` dataset (written to a temporary folder), for SASRecDCN and for DIN.
3. Determinism: two runs of --det-steps steps from the same seed, in the dtype `harness train` picks on
   this card (bf16 at compute capability 8.0 or more, fp16 with a GradScaler below), must give
   bit-identical weights; the script exits 1 when they do not.
4. Task 1: covers/s of a randomly initialised CLIP ViT-L/14 (vision tower + projection, 304 M
   parameters) at the T4 profile's batch size (128) in fp16 autocast, as task1's ImageEncoder runs it,
   on random pixels (the encoder alone) and end to end from JPEG bytes (decoding, CLIP's preprocessing
   on this process's CPU, then the encoder); titles/s of a randomly initialised E5-base-sized encoder
   (XLM-R shape: 12 layers, 768 wide, 250,002 tokens) at batch 256 on 32-token titles (tokenizing is not
   in the figure). Each extrapolated to 91,717 items.

Writes bench/results/gpu_<device>_<date>.json (or --out) with the machine, the versions and the command.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import click

from core.seeding import CUBLAS_WORKSPACE  # noqa: E402 - numpy only; torch comes later

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # before CUDA initialises (deterministic cuBLAS)

from _common import RESULTS, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FULL = {"rows": 3_600_000, "n_items": 91_718, "batch_size": 512, "covers": 91_717, "din_batch_size": 8192}
T4_TEXT_BATCH, TITLE_TOKENS = 256, 32
T4_CLIP_BATCH = 128  # harness.pipeline.HARDWARE["t4"]["task1"]["image_batch_size"]
GIB = 2**30


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data


def generated_split(rows: int, n_items: int, seed: int = 0):
    """A training split of the real data's shape, in memory (task2.data.Split, int32 like read_split)."""
    import numpy as np
    import torch

    from harness.worlds import history_lengths
    from task2.data import Split

    rng = np.random.default_rng(seed)
    lengths = np.minimum(64, history_lengths(rows, rng))

    def popularity(n: int) -> np.ndarray:  # long-tailed item ids in 1..n_items - 1
        return np.minimum(n_items - 1, 1 + (rng.random(n) ** 3 * (n_items - 1)).astype(np.int64))

    seq = np.zeros((rows, 64), dtype=np.int32)
    slots = np.arange(64)[None, :] >= (64 - lengths)[:, None]  # left-padded: the last `length` slots
    seq[slots] = popularity(int(slots.sum()))
    likes, views = (torch.from_numpy(rng.integers(1, 11, rows).astype(np.int32)) for _ in range(2))
    split = Split("generated", torch.from_numpy(seq), torch.from_numpy(popularity(rows).astype(np.int32)),
                  likes, views, torch.from_numpy(lengths.astype(np.int32)))
    split.label = torch.from_numpy((rng.random(rows) < 0.25).astype(np.float32))
    emb = rng.normal(size=(n_items, 128)).astype(np.float32)
    emb[0] = 0
    emb[1:] /= np.linalg.norm(emb[1:], axis=1, keepdims=True)
    return split, torch.from_numpy(emb)


def dataset_split(data: Path):
    from task2.data import read_item_info, read_split, split_path

    items = read_item_info(split_path(data, "item_info"))
    return read_split(split_path(data, "train"), n_items=items.n_items), items.item_emb


# ---------------------------------------------------------------------------------------------
# Task 2


def build_model(n_items: int, item_emb, model_overrides: dict, device, seed: int, model_class: str = "SASRecDCN"):
    import torch

    from core.config import from_dict
    from task2.registry import MODEL_CLASSES

    model_cls, cfg_cls = MODEL_CLASSES[model_class]
    torch.manual_seed(seed)
    cfg = from_dict(cfg_cls, dict(model_overrides, n_items=n_items))
    return model_cls(cfg, item_emb).to(device), cfg


def train_steps(split, item_emb, device, amp_dtype, steps: int, warmup: int, batch_size: int,
                model_overrides: dict, seed: int = 0, model_class: str = "SASRecDCN") -> dict:
    """task2.train.train_step (the step `harness train` runs) for `warmup + steps` batches; times the last `steps`."""
    import torch

    from core.seeding import torch_generator
    from task2.data import iterate_batches
    from task2.train import train_step

    model, cfg = build_model(item_emb.shape[0], item_emb, model_overrides, device, seed, model_class)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    batches = iterate_batches(split, batch_size, max_len=cfg.max_len, shuffle=True, generator=torch_generator(seed),
                              length_aware=True, bucket_batches=64)
    t0, losses, steps = None, [], min(steps, max(1, math.ceil(len(split) / batch_size) - warmup))
    for i, batch in enumerate(batches):
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        if i == warmup + steps:
            break
        bce, aux, _skipped = train_step(model, model, optimizer, batch, 1.0, scaler=scaler, amp_dtype=amp_dtype)
        losses.append(float(bce) / batch["global_size"] + float(aux))
    sync()
    seconds = time.perf_counter() - t0
    steps_per_epoch = math.ceil(len(split) / batch_size)
    out = {"steps_timed": steps, "warmup_steps": warmup, "batch_size": batch_size, "seconds": round(seconds, 3),
           "s_per_step": round(seconds / steps, 5), "samples_per_s": round(steps * batch_size / seconds, 1),
           "steps_per_epoch": steps_per_epoch, "share_of_epoch_timed": round(steps / steps_per_epoch, 4),
           "epoch_s_extrapolated": round(seconds / steps * steps_per_epoch, 1),
           "grad_scaler": scaler.is_enabled(), "final_loss": losses[-1], "loss_finite": all(map(math.isfinite, losses))}
    if cuda:
        out["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / GIB, 3)
        out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / GIB, 3)
    return out, model


def eval_throughput(model, split, rows: int, device) -> dict:
    """score_split as `harness train` evaluates (fp32, eval batch 1024) over the first `rows` rows."""
    import torch

    from task2.predict import score_split

    from task2.data import Split

    n = min(rows, len(split))
    cut = lambda t: None if t is None else t[:n]  # noqa: E731
    part = Split(split.path, cut(split.item_seq), cut(split.item_id), cut(split.likes_level), cut(split.views_level),
                 cut(split.lengths), cut(split.label), cut(split.ids))
    model.eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    logits = score_split(model, part, 1024, True, None)
    sync()
    seconds = time.perf_counter() - t0
    return {"rows": len(part), "seconds": round(seconds, 3), "rows_per_s": round(len(part) / seconds, 1),
            "finite": bool(torch.isfinite(logits).all())}


def real_loop(device, model_class: str, dry_run: bool) -> dict:
    """One epoch of task2.train.train, the loop `harness train` runs (batches, evaluation, checkpoint,
    records), on the generated `demo` dataset (tiny for a dry run) in a temporary folder."""
    import tempfile

    from harness.synth import generate
    from task2.train import load_train_config, train

    scale = "tiny" if dry_run else "demo"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(Path(tmp) / "data", scale=scale, seed=0)
        synth_s = time.perf_counter() - t0
        overrides = {"model_class": model_class, "device": device.type, "epochs": 1}
        cfg = load_train_config(None, **overrides)
        run = train(Path(tmp) / "data", Path(tmp) / "run", cfg, log=lambda m: None, progress=False)
    return {"data": scale, "synth_s": round(synth_s, 1), "train_rows": run["train_rows"],
            "batch_size": run["fitted_to_data"].get("batch_size") if isinstance(run.get("fitted_to_data"), dict)
            else None, "epoch_total_s": run["timings_s"]["total"], "train_s": run["timings_s"]["train"],
            "valid_auc": run["best_valid_auc"], "amp": run["amp"]}


def known_items_peak(split, item_emb, device, model_overrides) -> dict:
    import torch

    model, _ = build_model(item_emb.shape[0], item_emb, model_overrides, device, 0)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.max_memory_allocated(device)
    t0 = time.perf_counter()
    model.set_known_items(split.item_id, split.item_seq)
    out = {"seconds": round(time.perf_counter() - t0, 3), "known": int(model.id_known.sum())}
    if device.type == "cuda":
        torch.cuda.synchronize()
        out["peak_growth_mib"] = round((torch.cuda.max_memory_allocated(device) - before) / 2**20, 1)
    return out


def determinism(split, item_emb, device, amp_dtype, steps: int, batch_size: int, model_overrides: dict) -> dict:
    import torch

    from core.seeding import seed_everything

    states = []
    for _ in range(2):
        seed_everything(0, deterministic=True)
        _, model = train_steps(split, item_emb, device, amp_dtype, steps, 0, batch_size, model_overrides, seed=0)
        states.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        del model
    a, b = states
    diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].is_floating_point()
               else float((a[k] != b[k]).any()) for k in a)
    return {"steps": steps, "dtype": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
            "identical": all(torch.equal(a[k], b[k]) for k in a), "max_abs_diff": diff, "tensors": len(a)}


# ---------------------------------------------------------------------------------------------
# Task 1: CLIP ViT-L/14


def clip_throughput(device, batch: int, batches: int, dry_run: bool) -> dict:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if dry_run:
        cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                               image_size=32, patch_size=8, projection_dim=16)
    else:  # openai/clip-vit-large-patch14's vision tower and projection
        cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                               image_size=224, patch_size=14, projection_dim=768)
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(cfg).to(device).eval()  # float32 weights, fp16 autocast (task1)
    params = sum(p.numel() for p in model.parameters())
    pixels = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
        for _ in range(2):  # warm-up
            model(pixel_values=pixels)
        sync()
        t0 = time.perf_counter()
        for _ in range(batches):
            emb = model(pixel_values=pixels).image_embeds
        sync()
        seconds = time.perf_counter() - t0
    rate = batches * batch / seconds
    out = {"parameters": params, "image_size": cfg.image_size, "batch_size": batch, "batches_timed": batches,
           "seconds": round(seconds, 3), "covers_per_s": round(rate, 1), "precision": "float16 autocast" if cuda
           else "float32 (CPU)", "all_covers_s_extrapolated": round(FULL["covers"] / rate, 1),
           "embedding_finite": bool(torch.isfinite(emb.float()).all()), "note": "encoder only: JPEG decoding and "
           "preprocessing run in DataLoader workers and are not in this figure"}
    if cuda:
        out["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / GIB, 3)
    return out, model


def jpeg_end_to_end(device, model, image_size: int, batch: int, batches: int) -> dict:
    """Covers from JPEG bytes: task1's decode_image, CLIP's preprocessing (CLIPImageProcessor, the
    reference model's settings) on this process's CPU, then the encoder, one batch at a time."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor

    from task1.models import decode_image

    rng = np.random.default_rng(0)
    covers = []
    for _ in range(batch):  # photo-sized covers (the real ones are about 500 x 300), random content
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
        covers.append(buf.getvalue())
    processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size,
                                                                                   "width": image_size})
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t_prep = t_model = 0.0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
        for _ in range(batches):
            t0 = time.perf_counter()
            pixels = processor(images=[decode_image(c) for c in covers], return_tensors="pt")["pixel_values"]
            t1 = time.perf_counter()
            model(pixel_values=pixels.to(device))
            sync()
            t_prep += t1 - t0
            t_model += time.perf_counter() - t1
    n = batch * batches
    return {"covers": n, "decode_and_preprocess_per_s_one_process": round(n / t_prep, 1),
            "end_to_end_per_s_one_process": round(n / (t_prep + t_model), 1),
            "note": "decoding and preprocessing in this one process; the pipeline spreads them over "
                    "image_workers DataLoader processes (4 in the t4 profile)"}


def titles_throughput(device, batch: int, batches: int, dry_run: bool) -> dict:
    """Titles/s of a randomly initialised encoder of multilingual-E5-base's shape (XLM-R), fp16 autocast."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    if dry_run:
        cfg = XLMRobertaConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=37, max_position_embeddings=64)
    else:
        cfg = XLMRobertaConfig(vocab_size=250_002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                               intermediate_size=3072, max_position_embeddings=514)
    torch.manual_seed(0)
    model = XLMRobertaModel(cfg).to(device).eval()
    ids = torch.randint(5, cfg.vocab_size, (batch, TITLE_TOKENS), device=device)
    mask = torch.ones_like(ids)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
        model(input_ids=ids, attention_mask=mask)
        sync()
        t0 = time.perf_counter()
        for _ in range(batches):
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        sync()
        seconds = time.perf_counter() - t0
    rate = batch * batches / seconds
    doc = {"parameters": sum(p.numel() for p in model.parameters()), "batch_size": batch, "tokens": TITLE_TOKENS,
           "titles_per_s": round(rate, 1), "all_titles_s_extrapolated": round(FULL["covers"] / rate, 1),
           "finite": bool(torch.isfinite(out.float()).all()), "note": "encoder only; tokenizing is not in the figure"}
    if cuda:
        doc["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / GIB, 3)
    return doc


# ---------------------------------------------------------------------------------------------


@click.command()
@click.option("--dry-run", is_flag=True, help="CPU, tiny sizes: the code paths only (the test suite runs it).")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Use this dataset's train split and item_info for Task 2 [default: generated in memory].")
@click.option("--emulate-gib", type=float, default=14.6, show_default=True,
              help="Memory the process may use, as on a 16 GB T4 (set_per_process_memory_fraction).")
@click.option("--steps", type=int, default=300, show_default=True, help="Timed Task 2 steps per dtype.")
@click.option("--warmup", type=int, default=20, show_default=True)
@click.option("--det-steps", type=int, default=200, show_default=True, help="Steps of each determinism run.")
@click.option("--clip-batches", type=int, default=10, show_default=True, help="Timed CLIP batches.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="JSON path [default: bench/results/gpu_<device>_<date>.json].")
def main(dry_run, data, emulate_gib, steps, warmup, det_steps, clip_batches, out_path):
    """Task 2 (fp16 + GradScaler, bf16 where native), determinism and CLIP ViT-L/14 covers/s under a T4's memory."""
    import torch

    from core.seeding import seed_everything

    t_start = time.perf_counter()
    seeding = seed_everything(0, deterministic=True)  # what harness train runs with (TrainConfig.deterministic)
    if dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        steps, warmup, det_steps, clip_batches = min(steps, 3), min(warmup, 1), min(det_steps, 3), min(clip_batches, 2)
        rows, n_items, batch_size, clip_batch = 2_000, 500, 128, 4
        din_batch, text_batch = 256, 4
        model_overrides = {"id_emb_dim": 16, "n_layers": 1, "ffn_dim": 32, "max_len": 16, "cross_layers": 1,
                           "mlp_dims": [32]}
        din_overrides = {"embedding_dim": 8, "attention_units": [8], "dnn_units": [16], "max_len": 16, "n_tags": 50}
    else:
        if not torch.cuda.is_available():
            log(f"error: torch {torch.__version__} sees no CUDA device: this script measures a GPU "
                "(--dry-run runs its code paths on the CPU)")
            sys.exit(2)
        device = torch.device("cuda", 0)
        rows, n_items, batch_size, clip_batch = FULL["rows"], FULL["n_items"], FULL["batch_size"], T4_CLIP_BATCH
        din_batch, text_batch = FULL["din_batch_size"], T4_TEXT_BATCH
        model_overrides = {}
        from core.challenge import DIN_BASELINE_MODEL

        din_overrides = dict(DIN_BASELINE_MODEL)
    doc = {"benchmark": "bench_gpu", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "machine": machine(), "dry_run": dry_run, "seeding": seeding}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        total = props.total_memory
        fraction = min(1.0, emulate_gib * GIB / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        doc["device"] = {"name": props.name, "total_gib": round(total / GIB, 2), "emulated_gib": emulate_gib,
                         "memory_fraction": round(fraction, 4), "compute_capability": f"{props.major}.{props.minor}"}
        dtypes = [torch.float16] + ([torch.bfloat16] if props.major >= 8 else [])
        from task2.train import amp_dtype_for

        train_dtype = amp_dtype_for(device, True)
        doc["device"]["harness_train_autocast"] = str(train_dtype).replace("torch.", "")
    else:
        doc["device"] = {"name": "cpu", "note": "dry run: no autocast, no memory figures"}
        dtypes = [None]
        train_dtype = None

    t0 = time.perf_counter()
    if data is not None:
        split, item_emb = dataset_split(data)
        source = str(data)
    else:
        split, item_emb = generated_split(rows, n_items)
        source = "generated in memory (the real data's shape)"
    split = split.to(device)
    item_emb = item_emb.to(device)
    doc["task2"] = {"data": {"source": source, "rows": len(split), "n_items": int(item_emb.shape[0]),
                             "mean_history": round(float(split.lengths.float().mean()), 2),
                             "seconds_to_build": round(time.perf_counter() - t0, 1)},
                    "set_known_items": known_items_peak(split, item_emb, device, model_overrides), "runs": {}}
    log(f"data: {len(split):,} rows ({source}); set_known_items {doc['task2']['set_known_items']}")
    for model_class, batch, overrides in (("SASRecDCN", batch_size, model_overrides), ("DIN", din_batch, din_overrides)):
        for dtype in dtypes:
            name = "float32" if dtype is None else str(dtype).replace("torch.", "")
            key = name if model_class == "SASRecDCN" else f"DIN_{name}"
            try:
                run, model = train_steps(split, item_emb, device, dtype, steps, warmup, batch, overrides,
                                         model_class=model_class)
                if model_class == "SASRecDCN" and dtype is dtypes[0]:
                    doc["task2"]["evaluation"] = eval_throughput(model, split, max(1, len(split) // 10), device)
                    log(f"evaluation: {doc['task2']['evaluation']}")
                del model
            except torch.cuda.OutOfMemoryError as e:
                run = {"out_of_memory": str(e).splitlines()[0][:300], "batch_size": batch}
            doc["task2"]["runs"][key] = run
            log(f"task2 {key}: {run}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if device.type == "cuda" and len(dtypes) == 1:
        doc["task2"]["runs"]["bfloat16"] = {"skipped": "compute capability below 8.0: no native bf16"}
    try:
        doc["determinism"] = determinism(split, item_emb, device, train_dtype, det_steps, batch_size, model_overrides)
    except RuntimeError as e:  # e.g. an op without a deterministic implementation: harness train would fail too
        doc["determinism"] = {"identical": False, "error": str(e).splitlines()[0][:300], "max_abs_diff": None}
    log(f"determinism: {doc['determinism']}")
    del split, item_emb
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for model_class in ("SASRecDCN", "DIN"):
        try:
            doc.setdefault("harness_train_epoch", {})[model_class] = real_loop(device, model_class, dry_run)
        except torch.cuda.OutOfMemoryError as e:
            doc["harness_train_epoch"][model_class] = {"out_of_memory": str(e).splitlines()[0][:300]}
        log(f"harness train, one epoch, {model_class}: {doc['harness_train_epoch'][model_class]}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    try:
        doc["clip_vit_l14"], clip = clip_throughput(device, clip_batch, clip_batches, dry_run)
        doc["clip_vit_l14"]["from_jpeg"] = jpeg_end_to_end(device, clip, clip.config.image_size, clip_batch,
                                                           max(1, clip_batches // 2))
        del clip
    except torch.cuda.OutOfMemoryError as e:
        doc["clip_vit_l14"] = {"out_of_memory": str(e).splitlines()[0][:300], "batch_size": clip_batch}
    log(f"clip: {doc['clip_vit_l14']}")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        doc["e5_base_titles"] = titles_throughput(device, text_batch, clip_batches, dry_run)
    except torch.cuda.OutOfMemoryError as e:
        doc["e5_base_titles"] = {"out_of_memory": str(e).splitlines()[0][:300], "batch_size": text_batch}
    log(f"titles: {doc['e5_base_titles']}")
    doc["wall_s"] = round(time.perf_counter() - t_start, 1)

    if out_path is None:
        slug = re.sub(r"[^a-z0-9]+", "-", doc["device"]["name"].lower()).strip("-")
        out_path = RESULTS / f"gpu_{slug}_{dt.date.today().isoformat()}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_path)
    print(json.dumps({"result": str(out_path), "wall_s": doc["wall_s"],
                      "deterministic": doc["determinism"]["identical"]}))
    if not doc["determinism"]["identical"]:
        log(f"FAIL: two runs of {det_steps} steps from one seed gave different weights "
            f"(max abs diff {doc['determinism']['max_abs_diff']})")
        sys.exit(1)


if __name__ == "__main__":
    main()
