"""Benchmark of the Task 2 CTR model: speed, memory, epochs to best, AUC next to the oracle.

    python bench/bench_task2.py [--data DATA_DIR | --scale demo] [--epochs N] [--threads N] [--variants length_aware,padded,din] [--tag T]
    python bench/bench_task2.py --sweep SWEEP.json [--only a,b] [--data DATA_DIR] [--threads N] [--out OUT.json]

For each variant (by default the shipped config with length-aware batching on, and the same with it
off) one child process trains with `task2.train.train`, predicts the test split with
`task2.predict.predict` and scores it against oracle/ground_truth.csv. Each child reports training and
prediction samples/s, seconds per epoch, its peak resident memory (resource.getrusage, so variants do
not share a peak), the best epoch and valid/test AUC. The parent prints a table next to the dataset's
Bayes-optimal (oracle) and popularity AUCs, with the model's analytic FLOPs per sample, and writes
bench/results/task2_<scale>_<date>.json with the machine, the package versions and the date.

With --sweep, SWEEP.json maps a config name to TrainConfig overrides (a "model" object is merged into the
model config overrides; keys starting with "_", at either level, are comments), e.g. {"default": {}, "lr2e-3":
{"learning_rate": 0.002}, "id128": {"model": {"id_emb_dim": 128}}}. Each named config (or those in
--only) trains in its own child, one after the other, on top of the --config file or the shipped
defaults; the JSON (default bench/results/task2_sweep_<scale>[_<tag>]_<date>.json) holds one row per
config with its overrides, valid/test AUC, s/epoch, best epoch and the per-epoch curve. It is rewritten
after every config, and rows of an existing --out file whose names are not re-run are kept, so a sweep
can be run in stages into one file. Choose on valid AUC only; test AUC is reported, not for choosing.

Without --data the dataset is generated with `harness.synth` (seed 0) under --cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Published peak dense throughput (TFLOP/s) used only for the labelled *estimates* below.
PEAK_TFLOPS = {"T4 fp16 tensor cores": 65.0, "H100 SXM bf16 dense": 989.0}
ASSUMED_UTILISATION = 0.25  # small matmuls (D = 192) rarely reach more; stated next to every estimate


def child(spec: dict) -> dict:
    """One variant in this process: train, predict, score; return the measurements."""
    import resource

    import polars as pl
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from harness.metrics import auc
    from task2.predict import predict
    from task2.train import load_train_config, train

    cfg = load_train_config(spec.get("config"), **spec["overrides"])
    out = Path(spec["out"])
    t0 = time.perf_counter()
    run = train(spec["data"], out / "run", cfg, log=lambda m: print(m, file=sys.stderr, flush=True), progress=False)
    t_train = time.perf_counter() - t0
    doc = predict(out / "run", spec["data"], out / "pred", track=2 if cfg.model_class != "DIN" else 1)
    truth = pl.read_csv(Path(spec["data"]) / "oracle" / "ground_truth.csv")
    pred = pl.read_csv(out / "pred" / "prediction.csv")
    column = doc["column"]
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return {
        "variant": spec["name"],
        "model_class": cfg.model_class,
        "length_aware": cfg.length_aware,
        "config": json.loads((out / "run" / "config.json").read_text())["train"],
        "model_args": json.loads((out / "run" / "model_args.json").read_text()),
        "best_epoch": run["best_epoch"],
        "epochs_run": run["epochs_run"],
        "valid_auc": run["best_valid_auc"],
        "test_auc": auc(truth["label"].to_numpy(), pred[column].to_numpy()),
        "train_samples_per_s": run["train_samples_per_s"],
        "seconds_per_epoch": round(run["timings_s"]["train"] / run["epochs_run"], 2),
        "train_seconds": run["timings_s"]["train"],
        "wall_seconds_train_call": round(t_train, 2),
        "predict_samples_per_s": doc["samples_per_s"],
        "predict_seconds": doc["timings_s"]["total"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "epochs": rows,
    }


def mean_history_length(data_dir: Path, max_len: int) -> float:
    import polars as pl

    seq = pl.read_parquet(data_dir / "MicroLens_1M_x1" / "train.parquet", columns=["item_seq"])["item_seq"].to_numpy()
    return float(((seq[:, -max_len:] > 0).sum(1)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="dataset root (MicroLens_1M_x1/ and oracle/)")
    ap.add_argument("--scale", default="demo", choices=["tiny", "demo", "full"])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/mmctr_bench"), help="where --scale data is generated")
    ap.add_argument("--config", type=Path, help="TrainConfig JSON for every variant (default: the shipped defaults)")
    ap.add_argument("--epochs", type=int, help="override the config's epochs")
    ap.add_argument("--threads", type=int, help="torch intra-op threads in each child (default: torch's)")
    ap.add_argument("--variants", default="length_aware,padded",
                    help="comma list of: length_aware, padded, din (the official DIN baseline config)")
    ap.add_argument("--tag", default="", help="suffix of the default JSON name")
    ap.add_argument("--out", type=Path, help="JSON path (default bench/results/task2_<scale>[_<tag>]_<date>.json)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mmctr_bench_runs"))
    ap.add_argument("--sweep", type=Path, help="JSON of named TrainConfig overrides: run each instead of --variants")
    ap.add_argument("--only", help="with --sweep: comma list of the names to run (default: all)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(child(json.loads(a._child))))
        return

    from harness.env import fingerprint
    from task2.model import flops_per_sample

    data = a.data
    if data is None:
        data = a.cache / a.scale
        if not (data / "oracle" / "oracle.json").is_file():
            from harness.synth import generate

            print(f"generating {a.scale} data in {data} ...", file=sys.stderr)
            generate(data, scale=a.scale, seed=0, overwrite=True)
    oracle = json.loads((data / "oracle" / "oracle.json").read_text())
    if a.sweep is not None:
        sweep(a, data, oracle)
        return
    overrides = {} if a.epochs is None else {"epochs": a.epochs}
    specs = {
        "length_aware": {"overrides": dict(overrides, length_aware=True)},
        "padded": {"overrides": dict(overrides, length_aware=False)},
        "din": {"overrides": dict(overrides, model_class="DIN")},  # the official baseline's training
    }
    results = []
    for name in a.variants.split(","):
        spec = dict(specs[name], name=name, data=str(data), out=str(a.workdir / name), threads=a.threads,
                    config=None if a.config is None else str(a.config))
        print(f"[{name}] training ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--_child", json.dumps(spec)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
        if proc.returncode:
            sys.exit(f"variant {name} failed (exit {proc.returncode})")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        max_len = res["model_args"]["config"]["max_len"]
        # padded batches compute every one of the max_len slots; length-aware ones about the real length
        hist = mean_history_length(data, max_len) if res["length_aware"] else float(max_len)
        res["mean_history_length"] = round(hist, 3)
        res["flops_per_sample"] = flops_per_sample(res["model_args"], hist)
        results.append(res)

    # labelled estimates for a full-size epoch (3.6 M rows) from the analytic count
    estimates = {}
    for res in results:
        per_epoch = res["flops_per_sample"]["train_flops"] * 3_600_000
        estimates[res["variant"]] = {
            name: round(per_epoch / (peak * 1e12 * ASSUMED_UTILISATION), 1) for name, peak in PEAK_TFLOPS.items()}
    doc = {
        "benchmark": "task2",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": {"path": str(data), "scale": oracle.get("scale"), "seed": oracle.get("seed"),
                 "rows": {k: oracle["auc"][k]["rows"] for k in ("valid", "test")}},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg())},
        "env": fingerprint(),
        "reference_auc": {split: {k: oracle["auc"][split][k] for k in ("oracle", "oracle_item_only", "popularity")}
                          for split in ("valid", "test")},
        "results": results,
        "full_epoch_seconds_estimate": {
            "note": f"analytic training FLOPs x 3.6 M rows / (peak x {ASSUMED_UTILISATION}); an estimate, not a measurement",
            "peak_tflops": PEAK_TFLOPS, "by_variant": estimates},
    }
    tag = f"_{a.tag}" if a.tag else ""
    out = a.out or ROOT / "bench" / "results" / f"task2_{oracle.get('scale', 'data')}{tag}_{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from harness.io import write_json_atomic

    write_json_atomic(out, doc)

    ref = doc["reference_auc"]
    print(f"data {data} ({oracle.get('scale')}): oracle AUC valid {ref['valid']['oracle']:.4f} / test "
          f"{ref['test']['oracle']:.4f}; popularity {ref['valid']['popularity']:.4f} / {ref['test']['popularity']:.4f}")
    head = (f"{'variant':<13}{'model':<10}{'epochs':>7}{'best':>5}{'valid AUC':>10}{'test AUC':>9}{'s/epoch':>9}"
            f"{'train/s':>9}{'pred/s':>9}{'peak MiB':>9}{'GFLOP/smp':>10}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['variant']:<13}{r['model_class']:<10}{r['epochs_run']:>7}{r['best_epoch']:>5}{r['valid_auc']:>10.4f}"
              f"{r['test_auc']:>9.4f}{r['seconds_per_epoch']:>9.1f}{r['train_samples_per_s']:>9.0f}"
              f"{r['predict_samples_per_s']:>9.0f}{r['peak_rss_mib']:>9.0f}{r['flops_per_sample']['train_flops'] / 1e9:>10.4f}")
    print(f"(GFLOP/smp: analytic training FLOPs per sample at the mean history length; threads per child: "
          f"{results[0]['torch_threads'] if results else '-'}; load average at end {os.getloadavg()[0]:.1f})")
    for variant, est in estimates.items():
        print(f"full-size epoch estimate [{variant}]: " + ", ".join(f"{k}: {v} s" for k, v in est.items())
              + f" (at {ASSUMED_UTILISATION:.0%} of peak)")
    print(f"wrote {out}")


def run_child(spec: dict) -> dict:
    """Run one spec in a fresh process (so memory peaks and thread pools are its own)."""
    proc = subprocess.run([sys.executable, __file__, "--_child", json.dumps(spec)], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    if proc.returncode:
        sys.exit(f"{spec['name']} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sweep(a: argparse.Namespace, data: Path, oracle: dict) -> None:
    """--sweep: train each named config in a child; one JSON row per config, rewritten after each."""
    from harness.env import fingerprint
    from harness.io import write_json_atomic

    configs = json.loads(a.sweep.read_text())
    if isinstance(configs, dict):  # top-level keys starting with "_" are comments
        configs = {k: v for k, v in configs.items() if not k.startswith("_")}
    if not isinstance(configs, dict) or not all(isinstance(v, dict) for v in configs.values()):
        sys.exit(f"{a.sweep}: expected an object of name -> TrainConfig overrides")
    names = a.only.split(",") if a.only else list(configs)
    unknown = [n for n in names if n not in configs]
    if unknown:
        sys.exit(f"{a.sweep}: no config named {', '.join(unknown)}")
    tag = f"_{a.tag}" if a.tag else ""
    out = a.out or ROOT / "bench" / "results" / f"task2_sweep_{oracle.get('scale', 'data')}{tag}_{dt.date.today().isoformat()}.json"
    rows = {}
    if out.is_file():  # a staged sweep: keep the rows of configs not re-run now
        rows = {r["name"]: r for r in json.loads(out.read_text()).get("rows", [])}
    commands = [] if not out.is_file() else json.loads(out.read_text()).get("commands", [])
    commands.append(" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    ref = {split: {k: oracle["auc"][split][k] for k in ("oracle", "oracle_item_only", "popularity")}
           for split in ("valid", "test")}
    for name in names:
        overrides = {k: v for k, v in configs[name].items() if not k.startswith("_")}
        if a.epochs is not None:
            overrides.setdefault("epochs", a.epochs)
        if "model" in overrides and a.config is not None:  # merge with the --config file's model object
            base = json.loads(a.config.read_text()).get("model", {})
            overrides["model"] = {**base, **overrides["model"]}
        spec = {"name": name, "overrides": overrides, "data": str(data), "out": str(a.workdir / name),
                "threads": a.threads, "config": None if a.config is None else str(a.config)}
        print(f"[{name}] training with {json.dumps(overrides)} ...", file=sys.stderr, flush=True)
        res = run_child(spec)
        rows[name] = {
            "name": name, "overrides": overrides, "valid_auc": res["valid_auc"], "test_auc": res["test_auc"],
            "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
            "seconds_per_epoch": res["seconds_per_epoch"], "train_seconds": res["train_seconds"],
            "train_samples_per_s": res["train_samples_per_s"], "peak_rss_mib": res["peak_rss_mib"],
            "torch_threads": res["torch_threads"], "load_average_after": list(os.getloadavg()),
            "valid_auc_by_epoch": [round(e["valid_auc"], 5) for e in res["epochs"]],
            "config": res["config"], "model_args": res["model_args"], "epochs": res["epochs"],
        }
        doc = {
            "benchmark": "task2_sweep",
            "commands": commands,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "selection": "choose on valid AUC only; test AUC is reported, never used to choose",
            "data": {"path": str(data), "scale": oracle.get("scale"), "seed": oracle.get("seed"),
                     "rows": {k: oracle["auc"][k]["rows"] for k in ("valid", "test")}},
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count()},
            "env": fingerprint(),
            "reference_auc": ref,
            "rows": list(rows.values()),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, doc)
        r = rows[name]
        print(f"[{name}] valid {r['valid_auc']:.4f} test {r['test_auc']:.4f} best epoch {r['best_epoch']}/"
              f"{r['epochs_run']} {r['seconds_per_epoch']:.1f} s/epoch; by epoch {r['valid_auc_by_epoch']}",
              file=sys.stderr, flush=True)

    print(f"data {data} ({oracle.get('scale')}): oracle AUC valid {ref['valid']['oracle']:.4f} / test "
          f"{ref['test']['oracle']:.4f}; popularity {ref['valid']['popularity']:.4f} / {ref['test']['popularity']:.4f}")
    head = f"{'config':<22}{'valid AUC':>10}{'test AUC':>9}{'best':>5}{'epochs':>7}{'s/epoch':>9}  valid AUC by epoch"
    print(head)
    print("-" * len(head))
    for r in sorted(rows.values(), key=lambda r: -r["valid_auc"]):
        print(f"{r['name']:<22}{r['valid_auc']:>10.4f}{r['test_auc']:>9.4f}{r['best_epoch']:>5}{r['epochs_run']:>7}"
              f"{r['seconds_per_epoch']:>9.1f}  {' '.join(f'{v:.4f}' for v in r['valid_auc_by_epoch'])}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
