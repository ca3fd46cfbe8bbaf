"""The challenge's 1st-place model beside ours, on any dataset folder, with its own code and published config.

    python bench/bench_peer.py --peer PEER_DIR [--data DATA_DIR] [--gpu 0] [--epochs N] [--max-train-minutes M]
                               [--ours bench/results/task2_worlds_....json] [--out PATH]
    python bench/bench_peer.py --peer PEER_DIR --dry-run     # tiny data, one training step, CPU: a few minutes

PEER_DIR is the 1st-place solution of the WWW 2025 MMCTR challenge (team momo: a Transformer over the
history and DCN-v2, on FuxiCTR 2.3.7), github.com/pinskyrobin/WWW2025_MMCTR at commit 2e45e7e, Apache-2.0.
This project neither ships nor imports it: clone it anywhere and pass its folder. The script copies it
into --workdir (its scripts chdir to their own folder and write checkpoints, logs and the submission
there, so the clone stays untouched) and runs its own `run_expid.py` and `prediction.py`, with its
published experiment `Transformer_DCN_MicroLens_1M_x1_001_820c435c` (batch 128, lr 5e-4, embedding 64,
2 transformer layers, 3 cross layers, DCN MLP [1024, 512, 256], early stopping with patience 5), in a
separate venv (--venv, made when missing: FuxiCTR 2.3.7 needs numpy<2, pandas<3, scikit-learn<1.5 and a
pyarrow that works with them). The only edits are the ones any new dataset needs, all in its two YAML
files: the four data paths, item_id's vocabulary (item_info's rows) and item_tags' (the largest tag + 1),
num_workers 0 on the CPU, and --epochs when given.

It reports valid AUC per epoch (from FuxiCTR's log), the best epoch, seconds of training and of
prediction, the parameter count, and the test AUC of its prediction.csv against the dataset's
oracle/ground_truth.csv; --ours adds our model's row for the same data from a bench_task2.py JSON. The
JSON goes to bench/results/peer_<data>_<date>.json.

--dry-run makes the tiny dataset with `harness synth` under --cache, cuts it to 128 training rows (one
step at the peer's batch of 128) and 256 valid and test rows, and runs one epoch on the CPU: the whole
path, from the copy to the scored prediction, in minutes. On the CPU the full model (about 261 M
parameters, most in a cross network over a 9k-wide input) takes over 15 minutes per epoch of 16,800 rows:
compare at a plateau on a GPU (--gpu 0).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from _common import machine
from bench_fuxictr_din import data_venv_options, ensure_venv, log

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SOURCE = "github.com/pinskyrobin/WWW2025_MMCTR, commit 2e45e7e (Apache-2.0)"
CONFIG = "config/Transformer_DCN_microlens_mmctr_tuner_config_01"
EXPID = "Transformer_DCN_MicroLens_1M_x1_001_820c435c"
DATASET_ID = "MicroLens_1M_x1"
PEER_EXTRA = ["pyarrow<21"]  # pandas needs a parquet engine; a newer pyarrow wants numpy 2
METRICS = re.compile(r"\[Metrics\] (.*)")
EVALUATION = re.compile(r"Evaluation @epoch (\d+)")
PARAMS = re.compile(r"Total number of parameters: (\d+)")


def peer_fingerprint(peer: Path) -> dict:
    """sha256 over the peer's files (path and bytes, sorted), so a result names the code it ran."""
    h = hashlib.sha256()
    files = sorted(p for p in peer.rglob("*") if p.is_file() and ".git" not in p.parts)
    for p in files:
        h.update(str(p.relative_to(peer)).encode() + b"\0" + p.read_bytes())
    return {"files": len(files), "sha256": h.hexdigest()}


def check_peer(peer: Path) -> None:
    missing = [rel for rel in ("run_expid.py", "prediction.py", "src/Transformer_DCN.py", f"{CONFIG}/dataset_config.yaml",
                               f"{CONFIG}/model_config.yaml") if not (peer / rel).is_file()]
    if missing:
        raise click.UsageError(f"{peer}: not the 1st-place solution's folder (missing {', '.join(missing)}); "
                               f"clone {SOURCE.split(',')[0]}")


def dry_run_data(cache: Path) -> Path:
    """The tiny generated dataset cut to one training step (128 rows) and 256 valid and test rows."""
    import polars as pl

    from harness.synth import generate

    full = cache / "tiny_item_s0"
    if not (full / "oracle" / "ground_truth.csv").is_file():
        generate(full, scale="tiny", seed=0, overwrite=True)
    cut = cache / "peer_dry_run"
    if cut.exists():
        shutil.rmtree(cut)
    (cut / DATASET_ID).mkdir(parents=True)
    (cut / "oracle").mkdir()
    src = full / DATASET_ID
    shutil.copy(src / "item_info.parquet", cut / DATASET_ID / "item_info.parquet")
    pl.read_parquet(src / "train.parquet").head(128).write_parquet(cut / DATASET_ID / "train.parquet")
    pl.read_parquet(src / "valid.parquet").head(256).write_parquet(cut / DATASET_ID / "valid.parquet")
    pl.read_parquet(src / "test.parquet").head(256).write_parquet(cut / DATASET_ID / "test.parquet")
    pl.read_csv(full / "oracle" / "ground_truth.csv").head(256).write_csv(cut / "oracle" / "ground_truth.csv")
    oracle = json.loads((full / "oracle" / "oracle.json").read_text())
    (cut / "oracle" / "oracle.json").write_text(json.dumps({k: oracle[k] for k in ("world", "scale", "seed")}))
    return cut


