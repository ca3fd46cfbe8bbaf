"""Task 2 does not care what unit item_emb_d128 is in: the same dataset with its table times 0.01, 1, 30
and plus 5, each trained to its plateau, next to the seed-to-seed spread of the unchanged table.

    python bench/bench_units.py [--data DATA_DIR] [--models SASRecDCN,MeanPoolMLP] [--seeds 0]
                                [--spread-seeds 0,1] [--jobs 2] [--out PATH]

For each transform (a, b) the script writes a copy of the dataset whose item_info.parquet holds
a * item_emb_d128 + b on the real rows (row 0, the padding, stays zeros; the other files are symlinks),
and trains it with `bench_task2.py`'s own child (train to the plateau, predict, score against the
oracle). The unchanged table runs with --spread-seeds, the others with --seeds: a transform is "within
the spread" when its valid AUC lies inside the unchanged table's range over those seeds widened by half
its width on each side (a single seed of one transform cannot be judged more finely). Without --data the
`demo` dataset (world item, seed 0) is generated under --cache. JSON: bench/results/task2_units_<date>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from _common import machine
from bench_task2 import MODELS, dataset, run_child

ROOT = Path(__file__).resolve().parents[1]
TRANSFORMS = {"x1": (1.0, 0.0), "x0.01": (0.01, 0.0), "x30": (30.0, 0.0), "+5": (1.0, 5.0)}


def transformed(data: Path, name: str, a: float, b: float, cache: Path) -> Path:
    """`data` with item_info's item_emb_d128 replaced by a x + b (real rows only); other files linked."""
    import numpy as np
    import polars as pl

    from core.challenge import DATASET_DIR

    if (a, b) == (1.0, 0.0):
        return data
    out = cache / f"{data.name}_units_{name}"
    if (out / "oracle" / "oracle.json").is_file() and (out / DATASET_DIR / "item_info.parquet").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    (out / DATASET_DIR).mkdir(parents=True)
    for entry in data.iterdir():
        if entry.name != DATASET_DIR:
            (out / entry.name).symlink_to(entry.resolve())
    for entry in (data / DATASET_DIR).iterdir():
        if entry.name != "item_info.parquet":
            (out / DATASET_DIR / entry.name).symlink_to(entry.resolve())
    info = pl.read_parquet(data / DATASET_DIR / "item_info.parquet")
    emb = info["item_emb_d128"].to_numpy().astype(np.float64)
    emb[1:] = emb[1:] * a + b
    info = info.with_columns(pl.Series("item_emb_d128", emb).cast(pl.Array(pl.Float64, emb.shape[1])))
    info.write_parquet(out / DATASET_DIR / "item_info.parquet")
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
              help="A dataset with oracle/ [default: demo, world item, seed 0, made under --cache].")
@click.option("--models", default="SASRecDCN,MeanPoolMLP", show_default=True, help=f"Comma list of: {', '.join(MODELS)}.")
@click.option("--seeds", default="0", show_default=True, help="Training seeds of the transformed tables.")
@click.option("--spread-seeds", default="0,1", show_default=True, help="Training seeds of the unchanged table.")
@click.option("--jobs", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--cache", type=click.Path(path_type=Path), default=Path("/tmp/mmctr_bench"), show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/mmctr_bench_units"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False))
def main(data_dir, models, seeds, spread_seeds, jobs, threads, cache, workdir, out):
    """Train on the same data with item_emb_d128 rescaled and shifted; report valid/test AUC per transform."""
    from core.io import write_json_atomic

    data = data_dir.resolve() if data_dir else dataset(cache, "demo", "item", 0)
    oracle = json.loads((data / "oracle" / "oracle.json").read_text())["auc"]
    specs = []
    for name, (a, b) in TRANSFORMS.items():
        path = transformed(data, name, a, b, cache)
        for model in models.split(","):
            for seed in (spread_seeds if name == "x1" else seeds).split(","):
                specs.append({"transform": name, "a": a, "b": b, "config": model, "seed": int(seed),
                              "threads": threads, "data": str(path), "overrides": dict(MODELS[model], seed=int(seed)),
                              "out": str(workdir / data.name / name / f"{model}_seed{seed}")})
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(run_child, specs))
    rows = [{**{k: s[k] for k in ("transform", "a", "b", "config", "seed")}, **r} for s, r in zip(specs, results)]
    summary = {}
    for model in models.split(","):
        base = [r["valid_auc"] for r in rows if r["config"] == model and r["transform"] == "x1" and "error" not in r]
        lo, hi = min(base), max(base)
        pad = (hi - lo) / 2
        summary[model] = {"x1_valid_range": [lo, hi]}
        for name in TRANSFORMS:
            got = [r for r in rows if r["config"] == model and r["transform"] == name and "error" not in r]
            summary[model][name] = {
                "valid_auc": [round(r["valid_auc"], 5) for r in got], "test_auc": [round(r["test_auc"], 5) for r in got],
                "within_spread": all(lo - pad <= r["valid_auc"] <= hi + pad for r in got)}
    doc = {"benchmark": "task2_units", "data": str(data), "reference_auc": {s: {k: oracle[s][k] for k in (
        "oracle", "popularity")} for s in ("valid", "test")}, "transforms": TRANSFORMS, "rows": rows,
           "summary": summary, "command": " ".join(["bench/bench_units.py", *sys.argv[1:]]), "machine": machine(),
           "load_average_at_write": list(os.getloadavg()), "wall_s": round(time.perf_counter() - t0, 1),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    out = out or ROOT / "bench" / "results" / f"task2_units_{dt.date.today().isoformat()}.json"
    write_json_atomic(out, doc)
    for model, s in summary.items():
        click.echo(f"{model}: unchanged table valid AUC {s['x1_valid_range'][0]:.4f}-{s['x1_valid_range'][1]:.4f} "
                   f"over seeds {spread_seeds}")
        for name in TRANSFORMS:
            t = s[name]
            click.echo(f"  {name:>6}: valid {', '.join(f'{v:.4f}' for v in t['valid_auc'])}, test "
                       f"{', '.join(f'{v:.4f}' for v in t['test_auc'])}"
                       f"{'' if t['within_spread'] else '   OUTSIDE the spread'}")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
