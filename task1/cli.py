"""`harness embed` (and `python -m task1`): parse, call task1.pipeline.run, render the result.

The summary goes to stdout (JSON alone with --json); progress and logs go to stderr.
"""

from __future__ import annotations

import json
import re

import click

from core.errors import UserError

SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    m = SHARD.match(value)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise UserError(f"--shard takes K/N with 1 <= K <= N (K counts from 1), not {value!r}")
    return int(m.group(1)), int(m.group(2))


def render(doc: dict) -> str:
    if "shard" in doc:
        ex = ", ".join(f"{m}: {r.get('items', 0)} items in {r.get('chunks', 0)} chunks"
                       for m, r in doc["extraction"].items())
        left = ", ".join(f"{m}: {n}" for m, n in doc["missing_chunks"].items())
        return (f"shard {doc['shard']} done ({ex}).\nchunks still missing in {doc['out']}: {left}; "
                f"when all shards are done, run the same command with --merge instead of --shard")
    c, q, r = doc["counts"], doc["quality"], doc["reducer"]
    lines = [f"item_info   {doc['outputs_path']}  ({c['items']} items + padding row 0, profile {doc['profile']})"]
    if "images_ok" in c:
        lines.append(f"covers      {c['images_ok']} read, {c['missing_images']} missing, "
                     f"{c['unreadable_images']} unreadable (replaced by the mean image embedding)")
    if "titles_ok" in c:
        lines.append(f"titles      {c['titles_ok']} encoded, {c['empty_titles']} empty (mean title embedding)")
    lines.append(f"reducer     {r['kind']}: {doc['fusion']['input_dim']} -> 128 dims, "
                 f"PCA explained variance {r['explained_variance']:.3f}")
    for m, t in doc["timings"]["extraction_this_run"].items():
        if t.get("items"):
            lines.append(f"throughput  {m}: {t['items_per_s']} items/s ({t['items']} items, {t['precision']})")
    if q.get("users"):
        ks = [k.split("@")[1] for k in q if k.startswith("recall@")]
        emb = ", ".join(f"recall@{k} {q[f'recall@{k}']:.4f}" for k in ks)
        pop = ", ".join(f"{q['popularity'][f'recall@{k}']:.4f}" for k in ks)
        rnd = ", ".join(f"{q['random'][f'recall@{k}']:.4f}" for k in ks)
        lines.append(f"quality     next-item {emb}, MRR {q['mrr']:.4f} on {q['users']} held-out train clicks "
                     f"(popularity {pop}; random {rnd})")
    return "\n".join(lines)


@click.command("embed", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="The MicroLens_1M_MMCTR folder (item_feature.parquet, item_images/, MicroLens_1M_x1/).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=str),
              help="Output folder: item_info.parquet, reducer.safetensors, task1.json, cache/.")
@click.option("--profile", type=click.Choice(["reference", "offline"]), default="reference", show_default=True,
              help="reference: CLIP ViT-L/14 + multilingual-E5-base; offline: packaged MiniLM + EfficientNet-Lite0.")
@click.option("--config", "config_file", type=click.Path(path_type=str), default=None,
              help="JSON file of settings over the profile (see task1/config.py).")
@click.option("--image-model", default=None, help="Hub id or local folder of a CLIP model (overrides the profile).")
@click.option("--text-model", default=None, help="Hub id or local folder of a text encoder (overrides the profile).")
@click.option("--image-model-license", default=None, metavar="SPDX",
              help="The image model's licence (SPDX id, e.g. mit) where its files do not state one.")
@click.option("--text-model-license", default=None, metavar="SPDX",
              help="The text model's licence (SPDX id, e.g. mit) where its files do not state one.")
@click.option("--reducer", type=click.Choice(["pca", "contrastive"]), default=None,
              help="pca, or contrastive (a projection trained on co-occurring train-history items).")
@click.option("--shard", default=None, metavar="K/N", help="Compute only the K-th of N slices of the items, then stop.")
@click.option("--merge", is_flag=True, help="Compute nothing: join the finished shards into the outputs.")
@click.option("--strict", is_flag=True, help="Fail on a missing or unreadable cover instead of replacing it.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=int, default=None, help="DataLoader worker processes decoding covers.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print task1.json (or the shard summary) as JSON.")
def embed(data_dir, out_dir, profile, config_file, image_model, text_model, image_model_license, text_model_license,
          reducer, shard, merge, strict, device, workers, seed, as_json):
    """Task 1: embed every item (cover + title) into 128 dims and write item_info.parquet into OUT."""
    from task1.config import load_config_file, make_config

    overrides = load_config_file(config_file) if config_file else {}
    for key, value in (("image_model", image_model), ("text_model", text_model), ("reducer", reducer),
                       ("image_workers", workers), ("image_model_license", image_model_license),
                       ("text_model_license", text_model_license)):
        if value is not None:
            overrides[key] = value
    cfg = make_config(profile, overrides, source=config_file)
    shard_kn = parse_shard(shard)
    if shard_kn and merge:
        raise UserError("--shard and --merge do not go together: run each shard, then --merge once")

    from task1.pipeline import run

    doc = run(data_dir, out_dir, cfg, shard=shard_kn, merge=merge, strict=strict, device=device, seed=seed)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        if "shard" not in doc:
            doc = dict(doc, outputs_path=f"{out_dir.rstrip('/')}/item_info.parquet")
        click.echo(render(doc))
    return 0