def configure(work: Path, data: Path, gpu: int, epochs: int | None) -> dict:
    """Point the copy's two YAML files at `data`; return what was changed."""
    import polars as pl
    import yaml

    info = pl.read_parquet(data / DATASET_ID / "item_info.parquet", columns=["item_tags"])
    n_items, n_tags = info.height, int(info["item_tags"].explode().max()) + 1
    ds_path, model_path = work / CONFIG / "dataset_config.yaml", work / CONFIG / "model_config.yaml"
    ds, model = yaml.safe_load(ds_path.read_text()), yaml.safe_load(model_path.read_text())
    d = ds[DATASET_ID]
    for split in ("train", "valid", "test"):
        d[f"{split}_data"] = str((data / DATASET_ID / f"{split}.parquet").resolve())
    d["item_info"] = str((data / DATASET_ID / "item_info.parquet").resolve())
    for col in d["feature_cols"]:
        if col["name"] == "item_id":
            col["vocab_size"] = n_items
        if col["name"] == "item_tags":
            col["vocab_size"] = n_tags
    m = model[EXPID]
    changed = {"item_id.vocab_size": n_items, "item_tags.vocab_size": n_tags, "data": str(data.resolve())}
    if gpu < 0:
        m["num_workers"] = changed["num_workers"] = 0
    if epochs is not None:
        m["epochs"] = changed["epochs"] = epochs
    ds_path.write_text(yaml.safe_dump(ds, sort_keys=False))
    model_path.write_text(yaml.safe_dump(model, sort_keys=False))
    return {"changed": changed, "published": {k: m[k] for k in ("batch_size", "learning_rate", "embedding_dim",
                                                                 "transformer_layers", "dcn_cross_layers",
                                                                 "dcn_hidden_units", "early_stop_patience", "epochs")}}


def run_step(cmd: list[str], cwd: Path, timeout_s: float | None, log_path: Path) -> dict:
    t0 = time.perf_counter()
    with log_path.open("w") as f:
        try:
            rc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
            timed_out = False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
    return {"cmd": " ".join(cmd), "exit_code": rc, "timed_out": timed_out,
            "wall_s": round(time.perf_counter() - t0, 1), "log": str(log_path)}


def parse_log(text: str) -> dict:
    """Valid AUC per epoch and the parameter count from FuxiCTR's log: each evaluation is logged as
    'Evaluation @epoch N - batch B:' then '[Metrics] AUC: ... - logloss: ...'; run_expid.py's final
    'Validation evaluation' of the best checkpoint logs one more '[Metrics]' line."""
    per_epoch, epoch, final = [], None, None
    for line in text.splitlines():
        e = EVALUATION.search(line)
        if e:
            epoch = int(e.group(1))
        if "Validation evaluation" in line:
            epoch = "final"
        m = METRICS.search(line)
        if m and epoch is not None:
            values = {k.strip(): float(v) for k, v in (kv.split(":") for kv in m.group(1).split(" - "))}
            if epoch == "final":
                final = values
            else:
                per_epoch.append({"epoch": epoch, **values})
            epoch = None
    params = PARAMS.search(text)
    return {"valid_by_epoch": per_epoch, "final_valid": final,
            "parameters": int(params.group(1)) if params else None}


def ours_row(path: Path, world: str | None) -> dict:
    doc = json.loads(path.read_text())
    rows = [r for r in doc["rows"] if "error" not in r and (world is None or r["world"] == world)
            and r["config"] in ("SASRecDCN", "default")]
    if not rows:
        raise click.UsageError(f"{path}: no SASRecDCN row for world {world!r}")
    r = rows[0]
    return {"file": str(path), "world": r["world"], "config": r["config"], "seed": r["seed"],
            "valid_auc": r["valid_auc"], "test_auc": r["test_auc"], "best_epoch": r["best_epoch"],
            "epochs_run": r["epochs_run"], "train_seconds": r["train_seconds"], "threads": r.get("torch_threads")}


