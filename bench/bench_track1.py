"""Track 1's loop, measured: the baseline DIN trained on each candidate item embedding, scored against the oracle.

    python bench/bench_track1.py --data DATA --item-info NAME=PATH [--item-info NAME=PATH ...]
                                 [--seeds 0] [--threads 1] [--out PATH]

A Track 1 competitor changes only the item embeddings and is judged by the fixed baseline DIN's AUC. For
each `--item-info` (a name and an item_info.parquet; `dataset` means DATA's own) and each seed, this
trains DIN exactly as `./reproduce.sh --track 1` does (`harness train --model DIN`: the baseline config,
batch size and learning rate fitted to the rows, FuxiCTR's plateau schedule), predicts the test split
for Track 1 and scores it against DATA/oracle/ground_truth.csv. Per run: valid and test AUC, epochs, why
training stopped, seconds per epoch and samples/s (from run.json). The difference between two rows is
what a Track 1 competitor optimises. JSON: bench/results/track1_<date>.json (or --out).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import click

from _common import RESULTS, machine, table


def _run(cmd: list[str], env: dict) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise click.ClickException(f"`{' '.join(cmd[2:5])} ...` failed: {tail[0]}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="A dataset root with oracle/ground_truth.csv (harness synth makes one).")
@click.option("--item-info", "item_infos", multiple=True, required=True,
              help="NAME=PATH of an item_info.parquet; NAME=dataset for DATA's own.")
@click.option("--seeds", default="0", show_default=True, help="Comma list of training seeds.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads per run.")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/mmctr_bench_track1"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="JSON path [default: bench/results/track1_<date>.json].")
def main(data: Path, item_infos: tuple[str, ...], seeds: str, threads: int, workdir: Path, out: Path | None) -> None:
    """Train the baseline DIN on each item embedding and print valid/test AUC next to the oracle."""
    from core.challenge import DATASET_DIR
    from core.metrics import auc
    import polars as pl

    candidates = {}
    for spec in item_infos:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise click.BadParameter(f"{spec!r}: expected NAME=PATH", param_hint="--item-info")
        p = data / DATASET_DIR / "item_info.parquet" if path == "dataset" else Path(path)
        if not p.is_file():
            raise click.BadParameter(f"{p}: no such item_info.parquet", param_hint="--item-info")
        candidates[name] = p
    truth = pl.read_csv(data / "oracle" / "ground_truth.csv").sort("ID")
    oracle = json.loads((data / "oracle" / "oracle.json").read_text())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONHASHSEED="0", HF_HUB_OFFLINE="1")
    py = [sys.executable, "-m", "harness"]
    rows = []
    for name, item_info in candidates.items():
        for seed in [int(s) for s in seeds.split(",")]:
            run = workdir / f"{name}_seed{seed}"
            click.echo(f"[{name} seed {seed}] training DIN on {item_info}", err=True)
            _run([*py, "train", "--data", str(data), "--item-info", str(item_info), "--out", str(run / "task2"),
                  "--model", "DIN", "--seed", str(seed), "--device", "cpu",
                  "--overwrite"], env)
            _run([*py, "predict", "--run", str(run / "task2"), "--data", str(data), "--out", str(run / "prediction"),
                  "--track", "1"], env)
            rec = json.loads((run / "task2" / "run.json").read_text())
            pred = pl.read_csv(run / "prediction" / "prediction.csv").sort("ID")
            test_auc = auc(truth["label"].to_numpy(), pred["Task1"].to_numpy())
            train_s = rec["timings_s"]["train"]
            rows.append({"item_info": name, "path": str(item_info), "seed": seed, "valid_auc": rec["best_valid_auc"],
                         "test_auc": test_auc, "best_epoch": rec["best_epoch"], "epochs_run": rec["epochs_run"],
                         "stop_reason": rec["stop_reason"], "seconds_per_epoch": round(train_s / rec["epochs_run"], 2),
                         "train_samples_per_s": rec["train_samples_per_s"], "fitted_to_data": rec["fitted_to_data"]})
            click.echo(f"[{name} seed {seed}] valid {rec['best_valid_auc']:.4f} test {test_auc:.4f}", err=True)

    summary = {}
    for name in candidates:
        rs = [r for r in rows if r["item_info"] == name]
        summary[name] = {k: {"mean": statistics.mean(r[k] for r in rs), "spread": max(r[k] for r in rs) - min(r[k] for r in rs),
                             "n": len(rs)} for k in ("valid_auc", "test_auc")}
    ref = oracle["auc"]
    print(table([{"item_info": n, "valid_auc": f"{s['valid_auc']['mean']:.4f}", "test_auc": f"{s['test_auc']['mean']:.4f}",
                  "seeds": s["valid_auc"]["n"], "test spread": f"{s['test_auc']['spread']:.4f}"}
                 for n, s in summary.items()]
                + [{"item_info": "oracle", "valid_auc": f"{ref['valid']['oracle']:.4f}", "test_auc": f"{ref['test']['oracle']:.4f}"},
                   {"item_info": "popularity", "valid_auc": f"{ref['valid']['popularity']:.4f}",
                    "test_auc": f"{ref['test']['popularity']:.4f}"}],
                ["item_info", "valid_auc", "test_auc", "seeds", "test spread"]))
    doc = {"benchmark": "track1", "command": " ".join(["bench/bench_track1.py", *sys.argv[1:]]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "data": {"path": str(data), "scale": oracle.get("scale"), "world": oracle.get("world"), "seed": oracle.get("seed")},
           "threads": threads, "reference_auc": {s: {k: ref[s][k] for k in ("oracle", "popularity")} for s in ("valid", "test")},
           "rows": rows, "summary": summary}
    path = out or RESULTS / f"track1_{dt.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    click.echo(f"wrote {path}", err=True)


if __name__ == "__main__":
    main()
