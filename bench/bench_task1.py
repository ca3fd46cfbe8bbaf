"""Task 1 benchmark: extraction throughput and the embedding quality metric.

    python bench/bench_task1.py [--data DIR] [--workdir /tmp/mmctr-bench-task1] [--threads 2]
                                [--workers 1] [--clip-sample 48] [--device cpu] [--skip PART]... [--fresh]

1. Throughput of the offline profile (packaged EfficientNet-Lite0 at 224 px + all-MiniLM-L6-v2) over
   the whole `demo` dataset (3,000 covers and titles), through `task1.pipeline.run`.
2. Throughput of a randomly initialised CLIP ViT-L/14 vision tower and an E5-base-sized XLM-R (12
   layers, 768 wide; a small vocabulary, which leaves the per-token cost unchanged), built from
   configs, saved, and loaded through the same encoder classes as the real models, on a sample of the
   demo covers and titles. The real weights cost the same; only the numbers differ.
3. Quality on demo (offline profile caches): next-item recall@K for PCA vs the contrastive reducer,
   image only vs title only vs fused, and the dataset's own item_info embedding for reference.

Writes bench/results/task1_<device>_<date>.json (machine, versions, date) and prints the tables.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from _common import machine, table, write_results


def ensure_demo(data: Path | None, work: Path) -> Path:
    if data is not None:
        return data
    from harness.synth import generate

    out = work / "demo"
    if not (out / "item_feature.parquet").is_file():
        generate(out, "demo", 0, overwrite=True)
    return out


def offline_extraction(data: Path, work: Path, workers: int, device: str, fresh: bool) -> tuple[dict, Path]:
    from task1.config import make_config
    from task1.pipeline import run

    import json

    out = work / "offline"
    if fresh and out.exists():
        shutil.rmtree(out)
    cfg = make_config("offline", {"image_workers": workers})
    t0 = time.perf_counter()
    doc = run(data, out, cfg, device=device, seed=0)
    wall = time.perf_counter() - t0
    this = doc["timings"]["extraction_this_run"]
    rows = []
    for m, unit in (("image", "images/s"), ("text", "titles/s")):
        # the timing logs of the run(s) that computed the chunks (this one, or an earlier one)
        logs = [json.loads(p.read_text()) for p in sorted(out.glob(f"cache/{m}-*/runs/*.json"))]
        items, secs = sum(r["items"] for r in logs), sum(r["wall_s"] for r in logs)
        rows.append({"what": f"offline {m} ({'EfficientNet-Lite0 224px' if m == 'image' else 'all-MiniLM-L6-v2'})",
                     "items": items, "seconds": round(secs, 2), "rate": round(items / secs, 2), "unit": unit,
                     "loader_wait_s": round(sum(r.get("loader_wait_s", 0) for r in logs), 2) if m == "image" else "",
                     "encode_s": round(sum(r.get("encode_s", 0) for r in logs), 2) if m == "image" else ""})
    return {"rows": rows, "run_total_s": round(wall, 2), "cached": not this["image"].get("items"),
            "quality_default_run": doc["quality"]}, out


def big_models_throughput(data: Path, work: Path, sample: int, device: str, workers: int) -> list[dict]:
    """Random CLIP ViT-L/14 (vision tower + projection) and E5-base-sized XLM-R through the encoder classes."""
    import numpy as np
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, XLMRobertaConfig, XLMRobertaModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from task1.data import read_items
    from task1.models import ImageEncoder, TextEncoder
    from task1.pipeline import CoverDataset, collate_covers
    from tiny_models import tiny_xlmr_tokenizer  # bench/, beside this script

    dev = torch.device(device)
    clip_dir, e5_dir = work / "random-clip-vit-l-14", work / "random-e5-base"
    if not (clip_dir / "config.json").is_file():
        torch.manual_seed(0)
        cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                               num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768)
        CLIPVisionModelWithProjection(cfg).save_pretrained(clip_dir)
        processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
        processor.save_pretrained(clip_dir)
    if not (e5_dir / "config.json").is_file():
        torch.manual_seed(0)
        tok = tiny_xlmr_tokenizer()
        cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                               intermediate_size=3072, max_position_embeddings=514, pad_token_id=tok.pad_token_id)
        XLMRobertaModel(cfg, add_pooling_layer=False).save_pretrained(e5_dir)
        tok.save_pretrained(e5_dir)

    items = read_items(data)
    ids = np.arange(1, sample + 1)
    rows = []
    enc = ImageEncoder(str(clip_dir), dev, True)
    loader = torch.utils.data.DataLoader(CoverDataset(items.image_dir, ids, enc.preprocess), batch_size=16,
                                         num_workers=workers, collate_fn=collate_covers)
    t_decode = time.perf_counter()
    batches = list(loader)
    decode_s = time.perf_counter() - t_decode
    enc.encode(batches[0][3][:2])  # warm-up
    t0 = time.perf_counter()
    for b in batches:
        enc.encode(b[3])
    s = time.perf_counter() - t0
    rows.append({"what": "random CLIP ViT-L/14 vision (224px)", "items": sample, "seconds": round(s, 2),
                 "rate": round(sample / s, 2), "unit": "images/s", "loader_wait_s": round(decode_s, 2),
                 "encode_s": round(s, 2)})
    te = TextEncoder(str(e5_dir), "passage: ", 128, dev, True)
    titles = items.titles[: sample * 4]
    te.encode(titles[:4], 4)
    t0 = time.perf_counter()
    te.encode(titles, 128)
    s = time.perf_counter() - t0
    rows.append({"what": "random E5-base-sized XLM-R (12x768)", "items": len(titles), "seconds": round(s, 2),
                 "rate": round(len(titles) / s, 2), "unit": "titles/s", "loader_wait_s": "", "encode_s": round(s, 2)})
    return rows


def quality_ablation(data: Path, out: Path, device: str) -> list[dict]:
    """Recall@K for each modality set and reducer, from the offline profile's caches (nothing re-extracted)."""
    import numpy as np
    import polars as pl
    import torch

    from task1.config import make_config
    from task1.data import read_histories, read_items
    from task1.pipeline import load_caches, make_caches, reduce
    from task1.quality import next_item_recall

    base = make_config("offline")
    items = read_items(data)
    caches = make_caches(out, base, items)
    loaded = load_caches(caches, items, strict=False)
    hist = read_histories(data, items.n, base.quality.eval_users, 0)
    rows = []
    for mods in (("image",), ("text",), ("image", "text")):
        for reducer in ("pca", "contrastive"):
            cfg = replace(base, modalities=mods, reducer=reducer)
            t0 = time.perf_counter()
            red = reduce({m: loaded.blocks[m] for m in mods}, hist, cfg, 0, torch.device(device), lambda m: None)
            q = next_item_recall(red["table"], hist, cfg.quality.ks)
            rows.append({"embedding": "+".join(mods), "reducer": reducer, "recall@10": q["recall@10"],
                         "recall@50": q["recall@50"], "mrr": q["mrr"], "explained_var": red["explained_variance"],
                         "fit_s": round(time.perf_counter() - t0, 2)})
    provided = pl.read_parquet(data / "MicroLens_1M_x1" / "item_info.parquet").sort("item_id")
    emb = np.array(provided["item_emb_d128"].to_numpy(), dtype=np.float64)  # a writable copy
    emb[1:] /= np.maximum(np.linalg.norm(emb[1:], axis=1, keepdims=True), 1e-12)
    q = next_item_recall(emb, hist, base.quality.ks)
    rows.append({"embedding": "dataset item_info (PCA of provided BERT+CLIP-RN50)", "reducer": "given",
                 "recall@10": q["recall@10"], "recall@50": q["recall@50"], "mrr": q["mrr"], "explained_var": "",
                 "fit_s": ""})
    rows.append({"embedding": "popularity (reference)", "reducer": "-", "recall@10": q["popularity"]["recall@10"],
                 "recall@50": q["popularity"]["recall@50"], "mrr": q["popularity"]["mrr"], "explained_var": "",
                 "fit_s": ""})
    rows.append({"embedding": "random (reference)", "reducer": "-", "recall@10": q["random"]["recall@10"],
                 "recall@50": q["random"]["recall@50"], "mrr": "", "explained_var": "", "fit_s": ""})
    return rows, q["users"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", type=click.Path(path_type=Path, file_okay=False),
              help="The demo dataset [default: generated into --workdir].")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("/tmp/mmctr-bench-task1"), show_default=True)