def main(peer: Path, data_dir: Path | None, cache: Path, venv: Path, gpu: int, epochs: int | None,
         max_train_minutes: float | None, dry_run: bool, ours: Path | None, workdir: Path, out: Path | None) -> None:
    from core.io import write_json_atomic
    from core.metrics import auc

    peer = peer.resolve()
    check_peer(peer)
    if dry_run:
        gpu, epochs = -1, 1
        data = dry_run_data(cache)
    elif data_dir is None:
        raise click.UsageError("pass --data DATA_DIR (a MicroLens-shaped folder with oracle/), or --dry-run")
    else:
        data = data_dir.resolve()
        if not (data / DATASET_ID / "train.parquet").is_file():
            raise click.UsageError(f"{data}: no {DATASET_ID}/train.parquet; pass a dataset root")
    installed = ensure_venv(venv, extra=PEER_EXTRA)
    work = workdir / data.name / "peer"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(peer, work, ignore=shutil.ignore_patterns(".git", "checkpoints", "data", "submission"))
    config = configure(work, data, gpu, epochs)
    py = str(venv / "bin" / "python")
    logs = work.parent
    log(f"training the peer model on {data} (gpu {gpu}) in {work}")
    fit = run_step([py, "run_expid.py", "--config", CONFIG, "--expid", EXPID, "--gpu", str(gpu)], work,
                   None if max_train_minutes is None else 60 * max_train_minutes, logs / "train.log")
    fx_log = work / "checkpoints" / DATASET_ID / f"{EXPID}.log"
    parsed = parse_log(fx_log.read_text() if fx_log.is_file() else (logs / "train.log").read_text())
    has_checkpoint = any((work / "checkpoints").rglob("*.model")) if (work / "checkpoints").exists() else False
    pred = None
    if has_checkpoint:
        log("predicting the test split with the best checkpoint")
        pred = run_step([py, "prediction.py", "--config", CONFIG, "--expid", EXPID, "--gpu", str(gpu)], work,
                        None, logs / "predict.log")
    result = {"train": fit, "predict": pred, **parsed}
    valid = [e.get("AUC") for e in parsed["valid_by_epoch"]]
    result["best_valid_auc"] = max(valid) if valid else None
    result["best_epoch"] = valid.index(max(valid)) + 1 if valid else None
    result["epochs_run"] = len(valid)
    csv = work / "submission" / "prediction.csv"
    truth = data / "oracle" / "ground_truth.csv"
    if csv.is_file() and truth.is_file():
        import polars as pl

        p, t = pl.read_csv(csv), pl.read_csv(truth)
        if p.height != t.height:
            raise click.ClickException(f"{csv} has {p.height} rows, {truth} {t.height}")
        result["test_auc"] = auc(t["label"].to_numpy(), p[p.columns[1]].to_numpy())
    oracle = json.loads((data / "oracle" / "oracle.json").read_text()) if (data / "oracle" / "oracle.json").is_file() else {}
    doc = {"benchmark": "peer", "peer": {"source": SOURCE, "path": str(peer), **peer_fingerprint(peer),
                                         "experiment": EXPID, **config},
           "data": str(data), "dry_run": dry_run, "gpu": gpu, "venv": {"path": str(venv), "installed": installed},
           "reference_auc": oracle.get("auc"), "result": result,
           "ours": ours_row(ours, oracle.get("world")) if ours else None,
           "command": " ".join(["bench/bench_peer.py", *sys.argv[1:]]), "machine": machine(),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    name = "dry_run" if dry_run else data.name
    out = out or RESULTS / f"peer_{name}_{dt.date.today().isoformat()}.json"
    write_json_atomic(out, doc)
    click.echo(f"peer ({EXPID}) on {data.name}: {result['epochs_run']} epoch(s), best valid AUC "
               f"{result['best_valid_auc']}, test AUC {result.get('test_auc')}, training {fit['wall_s']} s"
               + (" (stopped by --max-train-minutes)" if fit["timed_out"] else "")
               + (f", {parsed['parameters']:,} parameters" if parsed["parameters"] else ""))
    if doc["ours"]:
        o = doc["ours"]
        click.echo(f"ours ({o['config']}, seed {o['seed']}): valid {o['valid_auc']:.4f}, test {o['test_auc']:.4f}, "
                   f"{o['epochs_run']} epochs, training {o['train_seconds']} s")
    click.echo(f"wrote {out}")
    if fit["exit_code"] not in (0, None) or (pred is not None and pred["exit_code"] != 0):
        raise click.ClickException(f"the peer's code failed; see {fit['log']}"
                                   + (f" and {pred['log']}" if pred else ""))


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__.split("\n\n")[0])
@click.option("--peer", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help=f"The 1st-place solution's folder ({SOURCE}).")
@data_venv_options
@click.option("--gpu", type=int, default=-1, show_default=True, help="The peer's --gpu: -1 for the CPU, else a GPU index.")
@click.option("--epochs", type=int, help="Cap the peer's epochs [default: its published 100 with patience 5].")
@click.option("--max-train-minutes", type=float, help="Stop its training after this long; the best checkpoint so far predicts.")
@click.option("--dry-run", is_flag=True, help="Tiny data, one training step, CPU: checks the whole path in minutes.")
@click.option("--ours", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A bench_task2.py JSON holding our SASRecDCN's run on the same data.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path("/tmp/mmctr_peer"),
              show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="JSON path [default: bench/results/peer_<data>_<date>.json].")
def cli(**options):
    main(**options)


if __name__ == "__main__":
    cli()