@click.option("--threads", type=int, default=os.cpu_count(), show_default=True, help="torch.set_num_threads.")
@click.option("--workers", type=int, default=1, show_default=True, help="DataLoader workers decoding covers.")
@click.option("--clip-sample", type=int, default=48, show_default=True, help="Covers through the random CLIP-L/14.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--skip", multiple=True, type=click.Choice(["offline", "big", "quality"]),
              help="Leave out a part; repeat the option for several.")
@click.option("--fresh", is_flag=True, help="Delete the offline caches first (re-time extraction).")
def main(data: Path | None, workdir: Path, threads: int, workers: int, clip_sample: int, device: str,
         skip: tuple[str, ...], fresh: bool) -> None:
    """Task 1 extraction throughput (offline profile, random CLIP-L/14 and E5-base) and the quality metric."""
    import torch

    torch.set_num_threads(threads)
    workdir.mkdir(parents=True, exist_ok=True)
    data = ensure_demo(data, workdir)
    doc = {"machine": machine(), "threads": threads, "workers": workers, "device": device,
           "data": str(data), "command": "python bench/bench_task1.py " + " ".join(sys.argv[1:]),
           "load_average_at_start": os.getloadavg()}
    cols = ["what", "items", "seconds", "rate", "unit", "loader_wait_s", "encode_s"]
    throughput = []
    out = workdir / "offline"
    if "offline" not in skip:
        res, out = offline_extraction(data, workdir, workers, device, fresh)
        throughput += res["rows"]
        doc["offline_run_total_s"], doc["offline_from_cache"] = res["run_total_s"], res["cached"]
        doc["offline_default_quality"] = res["quality_default_run"]
        print(table(res["rows"], cols), flush=True)
    if "big" not in skip:
        rows = big_models_throughput(data, workdir, clip_sample, device, workers)
        throughput += rows
        print(table(rows, cols), flush=True)
    doc["throughput"] = throughput
    if "quality" not in skip:
        rows, users = quality_ablation(data, out, device)
        doc["quality"] = {"metric": "next-item recall@K of held-out train clicks", "users": users, "rows": rows}
        print(f"\nquality on demo (offline profile, {users} held-out train clicks):")
        print(table(rows, ["embedding", "reducer", "recall@10", "recall@50", "mrr", "explained_var", "fit_s"]))
    doc["load_average_at_end"] = os.getloadavg()
    path = write_results(f"task1_{device}", doc)
    print(f"\nthroughput:\n{table(throughput, cols)}\nwrote {path}")


if __name__ == "__main__":
    main()
